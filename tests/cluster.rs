//! Cluster mode (issue 15) with real processes: a real `redis-server` on a free loopback port,
//! several Switchyard nodes sharing it as their directory, ffmpeg/ffprobe and Chromium as
//! publishers and viewers. No node has an `origins` list: every lookup goes through Redis.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A `redis-server` without persistence on a free loopback port; killed on drop. `stop` and
/// `start` restart it on the same port (empty, as a restarted cache without persistence is).
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut redis = Redis::not_started();
        redis.start_again();
        redis
    }

    /// A free loopback port where no Redis runs yet ([`Redis::start_again`] starts it).
    fn not_started() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis { port, child: None }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn start_again(&mut self) {
        require("redis-server");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis-cli` with `args`; its output, trimmed.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node of the cluster on `redis` with id `id` and `extra` config lines (TOML, top level
/// first, then sections). Short leases and quick pull retries keep the tests short.
fn node(redis: &Redis, id: &str, extra_cluster: &str, extra: &str) -> Switchyard {
    Switchyard::start_with_config(&format!(
        "node_id = \"{id}\"\n[cluster]\ndirectory = \"{}\"\nlease_ttl_secs = 3\n{extra_cluster}\n[pull]\nretry_min_ms = 200\nretry_max_ms = 1000\nconnect_timeout_secs = 5\n{extra}",
        redis.url()
    ))
}

/// `GET /api/v1/cluster`.
fn cluster_of(node: &Switchyard) -> serde_json::Value {
    let (status, view) = node.get_json("/api/v1/cluster");
    assert_eq!(status, 200, "{view}");
    view
}

/// The owner of `name` in `node`'s view of the cluster.
fn owner_seen_by(node: &Switchyard, name: &str) -> Option<String> {
    cluster_of(node)["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["node_id"].as_str().unwrap().to_string())
}

/// Waits until `check` holds, up to `timeout`; panics with `what` otherwise.
fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "{what} (after {timeout:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// HTTP GET without following redirects: (status, Location, Retry-After, body).
fn get_no_redirect(url: &str) -> (u16, Option<String>, Option<String>, String) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let read = |r: ureq::Response| {
        let location = r.header("location").map(str::to_string);
        let retry = r.header("retry-after").map(str::to_string);
        (
            r.status(),
            location,
            retry,
            r.into_string().unwrap_or_default(),
        )
    };
    match agent.get(url).timeout(Duration::from_secs(10)).call() {
        Ok(r) => read(r),
        Err(ureq::Error::Status(_, r)) => read(r),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[test]
fn any_node_plays_a_stream_published_on_another_through_the_directory() {
    let redis = Redis::start();
    let a = node(&redis, "a", "", "");
    let b = node(&redis, "b", "", "");
    let c = node(&redis, "c", "", "");
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/cam"), Encoding::Baseline, 25, 90);
    a.wait_for_stream("live/cam", true);
    // Every node learns the owner from the directory's events.
    for n in [&a, &b, &c] {
        wait_until(
            Duration::from_secs(10),
            "the stream in the directory",
            || owner_seen_by(n, "live/cam").as_deref() == Some("a"),
        );
    }
    let entry = redis.cli(&["GET", "switchyard:stream:live/cam"]);
    let entry: serde_json::Value = serde_json::from_str(&entry).unwrap();
    assert_eq!(entry["node_id"], "a");
    assert_eq!(entry["advertise_url"], a.api(""));
    assert!(
        redis
            .cli(&["PTTL", "switchyard:stream:live/cam"])
            .parse::<i64>()
            .unwrap()
            > 0,
        "a lease, not a permanent key"
    );
    // C has no origin configured: RTMP, HLS and WebRTC (Chromium) viewers of C get A's stream.
    assert_decodes(&c.rtmp_url("live/cam"), 3, 40);
    assert_decodes(&c.api("/hls/live/cam/index.m3u8"), 3, 40);
    let report = support::browser::whep_viewer(&c.api("/whep/live/cam"), 6, &["--family", "4"]);
    assert_eq!(report["status"], 201, "{report}");
    assert!(
        report["frames"].as_array().unwrap().len() > 60,
        "Chromium shows the stream: {report}"
    );
    // C pulled it from A, by the directory's answer.
    let (_, pulls) = c.get_json("/api/v1/pulls");
    let pull = &pulls.as_array().unwrap()[0];
    assert_eq!(pull["origin_pull"], true, "{pulls}");
    assert!(
        pull["source"]
            .as_str()
            .unwrap()
            .contains("cluster directory"),
        "{pulls}"
    );
    // The nodes and their leases are listed on every node; C's copy is not registered.
    let view = cluster_of(&b);
    let ids: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c"], "{view}");
    assert_eq!(owner_seen_by(&b, "live/cam").as_deref(), Some("a"));
    assert!(view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["lease_age_ms"].as_u64().unwrap() < 3000));
    // A stream no node has: 404 at once, not a wait.
    let started = Instant::now();
    let (status, _, _, body) = get_no_redirect(&c.api("/hls/live/none/index.m3u8"));
    assert_eq!(status, 404, "{body}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn of_two_nodes_getting_one_name_at_once_exactly_one_publishes_it() {
    let redis = Redis::start();
    let a = node(&redis, "a", "", "");
    let b = node(&redis, "b", "", "");
    let (url_a, url_b) = (a.rtmp_url("live/race"), b.rtmp_url("live/race"));
    let first = std::thread::spawn(move || ffmpeg_publish(&url_a, Encoding::Baseline, 25, 30));
    let second = std::thread::spawn(move || ffmpeg_publish(&url_b, Encoding::Baseline, 25, 30));
    let (_first, _second) = (first.join().unwrap(), second.join().unwrap());
    wait_until(Duration::from_secs(10), "one owner", || {
        owner_seen_by(&a, "live/race").is_some()
    });
    let owner = owner_seen_by(&a, "live/race").unwrap();
    let (winner, loser) = if owner == "a" { (&a, &b) } else { (&b, &a) };
    let refusal = loser.wait_for_log("RTMP publish refused", Duration::from_secs(10));
    assert!(
        refusal.contains(&format!("node {owner}"))
            && refusal.contains("publishes it in the cluster"),
        "{refusal}"
    );
    // The winner publishes it; the loser has no publisher of its own for it.
    winner.wait_for_stream("live/race", true);
    std::thread::sleep(Duration::from_secs(1));
    let (_, streams) = loser.get_json("/api/v1/streams");
    assert!(
        streams
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "live/race" || s["publisher"]["protocol"] == "whep-pull"),
        "{streams}"
    );
    assert_eq!(owner_seen_by(&b, "live/race"), Some(owner));
}

#[test]
fn a_full_node_sends_new_viewers_to_a_node_with_room() {
    let redis = Redis::start();
    let a = node(&redis, "a", "", "");
    let b = node(&redis, "b", "max_viewers = 2", "");
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/busy"), Encoding::Baseline, 25, 90);
    a.wait_for_stream("live/busy", true);
    wait_until(Duration::from_secs(10), "B knows A", || {
        cluster_of(&b)["nodes"].as_array().unwrap().len() == 2
            && owner_seen_by(&b, "live/busy").is_some()
    });
    // Two RTMP viewers fill B (it pulls the stream from A for them).
    let viewers: Vec<_> = (0..2)
        .map(|_| {
            let url = b.rtmp_url("live/busy");
            std::thread::spawn(move || ffmpeg_decode(&url, 25))
        })
        .collect();
    wait_until(Duration::from_secs(20), "two viewers on B", || {
        let (_, s) = b.get_json("/api/v1/streams");
        s[0]["readers"]["rtmp"] == 2
    });
    // The third viewer's WHEP offer is redirected (307) and plays from A.
    let report = support::browser::whep_viewer(&b.api("/whep/live/busy"), 6, &["--family", "4"]);
    assert_eq!(report["status"], 201, "{report}");
    assert_eq!(report["redirected"], true, "{report}");
    assert!(
        report["url"]
            .as_str()
            .unwrap()
            .starts_with(&a.api("/whep/")),
        "{report}"
    );
    assert!(report["frames"].as_array().unwrap().len() > 60, "{report}");
    // So is an HLS player's first playlist request; a blocking reload stays.
    let (status, location, _, _) = get_no_redirect(&b.api("/hls/live/busy/index.m3u8?x=1"));
    assert_eq!(status, 307);
    assert_eq!(
        location.as_deref(),
        Some(a.api("/hls/live/busy/index.m3u8?x=1").as_str())
    );
    assert!(b.log_text().contains("node full: viewer redirected"));
    for v in viewers {
        let decoded = v.join().unwrap();
        assert!(decoded.video_frames > 100, "{decoded:?}");
    }
}

#[test]
fn a_full_cluster_answers_503_with_retry_after() {
    let redis = Redis::start();
    let a = node(&redis, "a", "max_viewers = 1", "");
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/one"), Encoding::Baseline, 25, 60);
    a.wait_for_stream("live/one", true);
    let url = a.rtmp_url("live/one");
    let viewer = std::thread::spawn(move || ffmpeg_decode(&url, 8));
    wait_until(Duration::from_secs(10), "one viewer", || {
        let (_, s) = a.get_json("/api/v1/streams");
        s[0]["readers"]["rtmp"] == 1
    });
    let (status, _, retry_after, body) = get_no_redirect(&a.api("/hls/live/one/index.m3u8"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));
    assert!(body.contains("every node of the cluster is full"), "{body}");
    viewer.join().unwrap();
}

#[test]
fn a_dead_owner_leaves_the_directory_and_viewers_follow_the_stream_to_its_new_owner() {
    let redis = Redis::start();
    let mut a = node(&redis, "a", "", "");
    let b = node(&redis, "b", "", "");
    let c = node(&redis, "c", "", "hold_secs = 30\n");
    let publisher_a = ffmpeg_publish(&a.rtmp_url("live/move"), Encoding::Baseline, 25, 90);
    a.wait_for_stream("live/move", true);
    wait_until(Duration::from_secs(10), "C knows the owner", || {
        owner_seen_by(&c, "live/move").as_deref() == Some("a")
    });
    let whep = c.api("/whep/live/move");
    let viewer_started = Instant::now();
    let viewer =
        std::thread::spawn(move || support::browser::whep_viewer(&whep, 30, &["--family", "4"]));
    wait_until(Duration::from_secs(20), "a WebRTC viewer on C", || {
        let (_, s) = c.get_json("/api/v1/streams");
        s[0]["readers"]["webrtc"] == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    // A dies (no goodbye): its lease expires within the TTL (3 s), on every node and in Redis.
    unsafe_kill(a.pid());
    drop(publisher_a);
    let gone = wait_until(
        Duration::from_secs(8),
        "the dead node's stream leaves",
        || owner_seen_by(&c, "live/move").is_none(),
    );
    assert!(gone <= Duration::from_secs(5), "gone after {gone:?}");
    assert_eq!(redis.cli(&["EXISTS", "switchyard:stream:live/move"]), "0");
    assert!(a.terminate(Duration::from_secs(1)).is_some());
    // Published again on B: C's viewer gets it from B, on the same session.
    let republished = viewer_started.elapsed();
    let _publisher_b = ffmpeg_publish(&b.rtmp_url("live/move"), Encoding::Baseline, 25, 60);
    wait_until(Duration::from_secs(10), "B owns it", || {
        owner_seen_by(&c, "live/move").as_deref() == Some("b")
    });
    let report = viewer.join().unwrap();
    assert_eq!(report["status"], 201, "{report}");
    let after: usize = report["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["t"].as_f64().unwrap() > republished.as_millis() as f64)
        .count();
    assert!(
        after > 100,
        "{after} frames shown after B took over: {report}"
    );
    assert!(c.log_text().contains("pull running"));
}

/// SIGKILL: the process dies without leaving the directory.
fn unsafe_kill(pid: u32) {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn nodes_ride_out_a_redis_restart_and_register_again() {
    let mut redis = Redis::start();
    let a = node(&redis, "a", "", "");
    let c = node(&redis, "c", "", "");
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/steady"), Encoding::Baseline, 25, 90);
    a.wait_for_stream("live/steady", true);
    wait_until(Duration::from_secs(10), "registered", || {
        owner_seen_by(&c, "live/steady").is_some()
    });
    redis.stop();
    // Local publishing and playing go on; a lookup answers a clear 503.
    a.wait_for_log("cluster directory unreachable", Duration::from_secs(10));
    let _second = ffmpeg_publish(&a.rtmp_url("live/local"), Encoding::Baseline, 25, 60);
    a.wait_for_stream("live/local", true);
    assert_decodes(&a.rtmp_url("live/steady"), 2, 25);
    assert_decodes(&a.api("/hls/live/local/index.m3u8"), 2, 25);
    wait_until(Duration::from_secs(10), "C notices", || {
        cluster_of(&c)["directory_reachable"] == false
    });
    let (status, _, _, body) = get_no_redirect(&c.api("/hls/live/elsewhere/index.m3u8"));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cluster directory is unreachable"), "{body}");
    std::thread::sleep(Duration::from_secs(10));
    // Redis is back, empty: both registrations return, and C plays them.
    redis.start_again();
    wait_until(Duration::from_secs(10), "registrations restored", || {
        redis.cli(&["EXISTS", "switchyard:stream:live/steady"]) == "1"
            && redis.cli(&["EXISTS", "switchyard:stream:live/local"]) == "1"
    });
    wait_until(Duration::from_secs(10), "C follows again", || {
        cluster_of(&c)["directory_reachable"] == true
            && owner_seen_by(&c, "live/local").as_deref() == Some("a")
    });
    assert_decodes(&c.api("/hls/live/local/index.m3u8"), 2, 25);
}

#[test]
fn an_unreachable_directory_at_boot_and_malformed_entries_break_nothing() {
    // Nothing listens on this port yet.
    let mut redis = Redis::not_started();
    let a = node(&redis, "a", "", "");
    a.wait_for_log("cluster directory unreachable", Duration::from_secs(10));
    assert_eq!(a.get_json("/healthz").0, 200);
    let _publisher = ffmpeg_publish(&a.rtmp_url("live/early"), Encoding::Baseline, 25, 60);
    a.wait_for_stream("live/early", true);
    assert_decodes(&a.rtmp_url("live/early"), 2, 25);
    let view = cluster_of(&a);
    assert_eq!(view["directory_reachable"], false, "{view}");
    assert!(view["last_error"].as_str().is_some(), "{view}");
    // Redis comes: the node connects by itself and registers what it has.
    redis.start_again();
    wait_until(
        Duration::from_secs(15),
        "registered once Redis is up",
        || redis.cli(&["EXISTS", "switchyard:stream:live/early"]) == "1",
    );
    // Entries and events written by hand: ignored with a log line, never a panic.
    redis.cli(&["SET", "switchyard:stream:live/bad", "not json"]);
    redis.cli(&["SET", "switchyard:stream:live/half", "{\"node_id\":\"x\"}"]);
    redis.cli(&["SET", "switchyard:node:ghost", "{"]);
    redis.cli(&["HSET", "switchyard:stream:live/hash", "a", "b"]);
    redis.cli(&["PUBLISH", "switchyard:events", "nonsense"]);
    redis.cli(&[
        "PUBLISH",
        "switchyard:events",
        "{\"event\":\"stream\",\"name\":3}",
    ]);
    a.wait_for_log("ignored a malformed cluster event", Duration::from_secs(5));
    let (status, _, _, body) = get_no_redirect(&a.api("/hls/live/bad/index.m3u8"));
    assert_eq!(status, 404, "{body}");
    a.wait_for_log(
        "ignored a malformed cluster directory entry",
        Duration::from_secs(5),
    );
    // A publisher takes a name whose entry is garbage.
    let _bad = ffmpeg_publish(&a.rtmp_url("live/bad"), Encoding::Baseline, 25, 30);
    a.wait_for_stream("live/bad", true);
    wait_until(Duration::from_secs(5), "the garbage replaced", || {
        redis
            .cli(&["GET", "switchyard:stream:live/bad"])
            .contains("\"node_id\":\"a\"")
    });
    // A reconnection reads the whole directory, garbage included.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    std::thread::sleep(Duration::from_secs(2));
    let view = cluster_of(&a);
    assert_eq!(view["directory_reachable"], true, "{view}");
    assert!(a.get_json("/healthz").0 == 200);
    assert!(!a.log_text().contains("panicked"));
    drop(redis);
}
