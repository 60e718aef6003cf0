//! Inputs: each turns a network protocol into a bus [`Publisher`](crate::bus::Publisher).

pub mod pull;
pub mod rtmp;
pub mod rtsp_pull;
pub mod whep_pull;
pub mod whip;
