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
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pulls", get(list).post(create))
        .route("/pulls/{id}", get(show).delete(remove))
        .route("/node", get(node))
}

async fn node(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "node_id": state.pulls.node_id(),
        "origins": state.pulls.origins().iter().map(|o| crate::inputs::pull::redact(o)).collect::<Vec<_>>(),
    }))
}

/// The WCS-compatible routes, mounted at `/rest-api/pull`.
pub fn wcs_routes() -> Router<AppState> {
    Router::new()
        .route("/startup", post(wcs_startup))
        .route("/find_all", post(wcs_find_all).get(wcs_find_all))
        .route("/terminate", post(wcs_terminate))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePull {
    source: String,
    name: String,
    #[serde(default)]
    on_demand: bool,
    #[serde(default)]
    token: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreatePull>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // The rejection text can quote the body, and with it a password: keep only its kind.
    let Json(req) = body.map_err(|e| {
        let what = match e {
            JsonRejection::MissingJsonContentType(_) => {
                "expected Content-Type: application/json".to_string()
            }
            JsonRejection::JsonSyntaxError(_) => "malformed JSON".to_string(),
            JsonRejection::JsonDataError(e) => {
                let detail = e.body_text();
                // serde's messages name fields and types, not values, except for unknown
                // variants; those do not occur here.
                format!("invalid pull request: {}", strip_prefix(&detail))
            }
            other => format!("invalid request body: {}", other.body_text()),
        };
        ApiError::new(StatusCode::BAD_REQUEST, what)
    })?;
    let id = state
        .pulls
        .start(&req.source, &req.name, req.on_demand, req.token)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

/// axum prefixes serde's message with its own sentence; keep serde's part.
fn strip_prefix(text: &str) -> &str {
    text.split_once(": ").map(|(_, rest)| rest).unwrap_or(text)
}

async fn list(State(state): State<AppState>) -> Json<Vec<PullInfo>> {
    Json(state.pulls.list())
}

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

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.pulls.stop(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WcsStartup {
    uri: String,
    remote_stream_name: String,
    local_stream_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WcsTerminate {
    local_media_session_id: Option<String>,
    local_stream_name: Option<String>,
    uri: Option<String>,
}

/// A WCS body: malformed JSON is our JSON error (400), without quoting the body.
fn wcs_body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(t)| t).map_err(|e| {
        let what = match e {
            JsonRejection::JsonDataError(e) => strip_prefix(&e.body_text()).to_string(),
            JsonRejection::MissingJsonContentType(_) => {
                "expected Content-Type: application/json".to_string()
            }
            _ => "malformed JSON".to_string(),
        };
        ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {what}"))
    })
}

/// A source URL as WCS's `uri` (the remote node) and `remoteStreamName`.
fn wcs_split(source: &str) -> (String, String) {
    match source.split_once("/whep/") {
        Some((uri, name)) => (uri.to_string(), name.to_string()),
        None => (source.to_string(), String::new()),
    }
}

fn wcs_object(p: &PullInfo) -> serde_json::Value {
    let (uri, remote) = wcs_split(&p.source);
    let status = serde_json::to_value(p.state).unwrap_or_default();
    serde_json::json!({
        "localMediaSessionId": p.id,
        "remoteStreamName": if remote.is_empty() { p.name.clone() } else { remote },
        "localStreamName": p.name,
        "uri": uri,
        "status": status.as_str().unwrap_or("").to_uppercase(),
        "hasAudio": p.has_audio,
        "hasVideo": p.has_video,
    })
}

async fn wcs_startup(
    State(state): State<AppState>,
    json: Result<Json<WcsStartup>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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

async fn wcs_find_all(State(state): State<AppState>) -> Json<Vec<serde_json::Value>> {
    Json(state.pulls.list().iter().map(wcs_object).collect())
}

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
