//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of the HTTP surface (OpenAPI
//! Specification 3.1.0), made from the routes' `#[utoipa::path]` annotations and the body
//! types' `ToSchema` derives (see [`super::documented_routes`]).
//!
//! Bearer tokens (RFC 6750, `Authorization: Bearer`) are declared as optional security: a
//! server with no API tokens configured asks for none.

use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, License, OpenApi};

/// The name of the bearer-token security scheme in the description.
const BEARER: &str = "bearer";

/// The description of every route this server has.
pub fn description() -> OpenApi {
    let mut api = super::documented_routes().into_openapi();
    api.info = InfoBuilder::new()
        .title("Switchyard")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Live-media gateway: REST API (streams, pulls, pushes, load tests, WebRTC sessions), \
             WCS-compatible /rest-api routes, WHIP/WHEP signalling, HLS, MSE, pages, health and \
             metrics. Errors are JSON {\"error\": \"...\"}.",
        ))
        .license(Some(License::new(env!("CARGO_PKG_LICENSE"))))
        .build();
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    // `{}` first: no token is needed unless the server's configuration asks for one.
    api.security = Some(vec![
        SecurityRequirement::default(),
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
    ]);
    api
}

/// This description, as JSON.
#[utoipa::path(get, path = "/openapi.json", tag = "api",
    responses((status = 200, description = "The OpenAPI 3.1 description of this server's HTTP API",
        content_type = "application/json", body = Object)))]
pub(super) async fn serve() -> impl IntoResponse {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    // Serialising plain structs with string keys cannot fail; were it ever to, the answer says so.
    let json = JSON.get_or_init(|| {
        Bytes::from(description().to_pretty_json().unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("the description does not serialise: {e}") })
                .to_string()
        }))
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone())
}

/// The `{name}` path parameter of every per-stream route.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the parameter; the handlers take the catch-all path
pub(super) struct StreamName {
    /// A stream name (`crate::bus::validate_name`): segments of `[A-Za-z0-9_.-]` (not `.` or
    /// `..`) joined by `/`, at most 255 bytes. In a URL its `/` may stay as it is.
    #[param(
        pattern = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        max_length = 255,
        example = "live/cam1"
    )]
    name: String,
}
