//! The event loop that owns the UDP socket and every peer connection (see the module docs
//! of [`super`]).

use super::peer::{self, Direction, Local, SendTrack};
use super::srtp::{KeyCapture, SrtpSender};
use super::udp::{self, Outgoing, Received, Receiver};
use super::{
    ClientRole, Command, EngineStats, Opened, Role, SessionError, SessionInfo, WebRtc,
    WebRtcSettings,
};
use crate::bus::{Peer as BusPeer, Reader, ReaderEvent, Stream};
use crate::inputs::whip::WhipIngest;
use crate::outputs::whep::{Feed, OutPacket, Packetized, TrackOut, Viewer};
use bytes::BytesMut;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::StatsSelector;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_media::MediaKind;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection that has not connected this long after its answer is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Media events taken from the feeds per loop turn before flushing.
const MEDIA_BATCH: usize = 256;
/// Outgoing datagrams are sent once this many are pending, even mid-turn: bounds the memory
/// a burst (a keyframe to many viewers, GOP catch-up) holds at once.
const FLUSH_AT: usize = 128;

type PeerKey = u64;
type FeedKey = u64;

/// Starts the loop on a socket from [`bind`] (called inside a tokio runtime). With
/// `settings.own_thread` the loop gets a thread of its own (a current-thread runtime): the
/// server's media path then never migrates between worker threads, and its allocations stay
/// in one malloc arena.
pub fn start(
    socket: std::net::UdpSocket,
    settings: WebRtcSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<WebRtc> {
    let local_addr = socket.local_addr()?;
    let mut ips: Vec<IpAddr> = if !settings.candidate_ips.is_empty() {
        settings.candidate_ips.clone()
    } else if local_addr.ip().is_unspecified() {
        udp::interface_ipv4s().into_iter().map(IpAddr::V4).collect()
    } else {
        vec![local_addr.ip()]
    };
    for ip in &settings.public_ips {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
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
    tracing::info!(service = "webrtc", addr = %local_addr, candidates = ?candidates, "listening");
    let stats = Arc::new(EngineStats::default());
    let engine_stats = stats.clone();
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
        feeds: HashMap::new(),
        feeds_by_stream: HashMap::new(),
        publishers: HashMap::new(),
        media_tx,
        receiver: Receiver::default(),
        received: Vec::new(),
        outbox: Outbox::new(fd, engine_stats, settings.simulate_loss_one_in),
        packets: Vec::new(),
        retransmit: Vec::new(),
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
        std::thread::Builder::new()
            .name("webrtc".into())
            .spawn(move || runtime.block_on(run))?;
    } else {
        tokio::spawn(run);
    }
    Ok(WebRtc {
        commands,
        local_addr,
        settings: Arc::new(settings),
        stats,
    })
}

/// Binds the WebRTC UDP socket (non-blocking, large buffers, `IP_PKTINFO` on IPv4).
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Big buffers: a keyframe for a few hundred viewers leaves in one burst.
    let _ = socket.set_send_buffer_size(8 << 20);
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket
        .bind(&addr.into())
        .map_err(|e| anyhow::anyhow!("cannot listen for webrtc on udp {addr}: {e}"))?;
    socket.set_nonblocking(true)?;
    if addr.is_ipv4() {
        udp::enable_pktinfo(&socket)?;
    }
    Ok(socket.into())
}

enum PeerRole {
    Publisher {
        ingest: Box<WhipIngest>,
        /// rtc track id -> (kind, receiver)
        tracks: HashMap<String, (MediaKind, RTCRtpReceiverId)>,
        /// A WHEP pull (we offered): what it receives and whether it lives.
        client: Option<Arc<super::ClientCounters>>,
    },
    Viewer {
        viewer: Box<Viewer>,
        feed: FeedKey,
        /// Holds this viewer's place in the stream's reader counts; the feed reads for it.
        _counted: Reader,
    },
    /// We offered, as a WHEP client that only counts what it receives.
    Client(Arc<super::ClientCounters>),
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
    next_key: u64,
    by_addr: HashMap<SocketAddr, PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    by_session: HashMap<String, PeerKey>,
    timers: BinaryHeap<Reverse<(Instant, PeerKey)>>,
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
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((t, _))| *t)
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
            for i in 0..self.received.len() {
                let r = self.received[i];
                let data = BytesMut::from(&self.receiver.buffer(i)[..r.len]);
                self.datagram(r, data, now);
            }
        }
    }

    fn datagram(&mut self, received: Received, data: BytesMut, now: Instant) {
        let key = match self.by_addr.get(&received.from) {
            Some(key) => *key,
            None => {
                let Some(key) = super::stun::local_ufrag(&data)
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
        if let PeerRole::Client(counters) = &peer.role {
            if peer.connected && is_rtp(&data) {
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
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
            message: data,
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
                Action::KeyframeWanted(stream) => self.keyframe_wanted(&stream, now),
                Action::Remove(key, why) => self.remove(key, why),
            }
        }
    }

    fn timers_due(&mut self) {
        let now = Instant::now();
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
            .filter(|(_, p)| !p.connected && p.created.elapsed() > CONNECT_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            self.remove(
                key,
                "never connected (no ICE/DTLS from the client within 30 s)",
            );
        }
        // WHIP publishers kicked through the API.
        let kicked: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| match &p.role {
                PeerRole::Publisher { ingest, .. } => ingest.is_kicked(),
                _ => false,
            })
            .map(|(k, _)| *k)
            .collect();
        for key in kicked {
            self.remove(key, "kicked");
        }
        self.pull_stats();
        self.sender_reports();
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
                peer::client_stats(&mut peer.pc, counters, now);
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
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        tracing::info!(session = %peer.session, stream = %peer.stream, reason = why, "webrtc session closed");
        let _ = peer.pc.close();
        drain_writes(&mut peer.pc, &mut peer.media_to, &mut self.outbox);
        for addr in &peer.addrs {
            self.by_addr.remove(addr);
        }
        if let PeerRole::Client(counters)
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
            PeerRole::Client(_) => {}
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

    // ---- commands -----------------------------------------------------------------------

    fn command(&mut self, command: Command) {
        match command {
            Command::Open { role, offer, reply } => {
                let _ = reply.send(self.open(role, &offer));
            }
            Command::Offer { role, reply } => {
                let _ = reply.send(self.offer(role));
            }
            Command::Answer {
                session,
                answer,
                reply,
            } => {
                let result = match self.by_session.get(&session).copied() {
                    Some(key) => {
                        let now = Instant::now();
                        let peer = self.peers.get_mut(&key).expect("indexed");
                        let result = peer::apply_answer(&mut peer.pc, &answer, now);
                        if let (Ok(()), Some(senders)) = (&result, peer.senders.take()) {
                            let (video, audio) = peer::negotiated_tracks(&mut peer.pc, senders);
                            if let PeerRole::Viewer { viewer, .. } = &mut peer.role {
                                **viewer = new_viewer(video, audio);
                            }
                        }
                        if result.is_ok() {
                            // The answer's candidates are where the peer is.
                            for addr in answer_candidates(&answer) {
                                self.by_addr.insert(addr, key);
                                peer.addrs.push(addr);
                            }
                        }
                        self.service(key, now);
                        result
                    }
                    None => Err(SessionError::NotFound),
                };
                let _ = reply.send(result);
            }
            Command::Trickle {
                session,
                if_match,
                fragment,
                reply,
            } => {
                let _ = reply.send(self.trickle(&session, if_match, &fragment));
            }
            Command::Close { session, reply } => {
                let result = match self.by_session.get(&session) {
                    Some(key) => {
                        self.remove(*key, "closed by the client (DELETE)");
                        Ok(())
                    }
                    None => Err(SessionError::NotFound),
                };
                let _ = reply.send(result);
            }
            Command::List { reply } => {
                let _ = reply.send(self.list());
            }
        }
    }

    fn open(&mut self, role: Role, offer: &str) -> Result<Opened, SessionError> {
        let now = Instant::now();
        let direction = match role {
            Role::Publish(_) => Direction::Receive,
            Role::Play(_) => Direction::Send,
        };
        let stream_video = match &role {
            Role::Play(reader) => peer::VideoCodec::of_stream(reader.stream()),
            Role::Publish(_) => None,
        };
        let built = peer::build(&self.local, offer, direction, stream_video, now)?;
        let key = self.next_key;
        self.next_key += 1;
        let (stream, role) = match role {
            Role::Publish(publisher) => {
                let video = built
                    .video_codec
                    .filter(|_| built.sdp.contains("m=video") && offer_sends_video(offer));
                self.publisher_role(key, publisher, video, None)
            }
            Role::Play(reader) => {
                let viewer = new_viewer(built.video, built.audio);
                self.viewer_role(key, reader, viewer)
            }
        };
        let name = stream.clone();
        let answer = built.sdp.clone();
        let (session, etag) = self.insert_peer(key, stream, built, role, None, now);
        tracing::info!(session = %session, stream = %name, role = ?direction, "webrtc session opened");
        Ok(Opened {
            session,
            answer,
            etag,
        })
    }

    fn offer(&mut self, role: ClientRole) -> Result<(String, String), SessionError> {
        let now = Instant::now();
        let direction = match role {
            ClientRole::Push(_) => Direction::Send,
            ClientRole::Count(_) | ClientRole::Pull(..) => Direction::Receive,
        };
        let stream_video = match &role {
            ClientRole::Push(reader) => peer::VideoCodec::of_stream(reader.stream()),
            _ => None,
        };
        let (built, senders) = peer::build_offer(&self.local, direction, stream_video, now)?;
        let key = self.next_key;
        self.next_key += 1;
        let (stream, role) = match role {
            ClientRole::Count(counters) => (String::new(), PeerRole::Client(counters)),
            ClientRole::Pull(publisher, counters) => {
                self.publisher_role(key, publisher, Some(peer::VideoCodec::H264), Some(counters))
            }
            // Tracks are set when the answer says what was negotiated.
            ClientRole::Push(reader) => self.viewer_role(key, reader, Viewer::new(None, None)),
        };
        let offer = built.sdp.clone();
        let (session, _) = self.insert_peer(key, stream, built, role, Some(senders), now);
        Ok((session, offer))
    }

    /// A peer whose media goes to `publisher` (WHIP ingest, WHEP pull).
    fn publisher_role(
        &mut self,
        key: PeerKey,
        publisher: crate::bus::Publisher,
        video: Option<peer::VideoCodec>,
        client: Option<Arc<super::ClientCounters>>,
    ) -> (String, PeerRole) {
        let name = publisher.stream().name().to_string();
        self.publishers.insert(name.clone(), key);
        let role = PeerRole::Publisher {
            ingest: Box::new(WhipIngest::new(publisher, video)),
            tracks: HashMap::new(),
            client,
        };
        (name, role)
    }

    /// A peer fed from `reader`'s stream through its feed (WHEP viewer, WHIP push).
    fn viewer_role(&mut self, key: PeerKey, reader: Reader, viewer: Viewer) -> (String, PeerRole) {
        let stream = reader.stream().clone();
        let name = stream.name().to_string();
        if stream.has_b_frames() {
            tracing::warn!(stream = %name, "a WebRTC viewer joined a stream with B-frames: browsers decode it but may stutter; publish without B-frames (x264 -bf 0, baseline) for WebRTC");
        }
        let feed = self.feed_for(&stream);
        self.feeds
            .get_mut(&feed)
            .expect("just made")
            .viewers
            .push(key);
        let role = PeerRole::Viewer {
            viewer: Box::new(viewer),
            feed,
            _counted: reader,
        };
        (name, role)
    }

    /// Registers a new connection; returns its session id and ETag.
    fn insert_peer(
        &mut self,
        key: PeerKey,
        stream: String,
        built: peer::Built,
        role: PeerRole,
        senders: Option<peer::Senders>,
        now: Instant,
    ) -> (String, String) {
        let peer::Built {
            pc, ufrag, keys, ..
        } = built;
        let session = peer::random_token(24);
        let etag = format!("\"{ufrag}\"");
        tracing::debug!(session = %session, stream = %stream, "webrtc session created");
        self.by_ufrag.insert(ufrag.clone(), key);
        self.by_session.insert(session.clone(), key);
        self.peers.insert(
            key,
            Box::new(PeerEntry {
                session: session.clone(),
                stream,
                pc,
                ufrag,
                etag: etag.clone(),
                addrs: Vec::new(),
                role,
                timer: None,
                state: RTCPeerConnectionState::New,
                created: now,
                connected: false,
                senders,
                keys,
                srtp: None,
                media_to: None,
            }),
        );
        self.service(key, now);
        (session, etag)
    }

    /// The feed of `stream`, started if this is its first viewer.
    fn feed_for(&mut self, stream: &Arc<Stream>) -> FeedKey {
        if let Some(key) = self.feeds_by_stream.get(stream.name()) {
            if self
                .feeds
                .get(key)
                .is_some_and(|f| Arc::ptr_eq(&f.stream, stream))
            {
                return *key;
            }
        }
        let key = self.next_key;
        self.next_key += 1;
        let mut reader = Reader::new(stream.clone(), BusPeer::new("webrtc", None)).uncounted();
        let tx = self.media_tx.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = reader.recv().await {
                if tx.send((key, Some(event))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send((key, None)).await;
        })
        .abort_handle();
        self.feeds.insert(
            key,
            FeedEntry {
                stream: stream.clone(),
                feed: Feed::new(stream.name()),
                viewers: Vec::new(),
                task,
            },
        );
        self.feeds_by_stream.insert(stream.name().to_string(), key);
        key
    }

    fn trickle(
        &mut self,
        session: &str,
        if_match: Option<String>,
        fragment: &str,
    ) -> Result<String, SessionError> {
        let key = *self.by_session.get(session).ok_or(SessionError::NotFound)?;
        let peer = self.peers.get_mut(&key).ok_or(SessionError::NotFound)?;
        if let Some(tag) = if_match {
            let tag = tag.trim();
            if tag != "*" && tag.trim_start_matches("W/") != peer.etag {
                return Err(SessionError::PreconditionFailed {
                    current: peer.etag.clone(),
                });
            }
        }
        let mut mid = None;
        let mut added = 0;
        for line in fragment.lines().map(str::trim) {
            if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
                if peer
                    .pc
                    .remote_description()
                    .is_some_and(|d| !d.sdp.contains(&format!("a=ice-ufrag:{ufrag}")))
                {
                    return Err(SessionError::Unsupported(
                        "ICE restart is not supported; start a new session".into(),
                    ));
                }
            }
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid = Some(m.to_string());
            } else if let Some(candidate) = line.strip_prefix("a=") {
                if !candidate.starts_with("candidate:") {
                    continue;
                }
                let init = RTCIceCandidateInit {
                    candidate: candidate.to_string(),
                    sdp_mid: mid.clone(),
                    sdp_mline_index: Some(0),
                    ..Default::default()
                };
                peer.pc.add_remote_candidate(init).map_err(|e| {
                    SessionError::BadRequest(format!("candidate {candidate:?} refused: {e}"))
                })?;
                added += 1;
            }
        }
        if added == 0 && !fragment.contains("a=end-of-candidates") {
            return Err(SessionError::BadRequest(
                "the fragment has no a=candidate or a=end-of-candidates line".into(),
            ));
        }
        let etag = peer.etag.clone();
        self.service(key, Instant::now());
        Ok(etag)
    }

    fn list(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .peers
            .values()
            .map(|p| SessionInfo {
                id: p.session.clone(),
                role: match p.role {
                    PeerRole::Publisher {
                        client: Some(_), ..
                    } => "pull",
                    PeerRole::Publisher { .. } => "publish",
                    PeerRole::Viewer { .. } => "play",
                    PeerRole::Client(_) => "client",
                },
                stream: p.stream.clone(),
                state: p.state.to_string(),
                remote: p.addrs.first().copied(),
                age_secs: p.created.elapsed().as_secs(),
                notes: match &p.role {
                    PeerRole::Viewer { feed, .. } => self
                        .feeds
                        .get(feed)
                        .map(|f| f.feed.notes.clone())
                        .unwrap_or_default(),
                    PeerRole::Publisher { .. } | PeerRole::Client(_) => Vec::new(),
                },
            })
            .collect();
        out.sort_by(|a, b| a.stream.cmp(&b.stream).then(a.id.cmp(&b.id)));
        out
    }

    // ---- media out ----------------------------------------------------------------------

    fn media(&mut self, (feed_key, event): (FeedKey, Option<ReaderEvent>)) {
        let now = Instant::now();
        let Some(entry) = self.feeds.get_mut(&feed_key) else {
            return;
        };
        match event {
            None => {
                let viewers = entry.viewers.clone();
                for key in viewers {
                    self.remove(key, "the stream ended");
                }
                self.feeds.remove(&feed_key);
            }
            Some(ReaderEvent::Tracks(tracks)) => entry.feed.on_tracks(tracks),
            Some(ReaderEvent::Lost { frames }) => {
                tracing::debug!(stream = %entry.stream.name(), frames, "webrtc feed fell behind");
                entry.feed.on_lost();
                let viewers = entry.viewers.clone();
                let stream = entry.stream.name().to_string();
                for key in viewers {
                    if let Some(PeerEntry {
                        role: PeerRole::Viewer { viewer, .. },
                        ..
                    }) = self.peers.get_mut(&key).map(|p| &mut **p)
                    {
                        viewer.restart_video();
                    }
                }
                self.keyframe_wanted(&stream, now);
            }
            Some(ReaderEvent::Frame(frame)) => {
                let Some(packetized) = entry.feed.on_frame(&frame) else {
                    return;
                };
                let viewers = std::mem::take(&mut entry.viewers);
                self.outbox.sending_frame = Some(frame.published_at);
                for key in &viewers {
                    self.send_to_viewer(*key, &packetized, now);
                }
                if let Some(entry) = self.feeds.get_mut(&feed_key) {
                    entry.viewers = viewers;
                }
                // Out now, so the delay is what the viewers get.
                self.outbox.flush();
                self.outbox.sending_frame = None;
            }
        }
    }

    /// Writes a live frame to one viewer.
    fn send_to_viewer(&mut self, key: PeerKey, frame: &Arc<Packetized>, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.connected {
            return;
        }
        let PeerRole::Viewer { viewer, .. } = &mut peer.role else {
            return;
        };
        self.packets.clear();
        viewer.live(frame, now, &mut self.packets);
        if self.packets.is_empty() {
            return;
        }
        send_media(peer, &mut self.packets, &mut self.outbox, false);
    }

    fn viewer_connected(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let PeerRole::Viewer { viewer, feed, .. } = &mut peer.role else {
            return;
        };
        viewer.connected_at = Some(now);
        // DTLS is done: the SRTP keys were derived, and the stats name the profile.
        let cipher = peer
            .pc
            .get_stats(now, StatsSelector::None)
            .transport()
            .map(|t| t.srtp_cipher.clone())
            .unwrap_or_default();
        let srtp = match &peer.keys {
            Some(keys) => keys.sender(&cipher),
            None => Err("no SRTP key capture on this connection".to_string()),
        };
        match srtp {
            Ok(srtp) => peer.srtp = Some(srtp),
            Err(e) => {
                tracing::error!(session = %peer.session, error = %e, "cannot protect media for this viewer");
                self.remove(key, "no SRTP keys");
                return;
            }
        }
        let stream = peer.stream.clone();
        let Some(entry) = self.feeds.get(feed) else {
            return;
        };
        self.packets.clear();
        viewer.catch_up(entry.feed.gop(), now, &mut self.packets);
        send_media(peer, &mut self.packets, &mut self.outbox, false);
        self.service(key, now);
        self.keyframe_wanted(&stream, now);
    }

    /// A viewer of `stream` needs a keyframe: ask its publisher when it is a WHIP peer here.
    fn keyframe_wanted(&mut self, stream: &str, now: Instant) {
        let Some(key) = self.publishers.get(stream).copied() else {
            return;
        };
        if let Some(PeerEntry {
            role: PeerRole::Publisher { ingest, .. },
            ..
        }) = self.peers.get_mut(&key).map(|p| &mut **p)
        {
            ingest.request_keyframe();
        }
        self.service(key, now);
    }
}

/// Datagrams waiting to go out, in one buffer reused from flush to flush.
struct Outbox {
    fd: RawFd,
    buffer: Vec<u8>,
    /// (to, from, start, end) of each datagram in `buffer`.
    datagrams: Vec<(SocketAddr, Option<IpAddr>, usize, usize)>,
    stats: Arc<EngineStats>,
    /// When the frame being fanned out entered the bus (for the send-delay statistics).
    sending_frame: Option<Instant>,
    /// `simulate_loss_one_in` and its count.
    loss_one_in: u32,
    media_count: u32,
}

impl Outbox {
    fn new(fd: RawFd, stats: Arc<EngineStats>, loss_one_in: u32) -> Self {
        Outbox {
            fd,
            buffer: Vec::with_capacity(FLUSH_AT * 1300),
            datagrams: Vec::with_capacity(FLUSH_AT),
            stats,
            sending_frame: None,
            loss_one_in,
            media_count: 0,
        }
    }

    fn len(&self) -> usize {
        self.datagrams.len()
    }

    fn push(&mut self, to: SocketAddr, from: Option<IpAddr>, data: &[u8]) {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(data);
        self.datagrams.push((to, from, start, self.buffer.len()));
    }

    /// Protects `packet` with `srtp` straight into the buffer; `again` for a retransmission.
    fn push_media(
        &mut self,
        (to, from): (SocketAddr, Option<IpAddr>),
        srtp: &mut SrtpSender,
        packet: &OutPacket,
        again: bool,
    ) -> Result<(), rtc::crypto::CryptoError> {
        if again {
            self.stats.retransmitted.fetch_add(1, Ordering::Relaxed);
        } else if self.loss_one_in > 0 {
            self.media_count = self.media_count.wrapping_add(1);
            if self.media_count.is_multiple_of(self.loss_one_in) {
                self.stats.simulated_losses.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        let start = self.buffer.len();
        srtp.protect(
            &packet.header,
            &packet.payload,
            packet.roc,
            &mut self.buffer,
        )?;
        self.datagrams.push((to, from, start, self.buffer.len()));
        Ok(())
    }

    fn flush(&mut self) {
        if self.datagrams.is_empty() {
            return;
        }
        let batch: Vec<Outgoing<'_>> = self
            .datagrams
            .iter()
            .map(|&(to, from_ip, start, end)| Outgoing {
                to,
                from_ip,
                data: &self.buffer[start..end],
            })
            .collect();
        let sent = match udp::send(self.fd, &batch) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::debug!(error = %e, "webrtc send");
                0
            }
        };
        let dropped = batch.len() - sent;
        drop(batch);
        if dropped > 0 {
            tracing::debug!(dropped, "webrtc socket full; datagrams dropped");
        }
        self.stats
            .datagrams_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.stats
            .datagrams_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        if let Some(published_at) = self.sending_frame {
            self.stats.record_delay(published_at.elapsed(), sent);
        }
        self.datagrams.clear();
        self.buffer.clear();
    }
}

/// Moves a connection's pending datagrams to the outbox; whether there were any. The
/// destination of its DTLS and RTCP is the selected ICE pair: `media_to` follows it (STUN goes
/// to whichever address checked in, RFC 7983 tells them apart by the first byte).
fn drain_writes(
    pc: &mut RTCPeerConnection,
    media_to: &mut Option<(SocketAddr, Option<IpAddr>)>,
    outbox: &mut Outbox,
) -> bool {
    let mut any = false;
    while let Some(out) = pc.poll_write() {
        any = true;
        let from = out.transport.local_addr.ip();
        let from = (!from.is_unspecified()).then_some(from);
        if matches!(out.message.first(), Some(20..=63 | 128..=191)) {
            *media_to = Some((out.transport.peer_addr, from));
        }
        outbox.push(out.transport.peer_addr, from, &out.message);
        if outbox.len() >= FLUSH_AT {
            outbox.flush();
        }
    }
    any
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
    for packet in packets.drain(..) {
        if let Err(e) = outbox.push_media(to, srtp, &packet, again) {
            tracing::debug!(session = %peer.session, error = %e, "RTP not protected");
        }
        if outbox.len() >= FLUSH_AT {
            outbox.flush();
        }
    }
}

/// A viewer's sending state for the tracks its session negotiated.
fn new_viewer(video: Option<SendTrack>, audio: Option<SendTrack>) -> Viewer {
    let track = |t: SendTrack, kind| TrackOut::new(t.sender, t.ssrc, t.payload_type, kind);
    Viewer::new(
        video.map(|t| track(t, MediaKind::Video)),
        audio.map(|t| track(t, MediaKind::Audio)),
    )
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
                        PeerRole::Client(counters)
                        | PeerRole::Publisher {
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

/// Host candidates listed in an answer (`a=candidate:... udp ... IP PORT typ host`).
fn answer_candidates(answer: &str) -> Vec<SocketAddr> {
    answer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let fields: Vec<&str> = c.split_whitespace().collect();
            if fields.len() < 6 || !fields[2].eq_ignore_ascii_case("udp") {
                return None;
            }
            let ip: IpAddr = fields[4].parse().ok()?;
            Some(SocketAddr::new(ip, fields[5].parse().ok()?))
        })
        .collect()
}

fn offer_sends_video(offer: &str) -> bool {
    let mut in_video = false;
    let mut sends = false;
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_video && sends {
                return true;
            }
            in_video = m.starts_with("video");
            sends = true; // sendrecv by default
        } else if in_video && (line == "a=recvonly" || line == "a=inactive") {
            sends = false;
        }
    }
    in_video && sends
}
