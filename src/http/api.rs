//! `/api/v1`: streams on the bus.

use super::{ApiError, AppState};
use crate::bus::{validate_name, Stream, StreamSnapshot};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;
use switchyard_media::{CodecConfig, Track};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new().routes(routes!(list_streams));
    super::routes_at(
        router,
        "/streams/{*name}",
        routes!(get_stream, delete_stream),
    )
}

/// A stream as `GET /api/v1/streams` and the console's events show it.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct StreamInfo {
    name: String,
    publisher: PeerInfo,
    tracks: Vec<TrackInfo>,
    readers: BTreeMap<&'static str, usize>,
    readers_total: usize,
    bitrate_in_bps: u64,
    bitrate_out_bps: u64,
    /// Video frames per second received, measured since the previous look at the stream (at
    /// least a second before); `null` without video. Publishers rarely declare a frame rate,
    /// and RTP and WHIP have none to declare.
    fps: Option<f64>,
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

#[derive(Serialize, utoipa::ToSchema)]
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

#[derive(Serialize, utoipa::ToSchema)]
struct PeerInfo {
    protocol: &'static str,
    remote: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
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
            fps: s
                .tracks
                .video()
                .map(|_| (s.video_fps * 100.0).round() / 100.0),
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

/// Every stream on the bus, as `GET /api/v1/streams` lists them.
pub(super) fn stream_infos(state: &AppState) -> Vec<StreamInfo> {
    state
        .registry
        .list()
        .iter()
        .map(|s| StreamInfo::of(s))
        .collect()
}

/// Every stream on the bus.
#[utoipa::path(get, path = "/streams", tag = "streams",
    responses((status = 200, description = "The streams, in name order", body = Vec<StreamInfo>)))]
async fn list_streams(State(state): State<AppState>) -> Json<Vec<StreamInfo>> {
    Json(stream_infos(&state))
}

/// One stream.
#[utoipa::path(get, path = "/streams/{name}", tag = "streams",
    params(super::openapi::StreamName),
    responses(
        (status = 200, description = "The stream", body = StreamInfo),
        (status = 400, description = "Not a valid stream name", body = super::ErrorBody),
        (status = 404, description = "No such stream", body = super::ErrorBody),
    ))]
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

/// Disconnects the stream's publisher (the stream ends).
#[utoipa::path(delete, path = "/streams/{name}", tag = "streams",
    params(super::openapi::StreamName),
    responses(
        (status = 204, description = "The publisher was disconnected"),
        (status = 400, description = "Not a valid stream name", body = super::ErrorBody),
        (status = 404, description = "No such stream", body = super::ErrorBody),
    ))]
async fn delete_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    validate_name(&name)?;
    state.registry.kick(&name)?;
    tracing::info!(stream = %name, "publisher kicked through the API");
    Ok(StatusCode::NO_CONTENT)
}
