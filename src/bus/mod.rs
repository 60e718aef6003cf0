//! The media bus: a registry of named streams, each with one publisher and many readers.
//!
//! Guarantees (see ARCHITECTURE.md, "Bus"):
//! - one [`Publisher`] per name; a second one is refused with [`BusError::AlreadyPublishing`]
//!   unless takeover is configured, in which case the old publisher is kicked;
//! - fan-out never blocks the publisher and never copies a payload per reader: readers share
//!   `Arc<BusFrame>`s from a bounded ring (a tokio broadcast channel);
//! - a reader that falls more than the ring behind is told how many frames it lost and resumes
//!   at the next video keyframe ([`Reader`]);
//! - a new reader starts at once with the current tracks and the GOP cache (the frames since the
//!   latest video keyframe); the cache snapshot and the ring subscription are taken under the
//!   same lock as publishing, so nothing is lost or repeated in between;
//! - track changes travel in-band, in order with frames, and are also observable through a
//!   watch channel ([`Stream::tracks`]);
//! - when the publisher goes away the stream is removed and its readers end after draining.

mod reader;
mod stream;

pub use reader::{Reader, ReaderEvent, TryRecv};
pub use stream::{
    BusFrame, BusItem, Counters, EncodedSlot, Publisher, Stream, StreamSnapshot, TrackSet,
};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Tunables of the bus; see `config.rs` for their defaults and meaning.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Frames a reader may fall behind before it loses frames and skips to a keyframe.
    pub reader_queue_frames: usize,
    /// Upper bound on the bytes kept in one stream's GOP cache.
    pub gop_cache_max_bytes: usize,
    /// Whether a new publisher on a busy name kicks the old one instead of being refused.
    pub publisher_takeover: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            reader_queue_frames: 512,
            gop_cache_max_bytes: 16 << 20,
            publisher_takeover: false,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("invalid stream name {0:?}: use segments of [A-Za-z0-9_.-] joined by '/'")]
    InvalidName(String),
    #[error("stream {name:?} is already being published (by {by})")]
    AlreadyPublishing { name: String, by: String },
    #[error("stream {0:?} not found")]
    NotFound(String),
}

/// Checks a stream name: segments of `[A-Za-z0-9_.-]` joined by `/`, no empty segment, no
/// `.`/`..` segment (names become URL paths), at most 255 bytes.
pub fn validate_name(name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName(name.to_string()))
    }
}

/// Counters of streams that have ended, so process totals never go backwards.
#[derive(Debug, Default)]
pub(crate) struct EndedTotals {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_dropped: AtomicU64,
}

/// Process-wide totals for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub streams: usize,
    pub readers_by_protocol: Vec<(&'static str, usize)>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub frames_dropped: u64,
}

/// The stream registry: name -> [`Stream`].
#[derive(Clone)]
pub struct Registry {
    inner: Arc<RegistryInner>,
}

pub(crate) struct RegistryInner {
    pub config: BusConfig,
    pub streams: Mutex<HashMap<String, Arc<Stream>>>,
    pub ended: EndedTotals,
    pub demand: std::sync::OnceLock<(DemandHook, std::time::Duration)>,
}

/// Asked when a reader wants a stream that is not on the bus: returns true if a source for it
/// is being started (an on-demand pull), so the reader should wait for it. Asked again while
/// the reader waits: false then means the source gave up (no origin has the stream), so the
/// reader need not wait out the whole time.
pub type DemandHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Registry {
    pub fn new(config: BusConfig) -> Self {
        Registry {
            inner: Arc::new(RegistryInner {
                config,
                streams: Mutex::new(HashMap::new()),
                ended: EndedTotals::default(),
                demand: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Installs the hook asked for streams readers want but nobody publishes (once), and how
    /// long a reader waits for such a stream.
    pub fn set_demand_hook(&self, hook: DemandHook, wait: std::time::Duration) {
        let _ = self.inner.demand.set((hook, wait));
    }

    /// The stream `name`; if it is not on the bus but a source for it can be started on demand,
    /// starts it and waits (up to the hook's wait) for it to appear with its tracks (a pull
    /// claims the name before its source answers, and gives it up again if the source does not
    /// have the stream).
    pub async fn wait_for_stream(&self, name: &str) -> Option<Arc<Stream>> {
        if let Some(s) = self.get(name) {
            return Some(s);
        }
        let (hook, wait) = self.inner.demand.get()?;
        if !hook(name) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + *wait;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if let Some(s) = self
                .get(name)
                .filter(|s| !s.tracks().borrow().tracks.is_empty())
            {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline || !hook(name) {
                return None;
            }
        }
    }

    /// Claims `name` for a new publisher.
    pub fn publish(&self, name: &str, peer: Peer) -> Result<Publisher, BusError> {
        validate_name(name)?;
        let mut streams = self.inner.streams.lock().unwrap();
        if let Some(existing) = streams.get(name) {
            if !self.inner.config.publisher_takeover {
                return Err(BusError::AlreadyPublishing {
                    name: name.to_string(),
                    by: existing.publisher_description(),
                });
            }
            tracing::info!(stream = name, old = %existing.publisher_description(), "publisher takeover");
            existing.kick();
        }
        let stream = Arc::new(Stream::new(name.to_string(), peer, &self.inner.config));
        streams.insert(name.to_string(), stream.clone());
        Ok(Publisher::new(stream, Arc::downgrade(&self.inner)))
    }

    /// Attaches a reader to the stream called `name`.
    pub fn subscribe(&self, name: &str, peer: Peer) -> Result<Reader, BusError> {
        let stream = self
            .get(name)
            .ok_or_else(|| BusError::NotFound(name.to_string()))?;
        // A new reader starts sooner on a fresh keyframe where the publisher can make one.
        stream.request_keyframe();
        Ok(Reader::new(stream, peer))
    }

    /// The publisher of a new converted view of `stream` (see `audio`), off the registry.
    #[cfg_attr(not(feature = "transcode"), allow(dead_code))]
    pub(crate) fn derived_publisher(&self, stream: &Arc<Stream>) -> Publisher {
        let view = Arc::new(Stream::derived(stream, &self.inner.config));
        Publisher::new(view, std::sync::Weak::new())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.inner.streams.lock().unwrap().get(name).cloned()
    }

    /// All streams, sorted by name.
    pub fn list(&self) -> Vec<Arc<Stream>> {
        let mut all: Vec<_> = self
            .inner
            .streams
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Disconnects the publisher of `name`; its adapter closes the connection.
    pub fn kick(&self, name: &str) -> Result<(), BusError> {
        let stream = self
            .get(name)
            .ok_or_else(|| BusError::NotFound(name.to_string()))?;
        stream.kick();
        Ok(())
    }

    pub fn totals(&self) -> Totals {
        let streams = self.list();
        let mut readers: HashMap<&'static str, usize> = HashMap::new();
        let mut t = Totals {
            streams: streams.len(),
            bytes_in: self.inner.ended.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.inner.ended.bytes_out.load(Ordering::Relaxed),
            frames_dropped: self.inner.ended.frames_dropped.load(Ordering::Relaxed),
            ..Totals::default()
        };
        for s in &streams {
            let c = s.counters();
            t.bytes_in += c.bytes_in;
            t.bytes_out += c.bytes_out;
            t.frames_dropped += c.frames_dropped;
            for (proto, n) in s.readers_by_protocol() {
                *readers.entry(proto).or_default() += n;
            }
        }
        t.readers_by_protocol = readers.into_iter().collect();
        t.readers_by_protocol.sort();
        t
    }
}

#[cfg(test)]
mod tests;
