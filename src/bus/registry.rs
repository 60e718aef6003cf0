//! The stream registry: name -> [`Stream`], where publishers claim names and readers find them.

use super::name::{validate_name, BusError};
use super::peer::Peer;
use super::publisher::Publisher;
use super::reader::Reader;
use super::settings::BusConfig;
use super::shared::{ClaimHook, DemandHook, EndedTotals, RegistryInner};
use super::stream::Stream;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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

impl Registry {
    pub fn new(config: BusConfig) -> Self {
        Registry {
            inner: Arc::new(RegistryInner {
                config,
                streams: Mutex::new(HashMap::new()),
                ended: EndedTotals::default(),
                demand: std::sync::OnceLock::new(),
                claim: std::sync::OnceLock::new(),
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

    /// Installs the hook asked before a publisher from outside takes a name (once).
    pub fn set_claim_hook(&self, hook: ClaimHook) {
        let _ = self.inner.claim.set(hook);
    }

    /// Like [`Registry::publish`] for a publisher from outside (RTMP, WHIP): asks the claim
    /// hook first, unless the name is published here already (a takeover or a refusal is
    /// then [`Registry::publish`]'s to decide).
    pub async fn publish_claimed(&self, name: &str, peer: Peer) -> Result<Publisher, BusError> {
        validate_name(name)?;
        if let Some(hook) = self.inner.claim.get() {
            if self.get(name).is_none() {
                hook(name.to_string())
                    .await
                    .map_err(|reason| BusError::ClaimedElsewhere {
                        name: name.to_string(),
                        reason,
                    })?;
            }
        }
        self.publish(name, peer)
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
        } else {
            let max = self.inner.config.max_streams;
            if max > 0 && streams.len() >= max {
                crate::limits::hit(crate::limits::Limit::MaxStreams);
                return Err(BusError::TooManyStreams {
                    name: name.to_string(),
                    max,
                });
            }
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

    /// Counts `reader` as a session reader of its stream (an RTMP player, a WHEP viewer, an
    /// MSE client: one per client, unlike HLS's one muxer for all), or refuses it when the
    /// stream has `max_readers_per_stream` already. The count is taken before the check, so
    /// readers joining at once never exceed the limit (at worst both of the last two are
    /// refused).
    pub fn admit_reader(&self, mut reader: Reader) -> Result<Reader, BusError> {
        let max = self.inner.config.max_readers_per_stream;
        let before = reader.count_as_session();
        if max > 0 && before >= max {
            crate::limits::hit(crate::limits::Limit::MaxReadersPerStream);
            return Err(BusError::TooManyReaders {
                name: reader.stream().name().to_string(),
                max,
            });
        }
        Ok(reader)
    }

    /// The publisher of a new view derived from `stream`, off the registry (see
    /// [`Stream::derived`]): a layer above the bus feeds it with the source's frames
    /// transformed for readers that need them so (the audio conversions).
    pub fn derived_publisher(&self, stream: &Arc<Stream>) -> Publisher {
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
