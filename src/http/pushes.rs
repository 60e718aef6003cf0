//! `/api/v1/pushes`, and the Flashphoner WCS-compatible `/rest-api/push/*` routes.
//!
//! WCS mapping: `POST /rest-api/push/startup {"streamName", "rtmpUrl"}` starts a push and
//! answers the push object; `POST /rest-api/push/find_all` lists them; `POST
//! /rest-api/push/terminate` stops the push named by `mediaSessionId`, or every push of
//! `streamName` (optionally only the one to `rtmpUrl`). A push object is `{"mediaSessionId",
//! "streamName", "rtmpUrl", "status"}`, status being the push state in upper case.

use super::{ApiError, AppState};
use crate::pushes::{Push, PushError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, remove))
}

/// The WCS-compatible routes, mounted at `/rest-api/push`.
pub fn wcs_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(wcs_startup))
        .routes(routes!(wcs_find_all, wcs_find_all_get))
        .routes(routes!(wcs_terminate))
}

/// A JSON body, with malformed JSON answered as our JSON error (400).
fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    super::json_body(json, "push request")
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// A new push.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreatePush {
    /// The stream name to push.
    #[schema(example = "live/cam1")]
    stream: String,
    /// `rtmp://` or `rtmps://` target.
    #[schema(example = "rtmp://cdn.example/app/KEY")]
    url: String,
}

/// A push as `GET /api/v1/pushes` and the console's events show it.
#[derive(Serialize, ToSchema)]
pub(super) struct PushInfo {
    id: String,
    stream: String,
    url: String,
    origin: crate::pushes::PushOrigin,
    state: crate::pushes::PushState,
    since_unix_ms: u64,
    bytes_sent: u64,
    bitrate_bps: u64,
    reconnects: u64,
    last_error: Option<String>,
    notes: Vec<String>,
}

impl From<&Arc<Push>> for PushInfo {
    fn from(p: &Arc<Push>) -> Self {
        let s = p.status();
        PushInfo {
            id: p.id.to_string(),
            stream: p.stream.clone(),
            url: p.url.clone(),
            origin: p.origin,
            state: s.state,
            since_unix_ms: s
                .since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            bytes_sent: p.bytes_sent(),
            bitrate_bps: p.bitrate_bps(),
            reconnects: s.reconnects,
            last_error: s.last_error,
            notes: s.notes,
        }
    }
}

#[utoipa::path(post, path = "/pushes", tag = "pushes", operation_id = "create_push",
    request_body = CreatePush,
    responses(
        (status = 201, description = "The push started (it waits for the stream if need be)", body = super::pulls::Created),
        (status = 400, description = "Bad JSON, an invalid stream name or a bad target URL", body = super::ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    json: Result<Json<CreatePush>, JsonRejection>,
) -> Result<(StatusCode, Json<super::pulls::Created>), ApiError> {
    let req = body(json)?;
    let push = state.pushes.start(&req.stream, &req.url)?;
    Ok((
        StatusCode::CREATED,
        Json(super::pulls::Created {
            id: push.id.to_string(),
        }),
    ))
}

/// Every push, as `GET /api/v1/pushes` lists them.
pub(super) fn push_infos(state: &AppState) -> Vec<PushInfo> {
    state.pushes.list().iter().map(PushInfo::from).collect()
}

#[utoipa::path(get, path = "/pushes", tag = "pushes", operation_id = "list_pushes",
    responses((status = 200, description = "Every push", body = Vec<PushInfo>)))]
async fn list(State(state): State<AppState>) -> Json<Vec<PushInfo>> {
    Json(push_infos(&state))
}

fn find(state: &AppState, id: &str) -> Result<Arc<Push>, ApiError> {
    id.parse()
        .ok()
        .and_then(|id| state.pushes.get(id))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no push with id {id:?}")))
}

#[utoipa::path(get, path = "/pushes/{id}", tag = "pushes", operation_id = "get_push",
    params(("id" = String, Path, description = "The push id")),
    responses(
        (status = 200, description = "The push", body = PushInfo),
        (status = 404, description = "No such push", body = super::ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PushInfo>, ApiError> {
    Ok(Json(PushInfo::from(&find(&state, &id)?)))
}

#[utoipa::path(delete, path = "/pushes/{id}", tag = "pushes", operation_id = "delete_push",
    params(("id" = String, Path, description = "The push id")),
    responses(
        (status = 204, description = "The push stopped"),
        (status = 404, description = "No such push", body = super::ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let push = find(&state, &id)?;
    state.pushes.stop(push.id);
    Ok(StatusCode::NO_CONTENT)
}

/// WCS `push/startup`.
#[derive(Deserialize, ToSchema)]
#[schema(as = WcsPushStartup)]
#[serde(rename_all = "camelCase")]
struct WcsStartup {
    #[schema(example = "live/cam1")]
    stream_name: String,
    #[schema(example = "rtmp://cdn.example/app/KEY")]
    rtmp_url: String,
}

/// WCS `push/terminate`: `mediaSessionId`, or `streamName` (and optionally `rtmpUrl`).
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = WcsPushTerminate)]
#[serde(rename_all = "camelCase")]
struct WcsTerminate {
    media_session_id: Option<String>,
    stream_name: Option<String>,
    rtmp_url: Option<String>,
}

/// A push as WCS shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct WcsPush {
    media_session_id: String,
    stream_name: String,
    rtmp_url: String,
    /// The push's state in upper case.
    status: String,
}

fn wcs_object(p: &Arc<Push>) -> WcsPush {
    let state = serde_json::to_value(p.status().state).unwrap_or_default();
    WcsPush {
        media_session_id: p.id.to_string(),
        stream_name: p.stream.clone(),
        rtmp_url: p.url.clone(),
        status: state.as_str().unwrap_or("").to_uppercase(),
    }
}

#[utoipa::path(post, path = "/startup", tag = "wcs", operation_id = "wcs_push_startup",
    request_body = WcsStartup,
    responses(
        (status = 200, description = "The push started", body = WcsPush),
        (status = 400, description = "Bad JSON, an invalid stream name or a bad target URL", body = super::ErrorBody),
    ))]

async fn wcs_startup(
    State(state): State<AppState>,
    json: Result<Json<WcsStartup>, JsonRejection>,
) -> Result<Json<WcsPush>, ApiError> {
    let req = body(json)?;
    let push = state.pushes.start(&req.stream_name, &req.rtmp_url)?;
    Ok(Json(wcs_object(&push)))
}

#[utoipa::path(post, path = "/find_all", tag = "wcs", operation_id = "wcs_push_find_all",
    responses((status = 200, description = "Every push", body = Vec<WcsPush>)))]
async fn wcs_find_all(State(state): State<AppState>) -> Json<Vec<WcsPush>> {
    Json(state.pushes.list().iter().map(wcs_object).collect())
}

#[utoipa::path(get, path = "/find_all", tag = "wcs", operation_id = "wcs_push_find_all_get",
    responses((status = 200, description = "Every push", body = Vec<WcsPush>)))]
async fn wcs_find_all_get(state: State<AppState>) -> Json<Vec<WcsPush>> {
    wcs_find_all(state).await
}

#[utoipa::path(post, path = "/terminate", tag = "wcs", operation_id = "wcs_push_terminate",
    request_body = WcsTerminate,
    responses(
        (status = 200, description = "The matching pushes stopped"),
        (status = 400, description = "Bad JSON, or neither mediaSessionId nor streamName", body = super::ErrorBody),
        (status = 404, description = "No push matches", body = super::ErrorBody),
    ))]

async fn wcs_terminate(
    State(state): State<AppState>,
    json: Result<Json<WcsTerminate>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let req = body(json)?;
    let chosen: Vec<u64> = state
        .pushes
        .list()
        .iter()
        .filter(|p| match (&req.media_session_id, &req.stream_name) {
            (Some(id), _) => p.id.to_string() == *id,
            (None, Some(name)) => {
                p.stream == *name && req.rtmp_url.as_ref().is_none_or(|u| p.url == *u)
            }
            (None, None) => false,
        })
        .map(|p| p.id)
        .collect();
    if req.media_session_id.is_none() && req.stream_name.is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give mediaSessionId, or streamName (and optionally rtmpUrl)",
        ));
    }
    if chosen.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no push matches"));
    }
    for id in chosen {
        state.pushes.stop(id);
    }
    Ok(StatusCode::OK)
}
