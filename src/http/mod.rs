//! The HTTP surface (axum): REST API, health, Prometheus metrics. Every error is JSON
//! `{"error": "..."}` with a 4xx/5xx status.

mod api;
mod conn;
mod media;
mod metrics;
mod pulls;
mod pushes;
mod webrtc;

pub use conn::{ConnService, ConnTimeouts, MakeConnService, TimedIo, TimedListener};

use crate::bus::Registry;
use crate::config::Config;
use crate::outputs::hls::HlsOutputs;
use crate::outputs::mse::MseSettings;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub metrics: Arc<metrics::Metrics>,
    pub hls: HlsOutputs,
    pub mse: MseSettings,
    pub pulls: Arc<crate::pulls::PullManager>,
    pub pushes: Arc<crate::pushes::PushManager>,
    /// The WebRTC engine (WHIP/WHEP); `None` only in tests that build a state without it.
    pub webrtc: Option<crate::webrtc::WebRtc>,
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(registry: Registry, config: &Config, shutdown: CancellationToken) -> Self {
        AppState {
            hls: HlsOutputs::new(registry.clone(), config.hls.to_settings(), shutdown.clone()),
            mse: config.mse.to_settings(),
            pulls: pull_manager(&registry, config, &shutdown),
            pushes: Arc::new(crate::pushes::PushManager::new(
                registry.clone(),
                config,
                shutdown.clone(),
            )),
            registry,
            metrics: Arc::new(metrics::Metrics::new()),
            webrtc: None,
            shutdown,
        }
    }
}

/// The pull manager, also answering the bus when a reader wants a stream nobody publishes
/// (on-demand pulls).
fn pull_manager(
    registry: &Registry,
    config: &Config,
    shutdown: &CancellationToken,
) -> Arc<crate::pulls::PullManager> {
    let manager = Arc::new(crate::pulls::PullManager::new(
        registry.clone(),
        config,
        shutdown.clone(),
    ));
    let weak = Arc::downgrade(&manager);
    let wait = std::time::Duration::from_secs(config.pull.connect_timeout_secs);
    registry.set_demand_hook(
        Arc::new(move |name| weak.upgrade().is_some_and(|m| m.demand(name))),
        wait,
    );
    manager
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/metrics", get(metrics::render))
        .nest(
            "/api/v1",
            api::routes().merge(pulls::routes()).merge(pushes::routes()),
        )
        .nest("/rest-api/push", pushes::wcs_routes())
        .nest("/rest-api/pull", pulls::wcs_routes())
        .merge(media::routes())
        .merge(webrtc::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this resource",
            )
        })
        .layer(tower_http::cors::CorsLayer::permissive())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            webrtc::plain_options,
        ))
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
