//! The HTTP surface (axum): REST API, health, Prometheus metrics. Every error is JSON
//! `{"error": "..."}` with a 4xx/5xx status.

mod api;
mod metrics;

use crate::bus::Registry;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn new(registry: Registry) -> Self {
        AppState {
            registry,
            metrics: Arc::new(metrics::Metrics::new()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/metrics", get(metrics::render))
        .nest("/api/v1", api::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this resource",
            )
        })
        .layer(tower_http::cors::CorsLayer::permissive())
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such resource: {}", uri.path()),
    )
}

/// An error answered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<crate::bus::BusError> for ApiError {
    fn from(e: crate::bus::BusError) -> Self {
        use crate::bus::BusError::*;
        let status = match e {
            InvalidName(_) => StatusCode::BAD_REQUEST,
            AlreadyPublishing { .. } => StatusCode::CONFLICT,
            NotFound(_) => StatusCode::NOT_FOUND,
        };
        ApiError::new(status, e.to_string())
    }
}
