//! HTTP routes of the media outputs (HLS files, the MSE WebSocket) and the pages: the console
//! at `/`, the player at `/play/{name}` and the camera publisher (WHIP) at `/publish/{name}`.
//!
//! HLS and MSE requests are authorized ([`crate::auth`]) with `?token=` (or `Authorization:
//! Bearer`) before the stream is looked up. A playlist asked for with a token lists every URI
//! with the same `token` parameter, so players that resolve relative URIs (and so drop the
//! playlist's query) keep sending it; without one, the prebuilt playlist is served as is.

use super::auth::{authorize, request_token};
use super::{ApiError, AppState};
use crate::audio::AudioNeed;
use crate::auth::Action;
use crate::bus::{validate_name, Peer};
use crate::outputs::{hls::HlsMuxer, mse};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_hls::{
    parse_path, parse_request, HlsFile, PlaylistAnswer, PlaylistRequest, Resource,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The playlist request parameters of an HLS URL (RFC 8216bis 6.2.5).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // describes the parameters; the handler parses the raw query
struct HlsQuery {
    /// Playlist only: block until this media sequence number is there.
    #[param(rename = "_HLS_msn")]
    msn: Option<u64>,
    /// Playlist only (with `_HLS_msn`): and this part of it.
    #[param(rename = "_HLS_part")]
    part: Option<u32>,
    /// Playlist only: `YES` or `v2` for a delta update.
    #[param(rename = "_HLS_skip")]
    skip: Option<String>,
}

const CONSOLE_PAGE: &str = include_str!("../console/index.html");
const PLAYER_PAGE: &str = include_str!("../console/player.html");
const PUBLISH_PAGE: &str = include_str!("../console/publish.html");
const HLS_JS: &[u8] = include_bytes!("../console/vendor/hls.min.js");
const WEBRTC_JS: &str = include_str!("../console/webrtc.js");

pub fn routes() -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(console_page))
        .routes(routes!(hls_js))
        .routes(routes!(webrtc_js));
    let router = super::routes_at(router, "/hls/{*path}", routes!(hls_file));
    // Over HTTP/2 (HTTPS, where browsers negotiate h2) a WebSocket opens with an extended
    // CONNECT (RFC 8441), not a GET; OpenAPI has no CONNECT operation, so it is described as
    // the GET it stands for.
    let (schemas, paths, mse) = routes!(mse_socket);
    let router = super::routes_at(
        router,
        "/mse/{*name}",
        (schemas, paths, mse.connect(mse_socket)),
    );
    let router = super::routes_at(router, "/play/{*name}", routes!(player_page));
    super::routes_at(router, "/publish/{*name}", routes!(publish_page))
}

/// The console.
#[utoipa::path(get, path = "/", tag = "pages",
    responses((status = 200, description = "The console page", content_type = "text/html", body = String)))]
async fn console_page() -> Html<&'static str> {
    Html(CONSOLE_PAGE)
}

/// hls.js, for the player page.
#[utoipa::path(get, path = "/assets/hls.min.js", tag = "pages",
    responses((status = 200, description = "hls.js", content_type = "text/javascript", body = String)))]
async fn hls_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HLS_JS,
    )
}

/// The pages' WHIP/WHEP client.
#[utoipa::path(get, path = "/assets/webrtc.js", tag = "pages",
    responses((status = 200, description = "The WHIP/WHEP client script", content_type = "text/javascript", body = String)))]
async fn webrtc_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        WEBRTC_JS,
    )
}

/// The player (WebRTC, MSE or HLS) of a stream.
#[utoipa::path(get, path = "/play/{name}", tag = "pages",
    params(super::openapi::StreamName),
    responses(
        (status = 200, description = "The player page", content_type = "text/html", body = String),
        (status = 400, description = "Not a valid stream name", body = super::ErrorBody),
    ))]
async fn player_page(Path(name): Path<String>) -> Result<Html<&'static str>, ApiError> {
    validate_name(&name)?;
    Ok(Html(PLAYER_PAGE))
}

/// The camera publisher (WHIP) of a stream.
#[utoipa::path(get, path = "/publish/{name}", tag = "pages",
    params(super::openapi::StreamName),
    responses(
        (status = 200, description = "The publisher page", content_type = "text/html", body = String),
        (status = 400, description = "Not a valid stream name", body = super::ErrorBody),
    ))]
async fn publish_page(Path(name): Path<String>) -> Result<Html<&'static str>, ApiError> {
    validate_name(&name)?;
    Ok(Html(PUBLISH_PAGE))
}

/// MSE over WebSocket: binary messages of fMP4 (an init segment, then fragments) for Media
/// Source Extensions; the client sends nothing.
#[utoipa::path(get, path = "/mse/{name}", tag = "media",
    params(super::openapi::StreamName),
    responses(
        (status = 101, description = "The WebSocket (RFC 6455) carrying the stream"),
        (status = 400, description = "Not a WebSocket upgrade request"),
        (status = 426, description = "The connection cannot be upgraded"),
    ))]
async fn mse_socket(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if validate_name(&name).is_ok() {
        // A denial is the HTTP answer to the upgrade request: no socket is opened.
        let token = request_token(&headers, query.as_deref());
        if let Err(denied) =
            authorize(&state, Action::Play, &name, "mse", token.as_deref(), peer).await
        {
            return denied.into_response();
        }
        state.registry.wait_for_stream(&name).await;
    }
    let reader = match validate_name(&name) {
        Ok(()) => {
            let peer = Peer::new("mse", Some(peer));
            crate::audio::subscribe(&state.registry, &name, peer, AudioNeed::AacOrOpus)
                .await
                .and_then(|reader| state.registry.admit_reader(reader))
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

/// HLS and LL-HLS (RFC 8216bis): the playlist `index.m3u8` (blocking reload with `_HLS_msn`,
/// `_HLS_part`, delta updates with `_HLS_skip`), the init section `init.mp4` (`init{n}.mp4`
/// after configuration changes), segments and parts, all CMAF fMP4.
#[utoipa::path(get, path = "/hls/{name}/{file}", tag = "media",
    params(super::openapi::StreamName,
        ("file" = String, Path, example = "index.m3u8",
            description = "`index.m3u8`, `init.mp4` (`init{n}.mp4`), a segment `seg{msn}.m4s` or a part `part{msn}.{i}.m4s`"),
        HlsQuery),
    responses(
        (status = 200, description = "The playlist, the init section, or a segment or part",
            content((String = "application/vnd.apple.mpegurl"), (Vec<u8> = "video/mp4"), (Vec<u8> = "video/iso.segment"))),
        (status = 400, description = "Invalid stream name or playlist request parameters", body = super::ErrorBody),
        (status = 404, description = "No such stream, file or segment", body = super::ErrorBody),
        (status = 503, description = "Not produced in time; try again", body = super::ErrorBody),
    ))]
async fn hls_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
    uri: axum::http::Uri,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such HLS resource: {path}"),
        )
    };
    let (name, file) = parse_path(&path).ok_or_else(not_found)?;
    let file = match file {
        HlsFile::Playlist => None,
        HlsFile::Resource(resource) => Some(resource),
    };
    validate_name(name)?;
    let token = request_token(&headers, query.as_deref());
    if let Err(denied) =
        authorize(&state, Action::Play, name, "hls", token.as_deref(), remote).await
    {
        return Ok(denied.into_response());
    }
    if file.is_none() && !query.as_deref().unwrap_or("").contains("_HLS_msn") {
        // A new viewer of a full node goes to a node with room (a blocking reload comes
        // from a player already watching here).
        if let Some(elsewhere) = super::cluster::steer_viewer(&state, &uri) {
            return Ok(elsewhere);
        }
    }
    // (A muxer outlives a publisher that left, for `hls.idle_timeout_secs`: it is asked even
    // when the stream is not on the bus.)
    state.registry.wait_for_stream(name).await;
    let muxer = state.hls.muxer(name).await.map_err(|e| match e {
        crate::bus::BusError::NotFound(_) => super::cluster::stream_missing(&state, name),
        e => e.into(),
    })?;
    let mut response = hls_response(&state, &muxer, file, query.as_deref()).await?;
    if let (None, Some(token)) = (file, &token) {
        response = with_token(response, token).await;
    }
    // What HLS clients get counts as the stream's bytes out (one muxer serves them all).
    if let (Some(stream), Some(len)) = (
        state.registry.get(name),
        axum::body::HttpBody::size_hint(response.body()).exact(),
    ) {
        stream.add_bytes_out(len as usize);
    }
    Ok(response)
}

/// The answer to an HLS request for `file` (`None`: the playlist) of `muxer`.
async fn hls_response(
    state: &AppState,
    muxer: &Arc<HlsMuxer>,
    file: Option<Resource>,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    match file {
        None => {
            let request = parse_request(query.unwrap_or(""))
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
            playlist(state, muxer, &request).await
        }
        Some(Resource::Init(id)) => {
            // `init.mp4`, or `init{n}.mp4` after n changes of configuration: listed (EXT-X-MAP)
            // only once it exists, so never waited for once the playlist is there.
            let init = wait_for(state, muxer, |p| p.init_segment(id), |_| false).await?;
            // A muxer that stops and starts again reuses the names: not cached.
            Ok(media_response(init, "video/mp4", "no-cache"))
        }
        Some(Resource::Segment(msn)) => {
            let seg = wait_for_media(state, muxer, msn, None, |p| p.segment(msn)).await?;
            Ok(media_response(
                seg,
                "video/iso.segment",
                "public, max-age=60",
            ))
        }
        Some(Resource::Part(msn, i)) => {
            let part = wait_for_media(state, muxer, msn, Some(i), |p| p.part(msn, i)).await?;
            Ok(media_response(
                part,
                "video/iso.segment",
                "public, max-age=60",
            ))
        }
    }
}

/// A playlist answer whose URIs all carry `token=` (see the module doc).
async fn with_token(response: Response, token: &str) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let Ok(playlist) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "playlist body").into_response();
    };
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .finish();
    let body = switchyard_hls::with_query(&playlist, &query);
    Response::from_parts(parts, axum::body::Body::from(body))
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
