//! `GET /api/v1/events`: live updates for the console as Server-Sent Events (`text/event-stream`,
//! WHATWG HTML "Server-sent events").
//!
//! One `snapshot` event at once on connect and then every second; its data is the JSON object
//! `{"streams": [...], "pulls": [...], "pushes": [...], "loadtests": [...], "cluster": {...}}`,
//! each exactly what its own `GET /api/v1/...` answers (the same functions build both). Comment lines keep
//! the connection alive through proxies should events ever pause. The event stream ends when
//! the server shuts down. It runs in the connection's own task (no task per client), so a client
//! that hangs up costs nothing once the next write fails, within a second.

use super::api::stream_infos;
use super::pushes::push_infos;
use super::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// How often a snapshot is sent.
const PERIOD: Duration = Duration::from_secs(1);
/// Comment lines when no event went out for this long.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(events))
}

/// Everything the console shows, in one object.
pub fn snapshot(state: &AppState) -> serde_json::Value {
    serde_json::json!({
        "streams": stream_infos(state),
        "pulls": state.pulls.list(),
        "pushes": push_infos(state),
        "loadtests": loadtests_snapshot(state),
        "cluster": super::cluster::cluster_view(state),
    })
}

/// The load tests, as `GET /api/v1/loadtests` lists them.
pub fn loadtests_snapshot(state: &AppState) -> serde_json::Value {
    serde_json::to_value(super::loadtests::reports(state)).unwrap_or_default()
}

/// Server-Sent Events: a `snapshot` event at once and then every second, its data the JSON
/// object `{"streams", "pulls", "pushes", "loadtests", "cluster"}`, each what its own `GET`
/// answers.
/// The stream does not end while the server runs.
#[utoipa::path(get, path = "/events", tag = "streams",
    responses((status = 200, description = "An endless event stream", content_type = "text/event-stream", body = String)))]
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut ticker = tokio::time::interval(PERIOD);
    // A client that reads slowly gets the latest snapshot, not a burst of stale ones.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let events = futures_util::stream::unfold((state, ticker), |(state, mut ticker)| async move {
        tokio::select! {
            _ = state.shutdown.cancelled() => None,
            // The first tick is at once: a new client gets a snapshot without waiting.
            _ = ticker.tick() => {
                let event = Event::default()
                    .event("snapshot")
                    .data(snapshot(&state).to_string());
                Some((Ok(event), (state, ticker)))
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}
