//! Switchyard: a live-media gateway. See ARCHITECTURE.md for the layout and its layers.

pub mod audio;
pub mod auth;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod http;
pub mod inputs;
pub mod limits;
pub mod loadtest;
pub mod logging;
pub mod outputs;
pub mod pulls;
pub mod pushes;
pub mod rtmp;
pub mod server;
pub mod source;
pub mod tls;
pub mod webrtc;
