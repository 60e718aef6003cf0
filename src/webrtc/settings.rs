//! How the engine is set up (the `[webrtc]` config section), and the STUN/TURN servers it
//! hands to clients (RFC 9725 4.6).

use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// How the engine is set up (from the `[webrtc]` config section).
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    /// The one UDP socket for all peers.
    pub udp: SocketAddr,
    /// Host-candidate addresses; empty: every interface address when bound to every address
    /// (IPv4, and IPv6 but link-local when the socket is dual-stack, see [`super::udp::bind`]),
    /// else the bound address.
    pub candidate_ips: Vec<IpAddr>,
    /// Public addresses of a 1:1 NAT in front of this host, advertised as extra candidates.
    pub public_ips: Vec<IpAddr>,
    /// STUN/TURN servers handed to clients in `Link` headers (RFC 9725 4.6).
    pub ice_servers: Vec<IceServer>,
    /// Run the loop on a thread of its own (the server) rather than as a task of the calling
    /// runtime (the load generator's many client engines).
    pub own_thread: bool,
    /// Testing aid: drop one in this many media packets to viewers on their first send. 0: off.
    pub simulate_loss_one_in: u32,
    /// A session whose ICE and DTLS have not completed this long after its offer was answered
    /// is removed (`webrtc.connect_timeout_secs`).
    pub connect_timeout: std::time::Duration,
}

impl WebRtcSettings {
    /// An engine of its own for clients (load generator, tests): an OS-chosen port on `ip`,
    /// run as a task of the calling runtime.
    pub fn client(ip: IpAddr) -> Self {
        WebRtcSettings {
            udp: SocketAddr::new(ip, 0),
            candidate_ips: Vec::new(),
            public_ips: Vec::new(),
            ice_servers: Vec::new(),
            own_thread: false,
            simulate_loss_one_in: 0,
            connect_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// A STUN or TURN server for clients.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}
