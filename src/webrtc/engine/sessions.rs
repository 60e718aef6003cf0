//! The commands [`WebRtc`](crate::webrtc::WebRtc) sends the engine: answering a WHIP/WHEP
//! offer, offering as a client (WHEP pull, WHIP push, load generator) and applying the answer,
//! trickled candidates (RFC 8840), closing and listing sessions. Each new connection gets its
//! role here (publisher into the bus, or viewer of a stream's feed, started with its first
//! viewer); the loop in [`super`] runs it from then on.

use super::{Engine, FeedEntry, FeedKey, PeerEntry, PeerKey, PeerRole};
use crate::bus::{Peer as BusPeer, Reader, Stream};
use crate::inputs::whip::WhipIngest;
use crate::outputs::whep::{Feed, TrackOut, Viewer};
use crate::webrtc::bundle;
use crate::webrtc::client::{ClientCounters, ClientRole};
use crate::webrtc::handle::{Command, Opened, Role, SessionError, SessionInfo};
use crate::webrtc::peer::{self, Direction, SendTrack};
use crate::webrtc::receive::CountReceiver;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use switchyard_media::MediaKind;

impl Engine {
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Open {
                role,
                offer,
                permit,
                reply,
            } => {
                let _ = reply.send(self.open(role, &offer, permit));
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
                        match (&result, &mut peer.role) {
                            (Ok(()), PeerRole::Publisher { ingest, .. }) => {
                                ingest.set_video_codec(peer::answered_video(&answer));
                            }
                            (Ok(()), PeerRole::Client(_, receiver)) => {
                                receiver.set_video_codec(peer::answered_video(&answer));
                            }
                            _ => {}
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
            Command::ListClosed { reply } => {
                let _ = reply.send(self.closed.iter().rev().map(|(_, s)| s.clone()).collect());
            }
        }
    }

    fn open(
        &mut self,
        role: Role,
        offer: &str,
        permit: Option<crate::limits::SessionPermit>,
    ) -> Result<Opened, SessionError> {
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
                    .filter(|_| built.sdp.contains("m=video") && bundle::offer_sends_video(offer));
                self.publisher_role(key, publisher, video, None)
            }
            Role::Play(reader) => {
                let viewer = new_viewer(built.video, built.audio);
                let codec = built.video.and(built.video_codec);
                self.viewer_role(key, reader, viewer, codec)
            }
        };
        let name = stream.clone();
        let answer = built.sdp.clone();
        let (session, etag) = self.insert_peer(key, stream, built, role, None, now);
        if let Some(entry) = self.peers.get_mut(&key) {
            entry.permit = permit;
        }
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
            ClientRole::Count(..) | ClientRole::Pull(..) => Direction::Receive,
        };
        let stream_video = match &role {
            ClientRole::Push(reader) => peer::VideoCodec::of_stream(reader.stream()),
            _ => None,
        };
        let measure = matches!(role, ClientRole::Count(..));
        let (built, senders) =
            peer::build_offer(&self.local, direction, stream_video, measure, now)?;
        let key = self.next_key;
        self.next_key += 1;
        let (stream, role) = match role {
            ClientRole::Count(counters, sink) => (
                String::new(),
                PeerRole::Client(counters, Box::new(CountReceiver::new(sink))),
            ),
            // The video codec is known from the answer.
            ClientRole::Pull(publisher, counters) => {
                self.publisher_role(key, publisher, None, Some(counters))
            }
            // Tracks are set when the answer says what was negotiated.
            ClientRole::Push(reader) => {
                let codec = built.video_codec;
                self.viewer_role(key, reader, Viewer::new(None, None), codec)
            }
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
        client: Option<Arc<ClientCounters>>,
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
    fn viewer_role(
        &mut self,
        key: PeerKey,
        reader: Reader,
        viewer: Viewer,
        video_codec: Option<peer::VideoCodec>,
    ) -> (String, PeerRole) {
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
            video_codec,
            counted: reader,
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
                permit: None,
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
        let mut out: Vec<SessionInfo> = self.peers.values().map(|p| self.info(p)).collect();
        out.sort_by(|a, b| a.stream.cmp(&b.stream).then(a.id.cmp(&b.id)));
        out
    }

    /// What the API shows of a session.
    pub(super) fn info(&self, p: &PeerEntry) -> SessionInfo {
        SessionInfo {
            id: p.session.clone(),
            role: match p.role {
                PeerRole::Publisher {
                    client: Some(_), ..
                } => "pull",
                PeerRole::Publisher { .. } => "publish",
                PeerRole::Viewer { .. } => "play",
                PeerRole::Client(..) => "client",
            },
            stream: p.stream.clone(),
            state: p.state.to_string(),
            remote: p.addrs.first().copied(),
            age_secs: p.created.elapsed().as_secs(),
            video_codec: match &p.role {
                PeerRole::Viewer {
                    viewer,
                    video_codec,
                    ..
                } if viewer.wants_video() => video_codec.map(|c| c.label()),
                _ => None,
            },
            notes: match &p.role {
                PeerRole::Viewer { feed, .. } => self
                    .feeds
                    .get(feed)
                    .map(|f| f.feed.notes.clone())
                    .unwrap_or_default(),
                PeerRole::Publisher { .. } | PeerRole::Client(..) => Vec::new(),
            },
            closed_reason: None,
            closed_at_unix_ms: None,
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
