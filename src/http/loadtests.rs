//! `/api/v1/loadtests`: load tests run by this node (`crate::loadtest`), for the console and
//! for coordinating nodes that give this one a share of a run.
//!
//! - `POST /loadtests` `{"target": URL, "sessions": N, "duration_secs": S, "ramp"?: R,
//!   "nodes"?: [{"url", "token"?}], "local"?: bool}` -> `201` with the run's report (its
//!   `id`); 400 with the reason for a bad target URL or scheme, zero or absurd session counts,
//!   a zero or over-long duration, a ramp longer than the run, a bad load node URL. An
//!   unreachable target is not refused: its sessions fail, with the reason in `failures`.
//! - `GET /loadtests`: every run kept (running ones and the newest finished), newest last,
//!   without per-session entries.
//! - `GET /loadtests/{id}` (`?sessions=1`: with one entry per session): the live figures.
//! - `DELETE /loadtests/{id}`: stops the run (its other load nodes' shares too) and answers its
//!   report; 404 for an unknown id.

use super::{ApiError, AppState};
use crate::loadtest::{LoadSpec, LoadTestReport};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, stop))
}

#[utoipa::path(post, path = "/loadtests", tag = "loadtests", operation_id = "create_loadtest",
    request_body = LoadSpec,
    responses(
        (status = 201, description = "The run started: its report, with its id", body = LoadTestReport),
        (status = 400, description = "Bad JSON, a bad target URL or scheme, zero or absurd session counts, a zero or over-long duration, a ramp longer than the run, or a bad load node URL", body = super::ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    body: Result<Json<LoadSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<LoadTestReport>), ApiError> {
    let spec = super::json_body(body, "load test")?;
    let test = state
        .loadtests
        .start(spec)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
    Ok((StatusCode::CREATED, Json(test.report(false))))
}

#[utoipa::path(get, path = "/loadtests", tag = "loadtests", operation_id = "list_loadtests",
    responses((status = 200, description = "Every run kept, oldest first, without per-session entries", body = Vec<LoadTestReport>)))]
async fn list(State(state): State<AppState>) -> Json<Vec<LoadTestReport>> {
    Json(reports(&state))
}

/// Every run kept, oldest first, without per-session entries (also the console's snapshot).
pub(super) fn reports(state: &AppState) -> Vec<LoadTestReport> {
    state
        .loadtests
        .list()
        .iter()
        .map(|test| test.report(false))
        .collect()
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ShowQuery {
    /// `1`, `true` or `yes`: with one entry per session.
    #[serde(default)]
    sessions: Option<String>,
}

#[utoipa::path(get, path = "/loadtests/{id}", tag = "loadtests", operation_id = "get_loadtest",
    params(("id" = String, Path, description = "The run's id"), ShowQuery),
    responses(
        (status = 200, description = "The run's live figures", body = LoadTestReport),
        (status = 404, description = "No such run", body = super::ErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Result<Json<LoadTestReport>, ApiError> {
    let test = find(&state, &id)?;
    let per_session = query
        .sessions
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    Ok(Json(test.report(per_session)))
}

#[utoipa::path(delete, path = "/loadtests/{id}", tag = "loadtests", operation_id = "stop_loadtest",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run stopped (its other load nodes' shares too): its report", body = LoadTestReport),
        (status = 404, description = "No such run", body = super::ErrorBody),
    ))]
async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LoadTestReport>, ApiError> {
    let test = find(&state, &id)?;
    test.stop();
    Ok(Json(test.report(false)))
}

fn find(state: &AppState, id: &str) -> Result<std::sync::Arc<crate::loadtest::LoadTest>, ApiError> {
    state
        .loadtests
        .get(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no load test {id}")))
}
