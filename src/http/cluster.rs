//! `/api/v1/cluster`: the nodes of the cluster with their load, and its streams with their
//! owners; and the answers that send a viewer elsewhere when this node is full.

use super::{ApiError, AppState};
use crate::cluster::{ClusterView, Steering};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster))
}

/// The cluster as this node sees it: every node (with its load and the age of its lease) and
/// every stream (with the node that publishes it). `enabled` is false outside cluster mode.
#[utoipa::path(get, path = "/cluster", tag = "cluster",
    responses((status = 200, description = "The cluster", body = ClusterView)))]
async fn cluster(State(state): State<AppState>) -> Json<ClusterView> {
    Json(cluster_view(&state))
}

/// The cluster as the API and the console's events show it.
pub(super) fn cluster_view(state: &AppState) -> ClusterView {
    state
        .cluster
        .as_ref()
        .map_or_else(ClusterView::disabled, |c| c.view())
}

/// How long a viewer refused by a full cluster should wait before asking again.
const RETRY_AFTER_SECS: u64 = 5;

/// A new viewer's request (`uri`) to this node when it is full: `307` to the least full node
/// with room (the same path and query there), or `503` with `Retry-After` when none has room.
/// `None`: serve it here.
pub(super) fn steer_viewer(state: &AppState, uri: &Uri) -> Option<Response> {
    let cluster = state.cluster.as_ref()?;
    match cluster.steer() {
        Steering::Stay => None,
        Steering::Redirect(base) => {
            let target = format!(
                "{base}{}",
                uri.path_and_query().map_or(uri.path(), |p| p.as_str())
            );
            tracing::info!(to = %target, "node full: viewer redirected");
            Some((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]).into_response())
        }
        Steering::Full => {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "every node of the cluster is full (cluster.max_viewers / max_bitrate_out_kbps); try again later",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
            Some(response)
        }
    }
}

/// The answer for a stream that is not here after the origin lookup: `503` when the cluster
/// directory could not be asked, else `404`.
pub(super) fn stream_missing(state: &AppState, name: &str) -> ApiError {
    match &state.cluster {
        Some(cluster) if !cluster.reachable() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stream {name:?} is not on this node, and the cluster directory is unreachable to look it up"),
        ),
        _ => ApiError::new(StatusCode::NOT_FOUND, format!("stream {name:?} not found")),
    }
}
