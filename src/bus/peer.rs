//! Who is at the other end of a publisher or reader.

use std::net::SocketAddr;

/// Who is at the other end of a publisher or reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Protocol name as shown in the API: `rtmp`, `whip`, `hls`, ...
    pub protocol: &'static str,
    pub remote: Option<SocketAddr>,
}

impl Peer {
    pub fn new(protocol: &'static str, remote: Option<SocketAddr>) -> Self {
        Peer { protocol, remote }
    }
}
