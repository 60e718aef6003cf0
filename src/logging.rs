//! Structured logs with tracing; `RUST_LOG` filters (default `info`). Logs go to stderr, with
//! colours only on a terminal. webrtc-rs (`rtc`, `rtc_dtls`, `rtc_ice`, ...) logs every
//! handshake detail at info/warn; it is held to errors unless `RUST_LOG` names it (the
//! directive `rtc` is a prefix, so it covers all of its crates).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init() {
    init_with("info");
}

/// Like [`init`], with `default` as the filter when `RUST_LOG` is not set.
pub fn init_with(default: &str) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_string());
    let spec = if spec.contains("rtc") {
        spec
    } else {
        format!("{spec},rtc=error")
    };
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info,rtc=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
