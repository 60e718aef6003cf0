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
//!
//! Files: `settings` (the `[webrtc]` config), `handle` ([`WebRtc`], the commands it sends the
//! loop and what they return), `client` (sessions we offer: WHEP pulls, WHIP pushes, the load
//! generator; `receive`, the load generator's receive side), `engine` (the loop; `engine/sessions.rs` carries out the commands), `peer`
//! (offer and answer, building a connection), `outbox` with `srtp` and [`udp`] (protecting
//! media and sending datagrams), `stun` (routing a new address), `stats` (counters).

pub mod bundle;
mod client;
mod engine;
mod handle;
mod outbox;
pub mod peer;
mod receive;
mod settings;
pub(crate) mod srtp;
mod stats;
mod stun;
pub mod udp;

pub use client::{ClientCounters, ClientRole, MediaSink, ReceivedFrame};
pub use engine::{start, start_threads};
pub use handle::{Opened, Role, SessionError, SessionInfo, WebRtc};
pub use peer::VideoCodec;
pub use settings::{IceServer, WebRtcSettings};
pub use stats::EngineStats;
pub use udp::bind;
