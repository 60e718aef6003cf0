//! `/api/v1/pulls`: streams fetched from elsewhere (RTSP cameras) and published on the bus.
//!
//! - `POST /pulls` `{"source": URL, "name": LOCAL, "on_demand"?: bool}` -> `201 {"id": ...}`
//!   (400 for bad JSON, a malformed or unsupported URL or an invalid name; 409 when the name is
//!   in use). The call never waits for the source: an unreachable one shows in the state.
//! - `GET /pulls`, `GET /pulls/{id}`: id, source (credentials redacted), name, state
//!   (`connecting|running|retrying|failed`), since, retries, last error, bitrate in.
//! - `DELETE /pulls/{id}` -> 204 (404 for an unknown id).

use super::{ApiError, AppState};
use crate::pulls::{PullApiError, PullInfo};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/pulls", get(list).post(create))
        .route("/pulls/{id}", get(show).delete(remove))
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
    let id = state.pulls.start(&req.source, &req.name, req.on_demand)?;
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
