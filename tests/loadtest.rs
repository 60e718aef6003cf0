//! The load generator against real servers: a second Switchyard node (every protocol it
//! serves), nginx-rtmp (RTMP and MPEG-TS HLS, a server we did not write), runs split among
//! load nodes, and bad input. The figures a run reports are checked against the target's own
//! counters (`GET /api/v1/streams/{name}`: readers by protocol, bytes out).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::nginx::Nginx;
use support::*;

/// The test source's frame rate (`ffmpeg_publish`: testsrc2 at 25 fps, 1 s GOP).
const FPS: f64 = 25.0;

/// Starts a run on `load` through its API; returns its id.
fn start_run(load: &Switchyard, spec: serde_json::Value) -> String {
    let (status, body) = load.request("POST", "/api/v1/loadtests", Some(&spec.to_string()));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("an id").to_string()
}

/// Waits for the end of run `id` on `load`; returns its report with per-session entries.
fn finished_report(load: &Switchyard, id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, report) = load.get_json(&format!("/api/v1/loadtests/{id}?sessions=1"));
        assert_eq!(status, 200, "{report}");
        if report["state"] != "running" {
            return report;
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {report}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every session of a finished run connected, played the whole run and received frames at
/// the source's rate.
fn assert_all_played(report: &serde_json::Value, sessions: u64) {
    assert_eq!(report["sessions"], sessions, "{report}");
    assert_eq!(report["connected"], sessions, "{report}");
    assert_eq!(report["playing"], sessions, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["first_frame_ms"]["count"] == sessions, "{report}");
    let per_session = report["per_session"]
        .as_array()
        .expect("per-session entries");
    assert_eq!(per_session.len() as u64, sessions);
    for session in per_session {
        let playing_for = num(&session["seconds"]) - num(&session["first_frame_ms"]) / 1000.0;
        let frames = num(&session["frames"]);
        // At least the source's rate over the time it played (a player may start on a
        // cached GOP, so it may get more); no freeze.
        assert!(
            frames >= FPS * playing_for * 0.85 && frames <= FPS * (playing_for + 2.5),
            "{frames} frames in {playing_for:.1} s: {session}"
        );
        assert!(num(&session["bitrate_bps"]) > 100_000.0, "{session}");
        assert_eq!(session["freezes"], 0, "{session}");
    }
    let fps = num(&report["fps"]);
    assert!(fps > FPS * 0.85 && fps < FPS * 1.4, "fps {fps}: {report}");
}

/// The stream's readers of `protocol` and its bytes out, on the target.
fn target_counters(target: &Switchyard, name: &str, protocol: &str) -> (u64, u64) {
    let (_, info) = target.get_json(&format!("/api/v1/streams/{name}"));
    (
        info["readers"][protocol].as_u64().unwrap_or(0),
        info["bytes_out"].as_u64().unwrap(),
    )
}

#[test]
fn loadtest_plays_every_protocol_of_a_second_node() {
    let target = Switchyard::start();
    let _publisher = ffmpeg_publish(&target.rtmp_url("live/src"), Encoding::Baseline, 25, 300);
    target.wait_for_stream("live/src", true);
    let load = Switchyard::start();
    let http = target.http;
    let cases = [
        ("rtmp", target.rtmp_url("live/src"), "rtmp"),
        ("whep", format!("http://{http}/whep/live/src"), "webrtc"),
        (
            "ll-hls",
            format!("http://{http}/hls/live/src/index.m3u8"),
            "hls",
        ),
        ("mse", format!("ws://{http}/mse/live/src"), "mse"),
    ];
    for (what, url, reader_protocol) in cases {
        let sessions = 20;
        let (_, bytes_before) = target_counters(&target, "live/src", reader_protocol);
        let id = start_run(
            &load,
            serde_json::json!({"target": url, "sessions": sessions, "duration_secs": 8, "ramp": 20}),
        );
        // Mid-run, the target counts every session as a reader, and the live report agrees.
        std::thread::sleep(Duration::from_secs(5));
        let (readers, _) = target_counters(&target, "live/src", reader_protocol);
        let (_, live) = load.get_json(&format!("/api/v1/loadtests/{id}"));
        assert_eq!(live["state"], "running", "{what}: {live}");
        assert_eq!(live["connected"], sessions, "{what}: {live}");
        if reader_protocol == "hls" {
            // HLS players are requests, not sessions the target can tell apart: it counts its
            // one muxer as the reader, and what the players fetch as bytes out.
            assert_eq!(readers, 1, "{what}: the target's readers");
        } else {
            assert_eq!(readers, sessions, "{what}: the target's readers");
        }
        let report = finished_report(&load, &id, Duration::from_secs(20));
        assert_eq!(report["state"], "finished");
        assert_eq!(
            report["protocol"],
            what.trim_start_matches("ll-"),
            "{report}"
        );
        assert_all_played(&report, sessions);
        // What the sessions received is what the target sent them (a few % in flight at the
        // end, and for WHEP the SRTP overhead on top of the RTP the target counts).
        std::thread::sleep(Duration::from_secs(1));
        let (readers_after, bytes_after) = target_counters(&target, "live/src", reader_protocol);
        if reader_protocol != "hls" {
            assert_eq!(readers_after, 0, "{what}: sessions left behind");
        }
        let sent = (bytes_after - bytes_before) as f64;
        let received = num(&report["bytes_total"]);
        assert!(
            (received / sent - 1.0).abs() < 0.10,
            "{what}: received {received} bytes, the target sent {sent}"
        );
        if what == "ll-hls" {
            assert_eq!(report["mode"], "ll-hls", "{report}");
        }
        if what == "whep" {
            assert_eq!(report["packets_lost"], 0, "{report}");
            assert!(num(&report["connect_ms"]["p50"]) > 0.0, "{report}");
        }
    }
}

#[test]
fn loadtest_plays_nginx_rtmp_over_rtmp_and_hls() {
    let nginx = Nginx::start_hls();
    let _publisher = ffmpeg_publish(&nginx.url("src"), Encoding::Baseline, 25, 300);
    // nginx writes its first fragment after one.
    let playlist = nginx.hls_url("src");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&playlist).call().is_err() {
        assert!(Instant::now() < deadline, "nginx made no playlist");
        std::thread::sleep(Duration::from_millis(200));
    }
    let load = Switchyard::start();
    for (url, protocol) in [(nginx.url("src"), "rtmp"), (playlist.clone(), "hls")] {
        let id = start_run(
            &load,
            serde_json::json!({"target": url, "sessions": 10, "duration_secs": 10}),
        );
        let report = finished_report(&load, &id, Duration::from_secs(25));
        assert_eq!(report["protocol"], protocol);
        if protocol == "hls" {
            // Plain HLS of 2 s MPEG-TS fragments: a player starts at the last one.
            assert_eq!(report["mode"], "hls", "{report}");
            assert_eq!(report["connected"], 10, "{report}");
            assert_eq!(report["failed"], 0, "{report}");
            assert!(num(&report["frames_total"]) > 10.0 * FPS * 4.0, "{report}");
            assert!(num(&report["fps"]) > FPS * 0.7, "{report}");
        } else {
            assert_all_played(&report, 10);
        }
    }
}

#[test]
fn loadtest_splits_a_run_among_load_nodes() {
    let target = Switchyard::start();
    let _publisher = ffmpeg_publish(&target.rtmp_url("live/src"), Encoding::Baseline, 25, 300);
    target.wait_for_stream("live/src", false);
    let coordinator = Switchyard::start();
    let helper = Switchyard::start();
    let id = start_run(
        &coordinator,
        serde_json::json!({
            "target": target.rtmp_url("live/src"),
            "sessions": 11,
            "duration_secs": 6,
            "nodes": [{"url": format!("http://{}", helper.http), "token": "not-checked"}],
        }),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(target_counters(&target, "live/src", "rtmp").0, 11);
    let (_, helper_runs) = helper.get_json("/api/v1/loadtests");
    assert_eq!(helper_runs[0]["sessions"], 5, "{helper_runs}");
    let report = finished_report(&coordinator, &id, Duration::from_secs(20));
    assert_all_played(&report, 11);
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{report}");
    assert_eq!(
        (nodes[0]["node"].as_str(), nodes[0]["sessions"].as_u64()),
        (Some("local"), Some(6))
    );
    assert_eq!(nodes[1]["sessions"], 5);
    assert_eq!(nodes[1]["connected"], 5);
    let from_helper = report["per_session"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["node"]
                .as_str()
                .is_some_and(|n| n.contains(&helper.http.to_string()))
        })
        .count();
    assert_eq!(from_helper, 5);

    // Stopping the run on the coordinator stops the helper's share too.
    let id = start_run(
        &coordinator,
        serde_json::json!({
            "target": target.rtmp_url("live/src"),
            "sessions": 4,
            "duration_secs": 120,
            "nodes": [{"url": format!("http://{}", helper.http)}],
            "local": false,
        }),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (status, _) = coordinator.request("DELETE", &format!("/api/v1/loadtests/{id}"), None);
    assert_eq!(status, 200);
    let report = finished_report(&coordinator, &id, Duration::from_secs(10));
    assert_eq!(report["state"], "stopped", "{report}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, runs) = helper.get_json("/api/v1/loadtests");
        if runs
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] != "running")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the helper's share still runs: {runs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Their RTMP connections close too (the target sees each go as its socket closes).
    let deadline = Instant::now() + Duration::from_secs(10);
    while target_counters(&target, "live/src", "rtmp").0 != 0 {
        assert!(
            Instant::now() < deadline,
            "the target still has RTMP readers of the stopped run"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn loadtest_bad_input_gets_clear_errors() {
    let server = Switchyard::start();
    // The command line: one line saying what is wrong, a non-zero exit.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("loadtest")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (args, said) in [
        (&["ftp://h/x"][..], "unsupported scheme ftp://"),
        (&["wss://h/mse/x"][..], "wss:// is not supported"),
        (
            &["rtmp://h/live/x", "--sessions", "0"][..],
            "sessions must be at least 1",
        ),
        (
            &["rtmp://h/live/x", "--sessions", "99999999"][..],
            "more than one run may open",
        ),
        (
            &["rtmp://h/live/x", "--duration", "0"][..],
            "more than 0 seconds",
        ),
        (
            &[
                "rtmp://h/live/x",
                "--sessions",
                "100",
                "--ramp",
                "1",
                "--duration",
                "10",
            ][..],
            "the ramp takes 100.0 s",
        ),
        (
            &["rtmp://h/live/x", "--node", "ftp://other"][..],
            "load node URL",
        ),
    ] {
        let (ok, stderr) = cli(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    // An unreachable target: every session fails with the reason; exit status 1; the JSON
    // report has one entry per session.
    let dir = TempDir::new("loadtest");
    let json = dir.path.join("report.json");
    let (ok, stderr) = cli(&[
        "rtmp://127.0.0.1:1/live/x",
        "--sessions",
        "3",
        "--duration",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("3 of 3 sessions failed"), "{stderr}");
    assert!(stderr.contains("connect"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["per_session"].as_array().unwrap().len(), 3);
    assert!(report["per_session"][0]["error"]
        .as_str()
        .unwrap()
        .contains("connect"));
    // An unknown stream on a live server: refused plays, said so.
    let (ok, stderr) = cli(&[
        &server.rtmp_url("live/none"),
        "--sessions",
        "2",
        "--duration",
        "2",
    ]);
    assert!(!ok);
    assert!(stderr.contains("2 of 2 sessions failed"), "{stderr}");

    // The API: 400 with the reason, 404 for unknown runs.
    for (body, said) in [
        ("{", "malformed JSON"),
        (
            r#"{"sessions": 1, "duration_secs": 1}"#,
            "missing field `target`",
        ),
        (
            r#"{"target": "ftp://x", "sessions": 1, "duration_secs": 1}"#,
            "unsupported scheme",
        ),
        (
            r#"{"target": "rtmp://h/a/b", "sessions": 0, "duration_secs": 1}"#,
            "at least 1",
        ),
        (
            r#"{"target": "rtmp://h/a/b", "sessions": 1e9, "duration_secs": 1}"#,
            "invalid load test",
        ),
        (
            r#"{"target": "rtmp://h/a/b", "sessions": 5000000, "duration_secs": 1}"#,
            "more than one run",
        ),
        (
            r#"{"target": "rtmp://h/a/b", "sessions": 1, "duration_secs": -1}"#,
            "invalid load test",
        ),
    ] {
        let (status, answer) = server.request("POST", "/api/v1/loadtests", Some(body));
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(said), "{body}: {error}");
    }
    assert_eq!(server.get_json("/api/v1/loadtests/nope").0, 404);
    assert_eq!(
        server.request("DELETE", "/api/v1/loadtests/nope", None).0,
        404
    );
    assert_eq!(
        server.get_json("/api/v1/loadtests").1,
        serde_json::json!([])
    );
}

#[test]
fn latency_probe_through_rtmp_to_whep_ll_hls_and_rtmp() {
    let target = Switchyard::start();
    let _source = probe_source(PROBE_FIXTURE, &target.rtmp_url("live/probe"), 120);
    target.wait_for_stream("live/probe", true);
    let load = Switchyard::start();
    let http = target.http;
    for (url, path, under_ms) in [
        (
            format!("http://{http}/whep/live/probe"),
            "rtmp -> whep",
            500.0,
        ),
        (
            format!("http://{http}/hls/live/probe/index.m3u8"),
            "rtmp -> hls",
            4000.0,
        ),
        (format!("ws://{http}/mse/live/probe"), "rtmp -> mse", 1000.0),
        (target.rtmp_url("live/probe"), "rtmp -> rtmp", 500.0),
    ] {
        let id = start_run(
            &load,
            serde_json::json!({"target": url, "sessions": 3, "duration_secs": 8}),
        );
        let report = finished_report(&load, &id, Duration::from_secs(20));
        assert_eq!(report["failed"], 0, "{report}");
        let latency = &report["latency_ms"][path];
        // Every frame carries a stamp; the median frame arrives a plausible time after it was
        // sent (a player joining on the cached GOP gets older frames first: the tail is long).
        assert!(
            num(&latency["count"]) >= num(&report["frames_total"]) * 0.95,
            "{path}: {report}"
        );
        let p50 = num(&latency["p50"]);
        assert!(
            p50 > 0.0 && p50 < under_ms,
            "{path}: p50 {p50} ms: {report}"
        );
        assert!(num(&latency["p99"]) >= p50, "{report}");
    }
}
