//! One stream on the bus: its publisher side, GOP cache and counters.

use super::peer::Peer;
use super::settings::BusConfig;
use bytes::Bytes;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
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
    /// Video frames only (`frames_in` counts audio too): the frame rate is measured on it.
    pub video_frames_in: u64,
}

#[derive(Default)]
pub(crate) struct AtomicCounters {
    pub bytes_in: AtomicU64,
    pub frames_in: AtomicU64,
    pub video_frames_in: AtomicU64,
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
    /// The publisher's bitrate being measured against `max_bitrate_bps`.
    pub bitrate_meter: BitrateMeter,
}

/// Bytes a publisher gave over the current window.
#[derive(Debug, Default)]
pub(crate) struct BitrateMeter {
    since: Option<Instant>,
    bytes: u64,
}

impl BitrateMeter {
    /// Adds `len` bytes at `now`; at the end of each `window`, the bitrate over it (bits/s).
    pub fn add(&mut self, len: usize, now: Instant, window: Duration) -> Option<u64> {
        let since = *self.since.get_or_insert(now);
        self.bytes += len as u64;
        let elapsed = now.duration_since(since);
        if elapsed < window {
            return None;
        }
        let bps = (self.bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
        self.since = Some(now);
        self.bytes = 0;
        Some(bps)
    }
}

/// A named stream: one publisher, many readers.
pub struct Stream {
    pub(super) name: String,
    publisher: Peer,
    started: Instant,
    started_wall: SystemTime,
    /// When the publisher first announced tracks ([`Stream::tracks_since`]).
    pub(super) tracks_since: OnceLock<Instant>,
    pub(super) gop_cache_max_bytes: usize,
    pub(crate) shared: Mutex<Shared>,
    pub(super) tracks_watch: watch::Sender<Arc<TrackSet>>,
    pub(super) kicked: watch::Sender<bool>,
    /// Why the publisher was kicked, when not through the API or by a takeover.
    pub(super) kick_reason: Mutex<Option<String>>,
    pub(crate) counters: AtomicCounters,
    /// Keyframe requests from readers, counted; publishers that can ask their source for a
    /// keyframe (WebRTC) watch it.
    keyframe_requests: AtomicU64,
    /// Set once a video frame's pts differed from its dts (B-frames).
    pub(super) b_frames: std::sync::atomic::AtomicBool,
    pub(crate) readers: Mutex<HashMap<&'static str, usize>>,
    /// Session readers (see [`crate::bus::Registry::admit_reader`]).
    pub(crate) session_readers: std::sync::atomic::AtomicUsize,
    /// `limits.max_publisher_bitrate_kbps` in bits per second (0: none) and its window.
    pub(super) max_bitrate_bps: u64,
    pub(super) bitrate_window: Duration,
    rate: Mutex<RateSampler>,
    /// Set on a derived view ([`Stream::derived`]): the stream it is derived from, where its
    /// readers, bytes out and keyframe requests are counted.
    parent: Option<Arc<Stream>>,
    /// State that layers above the bus keep with this stream, one value per type
    /// ([`Stream::attached`]).
    attached: Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
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
    /// Video frames per second received, over the same interval as the bitrates.
    pub video_fps: f64,
    /// The video has B-frames (frames presented in another order than decoded).
    pub b_frames: bool,
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
            tracks_since: OnceLock::new(),
            gop_cache_max_bytes: config.gop_cache_max_bytes,
            shared: Mutex::new(Shared {
                tx: Some(tx),
                tracks: tracks.clone(),
                gop: Vec::new(),
                gop_bytes: 0,
                gop_caching: true,
                next_sequence: 0,
                bitrate_meter: BitrateMeter::default(),
            }),
            tracks_watch: watch::channel(tracks).0,
            kicked: watch::channel(false).0,
            kick_reason: Mutex::new(None),
            counters: AtomicCounters::default(),
            keyframe_requests: AtomicU64::new(0),
            b_frames: std::sync::atomic::AtomicBool::new(false),
            readers: Mutex::new(HashMap::new()),
            session_readers: Default::default(),
            max_bitrate_bps: config.max_publisher_bitrate_kbps.saturating_mul(1000),
            bitrate_window: config.bitrate_window,
            rate: Mutex::new(RateSampler::default()),
            parent: None,
            attached: Mutex::new(Vec::new()),
        }
    }

    /// A view of `parent` off the registry, fed by a layer above the bus that transforms the
    /// parent's frames for readers that need something else (audio in another codec, ...):
    /// same name, publisher and time origin; its readers and their bytes count as the parent's.
    pub(crate) fn derived(parent: &Arc<Stream>, config: &BusConfig) -> Self {
        let mut s = Stream::new(parent.name.clone(), parent.publisher.clone(), config);
        s.started = parent.started;
        s.started_wall = parent.started_wall;
        s.parent = Some(parent.clone());
        // What the layer above makes from the source is not a publisher's input.
        s.max_bitrate_bps = 0;
        s
    }

    /// Where readers of this stream are counted: the parent of a derived view, else itself.
    pub(crate) fn accounting(&self) -> &Stream {
        self.parent.as_deref().unwrap_or(self)
    }

    /// Counts bytes an output sent to the stream's readers (its bitrate out), also for outputs
    /// that serve many clients from one reader (HLS).
    pub fn add_bytes_out(&self, n: usize) {
        self.accounting()
            .counters
            .bytes_out
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
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

    /// Kicks the publisher for `reason` (a limit), which its adapter reports.
    pub(crate) fn kick_because(&self, reason: String) {
        *self.kick_reason.lock().unwrap() = Some(reason);
        self.kick();
    }

    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters {
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            frames_in: c.frames_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
            video_frames_in: c.video_frames_in.load(Ordering::Relaxed),
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
        let Rates {
            bitrate_in_bps,
            bitrate_out_bps,
            video_fps,
        } = self.rate.lock().unwrap().sample(Instant::now(), &counters);
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
            video_fps,
            b_frames: self.b_frames.load(Ordering::Relaxed),
        }
    }

    /// The value of type `T` that a layer above the bus keeps with this stream (for example the
    /// derived views readers asked for), made with `T::default()` on first use. One value per
    /// type, so each layer keys its own state by what its readers need.
    pub fn attached<T: Any + Default + Send + Sync>(&self) -> Arc<T> {
        let mut all = self.attached.lock().unwrap();
        if let Some(found) = all.iter().find_map(|a| a.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(T::default());
        all.push(made.clone());
        made
    }

    /// When the stream was published: the origin of its timestamps for inputs that count
    /// time by arrival.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the stream first had tracks. A pull claims its name before it connects, so this
    /// can be seconds after [`Stream::started`].
    pub fn tracks_since(&self) -> Option<Instant> {
        self.tracks_since.get().copied()
    }

    /// Whether the video has had B-frames (a derived view answers for its source).
    pub fn has_b_frames(&self) -> bool {
        self.accounting().b_frames.load(Ordering::Relaxed)
    }
}

/// Rates over the interval between two API samples (about a second apart at least; a little
/// less, so that a client looking every second, like the console's events, gets a new value
/// each time despite timer jitter).
#[derive(Default)]
struct RateSampler {
    last: Option<(Instant, Counters)>,
    rates: Rates,
}

#[derive(Default, Clone, Copy)]
struct Rates {
    bitrate_in_bps: u64,
    bitrate_out_bps: u64,
    video_fps: f64,
}

impl RateSampler {
    fn sample(&mut self, now: Instant, c: &Counters) -> Rates {
        match self.last {
            Some((at, prev)) if now.duration_since(at) >= Duration::from_millis(900) => {
                let secs = now.duration_since(at).as_secs_f64();
                self.rates = Rates {
                    bitrate_in_bps: ((c.bytes_in - prev.bytes_in) as f64 * 8.0 / secs) as u64,
                    bitrate_out_bps: ((c.bytes_out - prev.bytes_out) as f64 * 8.0 / secs) as u64,
                    video_fps: (c.video_frames_in - prev.video_frames_in) as f64 / secs,
                };
                self.last = Some((now, *c));
            }
            Some(_) => {}
            None => self.last = Some((now, *c)),
        }
        self.rates
    }
}
