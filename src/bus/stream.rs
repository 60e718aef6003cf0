//! One stream on the bus: its publisher side, GOP cache and counters.

use super::{BusConfig, EndedTotals, Peer, RegistryInner};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};
use switchyard_media::{Frame, MediaKind, Track};
use tokio::sync::{broadcast, watch};

/// The tracks of a stream at one point in its life. `generation` grows with every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackSet {
    pub generation: u64,
    pub tracks: Vec<Track>,
}

impl TrackSet {
    pub fn video(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind() == MediaKind::Video)
    }

    pub fn audio(&self) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind() == MediaKind::Audio)
    }

    pub fn get(&self, id: switchyard_media::TrackId) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }
}

/// Encodings an output may attach to a frame so that it is computed once and shared by all of
/// its readers (per-reader work is then a reference count).
#[derive(Debug, Clone, Copy)]
pub enum EncodedSlot {
    /// RTMP chunks of the frame's FLV message (see `outputs/rtmp.rs` for the chunking used).
    RtmpChunks = 0,
    /// The frame as a one-sample fMP4 fragment (moof+mdat), for MSE clients.
    Fmp4Fragment = 1,
}

const ENCODED_SLOTS: usize = 2;

/// A frame as it travels the bus: shared by every reader, with lazily built encodings.
#[derive(Debug)]
pub struct BusFrame {
    pub frame: Frame,
    /// Whether this frame starts a GOP (a video keyframe); audio frames never do.
    pub starts_gop: bool,
    /// Position in the stream: 0 for its first frame, then +1 per frame.
    pub sequence: u64,
    /// When the publisher handed the frame to the bus; outputs measure how far behind live
    /// they are with it.
    pub published_at: Instant,
    encoded: [OnceLock<Bytes>; ENCODED_SLOTS],
}

impl BusFrame {
    pub fn new(frame: Frame, starts_gop: bool, sequence: u64) -> Self {
        BusFrame {
            frame,
            starts_gop,
            sequence,
            published_at: Instant::now(),
            encoded: Default::default(),
        }
    }

    /// The frame in the encoding `slot`, built by `encode` by the first reader that asks.
    pub fn encoded(&self, slot: EncodedSlot, encode: impl FnOnce(&Frame) -> Bytes) -> &Bytes {
        self.encoded[slot as usize].get_or_init(|| encode(&self.frame))
    }
}

/// What travels through a stream's ring: frames and, in order with them, track changes.
#[derive(Debug, Clone)]
pub enum BusItem {
    Tracks(Arc<TrackSet>),
    Frame(Arc<BusFrame>),
}

/// Counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub bytes_in: u64,
    pub frames_in: u64,
    pub bytes_out: u64,
    pub frames_dropped: u64,
}

#[derive(Default)]
pub(crate) struct AtomicCounters {
    pub bytes_in: AtomicU64,
    pub frames_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_dropped: AtomicU64,
}

pub(crate) struct Shared {
    /// `None` once the publisher has gone: readers then drain the ring and end.
    pub tx: Option<broadcast::Sender<BusItem>>,
    pub tracks: Arc<TrackSet>,
    pub gop: Vec<Arc<BusFrame>>,
    pub gop_bytes: usize,
    /// False after the cache overflowed, until the next keyframe.
    pub gop_caching: bool,
    pub next_sequence: u64,
}

/// A named stream: one publisher, many readers.
pub struct Stream {
    name: String,
    publisher: Peer,
    started: Instant,
    started_wall: SystemTime,
    gop_cache_max_bytes: usize,
    pub(crate) shared: Mutex<Shared>,
    tracks_watch: watch::Sender<Arc<TrackSet>>,
    kicked: watch::Sender<bool>,
    pub(crate) counters: AtomicCounters,
    /// Keyframe requests from readers, counted; publishers that can ask their source for a
    /// keyframe (WebRTC) watch it.
    keyframe_requests: AtomicU64,
    /// Set once a video frame's pts differed from its dts (B-frames).
    b_frames: std::sync::atomic::AtomicBool,
    pub(crate) readers: Mutex<HashMap<&'static str, usize>>,
    rate: Mutex<RateSampler>,
    /// Set on a converted view (see `audio`): the stream it converts, where its readers,
    /// bytes out and keyframe requests are counted.
    parent: Option<Arc<Stream>>,
    /// Conversions of this stream's audio (see `audio`).
    pub(crate) conversions: Mutex<Vec<Arc<crate::audio::Conversion>>>,
}

/// A point-in-time view of a stream, for the API.
#[derive(Debug, Clone)]
pub struct StreamSnapshot {
    pub name: String,
    pub publisher: Peer,
    pub uptime: Duration,
    pub started_wall: SystemTime,
    pub tracks: Arc<TrackSet>,
    pub readers_by_protocol: Vec<(&'static str, usize)>,
    pub counters: Counters,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    /// The video has B-frames (frames presented in another order than decoded).
    pub b_frames: bool,
    /// Conversions of the stream's audio that readers asked for.
    pub audio_conversions: Vec<crate::audio::ConversionInfo>,
}

impl Stream {
    pub(crate) fn new(name: String, publisher: Peer, config: &BusConfig) -> Self {
        let (tx, _) = broadcast::channel(config.reader_queue_frames.max(16));
        let tracks = Arc::new(TrackSet::default());
        Stream {
            name,
            publisher,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            gop_cache_max_bytes: config.gop_cache_max_bytes,
            shared: Mutex::new(Shared {
                tx: Some(tx),
                tracks: tracks.clone(),
                gop: Vec::new(),
                gop_bytes: 0,
                gop_caching: true,
                next_sequence: 0,
            }),
            tracks_watch: watch::channel(tracks).0,
            kicked: watch::channel(false).0,
            counters: AtomicCounters::default(),
            keyframe_requests: AtomicU64::new(0),
            b_frames: std::sync::atomic::AtomicBool::new(false),
            readers: Mutex::new(HashMap::new()),
            rate: Mutex::new(RateSampler::default()),
            parent: None,
            conversions: Mutex::new(Vec::new()),
        }
    }

    /// A view of `parent` off the registry, fed by a converter: same name, publisher and time
    /// origin; its readers and their bytes count as the parent's.
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    pub(crate) fn derived(parent: &Arc<Stream>, config: &BusConfig) -> Self {
        let mut s = Stream::new(parent.name.clone(), parent.publisher.clone(), config);
        s.started = parent.started;
        s.started_wall = parent.started_wall;
        s.parent = Some(parent.clone());
        s
    }

    /// Where readers of this stream are counted: the parent of a converted view, else itself.
    pub(crate) fn accounting(&self) -> &Stream {
        self.parent.as_deref().unwrap_or(self)
    }

    /// Asks the publisher for a keyframe (a reader joined or lost pictures). Publishers that
    /// cannot ask their source (RTMP) ignore it.
    pub fn request_keyframe(&self) {
        self.accounting()
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// How many keyframe requests were made so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests.load(Ordering::Relaxed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn publisher(&self) -> &Peer {
        &self.publisher
    }

    pub(crate) fn publisher_description(&self) -> String {
        match self.publisher.remote {
            Some(addr) => format!("{} from {addr}", self.publisher.protocol),
            None => self.publisher.protocol.to_string(),
        }
    }

    /// The current tracks; `changed()` on the receiver wakes on every change.
    pub fn tracks(&self) -> watch::Receiver<Arc<TrackSet>> {
        self.tracks_watch.subscribe()
    }

    pub(crate) fn kick(&self) {
        self.kicked.send_replace(true);
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            frames_in: c.frames_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
        }
    }

    pub fn readers_by_protocol(&self) -> Vec<(&'static str, usize)> {
        let mut v: Vec<_> = self
            .readers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, n)| (*p, *n))
            .collect();
        v.sort();
        v
    }

    pub fn snapshot(&self) -> StreamSnapshot {
        let counters = self.counters();
        let (bitrate_in_bps, bitrate_out_bps) =
            self.rate.lock().unwrap().sample(Instant::now(), &counters);
        StreamSnapshot {
            name: self.name.clone(),
            publisher: self.publisher.clone(),
            uptime: self.started.elapsed(),
            started_wall: self.started_wall,
            tracks: self.tracks_watch.borrow().clone(),
            readers_by_protocol: self.readers_by_protocol(),
            counters,
            bitrate_in_bps,
            bitrate_out_bps,
            b_frames: self.b_frames.load(Ordering::Relaxed),
            audio_conversions: crate::audio::conversions(self),
        }
    }

    /// When the stream was published: the origin of its timestamps for inputs that count
    /// time by arrival.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Whether the video has had B-frames (a converted view answers for its source).
    pub fn has_b_frames(&self) -> bool {
        self.accounting().b_frames.load(Ordering::Relaxed)
    }
}

/// Bitrates over the interval between two API samples (at least one second apart).
#[derive(Default)]
struct RateSampler {
    last: Option<(Instant, Counters)>,
    rates: (u64, u64),
}

impl RateSampler {
    fn sample(&mut self, now: Instant, c: &Counters) -> (u64, u64) {
        match self.last {
            Some((at, prev)) if now.duration_since(at) >= Duration::from_secs(1) => {
                let secs = now.duration_since(at).as_secs_f64();
                self.rates = (
                    ((c.bytes_in - prev.bytes_in) as f64 * 8.0 / secs) as u64,
                    ((c.bytes_out - prev.bytes_out) as f64 * 8.0 / secs) as u64,
                );
                self.last = Some((now, *c));
            }
            Some(_) => {}
            None => self.last = Some((now, *c)),
        }
        self.rates
    }
}

/// The publishing end of a stream. Dropping it ends the stream.
pub struct Publisher {
    stream: Arc<Stream>,
    registry: Weak<RegistryInner>,
    kicked: watch::Receiver<bool>,
    next_track_generation: u64,
}

impl Publisher {
    pub(crate) fn new(stream: Arc<Stream>, registry: Weak<RegistryInner>) -> Self {
        let kicked = stream.kicked.subscribe();
        Publisher {
            stream,
            registry,
            kicked,
            next_track_generation: 1,
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Replaces the stream's tracks. Readers see the change in order with frames; the GOP
    /// cache restarts, since its frames belong to the old configuration.
    pub fn set_tracks(&mut self, tracks: Vec<Track>) {
        let set = Arc::new(TrackSet {
            generation: self.next_track_generation,
            tracks,
        });
        self.next_track_generation += 1;
        let mut shared = self.stream.shared.lock().unwrap();
        shared.tracks = set.clone();
        shared.gop.clear();
        shared.gop_bytes = 0;
        if let Some(tx) = &shared.tx {
            let _ = tx.send(BusItem::Tracks(set.clone()));
        }
        self.stream.tracks_watch.send_replace(set);
    }

    pub fn tracks(&self) -> Arc<TrackSet> {
        self.stream.tracks_watch.borrow().clone()
    }

    /// Publishes one frame to every reader. Never blocks on readers.
    pub fn push(&self, frame: Frame) {
        let len = frame.data.len();
        let stream = &self.stream;
        stream
            .counters
            .bytes_in
            .fetch_add(len as u64, Ordering::Relaxed);
        stream.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        let mut shared = stream.shared.lock().unwrap();
        let kind = shared.tracks.get(frame.track).map(|t| t.kind());
        let has_video = shared.tracks.video().is_some();
        let starts_gop = kind == Some(MediaKind::Video) && frame.keyframe;
        if kind == Some(MediaKind::Video) && frame.pts != frame.dts {
            stream.b_frames.store(true, Ordering::Relaxed);
        }
        let item = Arc::new(BusFrame::new(frame, starts_gop, shared.next_sequence));
        shared.next_sequence += 1;
        if starts_gop {
            shared.gop.clear();
            shared.gop_bytes = 0;
            shared.gop_caching = true;
        }
        // Cache from a video keyframe on; audio-only streams need no cache (every frame is a
        // random access point).
        if has_video && shared.gop_caching && (starts_gop || !shared.gop.is_empty()) {
            if shared.gop_bytes + len > stream.gop_cache_max_bytes {
                tracing::warn!(stream = %stream.name, bytes = shared.gop_bytes, "GOP cache full; late joiners wait for the next keyframe");
                shared.gop.clear();
                shared.gop_bytes = 0;
                shared.gop_caching = false;
            } else {
                shared.gop_bytes += len;
                shared.gop.push(item.clone());
            }
        }
        if let Some(tx) = &shared.tx {
            let _ = tx.send(BusItem::Frame(item));
        }
    }

    /// Whether the publisher must stop (kicked through the API or taken over).
    pub fn is_kicked(&self) -> bool {
        *self.kicked.borrow()
    }

    /// Resolves when the publisher must stop (kicked through the API or taken over).
    pub async fn kicked(&mut self) {
        while !*self.kicked.borrow_and_update() {
            if self.kicked.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stream.shared.lock().unwrap().tx = None;
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut streams = registry.streams.lock().unwrap();
        if streams
            .get(&self.stream.name)
            .is_some_and(|s| Arc::ptr_eq(s, &self.stream))
        {
            streams.remove(&self.stream.name);
        }
        drop(streams);
        let c = self.stream.counters();
        let EndedTotals {
            bytes_in,
            bytes_out,
            frames_dropped,
        } = &registry.ended;
        bytes_in.fetch_add(c.bytes_in, Ordering::Relaxed);
        // Readers still draining add their last bytes to the stream, not here; close enough.
        bytes_out.fetch_add(c.bytes_out, Ordering::Relaxed);
        frames_dropped.fetch_add(c.frames_dropped, Ordering::Relaxed);
        tracing::info!(stream = %self.stream.name, "stream ended");
    }
}
