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

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)))]
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
        metrics::describe_gauge!(
            "switchyard_tasks_alive",
            "Tasks alive in the server's async runtime (sessions, pulls, pushes, ...)"
        );
        metrics::gauge!("switchyard_tasks_alive").set(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as f64,
        );
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
        {
            use crate::audio::{CONVERTED_TO_AAC, CONVERTED_TO_OPUS, CORRUPT_FRAMES};
            use std::sync::atomic::Ordering::Relaxed;
            metrics::describe_counter!(
                "switchyard_audio_converted_frames_total",
                "Audio frames converted for readers, by the codec converted to"
            );
            for (codec, total) in [("aac", &CONVERTED_TO_AAC), ("opus", &CONVERTED_TO_OPUS)] {
                metrics::counter!("switchyard_audio_converted_frames_total", "codec" => codec)
                    .absolute(total.load(Relaxed));
            }
            metrics::describe_counter!(
                "switchyard_audio_corrupt_frames_total",
                "Audio frames the converters could not decode and skipped"
            );
            metrics::counter!("switchyard_audio_corrupt_frames_total")
                .absolute(CORRUPT_FRAMES.load(Relaxed));
        }
        metrics::describe_counter!(
            "switchyard_limit_hits_total",
            "Clients refused or cut off by a limit or timeout ([limits], *_timeout_secs), by limit"
        );
        for (limit, hits) in crate::limits::hits() {
            metrics::counter!("switchyard_limit_hits_total", "limit" => limit.name())
                .absolute(hits);
        }
        metrics::describe_counter!(
            "switchyard_auth_denied_total",
            "Requests refused by authorization (401/403), by protocol and action"
        );
        for ((protocol, action), n) in state.auth.denials() {
            metrics::counter!("switchyard_auth_denied_total", "protocol" => protocol, "action" => action)
                .absolute(n);
        }
        if let Some(webrtc) = &state.webrtc {
            use std::sync::atomic::Ordering::Relaxed;
            let stats = webrtc.stats();
            metrics::describe_counter!(
                "switchyard_webrtc_datagrams_sent_total",
                "UDP datagrams the WebRTC engine sent"
            );
            metrics::describe_counter!(
                "switchyard_webrtc_datagrams_dropped_total",
                "UDP datagrams dropped because the socket buffer was full"
            );
            metrics::counter!("switchyard_webrtc_datagrams_sent_total")
                .absolute(stats.datagrams_sent.load(Relaxed));
            metrics::counter!("switchyard_webrtc_datagrams_dropped_total")
                .absolute(stats.datagrams_dropped.load(Relaxed));
            metrics::describe_counter!(
                "switchyard_webrtc_retransmitted_total",
                "RTP packets sent again to WebRTC viewers that asked (NACK)"
            );
            metrics::counter!("switchyard_webrtc_retransmitted_total")
                .absolute(stats.retransmitted.load(Relaxed));
            metrics::describe_gauge!(
                "switchyard_webrtc_send_delay_seconds",
                "Delay from a frame entering the bus to a viewer's WebRTC datagram leaving, recent datagrams"
            );
            for (q, v) in ["0.5", "0.9", "0.99"]
                .iter()
                .zip(stats.delay_percentiles_ms(&[50, 90, 99]))
            {
                if let Some(ms) = v {
                    metrics::gauge!("switchyard_webrtc_send_delay_seconds", "quantile" => *q)
                        .set(ms / 1000.0);
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.recorder.handle().render(),
    )
}
