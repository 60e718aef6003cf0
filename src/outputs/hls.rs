//! HLS / Low-Latency HLS output: `/hls/{name}/index.m3u8`, `init.mp4`, `seg{msn}.m4s`,
//! `part{msn}.{i}.m4s`, all from memory (draft-pantos-hls-rfc8216bis, with LL-HLS parts).
//!
//! One muxer per stream, started by the first request and stopped after `hls.idle_timeout_secs`
//! without requests (or kept on for every stream with `hls.always_on`). It reads the bus, cuts
//! parts of about `hls.part_target_ms` and segments of about `hls.segment_target_ms` at
//! keyframes (VP8/VP9 init segments wait for the first keyframe, which gives the picture size),
//! builds each part once as an fMP4 fragment, and hands it to the playlist engine
//! (`protocols/hls`), which renders playlists once per change. Requests are served by reference.
//!
//! The playlist outlives changes under the stream's name (draft-pantos-hls-rfc8216bis 6.2.1:
//! changes of encoding parameters or timestamps are signalled with EXT-X-DISCONTINUITY): new
//! parameter sets at another resolution, another codec, or a publisher that leaves and comes
//! back (or is taken over) within `hls.idle_timeout_secs` continue the same playlist: the media
//! sequence keeps growing, the first segment of the new configuration carries
//! EXT-X-DISCONTINUITY and, if the init segment changed, an EXT-X-MAP with a URI of its own
//! (`init{n}.mp4`). Players that keep the old init segment's decoder configuration across the
//! change (ffmpeg's HLS demuxer skips a second `moov`) still get the new H.264 parameter sets:
//! the first keyframe after a change carries its SPS and PPS in band too, the same ones as the
//! new `avcC` (ISO/IEC 14496-15 names in-band parameter sets as the mark of `avc3`; ffmpeg,
//! GStreamer and Chromium's MSE take them in `avc1` samples too; without them ffmpeg decodes
//! the new picture size with the old SPS, measured). After the publisher leaves, the muxer
//! keeps its playlist for `hls.idle_timeout_secs` at most, waiting for the name to be
//! published again.

use super::fmp4::{PendingInit, SampleClock};
use crate::audio::AudioNeed;
use crate::bus::{BusError, Peer, Reader, ReaderEvent, Registry};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_fmp4::{Sample, TrackFragment};
use switchyard_hls::{HlsConfig, LivePlaylist, Part};
use switchyard_media::{h264, CodecConfig};
use switchyard_media::{MediaKind, Track, TrackId};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct HlsSettings {
    pub playlist: HlsConfig,
    pub idle_timeout: Duration,
    pub always_on: bool,
    pub audio_codec: HlsAudio,
}

/// The audio codec of HLS renditions (`hls.audio_codec`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HlsAudio {
    /// AAC or Opus as published (G.711 becomes AAC).
    #[default]
    Source,
    /// Always AAC: Opus is converted, for players that cannot play Opus in fMP4 (older Safari).
    Aac,
}

/// The running muxers, by stream name.
#[derive(Clone)]
pub struct HlsOutputs {
    registry: Registry,
    settings: HlsSettings,
    muxers: Arc<Mutex<HashMap<String, Arc<HlsMuxer>>>>,
    shutdown: CancellationToken,
    started: Instant,
}

/// One stream's muxer, as request handlers see it.
pub struct HlsMuxer {
    playlist: Mutex<Option<LivePlaylist>>,
    /// Bumped on every change of the playlist; blocked requests wait on it.
    version: watch::Sender<u64>,
    last_request_ms: AtomicU64,
    /// Requests waiting in [`HlsMuxer::changed`]: the muxer is in use while they wait, however
    /// long ago they came (the first segment of a stream that just started can take longer
    /// than the idle timeout).
    waiting: AtomicU64,
}

impl HlsMuxer {
    /// Runs `f` on the playlist, if the muxer has produced its first part.
    pub fn with_playlist<T>(&self, f: impl FnOnce(&LivePlaylist) -> T) -> Option<T> {
        self.playlist.lock().unwrap().as_ref().map(f)
    }

    /// Waits until the playlist changes or `deadline`; false on timeout or when the muxer ended.
    pub async fn changed(
        &self,
        seen: &mut watch::Receiver<u64>,
        deadline: tokio::time::Instant,
    ) -> bool {
        struct Waiting<'a>(&'a AtomicU64);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        matches!(
            tokio::time::timeout_at(deadline, seen.changed()).await,
            Ok(Ok(()))
        )
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Longest a blocking request should wait: three target durations (spec 6.2.5.2).
    pub fn block_limit(&self, config: &HlsConfig) -> Duration {
        config.segment_target * 3 + config.part_target
    }
}

impl HlsOutputs {
    pub fn new(registry: Registry, settings: HlsSettings, shutdown: CancellationToken) -> Self {
        let outputs = HlsOutputs {
            registry,
            settings,
            muxers: Arc::default(),
            shutdown,
            started: Instant::now(),
        };
        if outputs.settings.always_on {
            let o = outputs.clone();
            tokio::spawn(async move { o.keep_all_on().await });
        }
        outputs
    }

    pub fn settings(&self) -> &HlsSettings {
        &self.settings
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The muxer for `name`, started if needed. `NotFound` if the stream is not on the bus.
    ///
    /// A new muxer starts once the stream's tracks are settled (as every other reader does,
    /// [`crate::audio::subscribe`]): its first init segment is the one players keep. A track
    /// that joins later (a pulled stream's audio arriving after its first keyframe) takes a
    /// new init segment, which ffmpeg skips (a second `moov`, see the module docs); it then
    /// reads the new track's `traf`, whose `trex` it does not know, as more samples of the
    /// `traf` before it in the `moof`: Opus packets decoded as H.264 (measured, FFmpeg 5.1).
    pub async fn muxer(&self, name: &str) -> Result<Arc<HlsMuxer>, BusError> {
        if !self.muxers.lock().unwrap().contains_key(name) {
            let stream = self
                .registry
                .get(name)
                .ok_or_else(|| BusError::NotFound(name.to_string()))?;
            crate::audio::settled_tracks(&stream).await;
        }
        self.muxer_now(name)
    }

    /// Like [`HlsOutputs::muxer`], deciding on the stream's tracks as they are now.
    fn muxer_now(&self, name: &str) -> Result<Arc<HlsMuxer>, BusError> {
        let mut muxers = self.muxers.lock().unwrap();
        if let Some(m) = muxers.get(name) {
            m.last_request_ms.store(self.now_ms(), Ordering::Relaxed);
            return Ok(m.clone());
        }
        // Before subscribing: a takeover in between then only makes the muxer look once more.
        let started = self.registry.get(name).map(|s| s.started());
        let reader = crate::audio::subscribe_now(
            &self.registry,
            name,
            Peer::new("hls", None),
            self.audio_need(),
        )?;
        let muxer = Arc::new(HlsMuxer {
            playlist: Mutex::new(None),
            version: watch::channel(0).0,
            last_request_ms: AtomicU64::new(self.now_ms()),
            waiting: AtomicU64::new(0),
        });
        muxers.insert(name.to_string(), muxer.clone());
        let this = self.clone();
        let (name, m) = (name.to_string(), muxer.clone());
        tracing::info!(stream = %name, "HLS muxer started");
        tokio::spawn(async move {
            this.run_muxer(&name, Source { reader, started }, &m).await;
            let mut muxers = this.muxers.lock().unwrap();
            if muxers.get(&name).is_some_and(|x| Arc::ptr_eq(x, &m)) {
                muxers.remove(&name);
            }
            tracing::info!(stream = %name, "HLS muxer stopped");
        });
        Ok(muxer)
    }

    fn audio_need(&self) -> AudioNeed {
        match self.settings.audio_codec {
            HlsAudio::Source => AudioNeed::AacOrOpus,
            HlsAudio::Aac => AudioNeed::Aac,
        }
    }

    /// A reader of the stream now published as `name`, if it is another one than the stream
    /// that started at `old` and its tracks are settled.
    fn reattach(&self, name: &str, old: Option<Instant>) -> Option<Source> {
        let stream = self.registry.get(name)?;
        if Some(stream.started()) == old || !crate::audio::tracks_settled(&stream) {
            return None;
        }
        let peer = Peer::new("hls", None);
        let reader =
            crate::audio::subscribe_now(&self.registry, name, peer, self.audio_need()).ok()?;
        Some(Source {
            reader,
            started: Some(stream.started()),
        })
    }

    async fn keep_all_on(&self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // A stream's muxer starts once what audio to convert for it can be decided.
            for stream in self.registry.list() {
                if crate::audio::tracks_settled(&stream) {
                    let _ = self.muxer_now(stream.name());
                }
            }
        }
    }

    async fn run_muxer(&self, name: &str, source: Source, muxer: &HlsMuxer) {
        let mut cutter = PartCutter::new(self.settings.playlist.clone());
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        let mut reattach = tokio::time::interval(REATTACH_INTERVAL);
        let mut old_started = source.started;
        let mut source = Some(source.reader);
        // Since when the publisher is gone, while the muxer waits for the name to come back.
        let mut detached_since: Option<Instant> = None;
        loop {
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = idle_check.tick() => {
                    if muxer.waiting.load(Ordering::Relaxed) > 0 {
                        muxer.last_request_ms.store(self.now_ms(), Ordering::Relaxed);
                    }
                    let idle = Duration::from_millis(self.now_ms().saturating_sub(muxer.last_request_ms.load(Ordering::Relaxed)));
                    if !self.settings.always_on && idle > self.settings.idle_timeout {
                        return;
                    }
                    if detached_since.is_some_and(|t| t.elapsed() > self.settings.idle_timeout) {
                        tracing::info!(stream = %name, "the publisher did not come back; HLS playlist dropped");
                        return;
                    }
                    continue;
                }
                _ = reattach.tick(), if source.is_none() => {
                    if let Some(new) = self.reattach(name, old_started) {
                        tracing::info!(stream = %name, "published again; the HLS playlist goes on after a discontinuity");
                        old_started = new.started;
                        source = Some(new.reader);
                        detached_since = None;
                        cutter.reattach();
                    }
                    continue;
                }
                e = next_event(&mut source) => e,
            };
            let Some(event) = event else {
                // The publisher left (or was taken over). Everything it sent is published,
                // and whatever comes next under this name starts after a discontinuity.
                let outputs = cutter.finish();
                self.apply(name, muxer, outputs);
                if let Some(p) = muxer.playlist.lock().unwrap().as_mut() {
                    p.discontinuity();
                }
                muxer.version.send_modify(|v| *v += 1);
                source = None;
                detached_since = Some(Instant::now());
                reattach.reset();
                tracing::info!(stream = %name, timeout = ?self.settings.idle_timeout, "publisher gone; the HLS playlist waits for it to come back");
                continue;
            };
            if let ReaderEvent::Tracks(set) = &event {
                for t in set
                    .tracks
                    .iter()
                    .filter(|t| !switchyard_fmp4::supports(&t.codec))
                {
                    tracing::warn!(stream = %name, "{} {} is not carried in HLS: fMP4 players cannot play it", t.codec.name(), t.kind());
                }
            }
            let outputs = cutter.handle(event);
            self.apply(name, muxer, outputs);
        }
    }

    /// Hands what the cutter made to the playlist, and wakes the requests waiting for it.
    fn apply(&self, name: &str, muxer: &HlsMuxer, outputs: Vec<CutterOutput>) {
        if outputs.is_empty() {
            return;
        }
        let mut playlist = muxer.playlist.lock().unwrap();
        for output in outputs {
            match output {
                CutterOutput::Init(init) => match playlist.as_mut() {
                    None => {
                        *playlist = Some(LivePlaylist::new(self.settings.playlist.clone(), init))
                    }
                    // The same configuration again (e.g. a repeated sequence header): nothing
                    // changes for a player.
                    Some(p) if p.init() == init => {}
                    // A new configuration: a discontinuity and a new init segment URI.
                    Some(p) => p.set_init(init),
                },
                CutterOutput::Part {
                    part,
                    starts_segment,
                    wall_ms,
                } => {
                    if let Some(p) = playlist.as_mut() {
                        if let Err(e) = p.push_part(part, starts_segment, wall_ms) {
                            tracing::warn!(stream = %name, error = %e, "HLS part refused");
                        }
                    }
                }
            }
        }
        drop(playlist);
        muxer.version.send_modify(|v| *v += 1);
    }
}

/// How often a muxer whose publisher left looks for the name to be published again.
const REATTACH_INTERVAL: Duration = Duration::from_millis(100);

/// What a muxer reads: a reader of the stream, and when that stream started (to tell it from
/// a new stream under the same name).
struct Source {
    reader: Reader,
    started: Option<Instant>,
}

/// The next event of the muxer's reader; never, while it has none.
async fn next_event(source: &mut Option<Reader>) -> Option<ReaderEvent> {
    match source {
        Some(reader) => reader.recv().await,
        None => std::future::pending().await,
    }
}

enum CutterOutput {
    Init(Bytes),
    Part {
        part: Part,
        starts_segment: bool,
        wall_ms: u64,
    },
}

/// Cuts a stream into parts and segments: a segment starts at the first video keyframe after
/// the segment target; a part closes once it holds `part_target` of the leading track (video
/// if any, else audio).
struct PartCutter {
    config: HlsConfig,
    tracks: Vec<Track>,
    clock: SampleClock,
    /// Samples of the part being built, per track, in the init segment's order.
    pending: Vec<(TrackId, Vec<Sample>)>,
    pending_duration: Duration,
    pending_independent: bool,
    pending_starts_segment: bool,
    pending_wall_ms: u64,
    segment_duration: Duration,
    sequence: u32,
    started: bool,
    /// The init segment of `tracks` while it waits for a keyframe that gives a picture size.
    pending_init: Option<PendingInit>,
    /// An init segment was made before: the next one is a change of configuration.
    had_init: bool,
    /// The next H.264 keyframe carries its parameter sets in band (see the module docs).
    parameter_sets_in_band: bool,
}

impl PartCutter {
    fn new(config: HlsConfig) -> Self {
        PartCutter {
            config,
            tracks: Vec::new(),
            clock: SampleClock::default(),
            pending: Vec::new(),
            pending_duration: Duration::ZERO,
            pending_independent: false,
            pending_starts_segment: false,
            pending_wall_ms: 0,
            segment_duration: Duration::ZERO,
            sequence: 0,
            started: false,
            pending_init: None,
            had_init: false,
            parameter_sets_in_band: false,
        }
    }

    /// Ends the part being built (what the publisher sent until now goes out) and starts
    /// again at the next keyframe of a new reader of the stream.
    fn finish(&mut self) -> Vec<CutterOutput> {
        let part = self.flush_part();
        self.restart();
        part.into_iter().collect()
    }

    /// The part being built, if it has media of the leading track (a part must last).
    fn flush_part(&mut self) -> Option<CutterOutput> {
        if self.pending_duration.is_zero() {
            return None;
        }
        self.finish_part()
    }

    /// A new publisher under the same name: its timestamps and parameter sets start afresh.
    fn reattach(&mut self) {
        self.restart();
        self.parameter_sets_in_band = true;
    }

    fn leading_kind(&self) -> MediaKind {
        if self.tracks.iter().any(|t| t.kind() == MediaKind::Video) {
            MediaKind::Video
        } else {
            MediaKind::Audio
        }
    }

    fn handle(&mut self, event: ReaderEvent) -> Vec<CutterOutput> {
        let mut out = Vec::new();
        match event {
            ReaderEvent::Tracks(set) => {
                let playable: Vec<Track> = set
                    .tracks
                    .iter()
                    .filter(|t| switchyard_fmp4::supports(&t.codec))
                    .cloned()
                    .collect();
                if playable != self.tracks {
                    // What came with the old configuration goes out with it.
                    out.extend(self.flush_part());
                    self.tracks = playable;
                    self.restart();
                    self.pending_init = None;
                    if !self.tracks.is_empty() {
                        let mut pending = PendingInit::new(self.tracks.clone());
                        match pending.offer(None) {
                            Some(init) => self.init_ready(init, &mut out),
                            None => self.pending_init = Some(pending),
                        }
                    }
                }
            }
            ReaderEvent::Lost { .. } => {
                // A gap: drop the part in progress and restart at the next keyframe.
                self.restart();
            }
            ReaderEvent::Frame(frame) => {
                if let Some(pending) = &mut self.pending_init {
                    let Some(init) = pending.offer(Some(&frame.frame)) else {
                        return out;
                    };
                    self.pending_init = None;
                    self.init_ready(init, &mut out);
                }
                let Some((kind, clock_rate)) = self
                    .tracks
                    .iter()
                    .find(|t| t.id == frame.frame.track)
                    .map(|t| (t.kind(), t.clock_rate.max(1)))
                else {
                    return out;
                };
                let leading = kind == self.leading_kind();
                if !self.started {
                    if !(leading && (frame.frame.keyframe || kind == MediaKind::Audio)) {
                        return out;
                    }
                    self.started = true;
                }
                // `previous` is the preceding frame of the same track as `frame`.
                let Some((previous, duration)) = self.clock.push(frame.clone()) else {
                    if self.pending.iter().all(|(_, s)| s.is_empty()) && leading {
                        self.begin_part(frame.frame.keyframe, true);
                    }
                    return out;
                };
                let mut sample = Sample::from_frame(&previous.frame, duration);
                if sample.keyframe && self.parameter_sets_in_band {
                    if let Some(track) = self.tracks.iter().find(|t| t.id == previous.frame.track) {
                        if track.kind() == MediaKind::Video {
                            sample.data = with_parameter_sets(&track.codec, sample.data);
                            self.parameter_sets_in_band = false;
                        }
                    }
                }
                self.add_sample(previous.frame.track, sample);
                if leading {
                    self.pending_duration +=
                        Duration::from_secs_f64(duration as f64 / clock_rate as f64);
                    // `frame` (the next leading frame) begins the next part; cut before it?
                    let segment_due =
                        self.segment_duration + self.pending_duration >= self.config.segment_target;
                    let cut_segment = frame.frame.keyframe && segment_due;
                    if cut_segment || self.pending_duration >= self.config.part_target {
                        if let Some(part) = self.finish_part() {
                            out.push(part);
                        }
                        if cut_segment {
                            self.segment_duration = Duration::ZERO;
                        }
                        self.begin_part(frame.frame.keyframe, cut_segment);
                    }
                }
            }
        }
        out
    }

    fn init_ready(
        &mut self,
        init: Result<Bytes, switchyard_fmp4::Fmp4Error>,
        out: &mut Vec<CutterOutput>,
    ) {
        match init {
            Ok(init) => {
                self.parameter_sets_in_band |= self.had_init;
                self.had_init = true;
                out.push(CutterOutput::Init(init));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an fMP4 init segment for HLS");
                self.tracks.clear();
            }
        }
    }

    fn restart(&mut self) {
        self.clock.reset();
        self.pending = self.tracks.iter().map(|t| (t.id, Vec::new())).collect();
        self.pending_duration = Duration::ZERO;
        self.segment_duration = Duration::ZERO;
        self.started = false;
    }

    fn begin_part(&mut self, independent: bool, starts_segment: bool) {
        self.pending_independent = independent;
        self.pending_starts_segment = starts_segment;
        self.pending_wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
    }

    fn add_sample(&mut self, track: TrackId, s: Sample) {
        if let Some((_, samples)) = self.pending.iter_mut().find(|(id, _)| *id == track) {
            samples.push(s);
        }
    }

    fn finish_part(&mut self) -> Option<CutterOutput> {
        let fragments: Vec<TrackFragment> = self
            .pending
            .iter_mut()
            .filter(|(_, s)| !s.is_empty())
            .map(|(track, samples)| TrackFragment {
                track: *track,
                samples: std::mem::take(samples),
            })
            .collect();
        let duration = std::mem::replace(&mut self.pending_duration, Duration::ZERO);
        if fragments.is_empty() {
            return None;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let data = match switchyard_fmp4::fragment(self.sequence, &fragments, &self.tracks) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an HLS part");
                return None;
            }
        };
        self.segment_duration += duration;
        Some(CutterOutput::Part {
            part: Part {
                data,
                duration,
                independent: self.pending_independent,
            },
            starts_segment: self.pending_starts_segment,
            wall_ms: self.pending_wall_ms,
        })
    }
}

/// An H.264 access unit with the SPS and PPS of `codec` in front, unless it has an SPS
/// already (see the module docs for why; the copy is made once per change of configuration).
/// Other codecs: as it is (an `hvc1` sample entry declares its parameter sets complete).
fn with_parameter_sets(codec: &CodecConfig, data: Bytes) -> Bytes {
    let CodecConfig::H264(avc) = codec else {
        return data;
    };
    let has_sps = switchyard_media::nal_units(&data)
        .any(|nal| nal.is_ok_and(|n| h264::nal_type(n) == h264::NAL_SPS));
    if has_sps {
        return data;
    }
    let sets = avc.sps_nals.iter().chain(&avc.pps_nals);
    let mut out = Vec::with_capacity(data.len() + sets.clone().map(|n| n.len() + 4).sum::<usize>());
    for nal in sets {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out.extend_from_slice(&data);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusConfig;
    use switchyard_fmp4::reader::InitInfo;
    use switchyard_media::Frame;

    fn tracks() -> (Track, Track) {
        // A real SPS/PPS pair (libx264 High 640x360).
        let sps = Bytes::from_static(&[
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
        ]);
        let pps = Bytes::from_static(&[0x68, 0xef, 0xbc, 0xb0]);
        let avc = h264::AvcConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap();
        let video = Track {
            id: TrackId(1),
            codec: CodecConfig::H264(avc),
            clock_rate: 90_000,
        };
        let audio = Track {
            id: TrackId(2),
            codec: CodecConfig::Opus {
                channels: 2,
                head: None,
            },
            clock_rate: 48_000,
        };
        (video, audio)
    }

    fn video(n: i64) -> Frame {
        Frame {
            track: TrackId(1),
            pts: n * 3600,
            dts: n * 3600,
            keyframe: n % 25 == 0,
            data: Bytes::from(vec![0, 0, 0, 4, 0x41, 0, 0, n as u8]),
        }
    }

    fn opus(n: i64) -> Frame {
        Frame {
            track: TrackId(2),
            pts: n * 960,
            dts: n * 960,
            keyframe: true,
            data: Bytes::from(vec![0xfc; 180]),
        }
    }

    /// A WebRTC pull announces its video with the first keyframe and its audio when the first
    /// audio packet comes, a few frames later (80 ms on a loaded machine). A muxer asked for
    /// in between must not make its init segment without the audio: players that keep the
    /// first init segment (ffmpeg) read the audio that comes later as video.
    #[tokio::test(start_paused = true)]
    async fn a_muxer_asked_for_before_the_audio_joins_starts_with_it() {
        let registry = Registry::new(BusConfig::default());
        let mut publisher = registry
            .publish("live/pulled", Peer::new("whep-pull", None))
            .unwrap();
        let (v, a) = tracks();
        publisher.set_tracks(vec![v.clone()]);
        for n in 0..2 {
            publisher.push(video(n));
        }
        let settings = HlsSettings {
            playlist: HlsConfig::default(),
            idle_timeout: Duration::from_secs(30),
            always_on: false,
            audio_codec: HlsAudio::Source,
        };
        let outputs = HlsOutputs::new(registry.clone(), settings, CancellationToken::new());
        let asked = tokio::spawn({
            let outputs = outputs.clone();
            async move { outputs.muxer("live/pulled").await }
        });
        tokio::time::sleep(Duration::from_millis(80)).await;
        publisher.set_tracks(vec![v, a]);
        let muxer = asked.await.unwrap().unwrap();
        // One second of both, from a keyframe.
        for n in 25..50 {
            publisher.push(video(n));
            for k in 0..2 {
                publisher.push(opus(n * 2 + k));
            }
        }
        let mut seen = muxer.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while muxer.with_playlist(|p| p.next_part() >= (0, 2)) != Some(true) {
            assert!(muxer.changed(&mut seen, deadline).await, "no parts");
        }
        let (first, discontinuity) = muxer
            .with_playlist(|p| (p.init_segment(0), p.discontinuity_sequence()))
            .unwrap();
        let first = first.expect("the first init segment is in use");
        let init = InitInfo::parse(&first).unwrap();
        assert!(init.video().is_some(), "{init:?}");
        assert!(
            init.audio().is_some(),
            "the first init segment has the audio: {init:?}"
        );
        assert_eq!(discontinuity, None, "one configuration from the start");
    }
}
