//! Outputs: each serves bus [`Reader`](crate::bus::Reader)s to a network protocol.

pub mod rtmp;
