//! `/api/v1`: streams on the bus.

use super::{ApiError, AppState};
use crate::bus::{validate_name, Stream, StreamSnapshot};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;
use switchyard_media::{CodecConfig, Track};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/streams", get(list_streams))
        .route("/streams/{*name}", get(get_stream).delete(delete_stream))
}

#[derive(Serialize)]
struct StreamInfo {
    name: String,
    publisher: PeerInfo,
    tracks: Vec<TrackInfo>,
    readers: BTreeMap<&'static str, usize>,
    readers_total: usize,
    bitrate_in_bps: u64,
    bitrate_out_bps: u64,
    bytes_in: u64,
    bytes_out: u64,
    frames_in: u64,
    frames_dropped: u64,
    uptime_secs: f64,
    started_at_unix: u64,
    /// When the publisher started, in milliseconds since the Unix epoch.
    started_at_unix_ms: u64,
    /// What WebRTC (WHEP) viewers get, in plain words.
    webrtc: WebRtcInfo,
    /// Conversions of the audio that readers asked for (`codec`, `state`, counters).
    audio_conversions: Vec<crate::audio::ConversionInfo>,
}

#[derive(Serialize)]
struct WebRtcInfo {
    video: String,
    audio: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl WebRtcInfo {
    fn new(s: &StreamSnapshot) -> Self {
        let describe = |track: Option<&Track>| match track {
            None => "none in the stream".to_string(),
            Some(t)
                if crate::audio::AVAILABLE
                    && crate::audio::AudioNeed::Opus.target_for(&t.codec).is_some() =>
            {
                format!("sent (opus, converted from {})", t.codec.name())
            }
            Some(t) => match crate::outputs::whep::not_sent_reason(&t.codec) {
                None => format!("sent ({})", t.codec.name()),
                Some(reason) => format!("not sent: {reason}"),
            },
        };
        let mut warnings = Vec::new();
        if s.b_frames {
            warnings.push(
                "the video has B-frames: WebRTC players may stutter; publish without B-frames for WebRTC viewers"
                    .to_string(),
            );
        }
        WebRtcInfo {
            video: describe(s.tracks.video()),
            audio: describe(s.tracks.audio()),
            warnings,
        }
    }
}

#[derive(Serialize)]
struct PeerInfo {
    protocol: &'static str,
    remote: Option<String>,
}

#[derive(Serialize)]
struct TrackInfo {
    id: u32,
    kind: String,
    codec: &'static str,
    /// RFC 6381 codec string, as in MIME types and HLS playlists.
    codec_string: String,
    clock_rate: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<u8>,
    /// Video only: whether B-frames were seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    b_frames: Option<bool>,
}

impl From<&Track> for TrackInfo {
    fn from(t: &Track) -> Self {
        let resolution = t.codec.resolution();
        let (sample_rate, channels) = match &t.codec {
            CodecConfig::Aac(c) => (Some(c.sample_rate), Some(c.channels)),
            CodecConfig::Opus { channels, .. } => (Some(48000), Some(*channels)),
            CodecConfig::G711 { channels, .. } => (Some(8000), Some(*channels)),
            _ => (None, None),
        };
        TrackInfo {
            id: t.id.0,
            kind: t.kind().to_string(),
            codec: t.codec.name(),
            codec_string: t.codec.rfc6381_codec(),
            clock_rate: t.clock_rate,
            profile: match &t.codec {
                CodecConfig::H264(c) => Some(c.profile_name()),
                _ => None,
            },
            width: resolution.map(|r| r.0),
            height: resolution.map(|r| r.1),
            sample_rate,
            channels,
            b_frames: None,
        }
    }
}

impl StreamInfo {
    fn of(stream: &Stream) -> Self {
        let s = stream.snapshot();
        let readers: BTreeMap<_, _> = s.readers_by_protocol.clone().into_iter().collect();
        let webrtc = WebRtcInfo::new(&s);
        let mut tracks: Vec<TrackInfo> = s.tracks.tracks.iter().map(TrackInfo::from).collect();
        for t in tracks.iter_mut().filter(|t| t.kind == "video") {
            t.b_frames = Some(s.b_frames);
        }
        StreamInfo {
            webrtc,
            audio_conversions: crate::audio::conversions(stream),
            name: s.name,
            publisher: PeerInfo {
                protocol: s.publisher.protocol,
                remote: s.publisher.remote.map(|a| a.to_string()),
            },
            tracks,
            readers_total: readers.values().sum(),
            readers,
            bitrate_in_bps: s.bitrate_in_bps,
            bitrate_out_bps: s.bitrate_out_bps,
            bytes_in: s.counters.bytes_in,
            bytes_out: s.counters.bytes_out,
            frames_in: s.counters.frames_in,
            frames_dropped: s.counters.frames_dropped,
            uptime_secs: s.uptime.as_secs_f64(),
            started_at_unix: s
                .started_wall
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            started_at_unix_ms: s
                .started_wall
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        }
    }
}

async fn list_streams(State(state): State<AppState>) -> Json<Vec<StreamInfo>> {
    Json(
        state
            .registry
            .list()
            .iter()
            .map(|s| StreamInfo::of(s))
            .collect(),
    )
}

async fn get_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StreamInfo>, ApiError> {
    validate_name(&name)?;
    let stream = state
        .registry
        .get(&name)
        .ok_or(crate::bus::BusError::NotFound(name))?;
    Ok(Json(StreamInfo::of(&stream)))
}

async fn delete_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    validate_name(&name)?;
    state.registry.kick(&name)?;
    tracing::info!(stream = %name, "publisher kicked through the API");
    Ok(StatusCode::NO_CONTENT)
}
