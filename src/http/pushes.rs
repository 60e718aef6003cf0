//! `/api/v1/pushes` and the WCS-compatible `/rest-api/push/*` (being written).

use super::AppState;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
}
