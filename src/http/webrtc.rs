//! WHIP (RFC 9725) and WHEP endpoints.
//!
//! - `POST /whip/{name}` / `POST /whep/{name}` with an `application/sdp` offer: `201 Created`,
//!   the answer, `Location: /whip/{name}/{session}`, `ETag`, and one `Link` per configured ICE
//!   server (RFC 9725 4.6).
//! - `PATCH {Location}` with `application/trickle-ice-sdpfrag` (RFC 8840): trickled candidates;
//!   `If-Match` must carry the session's ETag (or `*`), else `412` (RFC 9725 4.3.1).
//! - `DELETE {Location}` ends the session; `OPTIONS` lists what is allowed.
//! - A WHEP `POST` of another node's pull lists the nodes it came through in `Switchyard-Via`
//!   ([`crate::inputs::whep_pull::VIA_HEADER`]): one that lists this node is an origin loop and
//!   gets `508 Loop Detected` at once; an origin pull it starts carries the chain on.
//! - `GET /api/v1/webrtc/sessions` (`?state=closed`: those closed in the last 10 minutes, with
//!   why), `GET /api/v1/webrtc/sessions/{id}`, `GET /api/v1/webrtc` (the engine's counters).
//!
//! The session id is the last path segment of the session URL; stream names may contain `/`.
//!
//! Authorization ([`crate::auth`]): the POST's `Authorization: Bearer` token (RFC 9725 4.1)
//! or `?token=`, checked before the stream is looked up (401/403). `PATCH` and `DELETE` of a
//! session are not checked again: its URL holds an unguessable session id, known only to the
//! client that was allowed to create it.

use super::auth::{authorize, request_token};
use super::{ApiError, AppState};
use crate::audio::AudioNeed;
use crate::auth::Action;
use crate::bus::Peer;
use crate::webrtc::{IceServer, Role, SessionError, WebRtc};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::SocketAddr;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(sessions))
        .routes(routes!(session))
        .routes(routes!(engine_stats));
    let router = super::routes_at(
        router,
        "/whip/{*path}",
        routes!(whip, whip_patch, whip_delete),
    );
    super::routes_at(
        router,
        "/whep/{*path}",
        routes!(whep, whep_patch, whep_delete),
    )
}

fn engine(state: &AppState) -> Result<&WebRtc, ApiError> {
    state.webrtc.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebRTC is not running on this server",
        )
    })
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let status = match &e {
            SessionError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SessionError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SessionError::NotFound => StatusCode::NOT_FOUND,
            SessionError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            SessionError::Stopped | SessionError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn require_content_type(headers: &HeaderMap, wanted: &str) -> Result<(), ApiError> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = got.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(wanted) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        if got.is_empty() {
            format!("Content-Type must be {wanted} (none was given)")
        } else {
            format!("Content-Type must be {wanted}, not {got}")
        },
    ))
}

fn offer_text(body: Bytes) -> Result<String, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty; it must be an SDP offer",
        ));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8"))
}

/// The engine and the offer of a WHIP/WHEP POST.
fn post_offer<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(&'a WebRtc, String), ApiError> {
    let engine = engine(state)?;
    require_content_type(headers, "application/sdp")?;
    Ok((engine, offer_text(body)?))
}

/// WHIP: publishes the stream from a WebRTC offer (RFC 9725 4.2).
#[utoipa::path(post, path = "/whip/{name}", tag = "webrtc",
    params(super::openapi::StreamName),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer"),
    responses(
        (status = 201, description = "The session: the SDP answer", content_type = "application/sdp", body = String,
            headers(("Location" = String, description = "The session URL, for PATCH and DELETE"),
                ("ETag" = String, description = "The session's ICE entity tag"),
                ("Link" = String, description = "One per ICE server: `<url>; rel=\"ice-server\"`"))),
        (status = 400, description = "Empty, non-UTF-8 or malformed offer, or an invalid stream name", body = super::ErrorBody),
        (status = 409, description = "The stream already has a publisher", body = super::ErrorBody),
        (status = 415, description = "Content-Type is not application/sdp", body = super::ErrorBody),
        (status = 422, description = "The offer has nothing this server can take", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn whip(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (engine, offer) = post_offer(&state, &headers, body)?;
    crate::bus::validate_name(&name)?;
    let token = request_token(&headers, query.as_deref());
    if let Err(denied) = authorize(
        &state,
        Action::Publish,
        &name,
        "webrtc",
        token.as_deref(),
        remote,
    )
    .await
    {
        return Ok(denied.into_response());
    }
    let permit = session_permit(&state, remote)?;
    let publisher = state
        .registry
        .publish_claimed(&name, Peer::new("webrtc", Some(remote)))
        .await?;
    let opened = engine
        .open(Role::Publish(publisher), offer, Some(permit))
        .await?;
    Ok(created("whip", &name, opened, engine.ice_servers()))
}

/// WHEP: plays the stream to a WebRTC offer.
#[utoipa::path(post, path = "/whep/{name}", tag = "webrtc",
    params(super::openapi::StreamName,
        ("Switchyard-Via" = Option<String>, Header, description = "The node ids a pull of another node came through (comma-separated)")),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer"),
    responses(
        (status = 201, description = "The session: the SDP answer", content_type = "application/sdp", body = String,
            headers(("Location" = String, description = "The session URL, for PATCH and DELETE"),
                ("ETag" = String, description = "The session's ICE entity tag"),
                ("Link" = String, description = "One per ICE server: `<url>; rel=\"ice-server\"`"))),
        (status = 400, description = "Empty, non-UTF-8 or malformed offer, or an invalid stream name", body = super::ErrorBody),
        (status = 404, description = "No such stream", body = super::ErrorBody),
        (status = 415, description = "Content-Type is not application/sdp", body = super::ErrorBody),
        (status = 422, description = "The offer has nothing this server can send", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
        (status = 508, description = "An origin loop: this node is in Switchyard-Via, or the chain is too long", body = super::ErrorBody),
    ))]
async fn whep(
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (engine, offer) = post_offer(&state, &headers, body)?;
    crate::bus::validate_name(&name)?;
    let token = request_token(&headers, query.as_deref());
    if let Err(denied) = authorize(
        &state,
        Action::Play,
        &name,
        "webrtc",
        token.as_deref(),
        remote,
    )
    .await
    {
        return Ok(denied.into_response());
    }
    let via = via_chain(&state, &name, &headers)?;
    // A viewer (not another node's pull) of a full node goes to a node with room.
    if via.is_empty() {
        if let Some(elsewhere) = super::cluster::steer_viewer(&state, &uri) {
            return Ok(elsewhere);
        }
    }
    if !via.is_empty() && state.registry.get(&name).is_none() {
        // Another node's pull: an origin pull started here carries its chain on.
        state.pulls.demand_via(&name, &via);
    }
    // A stream that an on-demand pull can bring is waited for, like on every other output.
    if state.registry.wait_for_stream(&name).await.is_none() {
        return Err(super::cluster::stream_missing(&state, &name));
    }
    // Browsers take Opus: other audio is converted.
    let peer = Peer::new("webrtc", Some(remote));
    let permit = session_permit(&state, remote)?;
    let reader = crate::audio::subscribe(&state.registry, &name, peer, AudioNeed::Opus).await?;
    let reader = state.registry.admit_reader(reader)?;
    let opened = engine.open(Role::Play(reader), offer, Some(permit)).await?;
    Ok(created("whep", &name, opened, engine.ice_servers()))
}

/// The WebRTC session's place in `limits.max_sessions_per_ip` (held as long as the session; the
/// POST's HTTP connection holds one of its own while it lasts), or 429.
fn session_permit(
    state: &AppState,
    remote: SocketAddr,
) -> Result<crate::limits::SessionPermit, ApiError> {
    state
        .ip_sessions
        .admit(remote.ip(), "WebRTC session")
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many sessions from your address (at most {}, limits.max_sessions_per_ip)",
                    state.ip_sessions.max()
                ),
            )
        })
}

/// The nodes a WHEP POST came through; refused when this node is one of them (an origin
/// loop) or the chain is too long.
fn via_chain(state: &AppState, name: &str, headers: &HeaderMap) -> Result<Vec<String>, ApiError> {
    use crate::inputs::whep_pull::{parse_via, MAX_VIA, VIA_HEADER};
    let via = parse_via(
        headers
            .get_all(VIA_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let me = state.pulls.node_id();
    if via.iter().any(|id| id == me) {
        tracing::info!(stream = name, via = %via.join(", "), node = me, "origin loop: refusing a pull that came through this node");
        return Err(ApiError::new(
            StatusCode::LOOP_DETECTED,
            format!(
                "origin loop: {name:?} was asked for through {} and this node ({me}) is one of them",
                via.join(", ")
            ),
        ));
    }
    if via.len() >= MAX_VIA {
        return Err(ApiError::new(
            StatusCode::LOOP_DETECTED,
            format!(
                "the pull of {name:?} came through {} nodes; at most {MAX_VIA} are followed",
                via.len()
            ),
        ));
    }
    Ok(via)
}

fn created(
    kind: &str,
    name: &str,
    opened: crate::webrtc::Opened,
    ice_servers: &[IceServer],
) -> Response {
    let mut response = (StatusCode::CREATED, opened.answer).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("/{kind}/{name}/{}", opened.session)) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&opened.etag) {
        headers.insert(header::ETAG, v);
    }
    add_links(headers, ice_servers);
    response
}

/// `Link: <stun:...>; rel="ice-server"` per ICE server URL (RFC 9725 4.6).
fn add_links(headers: &mut HeaderMap, ice_servers: &[IceServer]) {
    for server in ice_servers {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{user}\"; credential=\"{credential}\"; credential-type=\"password\""
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&link) {
                headers.append(header::LINK, v);
            }
        }
    }
}

/// The session id of a session URL path (`{name}/{session}`).
fn session_of(path: &str) -> Result<String, ApiError> {
    match path.rsplit_once('/') {
        Some((_, session)) if !session.is_empty() => Ok(session.to_string()),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PATCH and DELETE go to the session URL given in Location, not to the stream",
        )),
    }
}

/// WHIP: trickled ICE candidates or an ICE restart (RFC 9725 4.3, RFC 8840).
#[utoipa::path(patch, path = "/whip/{name}/{session}", tag = "webrtc",
    params(super::openapi::StreamName, SessionPath, IfMatch),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "An SDP fragment (RFC 8840)"),
    responses(
        (status = 204, description = "Taken", headers(("ETag" = String, description = "The session's ICE entity tag"))),
        (status = 400, description = "A malformed or non-UTF-8 fragment", body = super::ErrorBody),
        (status = 404, description = "No such session", body = super::ErrorBody),
        (status = 405, description = "Not a session URL", body = super::ErrorBody),
        (status = 412, description = "If-Match does not match the session's ETag", body = super::ErrorBody),
        (status = 415, description = "Content-Type is not application/trickle-ice-sdpfrag", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn whip_patch(
    state: State<AppState>,
    path: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    patch(state, path, headers, body).await
}

/// WHEP: trickled ICE candidates or an ICE restart (RFC 8840).
#[utoipa::path(patch, path = "/whep/{name}/{session}", tag = "webrtc",
    params(super::openapi::StreamName, SessionPath, IfMatch),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag", description = "An SDP fragment (RFC 8840)"),
    responses(
        (status = 204, description = "Taken", headers(("ETag" = String, description = "The session's ICE entity tag"))),
        (status = 400, description = "A malformed or non-UTF-8 fragment", body = super::ErrorBody),
        (status = 404, description = "No such session", body = super::ErrorBody),
        (status = 405, description = "Not a session URL", body = super::ErrorBody),
        (status = 412, description = "If-Match does not match the session's ETag", body = super::ErrorBody),
        (status = 415, description = "Content-Type is not application/trickle-ice-sdpfrag", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn whep_patch(
    state: State<AppState>,
    path: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    patch(state, path, headers, body).await
}

/// The session id of a WHIP/WHEP session URL (`/{whip|whep}/{name}/{session}`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the parameter; the handlers split the catch-all path
struct SessionPath {
    /// The session id, the last segment of the `Location` the POST answered.
    session: String,
}

/// `If-Match` of a PATCH (RFC 9725 4.3.1).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes the header; the handler reads the header map
struct IfMatch {
    /// The session's ETag, or `*`; absent: no check.
    #[param(rename = "If-Match")]
    if_match: Option<String>,
}

async fn patch(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    let session = session_of(&path)?;
    require_content_type(&headers, "application/trickle-ice-sdpfrag")?;
    let fragment = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the SDP fragment is not UTF-8"))?;
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let etag = engine.trickle(session, if_match, fragment).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// WHIP: ends the session (RFC 9725 4.2).
#[utoipa::path(delete, path = "/whip/{name}/{session}", tag = "webrtc",
    params(super::openapi::StreamName, SessionPath),
    responses(
        (status = 200, description = "The session ended"),
        (status = 404, description = "No such session", body = super::ErrorBody),
        (status = 405, description = "Not a session URL", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn whip_delete(state: State<AppState>, path: Path<String>) -> Result<StatusCode, ApiError> {
    delete(state, path).await
}

/// WHEP: ends the session.
#[utoipa::path(delete, path = "/whep/{name}/{session}", tag = "webrtc",
    params(super::openapi::StreamName, SessionPath),
    responses(
        (status = 200, description = "The session ended"),
        (status = 404, description = "No such session", body = super::ErrorBody),
        (status = 405, description = "Not a session URL", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn whep_delete(state: State<AppState>, path: Path<String>) -> Result<StatusCode, ApiError> {
    delete(state, path).await
}

async fn delete(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<StatusCode, ApiError> {
    let engine = engine(&state)?;
    let session = session_of(&path)?;
    engine.close(session).await?;
    Ok(StatusCode::OK)
}

/// Answers a plain `OPTIONS` (not a CORS preflight) on WHIP/WHEP URLs. It runs outside the
/// CORS layer, which would otherwise answer every `OPTIONS` itself.
pub async fn plain_options(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if request.method() == axum::http::Method::OPTIONS
        && !request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && (path.starts_with("/whip/") || path.starts_with("/whep/"))
    {
        return options(&state);
    }
    next.run(request).await
}

fn options(state: &AppState) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ALLOW,
        HeaderValue::from_static("OPTIONS, POST, PATCH, DELETE"),
    );
    headers.insert("accept-post", HeaderValue::from_static("application/sdp"));
    headers.insert(
        "accept-patch",
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    if let Some(engine) = &state.webrtc {
        add_links(headers, engine.ice_servers());
    }
    response
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SessionsQuery {
    /// `open` (the default) or `closed`.
    #[param(pattern = "^(open|closed)$")]
    state: Option<String>,
}

/// The open sessions (`?state=open`, the default); `?state=closed`: the sessions closed lately (the last 100, for 10
/// minutes), newest first, with `closed_reason`.
#[utoipa::path(get, path = "/api/v1/webrtc/sessions", tag = "webrtc",
    params(SessionsQuery),
    responses(
        (status = 200, description = "The sessions", body = Vec<crate::webrtc::SessionInfo>),
        (status = 400, description = "`state` is neither `open` nor `closed`", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn sessions(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<SessionsQuery>,
) -> Result<Json<Vec<crate::webrtc::SessionInfo>>, ApiError> {
    let engine = engine(&state)?;
    match query.state.as_deref() {
        None | Some("open") => Ok(Json(engine.sessions().await)),
        Some("closed") => Ok(Json(engine.closed_sessions().await)),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("state must be \"open\" (the default) or \"closed\", not {other:?}"),
        )),
    }
}

/// One session, open or closed lately (the id is the last segment of its WHIP/WHEP URL).
#[utoipa::path(get, path = "/api/v1/webrtc/sessions/{id}", tag = "webrtc",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session", body = crate::webrtc::SessionInfo),
        (status = 404, description = "No such session", body = super::ErrorBody),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<crate::webrtc::SessionInfo>, ApiError> {
    let engine = engine(&state)?;
    let open = engine.sessions().await.into_iter().find(|s| s.id == id);
    let found = match open {
        Some(s) => Some(s),
        None => engine
            .closed_sessions()
            .await
            .into_iter()
            .find(|s| s.id == id),
    };
    found.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no session {id:?} (closed sessions are kept 10 minutes)"),
        )
    })
}

/// The engine's counters: sessions, datagrams, and the per-datagram delay from a frame entering
/// the bus to its datagrams leaving for a viewer (recent frames; milliseconds).
#[utoipa::path(get, path = "/api/v1/webrtc", tag = "webrtc",
    responses(
        (status = 200, description = "The engine's counters", body = EngineStats),
        (status = 503, description = "WebRTC is not running on this server", body = super::ErrorBody),
    ))]
async fn engine_stats(State(state): State<AppState>) -> Result<Json<EngineStats>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    let engine = engine(&state)?;
    let sessions = engine.sessions().await;
    let stats = engine.stats();
    let p = stats.delay_percentiles_ms(&[50, 90, 99]);
    Ok(Json(EngineStats {
        udp: engine.local_addr().to_string(),
        udp_all: engine
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect(),
        sessions: sessions.len(),
        publishers: sessions.iter().filter(|s| s.role == "publish").count(),
        viewers: sessions.iter().filter(|s| s.role == "play").count(),
        datagrams_sent: stats.datagrams_sent.load(Relaxed),
        datagrams_dropped: stats.datagrams_dropped.load(Relaxed),
        retransmitted: stats.retransmitted.load(Relaxed),
        simulated_losses: stats.simulated_losses.load(Relaxed),
        send_delay_ms: SendDelays {
            p50: p[0],
            p90: p[1],
            p99: p[2],
        },
    }))
}

/// The WebRTC engine's counters (`GET /api/v1/webrtc`).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct EngineStats {
    /// The UDP address WebRTC media uses (the first engine loop's, `webrtc.threads`).
    udp: String,
    /// Every engine loop's UDP address, `udp` first.
    udp_all: Vec<String>,
    sessions: usize,
    publishers: usize,
    viewers: usize,
    datagrams_sent: u64,
    datagrams_dropped: u64,
    retransmitted: u64,
    simulated_losses: u64,
    send_delay_ms: SendDelays,
}

/// Percentiles of the delay from a frame entering the bus to its datagrams leaving for a
/// viewer, over recent frames, in milliseconds; `null` before any.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct SendDelays {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
}
