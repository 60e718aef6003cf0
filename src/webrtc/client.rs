//! Sessions the engine offers itself, as a client of another server: what each does
//! ([`ClientRole`]: measure, pull over WHEP, push over WHIP) and what it saw ([`ClientCounters`],
//! for pulls refreshed from the connection's statistics by [`client_stats`]; for measuring
//! clients reported as it happens to their [`MediaSink`]).

use crate::bus::{Publisher, Reader};
use rtc::peer_connection::RTCPeerConnection;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_media::probe_stamp::ProbeStamp;

/// What a session we offer (the client side) does.
pub enum ClientRole {
    /// WHEP client that measures what it receives without decoding it (the load generator):
    /// it decrypts SRTP on the engine's fast path, tracks loss, jitter and frames, sends NACKs
    /// and PLIs like a real receiver, and reports to the sink (`super::receive`). The counters
    /// tell whether and why the session ended.
    Count(Arc<ClientCounters>, Box<dyn MediaSink>),
    /// WHEP client whose media goes to this bus publisher (a pull from another server); the
    /// counters tell the pull whether the session lives and what it receives.
    Pull(Publisher, Arc<ClientCounters>),
    /// WHIP client that sends this bus reader's stream (a push to another server).
    Push(Reader),
}

/// What a measuring client (`ClientRole::Count`) reports, as it happens. Called on the
/// engine's loop, per packet: keep it cheap (atomics, no locks, no allocation).
pub trait MediaSink: Send {
    /// ICE and DTLS completed: media may flow.
    fn connected(&mut self);
    /// An authentic RTP packet arrived: video or audio, its size on the wire (SRTP).
    fn packet(&mut self, video: bool, bytes: usize);
    /// A video frame ended (its marker bit, or a newer timestamp).
    fn frame(&mut self, frame: &ReceivedFrame);
    /// The video's receive statistics after a packet: packets lost so far (expected -
    /// received, RFC 3550 6.4.1) and the interarrival jitter.
    fn stats(&mut self, lost: u64, jitter: Duration);
    /// Feedback sent: NACK packets and PLIs.
    fn feedback(&mut self, nacks: u64, plis: u64);
}

/// A video frame a measuring client received (not decoded).
#[derive(Debug, Clone)]
pub struct ReceivedFrame {
    /// When its last packet arrived (or the packet that closed it).
    pub arrived: Instant,
    /// Its RTP timestamp, unwrapped, from the first packet's (90 kHz).
    pub rtp_time: u64,
    /// It has an IDR (or the codec's equivalent).
    pub keyframe: bool,
    /// The probe stamp of its SEI, if any.
    pub stamp: Option<ProbeStamp>,
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

/// Refreshes a pull's loss and round-trip time from the connection's statistics (W3C
/// webrtc-stats: `inbound-rtp.packetsLost`, the candidate pair's `currentRoundTripTime`, which
/// a full-ICE client measures with its own connectivity checks, RFC 8445 7.2.5).
pub(super) fn client_stats(pc: &mut RTCPeerConnection, counters: &ClientCounters, now: Instant) {
    use std::sync::atomic::Ordering;
    let report = pc.get_stats(now, rtc::statistics::StatsSelector::None);
    let lost: i64 = report
        .inbound_rtp_streams()
        .map(|s| s.received_rtp_stream_stats.packets_lost.max(0))
        .sum();
    counters.lost.store(lost as u64, Ordering::Relaxed);
    let rtt = report
        .candidate_pairs()
        .filter(|p| p.current_round_trip_time > 0.0)
        .max_by_key(|p| p.bytes_received)
        .map(|p| p.current_round_trip_time);
    if let Some(rtt) = rtt {
        counters
            .rtt_us
            .store((rtt * 1e6).round().max(1.0) as u64, Ordering::Relaxed);
    }
}
