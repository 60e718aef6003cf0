//! `/api/v1/pulls`: streams fetched from elsewhere (WHEP servers, RTSP cameras, RTMP servers)
//! and published on the bus; and the Flashphoner WCS-compatible `/rest-api/pull/*` routes.
//!
//! - `POST /pulls` `{"source": URL, "name": LOCAL, "token"?: ..., "on_demand"?: bool}` ->
//!   `201 {"id": ...}` (400 for bad JSON, a malformed or unsupported URL or an invalid name;
//!   409 when the name is in use). The call never waits for the source: an unreachable one
//!   shows in the state. `token` is a WHEP source's bearer token (RFC 9725 4.5).
//! - `GET /pulls`, `GET /pulls/{id}`: id, source (credentials redacted), name, state
//!   (`idle|connecting|running|retrying|failed`), since, retries, last error, bitrate in,
//!   and for WHEP pulls packets lost and round-trip time.
//! - `DELETE /pulls/{id}` -> 204 (404 for an unknown id).
//! - `GET /node`: this node's id in the `Switchyard-Via` chain of its WHEP pulls, and its
//!   configured origins.
//!
//! WCS mapping (POST with JSON; see the README):
//! - `/rest-api/pull/startup` `{"uri", "remoteStreamName", "localStreamName"?}` pulls
//!   `{uri}/whep/{remoteStreamName}` as `localStreamName` (default: the remote name), answers
//!   the pull object; `uri` may also be a full `.../whep/...` URL.
//! - `/rest-api/pull/find_all` lists pull objects: `localMediaSessionId` (the pull id),
//!   `remoteStreamName`, `localStreamName`, `uri`, `status` (the state in upper case),
//!   `hasAudio`, `hasVideo`.
//! - `/rest-api/pull/terminate` `{"localMediaSessionId"}` or `{"localStreamName"}` or
//!   `{"uri"}` (every pull from that node) stops the matching pulls; 404 when none match.

use super::{ApiError, AppState};
use crate::pulls::{PullApiError, PullInfo};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, remove))
        .routes(routes!(node))
}

/// This node, as `GET /api/v1/node` shows it.
#[derive(Serialize, ToSchema)]
struct NodeInfo {
    /// This node's id in the `Switchyard-Via` chain of its WHEP pulls.
    node_id: String,
    /// The configured origins (credentials redacted).
    origins: Vec<String>,
}

#[utoipa::path(get, path = "/node", tag = "pulls", operation_id = "get_node",
    responses((status = 200, description = "This node's id and origins", body = NodeInfo)))]
async fn node(State(state): State<AppState>) -> Json<NodeInfo> {
    Json(NodeInfo {
        node_id: state.pulls.node_id().to_string(),
        origins: state
            .pulls
            .origins()
            .iter()
            .map(|o| crate::inputs::pull::redact(o))
            .collect(),
    })
}

/// The WCS-compatible routes, mounted at `/rest-api/pull`.
pub fn wcs_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(wcs_startup))
        .routes(routes!(wcs_find_all, wcs_find_all_get))
        .routes(routes!(wcs_terminate))
}

impl From<PullApiError> for ApiError {
    fn from(e: PullApiError) -> Self {
        let status = match e {
            PullApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PullApiError::Conflict(_) => StatusCode::CONFLICT,
            PullApiError::NotFound(_) => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A new pull.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreatePull {
    /// `rtsp://`, `rtmp://` or `http(s)://.../whep/NAME` (credentials may be in the URL).
    #[schema(example = "rtsp://user:pass@camera.example:554/stream1")]
    source: String,
    /// The stream name it is published as here.
    #[schema(example = "cam/door")]
    name: String,
    /// Connect only while someone reads the stream.
    #[serde(default)]
    on_demand: bool,
    /// A WHEP source's bearer token (RFC 9725 4.5).
    #[serde(default)]
    token: Option<String>,
}

/// The id of a pull or push just made.
#[derive(Serialize, ToSchema)]
pub(super) struct Created {
    pub(super) id: String,
}

#[utoipa::path(post, path = "/pulls", tag = "pulls", operation_id = "create_pull",
    request_body = CreatePull,
    responses(
        (status = 201, description = "The pull started (an unreachable source shows in its state)", body = Created),
        (status = 400, description = "Bad JSON, a malformed or unsupported URL, or an invalid name", body = super::ErrorBody),
        (status = 409, description = "The name is in use", body = super::ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreatePull>, JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let req = super::json_body(body, "pull request")?;
    let id = state
        .pulls
        .start(&req.source, &req.name, req.on_demand, req.token)?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

#[utoipa::path(get, path = "/pulls", tag = "pulls", operation_id = "list_pulls",
    responses((status = 200, description = "Every pull", body = Vec<PullInfo>)))]
async fn list(State(state): State<AppState>) -> Json<Vec<PullInfo>> {
    Json(state.pulls.list())
}

#[utoipa::path(get, path = "/pulls/{id}", tag = "pulls", operation_id = "get_pull",
    params(("id" = String, Path, description = "The pull id")),
    responses(
        (status = 200, description = "The pull", body = PullInfo),
        (status = 404, description = "No such pull", body = super::ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PullInfo>, ApiError> {
    state
        .pulls
        .get(&id)
        .map(Json)
        .ok_or_else(|| PullApiError::NotFound(format!("pull {id:?} not found")).into())
}

#[utoipa::path(delete, path = "/pulls/{id}", tag = "pulls", operation_id = "delete_pull",
    params(("id" = String, Path, description = "The pull id")),
    responses(
        (status = 204, description = "The pull stopped"),
        (status = 404, description = "No such pull", body = super::ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.pulls.stop(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// WCS `pull/startup`.
#[derive(Deserialize, ToSchema)]
#[schema(as = WcsPullStartup)]
#[serde(rename_all = "camelCase")]
struct WcsStartup {
    /// The remote node's base URL, or a full `.../whep/NAME` URL.
    #[schema(example = "http://origin.example:8080")]
    uri: String,
    #[schema(example = "live/cam1")]
    remote_stream_name: String,
    /// Default: the remote name.
    local_stream_name: Option<String>,
}

/// WCS `pull/terminate`: give at least one.
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = WcsPullTerminate)]
#[serde(rename_all = "camelCase")]
struct WcsTerminate {
    local_media_session_id: Option<String>,
    local_stream_name: Option<String>,
    /// Every pull from that node.
    uri: Option<String>,
}

/// A pull as WCS shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct WcsPull {
    /// The pull id.
    local_media_session_id: String,
    remote_stream_name: String,
    local_stream_name: String,
    uri: String,
    /// The pull's state in upper case.
    status: String,
    has_audio: bool,
    has_video: bool,
}

/// A WCS body: malformed JSON is our JSON error (400), without quoting the body.
fn wcs_body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    super::json_body(json, "WCS request")
}

/// A source URL as WCS's `uri` (the remote node) and `remoteStreamName`.
fn wcs_split(source: &str) -> (String, String) {
    match source.split_once("/whep/") {
        Some((uri, name)) => (uri.to_string(), name.to_string()),
        None => (source.to_string(), String::new()),
    }
}

fn wcs_object(p: &PullInfo) -> WcsPull {
    let (uri, remote) = wcs_split(&p.source);
    let status = serde_json::to_value(p.state).unwrap_or_default();
    WcsPull {
        local_media_session_id: p.id.clone(),
        remote_stream_name: if remote.is_empty() {
            p.name.clone()
        } else {
            remote
        },
        local_stream_name: p.name.clone(),
        uri,
        status: status.as_str().unwrap_or("").to_uppercase(),
        has_audio: p.has_audio,
        has_video: p.has_video,
    }
}

#[utoipa::path(post, path = "/startup", tag = "wcs", operation_id = "wcs_pull_startup",
    request_body = WcsStartup,
    responses(
        (status = 200, description = "The pull started", body = WcsPull),
        (status = 400, description = "Bad JSON, a malformed or unsupported URL, or an invalid name", body = super::ErrorBody),
        (status = 404, description = "The pull ended at once", body = super::ErrorBody),
        (status = 409, description = "The local name is in use", body = super::ErrorBody),
    ))]
async fn wcs_startup(
    State(state): State<AppState>,
    json: Result<Json<WcsStartup>, JsonRejection>,
) -> Result<Json<WcsPull>, ApiError> {
    let req = wcs_body(json)?;
    let uri = req.uri.trim_end_matches('/');
    // A full WHEP URL is taken as it is; a node's base URL gets `/whep/{remoteStreamName}`.
    let source = if uri.contains("/whep/") {
        uri.to_string()
    } else {
        format!("{uri}/whep/{}", req.remote_stream_name)
    };
    let local = req
        .local_stream_name
        .filter(|n| !n.is_empty())
        .unwrap_or(req.remote_stream_name);
    let id = state.pulls.start(&source, &local, false, None)?;
    let info = state
        .pulls
        .get(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "the pull ended at once"))?;
    Ok(Json(wcs_object(&info)))
}

#[utoipa::path(post, path = "/find_all", tag = "wcs", operation_id = "wcs_pull_find_all",
    responses((status = 200, description = "Every pull", body = Vec<WcsPull>)))]
async fn wcs_find_all(State(state): State<AppState>) -> Json<Vec<WcsPull>> {
    Json(state.pulls.list().iter().map(wcs_object).collect())
}

#[utoipa::path(get, path = "/find_all", tag = "wcs", operation_id = "wcs_pull_find_all_get",
    responses((status = 200, description = "Every pull", body = Vec<WcsPull>)))]
async fn wcs_find_all_get(state: State<AppState>) -> Json<Vec<WcsPull>> {
    wcs_find_all(state).await
}

#[utoipa::path(post, path = "/terminate", tag = "wcs", operation_id = "wcs_pull_terminate",
    request_body = WcsTerminate,
    responses(
        (status = 200, description = "The matching pulls stopped"),
        (status = 400, description = "Bad JSON, or none of the three given", body = super::ErrorBody),
        (status = 404, description = "No pull matches", body = super::ErrorBody),
    ))]

async fn wcs_terminate(
    State(state): State<AppState>,
    json: Result<Json<WcsTerminate>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let req = wcs_body(json)?;
    if req.local_media_session_id.is_none() && req.local_stream_name.is_none() && req.uri.is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give localMediaSessionId, localStreamName or uri",
        ));
    }
    let chosen: Vec<String> = state
        .pulls
        .list()
        .into_iter()
        .filter(|p| {
            let (uri, _) = wcs_split(&p.source);
            req.local_media_session_id
                .as_ref()
                .is_none_or(|id| *id == p.id)
                && req.local_stream_name.as_ref().is_none_or(|n| *n == p.name)
                && req
                    .uri
                    .as_ref()
                    .is_none_or(|u| u.trim_end_matches('/') == uri || *u == p.source)
        })
        .map(|p| p.id)
        .collect();
    if chosen.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no pull matches"));
    }
    for id in chosen {
        // Gone meanwhile is fine: it is stopped either way.
        let _ = state.pulls.stop(&id);
    }
    Ok(StatusCode::OK)
}
