//! Headless Chromium plays `/play/{name}` in MSE mode and in HLS mode (hls.js), driven by
//! `tests/browser/play.mjs` (playwright-core with Debian's Chromium).

mod support;

use std::process::Command;
use support::*;

use support::browser::play;

/// [`assert_plays_fmp4`](support::browser::assert_plays_fmp4), at the published 640x360.
fn assert_plays(report: &serde_json::Value, what: &str) {
    support::browser::assert_plays_fmp4(report, what);
    assert_eq!(
        (
            report["videoWidth"].as_u64(),
            report["videoHeight"].as_u64()
        ),
        (Some(640), Some(360)),
        "{what}: {report}"
    );
}

#[test]
fn chromium_plays_mse_and_hls() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/web"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/web", true);
    let mse = play(&server.api("/play/live/web?mode=mse"), 8);
    assert_plays(&mse, "MSE");
    let hls = play(&server.api("/play/live/web?mode=hls"), 12);
    assert_plays(&hls, "HLS (hls.js)");
}

#[test]
fn chromium_shows_a_clear_error_for_an_unknown_stream() {
    let server = Switchyard::start();
    let report = play(&server.api("/play/live/nothing?mode=mse"), 3);
    let errors = report["errors"].to_string();
    assert!(errors.contains("not found"), "{report}");
}

#[test]
fn console_lists_streams_with_links_to_the_player() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/listed"), Encoding::Baseline, 25, 30);
    server.wait_for_stream("live/listed", true);
    let page = ureq::get(&server.api("/"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        page.contains("/api/v1/streams"),
        "the console reads the API"
    );
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/play.mjs"
        ))
        .arg(server.api("/"))
        .arg("3")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
    )
    .unwrap();
    assert_eq!(
        report["consoleErrors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let text = report["bodyText"].as_str().unwrap_or_default();
    assert!(
        text.contains("live/listed")
            && text.contains("avc1.42C01E 640x360")
            && text.contains("rtmp from 127.0.0.1"),
        "{text}"
    );
}
