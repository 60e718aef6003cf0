//! The WebRTC engine: every peer connection of the process on one UDP socket, driven by one
//! event loop over webrtc-rs's sans-IO core (`rtc`).
//!
//! - One socket (default `:8189`), read and written in `recvmmsg`/`sendmmsg` batches
//!   ([`udp`]). A datagram finds its connection by remote address, or for a new address by the
//!   ICE username of its STUN request (RFC 8445 7.2.2: `USERNAME` is `ours:theirs`, and we chose
//!   `ours` per connection).
//! - No task per connection: the loop services only connections with work (datagrams, due
//!   timers, media) and keeps timers in a heap.
//! - WHEP viewers of a stream share one bus reader; each frame is packetized once and its
//!   payloads are shared (`Bytes`) by every viewer until SRTP encrypts them into the datagram.
//! - We answer as ICE-lite (RFC 8445 2.5) and DTLS server (`a=setup:passive`, RFC 5763 5) with
//!   one ECDSA P-256 certificate per process.
//!
//! WHIP (RFC 9725) and WHEP sessions are opened through [`WebRtc`], which the HTTP layer calls.

mod engine;
mod peer;
pub(crate) mod srtp;
pub use peer::VideoCodec;
mod stun;
pub mod udp;

use crate::bus::{Publisher, Reader};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use engine::{bind, start};

/// How the engine is set up (from the `[webrtc]` config section).
#[derive(Debug, Clone)]
pub struct WebRtcSettings {
    /// The one UDP socket for all peers.
    pub udp: SocketAddr,
    /// Host-candidate addresses; empty: every IPv4 interface address when bound to
    /// `0.0.0.0`, else the bound address.
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

/// Why a session could not be opened or changed; the HTTP layer maps these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The offer or fragment is malformed or lacks something required (400).
    #[error("{0}")]
    BadRequest(String),
    /// The offer is well formed but asks for something we cannot do (406 / 422).
    #[error("{0}")]
    Unsupported(String),
    #[error("session not found")]
    NotFound,
    /// `If-Match` did not match the session's ETag (412).
    #[error("the session's ETag is {current}, not the one in If-Match")]
    PreconditionFailed { current: String },
    #[error("the WebRTC engine is not running")]
    Stopped,
    #[error("WebRTC engine error: {0}")]
    Internal(String),
}

/// What a new session tells its client.
#[derive(Debug)]
pub struct Opened {
    pub session: String,
    pub answer: String,
    pub etag: String,
}

/// One session, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: String,
    /// `publish` (WHIP) or `play` (WHEP).
    pub role: &'static str,
    pub stream: String,
    pub state: String,
    pub remote: Option<SocketAddr>,
    pub age_secs: u64,
    /// Why audio or video is not sent, when it is not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a session we offer (the client side) does.
pub enum ClientRole {
    /// WHEP client that counts RTP packets and bytes without decrypting them (the load
    /// generator).
    Count(Arc<ClientCounters>),
    /// WHEP client whose media goes to this bus publisher (a pull from another server); the
    /// counters tell the pull whether the session lives and what it receives.
    Pull(Publisher, Arc<ClientCounters>),
    /// WHIP client that sends this bus reader's stream (a push to another server).
    Push(Reader),
}

/// What a counting client saw.
#[derive(Default)]
pub struct ClientCounters {
    pub packets: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
    pub connected: std::sync::atomic::AtomicBool,
    /// Set when the session ended (failed, closed or the engine stopped).
    pub closed: std::sync::atomic::AtomicBool,
    /// Why it ended, once it has.
    pub close_reason: std::sync::Mutex<Option<String>>,
    /// Notified (one permit) when the session ends, for a task that waits on it.
    pub ended: tokio::sync::Notify,
    /// Pulls: RTP packets lost, as the receiver statistics count them (cumulative, RFC 3550
    /// 6.4.1), and the ICE round-trip time in microseconds (0 until measured). Refreshed about
    /// once a second.
    pub lost: std::sync::atomic::AtomicU64,
    pub rtt_us: std::sync::atomic::AtomicU64,
    /// Pulls: the bus publisher, handed back when the session ends.
    pub publisher: std::sync::Mutex<Option<Publisher>>,
}

/// The two sides a session can take when the peer makes the offer.
pub enum Role {
    /// WHIP: the peer publishes into this bus publisher.
    Publish(Publisher),
    /// WHEP: the peer plays this bus reader's stream.
    Play(Reader),
}

pub(crate) enum Command {
    Open {
        role: Role,
        offer: String,
        reply: oneshot::Sender<Result<Opened, SessionError>>,
    },
    /// Starts a client session: our offer, to be sent to a WHEP endpoint.
    Offer {
        role: ClientRole,
        reply: oneshot::Sender<Result<(String, String), SessionError>>,
    },
    /// The endpoint's answer to a client session's offer.
    Answer {
        session: String,
        answer: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Trickle {
        session: String,
        if_match: Option<String>,
        fragment: String,
        reply: oneshot::Sender<Result<String, SessionError>>,
    },
    Close {
        session: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    List {
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
}

/// Engine counters, shared with the HTTP layer.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub datagrams_sent: std::sync::atomic::AtomicU64,
    pub datagrams_dropped: std::sync::atomic::AtomicU64,
    /// Media packets sent again because a viewer asked (NACK).
    pub retransmitted: std::sync::atomic::AtomicU64,
    /// Media packets left out on purpose (`simulate_loss_one_in`).
    pub simulated_losses: std::sync::atomic::AtomicU64,
    /// Recent send batches of media: (delay in microseconds from the frame entering the bus
    /// to the batch leaving the socket, datagrams in the batch).
    send_delays: std::sync::Mutex<std::collections::VecDeque<(u32, u32)>>,
}

/// Send batches kept for the delay percentiles.
const DELAY_SAMPLES: usize = 4096;

impl EngineStats {
    pub(crate) fn record_delay(&self, delay: std::time::Duration, datagrams: usize) {
        let mut delays = self.send_delays.lock().unwrap();
        if delays.len() == DELAY_SAMPLES {
            delays.pop_front();
        }
        delays.push_back((
            delay.as_micros().min(u32::MAX as u128) as u32,
            datagrams.min(u32::MAX as usize) as u32,
        ));
    }

    /// Percentiles (0..=100) of the recent per-datagram send delay (a frame entering the bus
    /// to one viewer's datagram leaving the socket), in milliseconds.
    pub fn delay_percentiles_ms(&self, percentiles: &[u32]) -> Vec<Option<f64>> {
        let mut delays: Vec<(u32, u32)> =
            self.send_delays.lock().unwrap().iter().copied().collect();
        delays.sort_unstable();
        let total: u64 = delays.iter().map(|(_, n)| *n as u64).sum();
        percentiles
            .iter()
            .map(|p| {
                let rank = (total.saturating_sub(1) * *p as u64) / 100;
                let mut seen = 0u64;
                for (delay, n) in &delays {
                    seen += *n as u64;
                    if seen > rank {
                        return Some(*delay as f64 / 1000.0);
                    }
                }
                None
            })
            .collect()
    }
}

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct WebRtc {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    settings: Arc<WebRtcSettings>,
    stats: Arc<EngineStats>,
}

impl WebRtc {
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn ice_servers(&self) -> &[IceServer] {
        &self.settings.ice_servers
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| SessionError::Stopped)?;
        rx.await.map_err(|_| SessionError::Stopped)
    }

    /// Answers a WHIP or WHEP offer.
    pub async fn open(&self, role: Role, offer: String) -> Result<Opened, SessionError> {
        self.call(|reply| Command::Open { role, offer, reply })
            .await?
    }

    /// Adds trickled candidates (an `application/trickle-ice-sdpfrag` body, RFC 8840);
    /// returns the session's ETag.
    pub async fn trickle(
        &self,
        session: String,
        if_match: Option<String>,
        fragment: String,
    ) -> Result<String, SessionError> {
        self.call(|reply| Command::Trickle {
            session,
            if_match,
            fragment,
            reply,
        })
        .await?
    }

    /// Opens a client session with `url` (a WHEP endpoint for `Count`/`Pull`, a WHIP endpoint
    /// for `Push`): offers, POSTs the offer, applies the answer. Returns the local session id
    /// and the remote session URL (for `DELETE`).
    pub async fn client(
        &self,
        http: &reqwest::Client,
        url: &str,
        role: ClientRole,
    ) -> Result<(String, Option<String>), SessionError> {
        let (session, offer) = self.offer(role).await?;
        let response = http
            .post(url)
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await;
        let failed = |e: String| async {
            let _ = self.close(session.clone()).await;
            Err(SessionError::BadRequest(e))
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return failed(format!("POST {url}: {e}")).await,
        };
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| reqwest::Url::parse(url).ok()?.join(l).ok())
            .map(|u| u.to_string());
        let body = response.text().await.unwrap_or_default();
        if status.as_u16() != 201 {
            return failed(format!("POST {url}: {status} {}", body.trim())).await;
        }
        if let Err(e) = self.answer(session.clone(), body).await {
            return failed(format!("the answer from {url} was refused: {e}")).await;
        }
        Ok((session, location))
    }

    /// Starts a client session: returns its id and our offer (for a caller that does the
    /// HTTP exchange itself, like the WHEP pull input).
    pub async fn offer(&self, role: ClientRole) -> Result<(String, String), SessionError> {
        self.call(|reply| Command::Offer { role, reply }).await?
    }

    /// Applies the remote's answer to a client session's offer.
    pub async fn answer(&self, session: String, answer: String) -> Result<(), SessionError> {
        self.call(|reply| Command::Answer {
            session,
            answer,
            reply,
        })
        .await?
    }

    pub async fn close(&self, session: String) -> Result<(), SessionError> {
        self.call(|reply| Command::Close { session, reply }).await?
    }

    pub async fn sessions(&self) -> Vec<SessionInfo> {
        self.call(|reply| Command::List { reply })
            .await
            .unwrap_or_default()
    }
}
