//! RTMP publish input: FLV audio/video message bodies from an RTMP publisher (OBS, ffmpeg)
//! become tracks and frames on the bus.
//!
//! The RTMP session itself (handshake, chunking, commands) is in `crate::rtmp`; this file is the
//! media half, used both for publishers that connect to us and for RTMP pulls ([`pull`]): sequence headers become track configs, frames get timestamps on the stream's
//! clock (FLV milliseconds, extended past 32 bits), NAL lengths are normalised to 4 bytes and
//! checked, and anything malformed is an error that ends the session.

use crate::bus::Publisher;
use crate::inputs::pull::{PullError, PullSink};
use crate::rtmp::client::{ClientError, RtmpClient, RtmpUrl, TlsTrust};
use bytes::Bytes;
use rml_rtmp::sessions::ClientSessionEvent;
use std::time::Duration;
use switchyard_flv::{parse_audio, parse_video, AudioTag, FlvError, VideoCodec, VideoTag};
use switchyard_media::{
    h264, rescale, to_four_byte_lengths, validate_length_prefixed, vp8::Vp8KeyframeInfo,
    vp9::Vp9KeyframeInfo, CodecConfig, Frame, Track, TrackId,
};

pub const VIDEO_TRACK: TrackId = TrackId(1);
pub const AUDIO_TRACK: TrackId = TrackId(2);
const VIDEO_CLOCK: u32 = 90_000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Flv(#[from] FlvError),
    #[error("video frame at {timestamp_ms} ms: {reason}")]
    BadFrame { timestamp_ms: u32, reason: String },
}

/// Extends 32-bit RTMP millisecond timestamps (which wrap after 49.7 days, and which some
/// publishers start anywhere) into a monotonic-enough 64-bit timeline.
#[derive(Default)]
struct Unwrapper {
    last: Option<(u32, i64)>,
}

impl Unwrapper {
    fn unwrap(&mut self, ts: u32) -> i64 {
        let value = match self.last {
            None => ts as i64,
            Some((prev, prev_ext)) => prev_ext + ts.wrapping_sub(prev) as i32 as i64,
        };
        self.last = Some((ts, value));
        value
    }
}

/// Per-track timing state.
///
/// Quirk policy: publishers under load (seen with GStreamer's live test sources, whose
/// timestamps are rounded to FLV milliseconds) repeat or reverse a track's timestamps. Muxers
/// and players downstream (ffmpeg's among them) require strictly increasing decode times, so
/// such a frame is placed 1 ms after its predecessor; the drift ends as soon as the publisher's
/// clock is ahead again.
#[derive(Default)]
struct TrackClock {
    unwrapper: Unwrapper,
    last_dts: Option<i64>,
}

impl TrackClock {
    fn dts(&mut self, timestamp_ms: u32, clock_rate: u32) -> i64 {
        let ms = self.unwrapper.unwrap(timestamp_ms);
        let mut dts = rescale(ms, 1000, clock_rate);
        if let Some(last) = self.last_dts {
            let one_ms = (clock_rate as i64).div_euclid(1000).max(1)
                + i64::from(!clock_rate.is_multiple_of(1000));
            dts = dts.max(last + one_ms);
        }
        self.last_dts = Some(dts);
        dts
    }
}

/// Turns one RTMP publisher's media messages into bus tracks and frames.
pub struct RtmpIngest {
    publisher: Publisher,
    video: Option<(Track, u8)>,
    audio: Option<Track>,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    /// Picture size from `onMetaData`, for codecs whose config we do not parse for it.
    metadata_size: Option<(u32, u32)>,
    frames_before_config: u64,
}

impl RtmpIngest {
    pub fn new(publisher: Publisher) -> Self {
        RtmpIngest {
            publisher,
            video: None,
            audio: None,
            video_clock: TrackClock::default(),
            audio_clock: TrackClock::default(),
            metadata_size: None,
            frames_before_config: 0,
        }
    }

    pub fn publisher_mut(&mut self) -> &mut Publisher {
        &mut self.publisher
    }

    pub fn set_metadata_size(&mut self, width: Option<u32>, height: Option<u32>) {
        if let (Some(w), Some(h)) = (width, height) {
            self.metadata_size = Some((w, h));
        }
    }

    fn publish_tracks(&mut self) {
        let tracks: Vec<Track> = self
            .video
            .iter()
            .map(|(t, _)| t.clone())
            .chain(self.audio.iter().cloned())
            .collect();
        self.publisher.set_tracks(tracks);
    }

    /// Handles one video message body.
    pub fn video(&mut self, body: Bytes, timestamp_ms: u32) -> Result<(), IngestError> {
        let (codec, tag) = parse_video(body)?;
        match tag {
            VideoTag::SequenceStart(codec) => self.set_video_config(codec),
            VideoTag::Frame {
                keyframe,
                composition_ms,
                data,
            } => {
                if self.video.is_none() && keyframe {
                    if let Some(implied) = implied_video_config(codec, &data) {
                        tracing::info!(stream = %self.publisher.stream().name(), "{} keyframe without a sequence start (a relay that does not know Enhanced RTMP drops it for late joiners): its configuration comes from the keyframe", implied.name());
                        self.set_video_config(implied);
                    }
                }
                let Some((track, length_size)) = &self.video else {
                    self.frames_before_config += 1;
                    return Ok(());
                };
                let bad = |reason: String| IngestError::BadFrame {
                    timestamp_ms,
                    reason,
                };
                let is_nal_codec =
                    matches!(track.codec, CodecConfig::H264(_) | CodecConfig::H265(_));
                let data = if !is_nal_codec {
                    data
                } else if *length_size == 4 {
                    validate_length_prefixed(&data).map_err(|e| bad(e.to_string()))?;
                    data
                } else {
                    to_four_byte_lengths(&data, *length_size as usize)
                        .map_err(|e| bad(e.to_string()))?
                };
                if data.is_empty() {
                    return Ok(());
                }
                // Trust the FLV frame type only when the access unit has an IDR (H.264) or the
                // frame tag says keyframe (VP8, RFC 6386 9.1), so that GOPs (and late joiners)
                // always start where a decoder can.
                let keyframe = keyframe
                    && match track.codec {
                        CodecConfig::H264(_) => h264::is_keyframe(&data),
                        CodecConfig::Vp8 => data[0] & 0x01 == 0,
                        _ => true,
                    };
                let dts = self.video_clock.dts(timestamp_ms, VIDEO_CLOCK);
                let pts = dts + rescale(composition_ms.max(0) as i64, 1000, VIDEO_CLOCK);
                self.publisher.push(Frame {
                    track: VIDEO_TRACK,
                    pts,
                    dts,
                    keyframe,
                    data,
                });
            }
            VideoTag::SequenceEnd | VideoTag::Ignored(_) => {}
        }
        Ok(())
    }

    fn set_video_config(&mut self, mut codec: CodecConfig) {
        let length_size = match &codec {
            CodecConfig::H264(c) => c.source_length_size,
            _ => 4,
        };
        if let (CodecConfig::H265(c), Some(size)) = (&mut codec, self.metadata_size) {
            c.resolution = Some(size);
        }
        if self.video.as_ref().is_some_and(|(t, _)| t.codec == codec) {
            return; // repeated, unchanged sequence header
        }
        tracing::info!(stream = %self.publisher.stream().name(), codec = %codec.rfc6381_codec(), "video track");
        self.video = Some((
            Track {
                id: VIDEO_TRACK,
                codec,
                clock_rate: VIDEO_CLOCK,
            },
            length_size,
        ));
        self.publish_tracks();
    }

    /// Handles one audio message body.
    pub fn audio(&mut self, body: Bytes, timestamp_ms: u32) -> Result<(), IngestError> {
        let (_, tag) = parse_audio(body)?;
        let (data, implied_config) = match tag {
            AudioTag::SequenceStart(codec) => {
                self.set_audio_config(codec);
                return Ok(());
            }
            AudioTag::Frame { data, config } => (data, config),
            AudioTag::SequenceEnd | AudioTag::Ignored(_) => return Ok(()),
        };
        if let Some(codec) = implied_config {
            self.set_audio_config(codec);
        }
        let Some(track) = &self.audio else {
            self.frames_before_config += 1;
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        let dts = self.audio_clock.dts(timestamp_ms, track.clock_rate);
        self.publisher.push(Frame {
            track: AUDIO_TRACK,
            pts: dts,
            dts,
            keyframe: true,
            data,
        });
        Ok(())
    }

    fn set_audio_config(&mut self, codec: CodecConfig) {
        if self.audio.as_ref().is_some_and(|t| t.codec == codec) {
            return;
        }
        let clock_rate = match &codec {
            CodecConfig::Aac(c) => c.sample_rate,
            CodecConfig::G711 { .. } => 8000,
            _ => 48000,
        };
        tracing::info!(stream = %self.publisher.stream().name(), codec = %codec.rfc6381_codec(), clock_rate, "audio track");
        self.audio = Some(Track {
            id: AUDIO_TRACK,
            codec,
            clock_rate,
        });
        self.publish_tracks();
    }
}

/// The configuration a VP8 or VP9 keyframe implies when no sequence start came before it:
/// these codecs need nothing out of band (VP9's `vpcC` is built from the keyframe's header).
/// RTMP relays that know only AVC and AAC (nginx-rtmp) replay no other sequence start to a
/// player that joins after the publisher started.
fn implied_video_config(codec: VideoCodec, keyframe: &[u8]) -> Option<CodecConfig> {
    match codec {
        VideoCodec::Vp8 => {
            Vp8KeyframeInfo::parse(keyframe)?;
            Some(CodecConfig::Vp8)
        }
        VideoCodec::Vp9 => Some(CodecConfig::Vp9 {
            vpcc: Vp9KeyframeInfo::parse(keyframe)?.vpcc(),
        }),
        _ => None,
    }
}

/// Pulls `url` from another RTMP server (play) and publishes it through `sink`, until the
/// source ends or fails; returns why.
pub async fn pull(
    url: &RtmpUrl,
    trust: &TlsTrust,
    connect_timeout: Duration,
    sink: &mut dyn PullSink,
) -> PullError {
    let connect = async {
        let mut client = RtmpClient::connect(url, trust).await?;
        client.play(&url.key).await?;
        Ok::<_, ClientError>(client)
    };
    let mut client = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(ClientError::Refused(why))) => {
            return PullError::retry(format!("the source refused to play: {why}"))
        }
        Ok(Err(e)) => return PullError::retry(e.to_string()),
        Err(_) => return PullError::retry(format!("no answer within {connect_timeout:?}")),
    };
    let mut ingest = match sink.publish() {
        Ok(p) => RtmpIngest::new(p),
        Err(e) => return PullError::retry(e.to_string()),
    };
    let mut running = false;
    loop {
        let events = tokio::select! {
            _ = ingest.publisher_mut().kicked() => return PullError::retry(format!("stream {}", ingest.publisher_mut().kick_reason())),
            r = tokio::time::timeout(connect_timeout, client.read_events()) => match r {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => return PullError::retry(e.to_string()),
                Err(_) => return PullError::retry(format!("no media for {connect_timeout:?}")),
            },
        };
        for event in events {
            let result = match event {
                ClientSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => ingest.video(data, timestamp.value),
                ClientSessionEvent::AudioDataReceived {
                    data, timestamp, ..
                } => ingest.audio(data, timestamp.value),
                ClientSessionEvent::StreamMetadataReceived { metadata } => {
                    ingest.set_metadata_size(metadata.video_width, metadata.video_height);
                    Ok(())
                }
                ClientSessionEvent::UnhandleableOnStatusCode { code }
                    if code.contains("UnpublishNotify") || code.contains("Play.Stop") =>
                {
                    return PullError::retry(format!("the source stream ended ({code})"));
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                return PullError::retry(e.to_string());
            }
        }
        if !running && !ingest.publisher_mut().tracks().tracks.is_empty() {
            running = true;
            sink.running();
        }
    }
}

impl Drop for RtmpIngest {
    fn drop(&mut self) {
        if self.frames_before_config > 0 {
            tracing::debug!(stream = %self.publisher.stream().name(), frames = self.frames_before_config, "frames dropped before their sequence header");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{BusConfig, Peer, ReaderEvent, Registry, TryRecv};
    use switchyard_flv::file::read_tags;

    fn ingest_fixture(name: &str) -> (Registry, Vec<ReaderEvent>) {
        let registry = Registry::new(BusConfig {
            reader_queue_frames: 4096,
            ..Default::default()
        });
        let publisher = registry.publish("live/t", Peer::new("rtmp", None)).unwrap();
        let mut reader = registry
            .subscribe("live/t", Peer::new("test", None))
            .unwrap();
        let mut ingest = RtmpIngest::new(publisher);
        let file = Bytes::from(
            std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap(),
        );
        for tag in read_tags(&file).unwrap() {
            match tag.tag_type {
                8 => ingest.audio(tag.body, tag.timestamp_ms).unwrap(),
                9 => ingest.video(tag.body, tag.timestamp_ms).unwrap(),
                _ => {}
            }
        }
        let mut events = Vec::new();
        while let TryRecv::Event(e) = reader.try_recv() {
            events.push(e);
        }
        (registry, events)
    }

    #[test]
    fn ffmpeg_capture_becomes_tracks_and_monotonic_frames() {
        let (_registry, events) = ingest_fixture("ffmpeg-h264-high-bf2-aac.flv");
        let last_tracks = events.iter().rev().find_map(|e| match e {
            ReaderEvent::Tracks(t) => Some(t.clone()),
            _ => None,
        });
        let tracks = last_tracks.unwrap();
        assert_eq!(tracks.video().unwrap().codec.rfc6381_codec(), "avc1.64001E");
        assert_eq!(tracks.audio().unwrap().clock_rate, 44100);
        let mut last_dts = [i64::MIN; 3];
        let mut video = 0;
        for e in &events {
            if let ReaderEvent::Frame(f) = e {
                let f = &f.frame;
                assert!(f.dts <= f.pts);
                assert!(f.dts >= last_dts[f.track.0 as usize]);
                last_dts[f.track.0 as usize] = f.dts;
                if f.track == VIDEO_TRACK {
                    video += 1;
                }
            }
        }
        assert_eq!(video, 25);
    }

    #[test]
    fn absurd_nal_length_and_bad_sps_are_errors() {
        let registry = Registry::new(BusConfig::default());
        let mut ingest = RtmpIngest::new(registry.publish("x", Peer::new("rtmp", None)).unwrap());
        let file = Bytes::from(
            std::fs::read(format!(
                "{}/fixtures/ffmpeg-h264-high-bf2-aac.flv",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        );
        let seq = read_tags(&file)
            .unwrap()
            .into_iter()
            .find(|t| t.tag_type == 9)
            .unwrap();
        ingest.video(seq.body, 0).unwrap();
        let absurd = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0x65, 0x88]);
        assert!(matches!(
            ingest.video(absurd, 40),
            Err(IngestError::BadFrame { .. })
        ));
        let bad_sps = Bytes::from_static(&[
            0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1e, 0xff, 0xe1, 0, 3, 0x67, 0xff, 0xff, 1, 0, 1, 0x68,
        ]);
        assert!(matches!(
            ingest.video(bad_sps, 80),
            Err(IngestError::Flv(_))
        ));
    }

    /// The tracks and frames `bodies` (video tag bodies, 40 ms apart) give.
    fn ingest_video(bodies: &[Bytes]) -> Vec<ReaderEvent> {
        let registry = Registry::new(BusConfig::default());
        let publisher = registry.publish("live/t", Peer::new("rtmp", None)).unwrap();
        let mut reader = registry
            .subscribe("live/t", Peer::new("test", None))
            .unwrap();
        let mut ingest = RtmpIngest::new(publisher);
        for (i, body) in bodies.iter().enumerate() {
            ingest.video(body.clone(), i as u32 * 40).unwrap();
        }
        let mut events = Vec::new();
        while let TryRecv::Event(e) = reader.try_recv() {
            events.push(e);
        }
        events
    }

    /// The two frames of fixtures/ffmpeg9-{vp8,vp9}-426x240.ivf as `vp08`/`vp09` tag bodies.
    fn vpx_bodies(codec: &str) -> Vec<Bytes> {
        let path = format!(
            "{}/fixtures/ffmpeg9-{codec}-426x240.ivf",
            env!("CARGO_MANIFEST_DIR")
        );
        let ivf = std::fs::read(path).unwrap();
        let fourcc = if codec == "vp8" { b"vp08" } else { b"vp09" };
        let mut rest = &ivf[32..];
        let mut bodies = Vec::new();
        while rest.len() >= 12 {
            let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let first = if bodies.is_empty() { 0x91 } else { 0xa1 };
            bodies.push([&[first][..], fourcc, &rest[12..12 + n]].concat().into());
            rest = &rest[12 + n..];
        }
        bodies
    }

    fn frames_and_codecs(events: &[ReaderEvent]) -> (Vec<bool>, Vec<CodecConfig>) {
        let mut keyframes = Vec::new();
        let mut codecs = Vec::new();
        for e in events {
            match e {
                ReaderEvent::Frame(f) => keyframes.push(f.frame.keyframe),
                ReaderEvent::Tracks(t) => codecs.extend(t.video().map(|v| v.codec.clone())),
                ReaderEvent::Lost { .. } => {}
            }
        }
        (keyframes, codecs)
    }

    #[test]
    fn vp8_comes_in_with_or_without_its_sequence_start() {
        let frames = vpx_bodies("vp8");
        let start = switchyard_flv::vp8_sequence_header(&frames[0][5..]).unwrap();
        let with = ingest_video(&[start, frames[0].clone(), frames[1].clone()]);
        assert_eq!(
            frames_and_codecs(&with),
            (vec![true, false], vec![CodecConfig::Vp8])
        );
        // As a player of nginx-rtmp gets it: no sequence start; an inter frame first.
        let without = ingest_video(&[frames[1].clone(), frames[0].clone(), frames[1].clone()]);
        assert_eq!(
            frames_and_codecs(&without),
            (vec![true, false], vec![CodecConfig::Vp8])
        );
        // A tag that says keyframe for a VP8 inter frame does not start a GOP.
        let mut lying = frames[1].to_vec();
        lying[0] = 0x91;
        let lying = ingest_video(&[frames[0].clone(), lying.into()]);
        assert_eq!(frames_and_codecs(&lying).0, vec![true, false]);
    }

    #[test]
    fn vp9_without_its_sequence_start_gets_the_vpcc_of_its_keyframe() {
        let frames = vpx_bodies("vp9");
        let events = ingest_video(&frames);
        let (keyframes, codecs) = frames_and_codecs(&events);
        assert_eq!(keyframes, vec![true, false]);
        let [CodecConfig::Vp9 { vpcc }] = &codecs[..] else {
            panic!("{codecs:?}")
        };
        assert_eq!(&vpcc[..7], &[1, 0, 0, 0, 0, 20, 0x82]);
    }

    #[test]
    fn repeated_or_reversed_timestamps_become_strictly_increasing() {
        let mut clock = TrackClock::default();
        let v: Vec<i64> = [40, 40, 39, 80, 120]
            .iter()
            .map(|&ms| clock.dts(ms, 90_000))
            .collect();
        assert_eq!(v, vec![3600, 3690, 3780, 7200, 10800]);
        let mut audio = TrackClock::default();
        let a: Vec<i64> = [23, 23]
            .iter()
            .map(|&ms| rescale(audio.dts(ms, 44_100), 44_100, 1000))
            .collect();
        assert!(a[1] > a[0], "distinct even in whole milliseconds: {a:?}");
    }

    #[test]
    fn timestamps_extend_past_32_bits() {
        let mut u = Unwrapper::default();
        assert_eq!(u.unwrap(u32::MAX - 10), (u32::MAX - 10) as i64);
        assert_eq!(u.unwrap(5), u32::MAX as i64 + 6);
        assert_eq!(
            u.unwrap(3),
            u32::MAX as i64 + 4,
            "small backwards jitter stays backwards"
        );
    }
}
