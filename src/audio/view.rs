//! Converted views: a reader whose output cannot carry the stream's audio codec reads a view of
//! the stream, derived on the bus ([`Registry::derived_publisher`]), whose video frames are the
//! source's own and whose audio is re-encoded; one view per stream and target codec.

#[cfg(feature = "transcode")]
use super::convert;
use super::need::{AudioCodec, AudioNeed};
#[cfg(feature = "transcode")]
use super::settings::{settings, AudioSettings};
use crate::bus::{BusError, Peer, Reader, Registry, Stream};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A converted view stops this long after its last reader left.
pub const IDLE_STOP: Duration = Duration::from_secs(5);

/// How long a subscriber waits for a new stream's tracks before deciding what it needs.
const TRACKS_WAIT: Duration = Duration::from_secs(5);
/// How long a subscriber of a young stream with video but no audio yet waits for its audio
/// (RTMP publishers announce the two one after the other; a WebRTC pull's audio can come
/// after its first keyframe), counted from the stream's first tracks.
const AUDIO_WAIT: Duration = Duration::from_millis(1500);

/// Process totals for `/metrics`: frames out of conversions to AAC and to Opus, and corrupt
/// frames skipped.
pub static CONVERTED_TO_AAC: AtomicU64 = AtomicU64::new(0);
pub static CONVERTED_TO_OPUS: AtomicU64 = AtomicU64::new(0);
pub static CORRUPT_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Whether this build can convert audio.
pub const AVAILABLE: bool = cfg!(feature = "transcode");

/// Why a conversion cannot run in a build without the feature.
#[cfg(not(feature = "transcode"))]
const UNAVAILABLE: &str = "this build has no audio conversion: build with `--features transcode` (needs libavcodec); readers get the source audio as it is, or none where their protocol cannot carry it";

/// One conversion of a stream's audio to one codec, as the API shows it.
pub struct Conversion {
    pub target: AudioCodec,
    /// The running converted view; locked while readers attach and while the converter
    /// decides to stop, so a reader never attaches to a view that is stopping.
    view: Mutex<Weak<Stream>>,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub corrupt_frames: AtomicU64,
    /// Why the conversion does not run (no feature, or the converter could not be made).
    problem: Mutex<Option<String>>,
}

/// A conversion's state for the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversionInfo {
    pub codec: AudioCodec,
    /// `running`, `idle` (no reader needs it now) or `unavailable`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub frames_in: u64,
    pub frames_out: u64,
    pub corrupt_frames: u64,
}

impl Conversion {
    fn new(target: AudioCodec) -> Self {
        Conversion {
            target,
            view: Mutex::new(Weak::new()),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            corrupt_frames: AtomicU64::new(0),
            problem: Mutex::new(None),
        }
    }

    pub fn info(&self) -> ConversionInfo {
        let problem = self.problem.lock().unwrap().clone();
        let running = self.view.lock().unwrap().strong_count() > 0;
        ConversionInfo {
            codec: self.target,
            state: match (&problem, running) {
                (_, true) => "running",
                (Some(_), false) => "unavailable",
                (None, false) => "idle",
            },
            reason: problem,
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            corrupt_frames: self.corrupt_frames.load(Ordering::Relaxed),
        }
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap() = problem;
    }
}

/// The audio conversions readers of a stream asked for, kept with the stream on the bus
/// ([`Stream::attached`]), one per target codec.
#[derive(Default)]
struct Conversions(Mutex<Vec<Arc<Conversion>>>);

/// The conversion of `stream` to `target`, made on first use.
fn conversion(stream: &Stream, target: AudioCodec) -> Arc<Conversion> {
    let conversions = stream.attached::<Conversions>();
    let mut all = conversions.0.lock().unwrap();
    if let Some(c) = all.iter().find(|c| c.target == target) {
        return c.clone();
    }
    let c = Arc::new(Conversion::new(target));
    all.push(c.clone());
    c
}

/// Attaches a reader to `name` whose audio is in a codec `need` allows, converting when the
/// stream's audio is not. Waits briefly for a new stream's tracks, since what to convert
/// depends on them.
pub async fn subscribe(
    registry: &Registry,
    name: &str,
    peer: Peer,
    need: AudioNeed,
) -> Result<Reader, BusError> {
    let stream = stream_called(registry, name)?;
    settled_tracks(&stream).await;
    Ok(reader_of(registry, &stream, peer, need))
}

fn stream_called(registry: &Registry, name: &str) -> Result<Arc<Stream>, BusError> {
    registry
        .get(name)
        .ok_or_else(|| BusError::NotFound(name.to_string()))
}

/// Like [`subscribe`], deciding on the stream's tracks as they are now.
pub fn subscribe_now(
    registry: &Registry,
    name: &str,
    peer: Peer,
    need: AudioNeed,
) -> Result<Reader, BusError> {
    let stream = stream_called(registry, name)?;
    Ok(reader_of(registry, &stream, peer, need))
}

/// A reader of `stream`, or of its converted view when its audio is not what `need` allows.
fn reader_of(registry: &Registry, stream: &Arc<Stream>, peer: Peer, need: AudioNeed) -> Reader {
    // A new reader starts sooner on a fresh keyframe where the publisher can make one.
    stream.request_keyframe();
    let tracks = stream.tracks().borrow().clone();
    let Some(target) = tracks.audio().and_then(|a| need.target_for(&a.codec)) else {
        return Reader::new(stream.clone(), peer);
    };
    let conversion = conversion(stream, target);
    #[cfg(feature = "transcode")]
    return view_reader(registry, stream, &conversion, peer);
    #[cfg(not(feature = "transcode"))]
    {
        let _ = registry;
        if conversion.problem.lock().unwrap().is_none() {
            tracing::warn!(stream = %stream.name(), to = target.name(), "{UNAVAILABLE}");
            conversion.set_problem(Some(UNAVAILABLE.to_string()));
        }
        Reader::new(stream.clone(), peer)
    }
}

/// Whether what to convert can be decided on the stream's tracks now: it has tracks, and
/// audio unless its tracks are too old for its audio still to come. Counted from its first
/// tracks, not from [`Stream::started`]: a pull claims its name before it connects, which can
/// take longer than [`AUDIO_WAIT`].
pub fn tracks_settled(stream: &Stream) -> bool {
    let tracks = stream.tracks().borrow().clone();
    !tracks.tracks.is_empty()
        && (tracks.audio().is_some()
            || stream
                .tracks_since()
                .is_some_and(|since| since.elapsed() >= AUDIO_WAIT))
}

/// Waits (up to [`TRACKS_WAIT`]) until [`tracks_settled`].
pub async fn settled_tracks(stream: &Arc<Stream>) {
    let mut watch = stream.tracks();
    let deadline = tokio::time::Instant::now() + TRACKS_WAIT;
    loop {
        let tracks = watch.borrow_and_update().clone();
        if tracks_settled(stream) {
            return;
        }
        let until = if tracks.tracks.is_empty() {
            deadline
        } else {
            let since = stream
                .tracks_since()
                .unwrap_or_else(std::time::Instant::now);
            deadline.min(tokio::time::Instant::from_std(since + AUDIO_WAIT))
        };
        match tokio::time::timeout_at(until, watch.changed()).await {
            Ok(Ok(())) => {}
            // No (more) tracks in time, or the stream ended: decide on what there is.
            _ => return,
        }
    }
}

/// A reader of the converted view, started if it is not running.
#[cfg(feature = "transcode")]
fn view_reader(
    registry: &Registry,
    stream: &Arc<Stream>,
    conversion: &Arc<Conversion>,
    peer: Peer,
) -> Reader {
    let mut view = conversion.view.lock().unwrap();
    if let Some(running) = view.upgrade() {
        return Reader::new(running, peer);
    }
    let mut publisher = registry.derived_publisher(stream);
    *view = Arc::downgrade(publisher.stream());
    // The view's tracks are there before its first reader asks (WebRTC answers from them).
    let source = Reader::new(stream.clone(), Peer::new("transcode", None)).uncounted();
    let mut feeder = ViewFeeder::new(conversion.clone(), publisher.stream().name().to_string());
    feeder.on_tracks(&stream.tracks().borrow().clone(), &mut publisher);
    let reader = Reader::new(publisher.stream().clone(), peer);
    tracing::info!(stream = %stream.name(), to = conversion.target.name(), "audio conversion started");
    tokio::spawn(feeder.run(source, publisher));
    reader
}

/// Feeds a converted view: video as it is, audio through the converter.
#[cfg(feature = "transcode")]
struct ViewFeeder {
    conversion: Arc<Conversion>,
    stream: String,
    settings: AudioSettings,
    converter: Option<convert::Converter>,
    /// The source's audio track the converter was made for.
    source_audio: Option<switchyard_media::Track>,
    last_tracks: Option<Vec<switchyard_media::Track>>,
    out: Vec<switchyard_media::Frame>,
}

#[cfg(feature = "transcode")]
impl ViewFeeder {
    fn new(conversion: Arc<Conversion>, stream: String) -> Self {
        ViewFeeder {
            conversion,
            stream,
            settings: settings(),
            converter: None,
            source_audio: None,
            last_tracks: None,
            out: Vec::new(),
        }
    }

    /// Runs until the source ends or the view has had no reader for [`IDLE_STOP`].
    async fn run(mut self, mut source: Reader, mut publisher: crate::bus::Publisher) {
        use crate::bus::ReaderEvent;
        let mut idle_since: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let target = self.conversion.target.name();
        loop {
            let event = tokio::select! {
                e = source.recv() => e,
                _ = tick.tick() => {
                    if stop_if_idle(&self.conversion, &publisher, &mut idle_since) {
                        tracing::info!(stream = %self.stream, to = target, "audio conversion stopped: no readers");
                        return;
                    }
                    continue;
                }
            };
            match event {
                None => break,
                Some(ReaderEvent::Tracks(set)) => self.on_tracks(&set, &mut publisher),
                Some(ReaderEvent::Frame(frame)) => self.on_frame(&frame.frame, &publisher),
                Some(ReaderEvent::Lost { .. }) => {
                    if let Some(c) = self.converter.as_mut() {
                        c.restart_timeline();
                    }
                }
            }
        }
        // The source ended: the converter's last audio goes out, then readers of the view
        // drain and end with it.
        if let Some(c) = self.converter.as_mut() {
            c.finish(&mut self.out);
            self.publish_out(&publisher);
        }
        *self.conversion.view.lock().unwrap() = Weak::new();
        tracing::info!(stream = %self.stream, to = target, "audio conversion ended with its stream");
    }

    /// Makes a converter for new source audio and announces the view's tracks.
    fn on_tracks(&mut self, set: &crate::bus::TrackSet, publisher: &mut crate::bus::Publisher) {
        let target = self.conversion.target;
        let audio = set.audio().cloned();
        if audio != self.source_audio {
            self.converter = None;
            self.conversion.set_problem(None);
            if let Some(a) = audio.as_ref().filter(|a| !target.is(&a.codec)) {
                match convert::Converter::new(a, target, &self.settings) {
                    Ok(c) => self.converter = Some(c),
                    Err(e) => {
                        let why = format!(
                            "cannot convert {} to {}: {e}",
                            a.codec.name(),
                            target.name()
                        );
                        tracing::warn!(stream = %self.stream, "{why}; audio left out");
                        self.conversion.set_problem(Some(why));
                    }
                }
            }
            self.source_audio = audio;
        }
        let tracks: Vec<_> = set
            .tracks
            .iter()
            .filter_map(|t| match (&self.source_audio, &self.converter) {
                (Some(a), Some(c)) if t.id == a.id => Some(c.output_track()),
                // Audio that cannot be converted is left out of the view.
                (Some(a), None) if t.id == a.id && !target.is(&a.codec) => None,
                _ => Some(t.clone()),
            })
            .collect();
        if self.last_tracks.as_ref() != Some(&tracks) {
            self.last_tracks = Some(tracks.clone());
            publisher.set_tracks(tracks);
        }
    }

    fn on_frame(&mut self, frame: &switchyard_media::Frame, publisher: &crate::bus::Publisher) {
        let is_audio = self
            .source_audio
            .as_ref()
            .is_some_and(|a| a.id == frame.track);
        if !is_audio {
            publisher.push(frame.clone());
            return;
        }
        let conversion = &self.conversion;
        let Some(c) = self.converter.as_mut() else {
            // Audio already in the target codec passes; audio that cannot be converted not.
            if self
                .source_audio
                .as_ref()
                .is_some_and(|a| conversion.target.is(&a.codec))
            {
                publisher.push(frame.clone());
            }
            return;
        };
        conversion.frames_in.fetch_add(1, Ordering::Relaxed);
        let pushed = c.push(frame, &mut self.out);
        if pushed.corrupt {
            let n = conversion.corrupt_frames.fetch_add(1, Ordering::Relaxed) + 1;
            CORRUPT_FRAMES.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() {
                tracing::warn!(stream = %self.stream, corrupt_frames = n, "corrupt audio frame skipped");
            }
        }
        self.publish_out(publisher);
    }

    /// Publishes (and counts) the converter's output.
    fn publish_out(&mut self, publisher: &crate::bus::Publisher) {
        let n = self.out.len() as u64;
        self.conversion.frames_out.fetch_add(n, Ordering::Relaxed);
        match self.conversion.target {
            AudioCodec::Aac => &CONVERTED_TO_AAC,
            AudioCodec::Opus => &CONVERTED_TO_OPUS,
        }
        .fetch_add(n, Ordering::Relaxed);
        for f in self.out.drain(..) {
            publisher.push(f);
        }
    }
}

/// True (and the view detached) once the view has had no reader for [`IDLE_STOP`].
#[cfg(feature = "transcode")]
fn stop_if_idle(
    conversion: &Conversion,
    publisher: &crate::bus::Publisher,
    idle_since: &mut Option<tokio::time::Instant>,
) -> bool {
    let mut view = conversion.view.lock().unwrap();
    // The publisher holds one reference; readers (and outputs holding the view) the others.
    if Arc::strong_count(publisher.stream()) > 1 {
        *idle_since = None;
        return false;
    }
    let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
    if since.elapsed() < IDLE_STOP {
        return false;
    }
    *view = Weak::new();
    true
}

/// The stream's conversions, for the API.
pub fn conversions(stream: &Stream) -> Vec<ConversionInfo> {
    stream
        .attached::<Conversions>()
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.info())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{BusConfig, ReaderEvent};
    use bytes::Bytes;
    use switchyard_media::CodecConfig;
    use switchyard_media::{Frame, G711Law, Track, TrackId};

    /// A stream with VP8 video and G.711 audio, which RTMP and WebRTC readers cannot take as
    /// it is.
    fn g711_stream(registry: &Registry) -> crate::bus::Publisher {
        let mut publisher = registry.publish("cam", Peer::new("rtsp", None)).unwrap();
        publisher.set_tracks(vec![
            Track {
                id: TrackId(1),
                codec: CodecConfig::Vp8,
                clock_rate: 90_000,
            },
            Track {
                id: TrackId(2),
                codec: CodecConfig::G711 {
                    law: G711Law::MuLaw,
                    channels: 1,
                },
                clock_rate: 8000,
            },
        ]);
        publisher
    }

    /// 2 s of frames; the video payloads are kept in `videos`.
    fn publish_frames(publisher: &crate::bus::Publisher, videos: &mut Vec<Bytes>) {
        for i in 0..100i64 {
            if i % 2 == 0 {
                let data = Bytes::from(vec![i as u8; 1000]);
                videos.push(data.clone());
                publisher.push(Frame {
                    track: TrackId(1),
                    pts: i * 1800,
                    dts: i * 1800,
                    keyframe: i == 0,
                    data,
                });
            }
            publisher.push(Frame {
                track: TrackId(2),
                pts: i * 160,
                dts: i * 160,
                keyframe: true,
                // mu-law of a quiet sawtooth
                data: (0..160u8)
                    .map(|k| 0xf0 | (k & 0x0f))
                    .collect::<Vec<u8>>()
                    .into(),
            });
        }
    }

    fn drain(reader: &mut Reader) -> Vec<ReaderEvent> {
        let mut events = Vec::new();
        while let crate::bus::TryRecv::Event(e) = reader.try_recv() {
            events.push(e);
        }
        events
    }

    #[cfg(feature = "transcode")]
    #[tokio::test(start_paused = true)]
    async fn readers_share_one_conversion_that_leaves_video_alone_and_stops_when_unused() {
        let registry = Registry::new(BusConfig::default());
        let publisher = g711_stream(&registry);
        let mut videos = Vec::new();
        let rtmp = || Peer::new("rtmp", None);
        let mut first = subscribe(&registry, "cam", rtmp(), AudioNeed::Aac)
            .await
            .unwrap();
        let mut second = subscribe(&registry, "cam", rtmp(), AudioNeed::Aac)
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(first.stream(), second.stream()),
            "one view for both readers"
        );
        publish_frames(&publisher, &mut videos);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for reader in [&mut first, &mut second] {
            let events = drain(reader);
            let Some(ReaderEvent::Tracks(tracks)) = events.first() else {
                panic!("tracks first: {events:?}");
            };
            let audio = tracks.audio().unwrap();
            assert!(matches!(audio.codec, CodecConfig::Aac(_)), "{tracks:?}");
            assert_eq!(audio.clock_rate, 48_000);
            let frames: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    ReaderEvent::Frame(f) => Some(&f.frame),
                    _ => None,
                })
                .collect();
            // Video frames are the publisher's own bytes, not copies.
            let video: Vec<_> = frames.iter().filter(|f| f.track == TrackId(1)).collect();
            assert_eq!(video.len(), videos.len());
            for (got, sent) in video.iter().zip(&videos) {
                assert_eq!(got.data.as_ptr(), sent.as_ptr());
            }
            let aac = frames.iter().filter(|f| f.track == TrackId(2)).count();
            assert!(aac >= 90, "2 s of AAC at 48 kHz: {aac} frames");
        }
        // Readers of the view count as the stream's readers; the converter itself does not.
        let source = registry.get("cam").unwrap();
        assert_eq!(source.readers_by_protocol(), vec![("rtmp", 2)]);
        let info = conversions(&source);
        assert_eq!(info.len(), 1);
        assert_eq!((info[0].codec, info[0].state), (AudioCodec::Aac, "running"));
        assert_eq!(info[0].frames_in, 100);

        // Readers that take G.711's replacement as it is get the source.
        let mse = subscribe(
            &registry,
            "cam",
            Peer::new("mse", None),
            AudioNeed::AacOrOpus,
        )
        .await
        .unwrap();
        assert!(Arc::ptr_eq(mse.stream(), first.stream()), "AAC view shared");
        drop((first, second, mse));
        tokio::time::sleep(IDLE_STOP + Duration::from_secs(1)).await;
        assert_eq!(conversions(&source)[0].state, "idle");
        assert!(source.readers_by_protocol().is_empty());
    }

    #[cfg(not(feature = "transcode"))]
    #[tokio::test]
    async fn without_the_feature_readers_get_the_source_and_the_conversion_is_unavailable() {
        let registry = Registry::new(BusConfig::default());
        let publisher = g711_stream(&registry);
        let mut reader = subscribe(&registry, "cam", Peer::new("webrtc", None), AudioNeed::Opus)
            .await
            .unwrap();
        let source = registry.get("cam").unwrap();
        assert!(Arc::ptr_eq(reader.stream(), &source));
        publish_frames(&publisher, &mut Vec::new());
        let audio = drain(&mut reader)
            .iter()
            .filter(|e| matches!(e, ReaderEvent::Frame(f) if f.frame.track == TrackId(2)))
            .count();
        assert_eq!(audio, 100, "the G.711 frames as they are");
        let info = conversions(&source);
        assert_eq!(
            (info[0].codec, info[0].state),
            (AudioCodec::Opus, "unavailable")
        );
        assert!(info[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("--features transcode"));
    }

    /// A pull claims its name, then connects; its video is announced with its first keyframe
    /// and its audio a moment later. However long connecting took, the audio is waited for.
    #[test]
    fn a_pull_that_took_long_to_connect_still_waits_for_its_audio() {
        let registry = Registry::new(BusConfig::default());
        let mut publisher = registry
            .publish("pulled", Peer::new("whep-pull", None))
            .unwrap();
        let stream = registry.get("pulled").unwrap();
        let video = Track {
            id: TrackId(1),
            codec: CodecConfig::Vp8,
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
        // Connecting takes longer than the wait for audio.
        std::thread::sleep(AUDIO_WAIT + Duration::from_millis(100));
        assert!(!tracks_settled(&stream), "no tracks yet");
        publisher.set_tracks(vec![video.clone()]);
        assert!(!tracks_settled(&stream), "the audio may still come");
        publisher.set_tracks(vec![video, audio]);
        assert!(tracks_settled(&stream));
    }
}
