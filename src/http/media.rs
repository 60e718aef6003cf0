//! HTTP routes of the media outputs (HLS files, the MSE WebSocket) and the pages: the console
//! at `/`, the player at `/play/{name}` and the camera publisher (WHIP) at `/publish/{name}`.

use super::{ApiError, AppState};
use crate::audio::AudioNeed;
use crate::bus::{validate_name, Peer};
use crate::outputs::{hls::HlsMuxer, mse};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_hls::{
    parse_request, parse_resource_name, PlaylistAnswer, PlaylistRequest, Resource,
};

const CONSOLE_PAGE: &str = include_str!("../console/index.html");
const PLAYER_PAGE: &str = include_str!("../console/player.html");
const PUBLISH_PAGE: &str = include_str!("../console/publish.html");
const HLS_JS: &[u8] = include_bytes!("../console/vendor/hls.min.js");
const WEBRTC_JS: &str = include_str!("../console/webrtc.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/hls/{*path}", get(hls_file))
        .route("/mse/{*name}", get(mse_socket))
        .route("/", get(|| async { Html(CONSOLE_PAGE) }))
        .route("/play/{*name}", get(player_page))
        .route("/publish/{*name}", get(publish_page))
        .route(
            "/assets/hls.min.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    HLS_JS,
                )
            }),
        )
        .route(
            "/assets/webrtc.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    WEBRTC_JS,
                )
            }),
        )
}

async fn player_page(Path(name): Path<String>) -> Result<Html<&'static str>, ApiError> {
    validate_name(&name)?;
    Ok(Html(PLAYER_PAGE))
}

async fn publish_page(Path(name): Path<String>) -> Result<Html<&'static str>, ApiError> {
    validate_name(&name)?;
    Ok(Html(PUBLISH_PAGE))
}

async fn mse_socket(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if validate_name(&name).is_ok() {
        state.registry.wait_for_stream(&name).await;
    }
    let reader = match validate_name(&name) {
        Ok(()) => {
            let peer = Peer::new("mse", Some(peer));
            crate::audio::subscribe(&state.registry, &name, peer, AudioNeed::AacOrOpus).await
        }
        Err(e) => Err(e),
    };
    let (settings, shutdown) = (state.mse.clone(), state.shutdown.clone());
    // Clients send nothing: small read buffers and a small message limit keep a client cheap
    // and a hostile one harmless.
    ws.read_buffer_size(4096)
        .write_buffer_size(64 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| mse::serve(socket, reader, settings, shutdown))
}

async fn hls_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such HLS resource: {path}"),
        )
    };
    let (name, file) = path.rsplit_once('/').ok_or_else(not_found)?;
    let file = if file == "index.m3u8" {
        None
    } else {
        Some(parse_resource_name(file).ok_or_else(not_found)?)
    };
    validate_name(name)?;
    state.registry.wait_for_stream(name).await;
    let muxer = state.hls.muxer(name)?;
    match file {
        None => {
            let request = parse_request(query.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
            playlist(&state, &muxer, &request).await
        }
        Some(Resource::Init(id)) => {
            // `init.mp4`, or `init{n}.mp4` after n changes of configuration: listed (EXT-X-MAP)
            // only once it exists, so never waited for once the playlist is there.
            let init = wait_for(&state, &muxer, |p| p.init_segment(id), |_| false).await?;
            // A muxer that stops and starts again reuses the names: not cached.
            Ok(media_response(init, "video/mp4", "no-cache"))
        }
        Some(Resource::Segment(msn)) => {
            let seg = wait_for_media(&state, &muxer, msn, None, |p| p.segment(msn)).await?;
            Ok(media_response(
                seg,
                "video/iso.segment",
                "public, max-age=60",
            ))
        }
        Some(Resource::Part(msn, i)) => {
            let part = wait_for_media(&state, &muxer, msn, Some(i), |p| p.part(msn, i)).await?;
            Ok(media_response(
                part,
                "video/iso.segment",
                "public, max-age=60",
            ))
        }
    }
}

fn media_response(body: Bytes, content_type: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

/// Waits (up to the blocking limit) until `get` yields something from the muxer's playlist;
/// 404 as soon as `coming` says it never will (e.g. a preload-hinted part that a segment
/// boundary replaced with the next segment's first part: RFC 8216bis 6.2.6).
async fn wait_for(
    state: &AppState,
    muxer: &Arc<HlsMuxer>,
    get: impl Fn(&switchyard_hls::LivePlaylist) -> Option<Bytes>,
    coming: impl Fn(&switchyard_hls::LivePlaylist) -> bool,
) -> Result<Bytes, ApiError> {
    let deadline = tokio::time::Instant::now() + muxer.block_limit(&state.hls.settings().playlist);
    let mut seen = muxer.subscribe();
    loop {
        seen.borrow_and_update();
        if let Some(b) = muxer.with_playlist(&get).flatten() {
            return Ok(b);
        }
        if !muxer.with_playlist(&coming).unwrap_or(true) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "segment or part not in the playlist window, and not coming",
            ));
        }
        if !muxer.changed(&mut seen, deadline).await {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the stream has not produced this yet; try again",
            ));
        }
    }
}

/// A segment or part: served at once if present, awaited while it is upcoming, else 404.
async fn wait_for_media(
    state: &AppState,
    muxer: &Arc<HlsMuxer>,
    msn: u64,
    part: Option<u32>,
    get: impl Fn(&switchyard_hls::LivePlaylist) -> Option<Bytes>,
) -> Result<Bytes, ApiError> {
    wait_for(state, muxer, get, |p| p.is_upcoming(msn, part)).await
}

async fn playlist(
    state: &AppState,
    muxer: &Arc<HlsMuxer>,
    request: &PlaylistRequest,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + muxer.block_limit(&state.hls.settings().playlist);
    let mut seen = muxer.subscribe();
    loop {
        seen.borrow_and_update();
        // A plain (non-blocking) request waits for the first complete segment, so players
        // without LL-HLS support never see an empty playlist.
        let answer = muxer.with_playlist(|p| {
            let no_complete_segment = p.next_part().0 == p.media_sequence();
            if request.msn.is_none() && no_complete_segment {
                PlaylistAnswer::NotYet
            } else {
                p.playlist(request)
            }
        });
        match answer {
            Some(PlaylistAnswer::Ready(body)) => {
                let mut r = body.into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.apple.mpegurl"),
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                return Ok(r);
            }
            Some(PlaylistAnswer::Invalid(reason)) => {
                return Err(ApiError::new(StatusCode::BAD_REQUEST, reason))
            }
            Some(PlaylistAnswer::NotYet) | None => {}
        }
        if !muxer.changed(&mut seen, deadline).await {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the requested playlist update did not come in time; reload",
            ));
        }
    }
}
