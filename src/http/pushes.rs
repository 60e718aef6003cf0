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
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pushes", get(list).post(create))
        .route("/pushes/{id}", get(show).delete(remove))
}

/// The WCS-compatible routes, mounted at `/rest-api/push`.
pub fn wcs_routes() -> Router<AppState> {
    Router::new()
        .route("/startup", post(wcs_startup))
        .route("/find_all", post(wcs_find_all).get(wcs_find_all))
        .route("/terminate", post(wcs_terminate))
}

/// A JSON body, with malformed JSON answered as our JSON error (400).
fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(t)| t).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad JSON body: {}", e.body_text()),
        )
    })
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePush {
    stream: String,
    url: String,
}

#[derive(Serialize)]
struct PushInfo {
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

async fn create(
    State(state): State<AppState>,
    json: Result<Json<CreatePush>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req = body(json)?;
    let push = state.pushes.start(&req.stream, &req.url)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": push.id.to_string() })),
    ))
}

async fn list(State(state): State<AppState>) -> Json<Vec<PushInfo>> {
    Json(state.pushes.list().iter().map(PushInfo::from).collect())
}

fn find(state: &AppState, id: &str) -> Result<Arc<Push>, ApiError> {
    id.parse()
        .ok()
        .and_then(|id| state.pushes.get(id))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no push with id {id:?}")))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PushInfo>, ApiError> {
    Ok(Json(PushInfo::from(&find(&state, &id)?)))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let push = find(&state, &id)?;
    state.pushes.stop(push.id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WcsStartup {
    stream_name: String,
    rtmp_url: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WcsTerminate {
    media_session_id: Option<String>,
    stream_name: Option<String>,
    rtmp_url: Option<String>,
}

fn wcs_object(p: &Arc<Push>) -> serde_json::Value {
    let state = serde_json::to_value(p.status().state).unwrap_or_default();
    serde_json::json!({
        "mediaSessionId": p.id.to_string(),
        "streamName": p.stream,
        "rtmpUrl": p.url,
        "status": state.as_str().unwrap_or("").to_uppercase(),
    })
}

async fn wcs_startup(
    State(state): State<AppState>,
    json: Result<Json<WcsStartup>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req = body(json)?;
    let push = state.pushes.start(&req.stream_name, &req.rtmp_url)?;
    Ok(Json(wcs_object(&push)))
}

async fn wcs_find_all(State(state): State<AppState>) -> Json<Vec<serde_json::Value>> {
    Json(state.pushes.list().iter().map(wcs_object).collect())
}

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
