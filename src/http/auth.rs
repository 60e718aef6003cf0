//! Authorization on the HTTP side: the API guard (bearer tokens on `/api/*`, `/rest-api/*` and
//! `/metrics`), the token of a media request (`Authorization: Bearer` or `?token=`), and the
//! 401/403 answers with `WWW-Authenticate` (RFC 6750 3).

use super::AppState;
use crate::auth::{bearer_token, query_token, AccessRequest, Action, Denied};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::SocketAddr;

/// Paths whose requests need an API token when `auth.api_tokens` is set.
fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/rest-api/") || path == "/metrics"
}

/// Refuses API requests without a valid API token (when tokens are configured). It runs
/// inside the CORS layer, so preflights are answered without one and denials carry CORS
/// headers for the console.
pub async fn api_guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if state.auth.api_protected() && is_api_path(path) {
        let token = request_token(request.headers(), request.uri().query());
        if let Err(denied) = state.auth.check_api(token.as_deref(), path) {
            return denied.into_response();
        }
    }
    next.run(request).await
}

/// The credential of a request: `Authorization: Bearer` first, then `?token=`.
pub fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_string)
        .or_else(|| query.and_then(query_token))
}

/// Authorizes `action` on `stream` for an HTTP client (WHIP, WHEP, HLS, MSE).
pub async fn authorize(
    state: &AppState,
    action: Action,
    stream: &str,
    protocol: &'static str,
    token: Option<&str>,
    remote: SocketAddr,
) -> Result<(), Denied> {
    state
        .auth
        .authorize(&AccessRequest {
            action,
            stream,
            protocol,
            token,
            remote: Some(remote),
        })
        .await
}

impl IntoResponse for Denied {
    /// 401 with a `WWW-Authenticate: Bearer` challenge (with `error="invalid_token"` when a
    /// token was given, RFC 6750 3.1), or 403 with `error="insufficient_scope"`; the body is
    /// `{"error": reason}`.
    fn into_response(self) -> Response {
        let (status, challenge) = match &self {
            Denied::NoToken(_) => (
                StatusCode::UNAUTHORIZED,
                "Bearer realm=\"switchyard\"".to_string(),
            ),
            Denied::Unauthenticated(reason) => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "Bearer realm=\"switchyard\", error=\"invalid_token\", error_description=\"{}\"",
                    quoted(reason)
                ),
            ),
            Denied::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "Bearer realm=\"switchyard\", error=\"insufficient_scope\"".to_string(),
            ),
        };
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

/// A reason fit for a quoted-string in a header: printable ASCII without `"` and `\`.
fn quoted(reason: &str) -> String {
    reason
        .chars()
        .map(|c| {
            if c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') {
                c
            } else {
                '\''
            }
        })
        .collect()
}
