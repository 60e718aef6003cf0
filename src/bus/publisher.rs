//! The publishing end of a stream: pushes frames to every reader without blocking, keeps the
//! GOP cache, and removes the stream from the registry when it goes away.

use super::shared::{EndedTotals, RegistryInner};
use super::stream::{BusFrame, BusItem, Stream, TrackSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use switchyard_media::{Frame, MediaKind, Track};
use tokio::sync::watch;

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
        if !tracks.is_empty() {
            let _ = self.stream.tracks_since.set(std::time::Instant::now());
        }
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
        if kind == Some(MediaKind::Video) {
            stream
                .counters
                .video_frames_in
                .fetch_add(1, Ordering::Relaxed);
        }
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
        if stream.max_bitrate_bps > 0 {
            let measured =
                shared
                    .bitrate_meter
                    .add(len, std::time::Instant::now(), stream.bitrate_window);
            drop(shared);
            if let Some(bps) = measured.filter(|bps| *bps > stream.max_bitrate_bps) {
                self.over_bitrate(bps);
            }
        }
    }

    /// Cuts off a publisher measured above `limits.max_publisher_bitrate_kbps`: its adapter
    /// sees the kick and closes the session.
    fn over_bitrate(&self, bps: u64) {
        if self.is_kicked() {
            return;
        }
        crate::limits::hit(crate::limits::Limit::MaxPublisherBitrate);
        let max_kbps = self.stream.max_bitrate_bps / 1000;
        tracing::warn!(
            stream = %self.stream.name,
            publisher = %self.stream.publisher_description(),
            bitrate_kbps = bps / 1000,
            max_kbps,
            window_secs = self.stream.bitrate_window.as_secs(),
            "publisher cut off: its bitrate is over limits.max_publisher_bitrate_kbps"
        );
        self.stream.kick_because(format!(
            "bitrate {} kbit/s over limits.max_publisher_bitrate_kbps ({max_kbps})",
            bps / 1000
        ));
    }

    /// Whether the publisher must stop (kicked through the API or taken over).
    pub fn is_kicked(&self) -> bool {
        *self.kicked.borrow()
    }

    /// Why the publisher was kicked, for its adapter to report.
    pub fn kick_reason(&self) -> String {
        self.stream
            .kick_reason
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "kicked through the API or taken over".to_string())
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
