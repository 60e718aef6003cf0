//! The event loop that owns the UDP socket and every peer connection (see the module docs
//! of [`super`]): the socket, the connections' timers and events, and housekeeping. The
//! commands from [`WebRtc`] (open, offer, answer, trickle, close, list sessions) are handled
//! in [`sessions`], the media fanned out to viewers (the feeds, GOP catch-up, codec changes)
//! in [`media`].

mod media;
mod sessions;

use super::client::{self, ClientCounters};
use super::handle::{Command, SessionInfo, Shard, WebRtc};
use super::outbox::{drain_writes, Outbox, FLUSH_AT};
use super::peer::{self, Local};
use super::receive::CountReceiver;
use super::settings::WebRtcSettings;
use super::srtp::{KeyCapture, SrtpSender};
use super::stats::EngineStats;
use super::stun;
use super::udp::{self, Received, Receiver};
use crate::bus::{Reader, ReaderEvent, Stream};
use crate::inputs::whip::WhipIngest;
use crate::outputs::whep::{Feed, OutPacket, Viewer};
use bytes::BytesMut;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_media::MediaKind;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Media events taken from the feeds per loop turn before flushing.
const MEDIA_BATCH: usize = 256;
/// Closed sessions the API lists with their reason: this many at most, for this long.
const CLOSED_KEPT: usize = 100;
const CLOSED_KEPT_FOR: Duration = Duration::from_secs(600);

type PeerKey = u64;
type FeedKey = u64;

/// Starts the loop on a socket from [`udp::bind`] (called inside a tokio runtime). With
/// `settings.own_thread` the loop gets a thread of its own (a current-thread runtime): the
/// server's media path then never migrates between worker threads, and its allocations stay
/// in one malloc arena.
pub fn start(
    socket: std::net::UdpSocket,
    settings: WebRtcSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<WebRtc> {
    start_threads(vec![socket], settings, shutdown)
}

/// Starts one loop per socket (`webrtc.threads`), each owning its socket and the sessions
/// opened on it, behind one handle that spreads new sessions over them in turn. A loop serves
/// every viewer of a frame in turn on one core; several use several cores.
pub fn start_threads(
    sockets: Vec<std::net::UdpSocket>,
    settings: WebRtcSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<WebRtc> {
    anyhow::ensure!(!sockets.is_empty(), "no socket for the WebRTC engine");
    let stats = Arc::new(EngineStats::default());
    let shards = sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| {
            start_loop(index, socket, &settings, stats.clone(), shutdown.clone())
        })
        .collect::<anyhow::Result<Vec<Shard>>>()?;
    Ok(WebRtc {
        shards: shards.into(),
        next_shard: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        settings: Arc::new(settings),
        stats,
    })
}

fn start_loop(
    index: usize,
    socket: std::net::UdpSocket,
    settings: &WebRtcSettings,
    stats: Arc<EngineStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<Shard> {
    let local_addr = socket.local_addr()?;
    let mut ips: Vec<IpAddr> = if !settings.candidate_ips.is_empty() {
        settings.candidate_ips.clone()
    } else if local_addr.ip().is_unspecified() {
        // A dual-stack socket ([::]) takes IPv6 peers too.
        udp::interface_ips(local_addr.is_ipv6())
    } else {
        vec![local_addr.ip()]
    };
    for ip in &settings.public_ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    // A socket of one family cannot be reached on an address of the other (a dual-stack
    // socket, bound to [::], takes both).
    let dual = local_addr.ip() == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
    ips.retain(|ip| {
        let usable = dual || ip.is_ipv4() == local_addr.is_ipv4();
        if !usable {
            tracing::warn!(candidate = %ip, udp = %local_addr, "a WebRTC candidate address of another IP version than the socket's is left out");
        }
        usable
    });
    let candidates: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| SocketAddr::new(*ip, local_addr.port()))
        .collect();
    let provider =
        rtc::crypto::default_provider().map_err(|e| anyhow::anyhow!("no crypto provider: {e}"))?;
    let certificate = RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        CertificateParams::new(vec!["switchyard".to_owned()])
            .map_err(|e| anyhow::anyhow!("certificate parameters: {e}"))?,
    )
    .map_err(|e| anyhow::anyhow!("cannot make the DTLS certificate: {e}"))?;
    // The server's engine is announced; client engines (one per pull attempt, the load
    // generator's) would repeat it on every attempt.
    if settings.own_thread {
        tracing::info!(service = "webrtc", addr = %local_addr, candidates = ?candidates, "listening");
    } else {
        tracing::debug!(service = "webrtc", addr = %local_addr, "client engine listening");
    }
    let engine_stats = stats;
    let (simulate_loss_one_in, connect_timeout) =
        (settings.simulate_loss_one_in, settings.connect_timeout);
    let (commands, command_rx) = mpsc::channel(256);
    let (media_tx, media_rx) = mpsc::channel(1024);
    let fd = socket.as_raw_fd();
    let make = move |socket: tokio::net::UdpSocket| Engine {
        fd,
        socket,
        local_addr,
        local: Local {
            certificate,
            candidates,
        },
        peers: HashMap::new(),
        next_key: 1,
        by_addr: HashMap::new(),
        by_ufrag: HashMap::new(),
        by_session: HashMap::new(),
        timers: BinaryHeap::new(),
        pacing: BinaryHeap::new(),
        closed: VecDeque::new(),
        feeds: HashMap::new(),
        feeds_by_stream: HashMap::new(),
        publishers: HashMap::new(),
        media_tx,
        receiver: Receiver::default(),
        received: Vec::new(),
        outbox: Outbox::new(fd, engine_stats, simulate_loss_one_in),
        connect_timeout,
        packets: Vec::new(),
        retransmit: Vec::new(),
        scratch: Vec::with_capacity(udp::MAX_DATAGRAM),
        feedback: Vec::new(),
        feedback_ends: Vec::new(),
    };
    let run = async move {
        match tokio::net::UdpSocket::from_std(socket) {
            Ok(socket) => make(socket).run(command_rx, media_rx, shutdown).await,
            Err(e) => tracing::error!(error = %e, "webrtc socket unusable"),
        }
    };
    if settings.own_thread {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let name = match index {
            0 => "webrtc".to_string(),
            n => format!("webrtc-{n}"),
        };
        std::thread::Builder::new()
            .name(name)
            .spawn(move || runtime.block_on(run))?;
    } else {
        tokio::spawn(run);
    }
    Ok(Shard {
        commands,
        local_addr,
    })
}

enum PeerRole {
    Publisher {
        ingest: Box<WhipIngest>,
        /// rtc track id -> (kind, receiver)
        tracks: HashMap<String, (MediaKind, RTCRtpReceiverId)>,
        /// A WHEP pull (we offered): what it receives and whether it lives.
        client: Option<Arc<ClientCounters>>,
    },
    Viewer {
        viewer: Box<Viewer>,
        feed: FeedKey,
        /// The video codec the session negotiated (the stream's when it was opened).
        video_codec: Option<peer::VideoCodec>,
        /// Holds this viewer's place in the stream's reader counts (the feed reads for it) and
        /// counts the bytes sent to it.
        counted: Reader,
    },
    /// We offered, as a WHEP client that measures what it receives (the load generator).
    Client(Arc<ClientCounters>, Box<CountReceiver>),
}

struct PeerEntry {
    session: String,
    stream: String,
    pc: RTCPeerConnection,
    ufrag: String,
    etag: String,
    addrs: Vec<SocketAddr>,
    role: PeerRole,
    timer: Option<Instant>,
    state: RTCPeerConnectionState,
    created: Instant,
    connected: bool,
    /// A client's sending tracks until the answer says what was negotiated.
    senders: Option<peer::Senders>,
    /// Sending connections: their SRTP keys, captured during the DTLS handshake ...
    keys: Option<Arc<KeyCapture>>,
    /// ... and, once connected, the SRTP that protects the media the engine sends.
    srtp: Option<SrtpSender>,
    /// Where `rtc` sends this connection's DTLS and RTCP (the selected ICE pair); media goes
    /// there too.
    media_to: Option<(SocketAddr, Option<IpAddr>)>,
    /// The session's place in its client's `limits.max_sessions_per_ip`, given back when the
    /// entry goes.
    #[allow(dead_code)] // held for its Drop
    permit: Option<crate::limits::SessionPermit>,
}

struct FeedEntry {
    stream: Arc<Stream>,
    feed: Feed,
    viewers: Vec<PeerKey>,
    task: tokio::task::AbortHandle,
}

impl Drop for FeedEntry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Work a peer's events ask for that needs the rest of the engine.
enum Action {
    ViewerConnected(PeerKey),
    ClientConnected(PeerKey),
    KeyframeWanted(String),
    Remove(PeerKey, &'static str),
}

struct Engine {
    socket: tokio::net::UdpSocket,
    fd: RawFd,
    local_addr: SocketAddr,
    local: Local,
    /// Boxed: an entry holds a whole `RTCPeerConnection` (kilobytes), so the map itself stays
    /// small and growing it moves pointers.
    peers: HashMap<PeerKey, Box<PeerEntry>>,
    /// A connection that has not connected this long after its answer is given up.
    connect_timeout: Duration,
    next_key: u64,
    by_addr: HashMap<SocketAddr, PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    by_session: HashMap<String, PeerKey>,
    timers: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    /// Viewers whose GOP catch-up goes on, by when their next slice is due.
    pacing: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    /// Sessions closed lately, oldest first, for the API.
    closed: VecDeque<(Instant, SessionInfo)>,
    feeds: HashMap<FeedKey, FeedEntry>,
    feeds_by_stream: HashMap<String, FeedKey>,
    /// Stream name -> the WHIP peer publishing it.
    publishers: HashMap<String, PeerKey>,
    media_tx: mpsc::Sender<(FeedKey, Option<ReaderEvent>)>,
    receiver: Receiver,
    received: Vec<Received>,
    outbox: Outbox,
    /// Scratch space for one viewer's packets of one frame.
    packets: Vec<OutPacket>,
    /// Scratch space for packets a viewer asked again (NACK).
    retransmit: Vec<OutPacket>,
    /// Scratch space for a datagram on its way to a connection, and for the feedback a
    /// measuring client sends (SRTCP datagrams, each one's end).
    scratch: Vec<u8>,
    feedback: Vec<u8>,
    feedback_ends: Vec<usize>,
}

impl Engine {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut media: mpsc::Receiver<(FeedKey, Option<ReaderEvent>)>,
        shutdown: CancellationToken,
    ) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        loop {
            let next_timer = [self.timers.peek(), self.pacing.peek()]
                .into_iter()
                .flatten()
                .map(|Reverse((t, _))| *t)
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                ready = self.socket.readable() => {
                    if ready.is_ok() {
                        self.read_socket();
                    }
                }
                Some(command) = commands.recv() => self.command(command),
                Some(first) = media.recv() => {
                    self.media(first);
                    for _ in 0..MEDIA_BATCH {
                        match media.try_recv() {
                            Ok(event) => self.media(event),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_timer.into()) => self.timers_due(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            self.outbox.flush();
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.remove(key, "server shutting down");
        }
        self.outbox.flush();
    }

    // ---- socket -------------------------------------------------------------------------

    fn read_socket(&mut self) {
        // A bounded number of batches per turn, so commands and media get their turn too.
        for _ in 0..16 {
            let fd = self.fd;
            let receiver = &mut self.receiver;
            let received = &mut self.received;
            match self
                .socket
                .try_io(Interest::READABLE, || receiver.recv(fd, received))
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "webrtc socket read");
                    return;
                }
            }
            let now = Instant::now();
            let mut scratch = std::mem::take(&mut self.scratch);
            for i in 0..self.received.len() {
                let r = self.received[i];
                scratch.clear();
                scratch.extend_from_slice(&self.receiver.buffer(i)[..r.len]);
                self.datagram(r, &mut scratch, now);
            }
            self.scratch = scratch;
        }
    }

    fn datagram(&mut self, received: Received, data: &mut [u8], now: Instant) {
        let key = match self.by_addr.get(&received.from) {
            Some(key) => *key,
            None => {
                let Some(key) = stun::local_ufrag(data)
                    .and_then(|ufrag| self.by_ufrag.get(ufrag))
                    .copied()
                else {
                    return; // not for any connection of ours
                };
                self.by_addr.insert(received.from, key);
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.addrs.push(received.from);
                }
                key
            }
        };
        let local_addr = SocketAddr::new(
            received.to_ip.unwrap_or(self.local_addr.ip()),
            self.local_addr.port(),
        );
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let PeerRole::Client(_, receiver) = &mut peer.role {
            if receiver.is_ready() && is_rtp(data) {
                // The fast path: decrypted in place, measured, never through `rtc`.
                receiver.packet(data, now, &mut self.feedback, &mut self.feedback_ends);
                send_feedback(
                    peer.media_to,
                    &mut self.feedback,
                    &mut self.feedback_ends,
                    &mut self.outbox,
                );
                return;
            }
        }
        let result = peer.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr,
                peer_addr: received.from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(&*data),
        });
        if let Err(e) = result {
            tracing::trace!(session = %peer.session, error = %e, "datagram refused");
        }
        self.service(key, now);
    }

    // ---- peers --------------------------------------------------------------------------

    /// Drains everything a connection has to say, and re-arms its timer.
    fn service(&mut self, key: PeerKey, now: Instant) {
        if self.outbox.len() >= FLUSH_AT {
            self.outbox.flush();
        }
        let mut actions = Vec::new();
        {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            loop {
                let mut busy = false;
                busy |= drain_writes(&mut peer.pc, &mut peer.media_to, &mut self.outbox);
                while let Some(event) = peer.pc.poll_event() {
                    busy = true;
                    peer_event(key, peer, event, &mut actions);
                }
                while let Some(message) = peer.pc.poll_read() {
                    busy = true;
                    peer_message(
                        peer,
                        message.message,
                        now,
                        &mut actions,
                        &mut self.retransmit,
                    );
                }
                if !self.retransmit.is_empty() {
                    send_media(peer, &mut self.retransmit, &mut self.outbox, true);
                }
                if !busy {
                    break;
                }
            }
            if let PeerRole::Publisher { ingest, tracks, .. } = &mut peer.role {
                if peer.connected && ingest.take_keyframe_request(now) {
                    send_pli(&mut peer.pc, tracks, now);
                    drain_writes(&mut peer.pc, &mut peer.media_to, &mut self.outbox);
                }
            }
            let timer = peer.pc.poll_timeout();
            if timer != peer.timer {
                peer.timer = timer;
                if let Some(t) = timer {
                    self.timers.push(Reverse((t, key)));
                }
            }
        }
        for action in actions {
            match action {
                Action::ViewerConnected(key) => self.viewer_connected(key, now),
                Action::ClientConnected(key) => self.client_connected(key, now),
                Action::KeyframeWanted(stream) => self.keyframe_wanted(&stream, now),
                Action::Remove(key, why) => self.remove(key, why),
            }
        }
    }

    fn timers_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, key))) = self.pacing.peek().copied() {
            if t > now {
                break;
            }
            self.pacing.pop();
            self.pace(key, now);
        }
        while let Some(Reverse((t, key))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if peer.timer != Some(t) {
                continue; // superseded
            }
            peer.timer = None;
            if let Err(e) = peer.pc.handle_timeout(now) {
                tracing::debug!(session = %peer.session, error = %e, "timeout handling");
            }
            self.service(key, now);
        }
    }

    fn housekeeping(&mut self) {
        let stale: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.connected && p.created.elapsed() > self.connect_timeout)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            crate::limits::hit(crate::limits::Limit::WebrtcConnectTimeout);
            let why = format!(
                "never connected (no ICE/DTLS from the client within {} s)",
                self.connect_timeout.as_secs()
            );
            self.remove(key, &why);
        }
        // WHIP publishers kicked through the API.
        let kicked: Vec<(PeerKey, String)> = self
            .peers
            .iter()
            .filter_map(|(k, p)| match &p.role {
                PeerRole::Publisher { ingest, .. } if ingest.is_kicked() => {
                    Some((*k, ingest.kick_reason()))
                }
                _ => None,
            })
            .collect();
        for (key, why) in kicked {
            self.remove(key, &why);
        }
        while self
            .closed
            .front()
            .is_some_and(|(at, _)| at.elapsed() > CLOSED_KEPT_FOR)
        {
            self.closed.pop_front();
        }
        self.pull_stats();
        self.sender_reports();
        self.client_feedback();
    }

    /// A measuring client is connected: its SRTP keys were derived and the stats name the
    /// profile.
    fn client_connected(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let PeerRole::Client(counters, receiver) = &mut peer.role else {
            return;
        };
        let cipher = peer
            .pc
            .get_stats(now, rtc::statistics::StatsSelector::None)
            .transport()
            .map(|t| t.srtp_cipher.clone())
            .unwrap_or_default();
        let srtp = match &peer.keys {
            Some(keys) => keys.receiver(&cipher),
            None => Err("no SRTP key capture on this connection".to_string()),
        };
        match srtp {
            Ok(srtp) => {
                receiver.connected(srtp, now);
                counters.connected.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(session = %peer.session, error = %e, "cannot decrypt media for this client");
                self.remove(key, "no SRTP keys");
            }
        }
    }

    /// Measuring clients: feedback due without a packet to carry it (no keyframe yet, no
    /// media at all).
    fn client_feedback(&mut self) {
        let now = Instant::now();
        for peer in self.peers.values_mut() {
            if let PeerRole::Client(_, receiver) = &mut peer.role {
                receiver.feedback(now, &mut self.feedback, &mut self.feedback_ends);
                send_feedback(
                    peer.media_to,
                    &mut self.feedback,
                    &mut self.feedback_ends,
                    &mut self.outbox,
                );
            }
        }
    }

    /// WHEP pulls: loss and round-trip time for the pull API.
    fn pull_stats(&mut self) {
        let now = Instant::now();
        for peer in self.peers.values_mut() {
            if let PeerRole::Publisher {
                client: Some(counters),
                ..
            } = &peer.role
            {
                client::client_stats(&mut peer.pc, counters, now);
            }
        }
    }

    /// RTCP sender reports (RFC 3550 6.4.1) for every track the engine sends, once per
    /// housekeeping turn: receivers use them to synchronise audio with video.
    fn sender_reports(&mut self) {
        let now = Instant::now();
        let ntp = ntp_time(SystemTime::now());
        for peer in self.peers.values_mut() {
            let PeerRole::Viewer { viewer, .. } = &peer.role else {
                continue;
            };
            if peer.srtp.is_none() {
                continue;
            }
            for (track, (rtp_time, packet_count, octet_count)) in viewer.sender_reports(now) {
                let report = SenderReport {
                    ssrc: track.ssrc,
                    ntp_time: ntp,
                    rtp_time,
                    packet_count,
                    octet_count,
                    ..Default::default()
                };
                if let Some(mut sender) = peer.pc.rtp_sender(track.sender) {
                    if let Err(e) = sender.write_rtcp(now, vec![Box::new(report)]) {
                        tracing::debug!(session = %peer.session, error = %e, "sender report not written");
                    }
                }
            }
            drain_writes(&mut peer.pc, &mut peer.media_to, &mut self.outbox);
            if self.outbox.len() >= FLUSH_AT {
                self.outbox.flush();
            }
        }
    }

    fn remove(&mut self, key: PeerKey, why: &str) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let mut info = self.info(peer);
        info.state = "closed".to_string();
        info.closed_reason = Some(why.to_string());
        info.closed_at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as u64);
        if self.closed.len() >= CLOSED_KEPT {
            self.closed.pop_front();
        }
        self.closed.push_back((Instant::now(), info));
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        tracing::info!(session = %peer.session, stream = %peer.stream, reason = why, "webrtc session closed");
        let _ = peer.pc.close();
        drain_writes(&mut peer.pc, &mut peer.media_to, &mut self.outbox);
        for addr in &peer.addrs {
            self.by_addr.remove(addr);
        }
        if let PeerRole::Client(counters, _)
        | PeerRole::Publisher {
            client: Some(counters),
            ..
        } = &peer.role
        {
            *counters.close_reason.lock().unwrap() = Some(why.to_string());
            counters.closed.store(true, Ordering::Relaxed);
            counters.ended.notify_one();
        }
        self.by_ufrag.remove(&peer.ufrag);
        self.by_session.remove(&peer.session);
        match peer.role {
            PeerRole::Publisher { ingest, client, .. } => {
                if self.publishers.get(&peer.stream) == Some(&key) {
                    self.publishers.remove(&peer.stream);
                }
                if let Some(counters) = client {
                    *counters.publisher.lock().unwrap() = Some(ingest.into_publisher());
                }
            }
            PeerRole::Client(..) => {}
            PeerRole::Viewer { feed, .. } => {
                if let Some(entry) = self.feeds.get_mut(&feed) {
                    entry.viewers.retain(|k| *k != key);
                    if entry.viewers.is_empty() {
                        self.feeds.remove(&feed);
                        self.feeds_by_stream.retain(|_, f| *f != feed);
                    }
                }
            }
        }
    }
}

/// Protects and queues a viewer's RTP packets (emptying `packets`), once the connection has
/// its SRTP keys; `again` for retransmissions.
fn send_media(
    peer: &mut PeerEntry,
    packets: &mut Vec<OutPacket>,
    outbox: &mut Outbox,
    again: bool,
) {
    let (Some(srtp), Some(to)) = (peer.srtp.as_mut(), peer.media_to) else {
        packets.clear();
        return;
    };
    let mut sent = 0;
    for packet in packets.drain(..) {
        match outbox.push_media(to, srtp, &packet, again) {
            Ok(bytes) => sent += bytes,
            Err(e) => {
                tracing::debug!(session = %peer.session, error = %e, "RTP not protected")
            }
        }
        if outbox.len() >= FLUSH_AT {
            outbox.flush();
        }
    }
    // The stream's bytes out: what its viewers were sent (SRTP, retransmissions included).
    if let PeerRole::Viewer { counted, .. } = &peer.role {
        counted.add_bytes_out(sent);
    }
}

/// Queues a measuring client's feedback datagrams (emptying `data` and `ends`) to where the
/// connection's RTCP goes.
fn send_feedback(
    to: Option<(SocketAddr, Option<IpAddr>)>,
    data: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    outbox: &mut Outbox,
) {
    if let Some((to, from)) = to {
        let mut start = 0;
        for end in ends.iter() {
            outbox.push(to, from, &data[start..*end]);
            start = *end;
        }
    }
    data.clear();
    ends.clear();
}

/// A wall-clock time as a 64-bit NTP timestamp (RFC 5905 6: seconds since 1900, 32.32).
fn ntp_time(time: SystemTime) -> u64 {
    const UNIX_TO_NTP_SECONDS: u64 = 2_208_988_800;
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs() + UNIX_TO_NTP_SECONDS;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

fn peer_event(
    key: PeerKey,
    peer: &mut PeerEntry,
    event: RTCPeerConnectionEvent,
    actions: &mut Vec<Action>,
) {
    match event {
        RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
            tracing::debug!(session = %peer.session, %state, "webrtc connection state");
            peer.state = state;
            match state {
                RTCPeerConnectionState::Connected if !peer.connected => {
                    peer.connected = true;
                    tracing::info!(session = %peer.session, stream = %peer.stream, remote = ?peer.addrs.first(), "webrtc session connected");
                    match &peer.role {
                        PeerRole::Viewer { .. } => actions.push(Action::ViewerConnected(key)),
                        PeerRole::Client(..) => actions.push(Action::ClientConnected(key)),
                        PeerRole::Publisher {
                            client: Some(counters),
                            ..
                        } => counters.connected.store(true, Ordering::Relaxed),
                        PeerRole::Publisher { .. } => {}
                    }
                }
                RTCPeerConnectionState::Failed => {
                    actions.push(Action::Remove(key, "connection failed (ICE or DTLS)"))
                }
                RTCPeerConnectionState::Closed => {
                    actions.push(Action::Remove(key, "connection closed"))
                }
                _ => {}
            }
        }
        RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
            tracing::debug!(session = %peer.session, %state, "ice state");
            if state == RTCIceConnectionState::Failed {
                actions.push(Action::Remove(key, "ICE failed (the client went away)"));
            }
        }
        RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
            if let PeerRole::Publisher { tracks, .. } = &mut peer.role {
                if let Some(receiver) = peer.pc.rtp_receiver(init.receiver_id) {
                    let kind = match receiver.track().kind() {
                        RtpCodecKind::Video => MediaKind::Video,
                        _ => MediaKind::Audio,
                    };
                    tracks.insert(init.track_id.clone(), (kind, init.receiver_id));
                }
            }
        }
        _ => {}
    }
}

fn peer_message(
    peer: &mut PeerEntry,
    message: RTCMessage,
    now: Instant,
    actions: &mut Vec<Action>,
    retransmit: &mut Vec<OutPacket>,
) {
    match (&mut peer.role, message) {
        (
            PeerRole::Publisher {
                ingest,
                tracks,
                client,
            },
            RTCMessage::RtpPacket(track_id, packet),
        ) => {
            let Some((kind, _)) = tracks.get(&track_id) else {
                return;
            };
            if let Some(counters) = client {
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
            }
            if let Err(e) = ingest.rtp(
                *kind,
                packet.header.sequence_number,
                packet.header.timestamp,
                packet.header.marker,
                packet.payload,
                now,
            ) {
                tracing::debug!(session = %peer.session, error = %e, "bad RTP from the publisher");
            }
        }
        (PeerRole::Publisher { ingest, tracks, .. }, RTCMessage::RtcpPacket(track_id, packets)) => {
            let Some((kind, _)) = tracks.get(&track_id) else {
                return;
            };
            for p in &packets {
                if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                    ingest.sender_report(*kind, sr.ntp_time, sr.rtp_time);
                }
            }
        }
        (PeerRole::Viewer { viewer, .. }, RTCMessage::RtcpPacket(_, packets)) => {
            let wants_keyframe = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
            });
            if wants_keyframe {
                actions.push(Action::KeyframeWanted(peer.stream.clone()));
            }
            // RFC 4585 6.2.1: packets the viewer missed go again, as they were.
            for nack in packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<TransportLayerNack>())
            {
                let Some(track) = viewer.video.as_ref().filter(|t| t.ssrc == nack.media_ssrc)
                else {
                    continue;
                };
                for pair in &nack.nacks {
                    retransmit.extend(
                        pair.into_iter()
                            .filter_map(|sequence| track.retransmission(sequence)),
                    );
                }
            }
        }
        _ => {}
    }
}

/// Sends the publisher a PLI (RFC 4585 6.3.1) for its video.
fn send_pli(
    pc: &mut RTCPeerConnection,
    tracks: &HashMap<String, (MediaKind, RTCRtpReceiverId)>,
    now: Instant,
) {
    for (kind, receiver_id) in tracks.values() {
        if *kind != MediaKind::Video {
            continue;
        }
        let Some(mut receiver) = pc.rtp_receiver(*receiver_id) else {
            continue;
        };
        let Some(media_ssrc) = receiver.track().ssrcs().last() else {
            continue;
        };
        let _ = receiver.write_rtcp(
            now,
            vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            })],
        );
    }
}

/// RTP, not RTCP, DTLS or STUN (RFC 7983 demultiplexing; RFC 5761 4 for RTP vs RTCP).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12
        && (128..=191).contains(&datagram[0])
        && !(192..=223).contains(&datagram[1])
}
