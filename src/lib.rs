//! Switchyard: a live-media gateway. See ARCHITECTURE.md for the layout and its layers.

pub mod audio;
pub mod bus;
pub mod config;
pub mod http;
pub mod inputs;
pub mod loadtest;
pub mod logging;
pub mod outputs;
pub mod pulls;
pub mod pushes;
pub mod rtmp;
pub mod server;
pub mod webrtc;
