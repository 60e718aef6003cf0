//! The console at `/` and its live updates (`GET /api/v1/events`, Server-Sent Events): the
//! event stream read with a plain HTTP client, and the page driven in headless Chromium
//! (`tests/browser/console.mjs`).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// [`Switchyard::tasks_alive`] once it holds still (the connections of earlier requests have closed):
/// the same value three times, 200 ms apart.
fn settled_tasks_alive(server: &Switchyard) -> u64 {
    let mut last = (server.tasks_alive(), 0);
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(200));
        let now = server.tasks_alive();
        last = if now == last.0 {
            (now, last.1 + 1)
        } else {
            (now, 0)
        };
        if last.1 == 2 {
            break;
        }
    }
    last.0
}

/// An open `GET /api/v1/events`, read line by line over a plain TCP connection.
struct Events {
    lines: BufReader<TcpStream>,
}

impl Events {
    /// Connects and reads the response head; panics unless it is a 200 event stream.
    fn open(server: &Switchyard) -> Self {
        let mut tcp = TcpStream::connect(server.http).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            tcp,
            "GET /api/v1/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            server.http
        )
        .unwrap();
        let mut lines = BufReader::new(tcp);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        Events { lines }
    }

    /// The next event as (name, data). The body is chunked (HTTP/1.1) and axum writes each
    /// event as one chunk, so the chunk-size lines and comment lines (`:`) fall through as
    /// lines that are neither `event:` nor `data:`.
    fn next(&mut self) -> Option<(String, String)> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            } else if line.is_empty() && !data.is_empty() {
                return Some((name, data));
            }
        }
    }

    /// Reads until the end of the stream (the server closed it); false if it stays open for
    /// `timeout`.
    fn ends_within(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let tcp = self.lines.get_mut();
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut body = Vec::new();
        while Instant::now() < deadline {
            match self.lines.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => body.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
            // The last chunk of a chunked body: the response is complete.
            if body.ends_with(b"0\r\n\r\n") {
                return true;
            }
        }
        false
    }
}

#[test]
fn events_send_a_snapshot_at_once_and_free_the_task_on_hangup() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/src"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/src", true);
    let baseline = settled_tasks_alive(&server);

    let connected = Instant::now();
    let mut events = Events::open(&server);
    let (name, data) = events.next().expect("a first event");
    let waited = connected.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "first event after {waited:?}"
    );
    assert_eq!(name, "snapshot");
    let snapshot: serde_json::Value = serde_json::from_str(&data).unwrap();
    for list in ["streams", "pulls", "pushes", "loadtests"] {
        assert!(snapshot[list].is_array(), "{list}: {snapshot}");
    }
    let stream = snapshot["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "live/src")
        .unwrap_or_else(|| panic!("live/src in the snapshot: {snapshot}"));
    // The same object as GET /api/v1/streams gives.
    let (_, listed) = server.get_json("/api/v1/streams");
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(stream), keys(&listed[0]));
    let video = stream["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "video")
        .unwrap();
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );

    // One snapshot a second; the frame rate shows once two have been a second apart.
    let started = Instant::now();
    let mut seen = 1;
    let fps = loop {
        let (name, data) = events.next().expect("more events");
        assert_eq!(name, "snapshot");
        seen += 1;
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        let fps = v["streams"][0]["fps"].as_f64().unwrap_or(0.0);
        if fps > 0.0 || started.elapsed() > Duration::from_secs(5) {
            break fps;
        }
    };
    assert!(
        (20.0..=30.0).contains(&fps),
        "fps {fps} for a 25 fps stream"
    );
    let secs = started.elapsed().as_secs_f64();
    assert!(
        seen as f64 <= secs + 2.0,
        "{seen} events in {secs:.1} s: one a second"
    );
    let open = server.tasks_alive();
    assert!(
        open > baseline,
        "the open stream is a task: {open} vs {baseline}"
    );

    drop(events);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = server.tasks_alive();
        if now <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks alive {now}, baseline {baseline}, 5 s after the client hung up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn events_end_when_the_server_shuts_down() {
    let mut server = Switchyard::start();
    let mut events = Events::open(&server);
    let (name, data) = events.next().expect("a first event");
    assert_eq!(name, "snapshot");
    assert!(data.contains("\"streams\":[]"), "{data}");
    let stopping = std::thread::spawn(move || {
        let status = server.terminate(Duration::from_secs(10));
        (status, server)
    });
    assert!(
        events.ends_within(Duration::from_secs(5)),
        "the event stream ends at shutdown"
    );
    let (status, _server) = stopping.join().unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "the server exits on SIGTERM with an event stream open: {status:?}"
    );
}

#[test]
fn console_in_chromium_shows_streams_and_starts_and_terminates_a_pull() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/src"), Encoding::Baseline, 25, 120);
    server.wait_for_stream("live/src", true);
    let report = support::browser::console(&server.api("/"), 20, &server.rtmp_url("live/src"));
    let text = |key: &str| report[key].as_str().unwrap_or_default().to_string();
    assert!(
        report["failed"].is_null(),
        "{report}\n{}",
        server.log_text()
    );
    assert_eq!(report["transport"], "events", "live over SSE: {report}");

    let row = text("streamRow");
    assert!(
        row.contains("avc1.42C01E 640x360") && row.contains("rtmp from 127.0.0.1"),
        "{row}"
    );
    assert_eq!(
        report["pullStates"].as_array().and_then(|s| s.last()),
        Some(&serde_json::json!("running")),
        "{report}"
    );
    assert!(text("copyRow").contains("640x360"), "{report}");
    assert!(report["steps"]["copy gone"].is_u64(), "{report}");
    let (_, pulls) = server.get_json("/api/v1/pulls");
    assert_eq!(pulls, serde_json::json!([]), "terminated through the page");

    // The API's own words for the bad pull, on the page.
    let bad = text("badPullMessage");
    assert!(
        bad.starts_with("The pull was not started: ") && bad.contains("\"ftp\""),
        "{bad}"
    );
    // A real load test from the form: 3 RTMP players of the stream; its charts grow.
    let loadtest = text("loadtestMessage");
    assert!(loadtest.starts_with("Load test "), "{loadtest}");
    let grows = |points: &serde_json::Value, chart: &str| {
        let (first, later) = (
            points[chart][0].as_u64().unwrap(),
            points[chart][1].as_u64().unwrap(),
        );
        assert!(first >= 2 && later > first, "{chart}: {points}");
    };
    for chart in ["chart-sessions", "chart-bitrate", "chart-loss"] {
        grows(&report["charts"], chart);
    }
    assert!(
        text("loadtestRow").contains("running"),
        "{}",
        report["loadtestRow"]
    );
    let (_, runs) = server.get_json("/api/v1/loadtests");
    assert_eq!(runs[0]["connected"], 3, "{runs}");
    assert_eq!(runs[0]["failed"], 0, "{runs}");

    // Without the event stream the page polls, and the charts of the same run grow.
    let polling = &report["polling"];
    assert_eq!(polling["transport"], "polling", "{report}");
    for chart in ["chart-sessions", "chart-bitrate", "chart-loss"] {
        grows(&polling["points"], chart);
    }

    // Only the API's refusals (400, 404) show as failed loads; no script errors.
    let errors = report["consoleErrors"].as_array().unwrap();
    assert!(
        errors.iter().all(|e| e
            .as_str()
            .unwrap_or("")
            .starts_with("Failed to load resource")),
        "{errors:?}"
    );
    let shot =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts/console.png");
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 10_000),
        "{}",
        shot.display()
    );
}
