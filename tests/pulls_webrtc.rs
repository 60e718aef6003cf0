//! Server-to-server WebRTC pulls (issue 5): one Switchyard node pulls a stream from another
//! over WHEP (RFC 9725, this server as the client) and republishes it under a local name.
//! Real processes on loopback: Switchyard nodes, ffmpeg publishing over RTMP, ffprobe/ffmpeg
//! reading back over RTMP and HLS, headless Chromium playing over WHEP.
//!
//! ffmpeg 5.1 publishes H.264 + AAC over RTMP; the origin converts the AAC to Opus for WebRTC
//! (without the transcode feature the pulled streams are video only).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::browser::play;
use support::*;

/// Quick retries and a short media timeout, so recovery is seen within a test's patience.
const FAST_RETRY: &str =
    "[pull]\nretry_min_ms = 200\nretry_max_ms = 1000\nconnect_timeout_secs = 3\n";

fn start_pull(edge: &Switchyard, body: serde_json::Value) -> String {
    let (status, created) = edge.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// The WebRTC sessions of a node that play `stream` (WHEP viewers, including pulls of it).
fn play_sessions(node: &Switchyard, stream: &str) -> usize {
    let (_, sessions) = node.get_json("/api/v1/webrtc/sessions");
    sessions
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "play" && s["stream"] == stream)
        .count()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn whep_pull_republishes_for_rtmp_hls_and_whep_and_deletes_the_remote_session() {
    let origin = Switchyard::start();
    let edge = Switchyard::start_with_config(FAST_RETRY);
    let _publisher = ffmpeg_publish(&origin.rtmp_url("live/src"), Encoding::Baseline, 25, 90);
    origin.wait_for_stream("live/src", true);

    let id = start_pull(
        &edge,
        serde_json::json!({
            "source": origin.api("/whep/live/src"),
            "name": "edge/src",
            "token": "not-checked-by-switchyard",
        }),
    );
    let path = format!("/api/v1/pulls/{id}");
    let info = edge.wait_for_state(&path, "running", Duration::from_secs(15));
    assert_eq!(info["protocol"], "whep-pull", "{info}");
    assert_eq!(info["source"], origin.api("/whep/live/src"), "{info}");
    edge.wait_for_stream("edge/src", false);
    assert_eq!(
        play_sessions(&origin, "live/src"),
        1,
        "the pull is a WHEP viewer of the origin"
    );

    // RTMP and HLS from the edge: ffprobe sees the H.264 video, ffmpeg decodes it.
    assert_streams(
        &edge.rtmp_url("edge/src"),
        &["codec_name=h264|profile=Constrained Baseline|width=640|height=360"],
    );
    assert_decodes(&edge.api("/hls/edge/src/index.m3u8"), 4, 60);
    // WHEP from the edge: Chromium plays the pulled stream.
    let report = play(&edge.api("/play/edge/src?mode=webrtc"), 8);
    support::browser::assert_webrtc_video(&report, "video/H264");

    // Statistics of the pull: bitrate, loss, round-trip time, tracks.
    let (_, info) = edge.get_json(&path);
    assert!(info["bitrate_in_bps"].as_u64().unwrap() > 100_000, "{info}");
    assert_eq!(info["packets_lost"], 0, "loopback loses nothing: {info}");
    assert!(
        info["rtt_ms"].as_f64().is_some_and(|ms| ms < 100.0),
        "{info}"
    );
    assert_eq!(
        (info["has_video"].as_bool(), info["has_audio"].as_bool()),
        (Some(true), Some(cfg!(feature = "transcode"))),
        "{info}"
    );
    let (_, list) = edge.get_json("/api/v1/pulls");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // More pulls between the same two nodes at once (each has a UDP port of its own).
    let more: Vec<String> = (0..3)
        .map(|i| {
            start_pull(
                &edge,
                serde_json::json!({ "source": origin.api("/whep/live/src"), "name": format!("edge/more{i}") }),
            )
        })
        .collect();
    for id in &more {
        edge.wait_for_state(
            &format!("/api/v1/pulls/{id}"),
            "running",
            Duration::from_secs(15),
        );
    }
    edge.wait_for_stream("edge/more2", false);
    assert_eq!(play_sessions(&origin, "live/src"), 4);
    for id in &more {
        let (status, _) = edge.request("DELETE", &format!("/api/v1/pulls/{id}"), None);
        assert_eq!(status, 204);
    }

    // DELETE ends the pull, the local stream and the remote session (WHEP DELETE).
    let (status, _) = edge.request("DELETE", &path, None);
    assert_eq!(status, 204);
    assert_eq!(edge.get_json(&path).0, 404);
    wait_until("the edge stream ends", Duration::from_secs(5), || {
        edge.get_json("/api/v1/streams/edge/src").0 == 404
    });
    wait_until(
        "the origin's session is deleted",
        Duration::from_secs(5),
        || play_sessions(&origin, "live/src") == 0,
    );
    assert!(origin.log_text().contains("closed by the client (DELETE)"));
}

#[test]
fn whep_pull_resumes_after_the_origin_publisher_and_the_origin_process_restart() {
    let mut origin = Switchyard::start();
    let edge = Switchyard::start_with_config(FAST_RETRY);
    let publisher = ffmpeg_publish(&origin.rtmp_url("live/heal"), Encoding::Baseline, 25, 90);
    origin.wait_for_stream("live/heal", true);
    let id = start_pull(
        &edge,
        serde_json::json!({ "source": origin.api("/whep/live/heal"), "name": "edge/heal" }),
    );
    let path = format!("/api/v1/pulls/{id}");
    edge.wait_for_state(&path, "running", Duration::from_secs(15));
    edge.wait_for_stream("edge/heal", false);

    let started = |edge: &Switchyard| {
        edge.get_json("/api/v1/streams/edge/heal").1["started_at_unix_ms"].as_u64()
    };
    let first_start = started(&edge);
    assert!(first_start.is_some());

    // The origin's publisher stops and comes back: the pull retries and resumes by itself,
    // and the local stream stayed on the bus through the gap (readers stay attached).
    drop(publisher);
    let info = edge.wait_for_state(&path, "retrying", Duration::from_secs(15));
    assert!(info["last_error"].as_str().is_some(), "{info}");
    assert_eq!(started(&edge), first_start, "held through the gap");
    let publisher = ffmpeg_publish(&origin.rtmp_url("live/heal"), Encoding::Baseline, 25, 90);
    origin.wait_for_stream("live/heal", true);
    edge.wait_for_state(&path, "running", Duration::from_secs(20));
    assert_eq!(started(&edge), first_start, "the same stream continues");
    edge.wait_for_stream("edge/heal", false);
    assert_decodes(&edge.rtmp_url("edge/heal"), 2, 30);

    // The origin process dies and is started again on the same ports: the same.
    let (http, rtmp, udp) = (origin.http, origin.rtmp, origin.webrtc);
    origin.terminate(Duration::from_secs(0));
    drop(publisher);
    drop(origin);
    edge.wait_for_state(&path, "retrying", Duration::from_secs(15));
    let origin = Switchyard::start_at("", &http.to_string(), &rtmp.to_string(), &udp.to_string());
    let _publisher = ffmpeg_publish(&origin.rtmp_url("live/heal"), Encoding::Baseline, 25, 90);
    origin.wait_for_stream("live/heal", true);
    let info = edge.wait_for_state(&path, "running", Duration::from_secs(20));
    assert!(info["retries"].as_u64().unwrap() >= 2, "{info}");
    edge.wait_for_stream("edge/heal", false);
    assert_decodes(&edge.rtmp_url("edge/heal"), 2, 30);
    let (status, _) = edge.request("DELETE", &path, None);
    assert_eq!(status, 204);
}

#[test]
fn wcs_routes_start_list_and_terminate_pulls() {
    let origin = Switchyard::start();
    let edge = Switchyard::start_with_config(FAST_RETRY);
    let _publisher = ffmpeg_publish(&origin.rtmp_url("live/wcs"), Encoding::Baseline, 25, 60);
    origin.wait_for_stream("live/wcs", true);

    let body = serde_json::json!({
        "uri": origin.api(""),
        "remoteStreamName": "live/wcs",
        "localStreamName": "edge/wcs",
    });
    let (status, pull) = edge.request("POST", "/rest-api/pull/startup", Some(&body.to_string()));
    assert_eq!(status, 200, "{pull}");
    let id = pull["localMediaSessionId"].as_str().unwrap().to_string();
    assert_eq!(pull["localStreamName"], "edge/wcs", "{pull}");
    let (status, dup) = edge.request("POST", "/rest-api/pull/startup", Some(&body.to_string()));
    assert_eq!(status, 409, "same local name: {dup}");

    edge.wait_for_state(
        &format!("/api/v1/pulls/{id}"),
        "running",
        Duration::from_secs(15),
    );
    edge.wait_for_stream("edge/wcs", false);
    let (status, all) = edge.request("POST", "/rest-api/pull/find_all", Some("{}"));
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let p = &all[0];
    assert_eq!(p["localMediaSessionId"], id.as_str());
    assert_eq!(p["remoteStreamName"], "live/wcs");
    assert_eq!(p["localStreamName"], "edge/wcs");
    assert_eq!(p["uri"], origin.api(""));
    assert_eq!(p["status"], "RUNNING");
    assert_eq!(
        (p["hasVideo"].as_bool(), p["hasAudio"].as_bool()),
        (Some(true), Some(cfg!(feature = "transcode"))),
        "{p}"
    );
    assert_decodes(&edge.rtmp_url("edge/wcs"), 3, 45);

    // Bad requests, then terminate by local name.
    let (status, _) = edge.request("POST", "/rest-api/pull/startup", Some("{nope"));
    assert_eq!(status, 400);
    let (status, _) = edge.request("POST", "/rest-api/pull/terminate", Some("{}"));
    assert_eq!(status, 400);
    let (status, _) = edge.request(
        "POST",
        "/rest-api/pull/terminate",
        Some(r#"{"localStreamName":"edge/other"}"#),
    );
    assert_eq!(status, 404);
    let (status, _) = edge.request(
        "POST",
        "/rest-api/pull/terminate",
        Some(r#"{"localStreamName":"edge/wcs"}"#),
    );
    assert_eq!(status, 200);
    let (_, all) = edge.request("POST", "/rest-api/pull/find_all", None);
    assert_eq!(all.as_array().map(Vec::len), Some(0), "{all}");
    wait_until("the pulled stream ends", Duration::from_secs(5), || {
        edge.get_json("/api/v1/streams/edge/wcs").0 == 404
    });

    // Terminate by the remote node's uri.
    let (status, _) = edge.request("POST", "/rest-api/pull/startup", Some(&body.to_string()));
    assert_eq!(status, 200);
    let uri = serde_json::json!({ "uri": origin.api("") }).to_string();
    let (status, _) = edge.request("POST", "/rest-api/pull/terminate", Some(&uri));
    assert_eq!(status, 200);
    assert_eq!(
        edge.get_json("/api/v1/pulls").1.as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn a_whep_viewer_of_the_last_edge_pulls_through_a_chain_of_origins_on_demand() {
    let a = Switchyard::start();
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/chain"), Encoding::Baseline, 25, 90);
    a.wait_for_stream("live/chain", true);
    let edge_config = |origin: &Switchyard| {
        format!(
            "origins = [\"{}\"]\n\n[pull]\non_demand_idle_secs = 2\nretry_min_ms = 200\nretry_max_ms = 1000\n\n[hls]\nidle_timeout_secs = 2\n",
            origin.api("")
        )
    };
    let b = Switchyard::start_with_config(&edge_config(&a));
    let c = Switchyard::start_with_config(&edge_config(&b));
    assert_eq!(
        c.get_json("/api/v1/pulls").1.as_array().map(Vec::len),
        Some(0)
    );

    // No API call: a WHEP viewer of C makes C pull from B, which pulls from A.
    let viewer_url = c.api("/play/live/chain?mode=webrtc");
    let viewer = std::thread::spawn(move || play(&viewer_url, 12));
    wait_until("C and B pull live/chain", Duration::from_secs(15), || {
        [&b, &c].iter().all(|node| {
            let (_, pulls) = node.get_json("/api/v1/pulls");
            pulls.as_array().is_some_and(|p| {
                p.len() == 1
                    && p[0]["origin_pull"] == true
                    && p[0]["name"] == "live/chain"
                    && p[0]["state"] == "running"
            })
        })
    });
    // An HLS reader on the middle node joins its running pull while C's viewer watches.
    assert_decodes(&b.api("/hls/live/chain/index.m3u8"), 3, 45);
    let report = viewer.join().unwrap();
    support::browser::assert_webrtc_video(&report, "video/H264");

    // Everyone left: the pulls wind down after the idle time, edge first.
    for (name, node) in [("C", &c), ("B", &b)] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, pulls) = node.get_json("/api/v1/pulls");
            if pulls.as_array().map(Vec::len) == Some(0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s origin pull still there: {pulls} {}",
                node.get_json("/api/v1/streams").1
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(node.get_json("/api/v1/streams/live/chain").0, 404);
    }
    wait_until("A has no viewer left", Duration::from_secs(5), || {
        play_sessions(&a, "live/chain") == 0
    });

    // A name no origin has: a quick 404, through the chain.
    let started = Instant::now();
    let (status, _) = c.request("GET", "/hls/live/none/index.m3u8", None);
    assert_eq!(status, 404);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// A WHEP endpoint that answers every offer `201 Created` with garbage for SDP, and records
/// the request lines and `Authorization` headers it got.
fn garbage_whep_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/whep/x", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut line = String::new();
            let mut first = true;
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                let l = line.trim_end().to_string();
                line.clear();
                if l.is_empty() {
                    break;
                }
                let lower = l.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if first || lower.starts_with("authorization:") {
                    log.lock().unwrap().push(l);
                }
                first = false;
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(
                b"HTTP/1.1 201 Created\r\ncontent-type: application/sdp\r\nlocation: /whep/x/s1\r\ncontent-length: 16\r\nconnection: close\r\n\r\nthis is not sdp\n",
            );
        }
    });
    (url, seen)
}

#[test]
fn bad_sources_get_clear_errors_and_states_and_nothing_leaks() {
    let origin = Switchyard::start();
    let edge = Switchyard::start_with_config(FAST_RETRY);
    let _ = edge.get_json("/api/v1/pulls");
    let (sockets_before, tasks_before) = (edge.open_fds().1, edge.tasks_alive());

    let refused = |body: serde_json::Value, status: u16, needle: &str| {
        let (got, answer) = edge.request("POST", "/api/v1/pulls", Some(&body.to_string()));
        assert_eq!(got, status, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(needle), "{body}: {answer}");
    };
    refused(
        serde_json::json!({ "source": "gopher://host/x", "name": "bad/a" }),
        400,
        "unknown source scheme",
    );
    refused(
        serde_json::json!({ "source": "http://", "name": "bad/a" }),
        400,
        "malformed",
    );
    refused(
        serde_json::json!({ "source": "not a url", "name": "bad/a" }),
        400,
        "malformed",
    );

    // Unreachable host and a 404: retrying, with the reason, and the API answers at once.
    let unreachable = start_pull(
        &edge,
        serde_json::json!({ "source": "http://127.0.0.1:9/whep/x", "name": "bad/unreachable" }),
    );
    let missing = start_pull(
        &edge,
        serde_json::json!({ "source": origin.api("/whep/live/none"), "name": "bad/missing" }),
    );
    let info = edge.wait_for_state(
        &format!("/api/v1/pulls/{unreachable}"),
        "retrying",
        Duration::from_secs(10),
    );
    let error = info["last_error"].as_str().unwrap();
    assert!(error.contains("POST http://127.0.0.1:9/whep/x"), "{info}");
    assert!(error.to_lowercase().contains("refused"), "{info}");
    let info = edge.wait_for_state(
        &format!("/api/v1/pulls/{missing}"),
        "retrying",
        Duration::from_secs(10),
    );
    assert!(
        info["last_error"].as_str().unwrap().contains("404"),
        "{info}"
    );

    // Garbage for an answer: failed (retrying cannot fix it), the token was sent, and the
    // session resource it named was deleted.
    let (garbage_url, seen) = garbage_whep_server();
    let garbage = start_pull(
        &edge,
        serde_json::json!({ "source": garbage_url, "name": "bad/garbage", "token": "tok123" }),
    );
    let info = edge.wait_for_state(
        &format!("/api/v1/pulls/{garbage}"),
        "failed",
        Duration::from_secs(10),
    );
    assert!(
        info["last_error"].as_str().unwrap().contains("SDP"),
        "{info}"
    );
    wait_until("the DELETE of the session", Duration::from_secs(5), || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("DELETE /whep/x/s1"))
    });
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].starts_with("POST /whep/x"), "{seen:?}");
    assert!(
        seen.iter()
            .filter(|l| l.eq_ignore_ascii_case("authorization: Bearer tok123"))
            .count()
            == 2,
        "the token on POST and DELETE: {seen:?}"
    );

    // Duplicate local name, unknown id.
    refused(
        serde_json::json!({ "source": origin.api("/whep/live/x"), "name": "bad/missing" }),
        409,
        "already",
    );
    let (status, _) = edge.request("DELETE", "/api/v1/pulls/nope", None);
    assert_eq!(status, 404);

    // All gone: the process is back to where it started.
    for id in [&unreachable, &missing, &garbage] {
        let (status, _) = edge.request("DELETE", &format!("/api/v1/pulls/{id}"), None);
        assert_eq!(status, 204);
    }
    let _ = edge.get_json("/api/v1/pulls");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = (edge.open_fds().1, edge.tasks_alive());
        if now.0 <= sockets_before && now.1 <= tasks_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sockets and tasks {now:?}, at the start {:?}",
            (sockets_before, tasks_before)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_on_demand_whep_pull_starts_for_an_rtmp_player_and_idles_after() {
    let origin = Switchyard::start();
    let edge = Switchyard::start_with_config("[pull]\non_demand_idle_secs = 2\n");
    let _publisher = ffmpeg_publish(&origin.rtmp_url("live/od"), Encoding::Baseline, 25, 60);
    origin.wait_for_stream("live/od", true);
    let id = start_pull(
        &edge,
        serde_json::json!({ "source": origin.api("/whep/live/od"), "name": "edge/od", "on_demand": true }),
    );
    let path = format!("/api/v1/pulls/{id}");
    assert_eq!(edge.get_json(&path).1["state"], "idle");
    assert_eq!(play_sessions(&origin, "live/od"), 0, "nothing pulled yet");

    // An RTMP player asks: the pull starts and the player gets the video.
    assert_decodes(&edge.rtmp_url("edge/od"), 3, 45);
    // It left: the pull goes back to idle and the origin's session is deleted.
    edge.wait_for_state(&path, "idle", Duration::from_secs(15));
    wait_until(
        "the origin's session is deleted",
        Duration::from_secs(5),
        || play_sessions(&origin, "live/od") == 0,
    );
}

/// A node that is its own origin's origin (A's origin B, B's origin A): a name neither has is
/// a 404 within about a second, not after `pull.connect_timeout_secs` (10 here), for a WHEP
/// POST (curl), for a WHEP pull of a third node (our own client) and for an HLS reader; each
/// `Switchyard-Via` chain comes back to a node that refuses it with 508 Loop Detected. A stream
/// one of them has is still pulled through the loop's configuration.
#[test]
fn origins_in_a_loop_answer_a_missing_name_with_a_quick_404() {
    require("curl");
    let b_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Switchyard::start_with_config(&format!(
        "node_id = \"node-a\"\norigins = [\"http://127.0.0.1:{b_port}\"]\n"
    ));
    let b = Switchyard::start_at(
        &format!("origins = [\"{}\"]\n", a.api("")),
        &format!("127.0.0.1:{b_port}"),
        "127.0.0.1:0",
        "127.0.0.1:0",
    );
    assert_eq!(a.get_json("/api/v1/node").1["node_id"], "node-a");
    let (_, b_node) = b.get_json("/api/v1/node");
    let b_id = b_node["node_id"].as_str().unwrap().to_string();
    assert!(
        b_id.len() == 8 && b_id.bytes().all(|c| c.is_ascii_hexdigit()),
        "a random id by default: {b_node}"
    );
    assert_eq!(b_node["origins"], serde_json::json!([a.api("")]));

    // A WHEP POST to A: A asks B (via node-a), B asks A (via node-a, B), A refuses at once.
    let started = Instant::now();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", "content-type: application/sdp", "--data-binary"])
        .arg("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
        .arg(a.api("/whep/live/none"))
        .output()
        .unwrap();
    let took = started.elapsed();
    eprintln!("WHEP POST to A for a name neither has: {took:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    assert!(took < Duration::from_secs(2), "404 after {took:?}");
    let refusal = a.wait_for_log("origin loop", Duration::from_secs(2));
    assert!(
        refusal.contains(&format!("node-a, {b_id}")),
        "the chain came back whole: {refusal}"
    );

    // A third node's WHEP pull of A (our own client): its POST gets the 404 as quickly.
    let c = Switchyard::start();
    let started = Instant::now();
    let id = start_pull(
        &c,
        serde_json::json!({ "source": a.api("/whep/live/none2"), "name": "c/none2" }),
    );
    let info = loop {
        let (_, info) = c.get_json(&format!("/api/v1/pulls/{id}"));
        if info["last_error"].is_string() {
            break info;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{info}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    eprintln!("WHEP pull of A by C: first error after {took:?}: {info}");
    assert!(
        info["last_error"].as_str().unwrap().contains("404"),
        "{info}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    // An HLS reader of B: B asks A (via B), A asks B (via B, node-a), B refuses.
    let started = Instant::now();
    let (status, _) = b.request("GET", "/hls/live/none3/index.m3u8", None);
    let took = started.elapsed();
    eprintln!("HLS on B for a name neither has: {took:?}");
    assert_eq!(status, 404);
    assert!(took < Duration::from_secs(2), "404 after {took:?}");
    b.wait_for_log("origin loop", Duration::from_secs(2));

    // A stream A has: B's reader gets it through the same configuration.
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/real"), Encoding::Baseline, 25, 60);
    a.wait_for_stream("live/real", true);
    assert_decodes(&b.rtmp_url("live/real"), 3, 45);
}
