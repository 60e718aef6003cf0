//! `/metrics` in the Prometheus text format. Values are read from the bus's own counters at
//! scrape time, so the media path pays nothing for metrics.

use super::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use std::collections::BTreeSet;
use std::sync::Mutex;

pub struct Metrics {
    recorder: PrometheusRecorder,
    /// Reader protocols seen so far, so a protocol whose readers left reads 0, not stale.
    protocols: Mutex<BTreeSet<&'static str>>,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            recorder: PrometheusBuilder::new().build_recorder(),
            protocols: Mutex::new(BTreeSet::new()),
        }
    }
}

pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let totals = state.registry.totals();
    let m = &state.metrics;
    metrics::with_local_recorder(&m.recorder, || {
        metrics::describe_gauge!("switchyard_streams", "Streams on the bus");
        metrics::describe_gauge!("switchyard_readers", "Readers attached, by output protocol");
        metrics::describe_counter!(
            "switchyard_bytes_in_total",
            "Media payload bytes received from publishers"
        );
        metrics::describe_counter!("switchyard_bytes_out_total", "Bytes sent to readers");
        metrics::describe_counter!(
            "switchyard_frames_dropped_total",
            "Frames dropped for readers that fell behind"
        );
        metrics::gauge!("switchyard_streams").set(totals.streams as f64);
        let mut protocols = m.protocols.lock().unwrap();
        protocols.extend(totals.readers_by_protocol.iter().map(|(p, _)| *p));
        for protocol in protocols.iter() {
            let n = totals
                .readers_by_protocol
                .iter()
                .find(|(p, _)| p == protocol)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("switchyard_readers", "protocol" => *protocol).set(n as f64);
        }
        metrics::counter!("switchyard_bytes_in_total").absolute(totals.bytes_in);
        metrics::counter!("switchyard_bytes_out_total").absolute(totals.bytes_out);
        metrics::counter!("switchyard_frames_dropped_total").absolute(totals.frames_dropped);
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.recorder.handle().render(),
    )
}
