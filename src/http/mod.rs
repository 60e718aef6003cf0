//! The HTTP surface (axum): REST API, health, Prometheus metrics. Every error is JSON
//! `{"error": "..."}` with a 4xx/5xx status.
//!
//! Every route is registered through utoipa-axum's `routes!`, which adds the handler to the
//! router and its `#[utoipa::path]` annotation to the OpenAPI 3.1 description served at
//! `GET /api/v1/openapi.json` ([`openapi`]), so the two cannot drift apart.

mod api;
mod auth;
mod cluster;
mod conn;
mod events;
mod loadtests;
mod media;
mod metrics;
mod openapi;
mod pulls;
mod pushes;
mod tls;
mod webrtc;

pub use conn::{ConnIo, ConnService, ConnTimeouts, MakeConnService, TimedIo, TimedListener};
pub use tls::{TlsIo, TlsListener};

use crate::bus::Registry;
use crate::config::Config;
use crate::outputs::hls::HlsOutputs;
use crate::outputs::mse::MseSettings;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// Load tests this node runs (`/api/v1/loadtests`).
    pub loadtests: crate::loadtest::LoadTests,
    /// Open sessions per remote IP (`limits.max_sessions_per_ip`), shared with the listeners.
    pub ip_sessions: Arc<crate::limits::IpSessions>,
    /// API tokens and publish/play rules; open (no checks) until the server sets its own.
    pub auth: Arc<crate::auth::Auth>,
    pub shutdown: CancellationToken,
    /// `limits.max_request_body_bytes`.
    pub max_request_body_bytes: usize,
    /// This node in the cluster (`[cluster]`), once the server has joined it.
    pub cluster: Option<crate::cluster::Cluster>,
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
            loadtests: crate::loadtest::LoadTests::default(),
            ip_sessions: crate::limits::IpSessions::new(&config.limits),
            max_request_body_bytes: config.limits.max_request_body_bytes,
            auth: Arc::new(crate::auth::Auth::default()),
            cluster: None,
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
    let (router, _) = documented_routes().split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this resource",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            state.max_request_body_bytes,
        ))
        .layer(axum::middleware::map_response(body_too_large_as_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::api_guard,
        ))
        .layer(tower_http::cors::CorsLayer::permissive())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            webrtc::plain_options,
        ))
        .with_state(state)
}

/// Every route with its description: the one list both the router and
/// `/api/v1/openapi.json` are made from.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics::render))
        .nest(
            "/api/v1",
            api::routes()
                .merge(pulls::routes())
                .merge(pushes::routes())
                .merge(loadtests::routes())
                .merge(events::routes())
                .merge(cluster::routes())
                .routes(routes!(openapi::serve)),
        )
        .nest("/rest-api/push", pushes::wcs_routes())
        .nest("/rest-api/pull", pulls::wcs_routes())
        .merge(media::routes())
        .merge(webrtc::routes())
}

/// Registers `routes` (made by `routes!`) at the axum path `at`, which differs from the paths
/// they describe: a stream name may hold `/`, so axum matches it with a catch-all (`{*name}`)
/// that the handler splits, while the description names each parameter (`{name}`,
/// `{session}`), as OpenAPI paths cannot express a catch-all.
fn routes_at(
    router: OpenApiRouter<AppState>,
    at: &str,
    (schemas, paths, method_router): utoipa_axum::router::UtoipaMethodRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let mut described = utoipa::openapi::OpenApi::default();
    described.paths = paths;
    described
        .components
        .get_or_insert_with(Default::default)
        .schemas
        .extend(schemas);
    router.merge(OpenApiRouter::with_openapi(described).route(at, method_router))
}

/// The answer of `GET /healthz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`: the server answers.
    status: &'static str,
}

/// Liveness: answers as long as the server runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The server runs", body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such resource: {}", uri.path()),
    )
}

/// A body over `limits.max_request_body_bytes` is refused by axum's extractors with a plain
/// text 413; every error of ours is JSON. Counted as a limit hit.
async fn body_too_large_as_json(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE
        || response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        return response;
    }
    body_too_large().into_response()
}

/// 413 for a body over `limits.max_request_body_bytes`, counted.
fn body_too_large() -> ApiError {
    crate::limits::hit(crate::limits::Limit::MaxRequestBodyBytes);
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is larger than this server accepts (limits.max_request_body_bytes)",
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

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    /// What went wrong, in plain words.
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// A JSON request body, or our JSON error (400) saying what is wrong with it: `bad JSON body: `
/// and a missing content type or malformed JSON, or `invalid {what}: ` and serde's words on the
/// missing or mistyped field. The body itself is never quoted (it may hold a password or a
/// token).
pub(crate) fn json_body<T>(
    json: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    what: &str,
) -> Result<T, ApiError> {
    use axum::extract::rejection::JsonRejection;
    json.map(|Json(t)| t).map_err(|e| {
        let message = match e {
            JsonRejection::MissingJsonContentType(_) => {
                "bad JSON body: expected Content-Type: application/json".to_string()
            }
            JsonRejection::JsonDataError(e) => {
                // axum prefixes serde's message with its own sentence; keep serde's part, which
                // names fields and types, not values.
                let text = e.body_text();
                let detail = text
                    .split_once(": ")
                    .map_or(text.as_str(), |(_, rest)| rest);
                format!("invalid {what}: {detail}")
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return body_too_large();
            }
            _ => "bad JSON body: malformed JSON".to_string(),
        };
        ApiError::new(StatusCode::BAD_REQUEST, message)
    })
}

impl From<crate::bus::BusError> for ApiError {
    fn from(e: crate::bus::BusError) -> Self {
        use crate::bus::BusError::*;
        let status = match e {
            InvalidName(_) => StatusCode::BAD_REQUEST,
            AlreadyPublishing { .. } | ClaimedElsewhere { .. } => StatusCode::CONFLICT,
            NotFound(_) => StatusCode::NOT_FOUND,
            TooManyStreams { .. } | TooManyReaders { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}
