//! Outputs: each serves bus [`Reader`](crate::bus::Reader)s to a network protocol.

pub mod fmp4;
pub mod hls;
pub mod mse;
pub mod rtmp;
mod video_rtp;
pub mod whep;
