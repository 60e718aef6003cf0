//! RTMP pulls: one Switchyard node plays a stream from another RTMP server (here a second
//! Switchyard, fed by ffmpeg) and republishes it under a local name.

mod support;

use std::time::Duration;
use support::*;

#[test]
fn rtmp_pull_republishes_a_remote_stream_and_recovers_when_it_returns() {
    let origin = Switchyard::start();
    let edge = Switchyard::start_with_config("[pull]\nretry_min_ms = 200\nretry_max_ms = 1000\n");
    let mut publisher = ffmpeg_publish(&origin.rtmp_url("live/src"), Encoding::HighBFrames, 25, 60);
    origin.wait_for_stream("live/src", true);

    let source = format!("{}?secret=1", origin.rtmp_url("live/src"));
    let (status, created) = edge.request(
        "POST",
        "/api/v1/pulls",
        Some(&serde_json::json!({ "source": source, "name": "edge/src" }).to_string()),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let info = edge.wait_for_state(
        &format!("/api/v1/pulls/{id}"),
        "running",
        Duration::from_secs(15),
    );
    assert!(
        !info["source"].as_str().unwrap().contains("secret"),
        "the stream key is not shown: {info}"
    );
    edge.wait_for_stream("edge/src", true);

    assert_streams(
        &edge.rtmp_url("edge/src"),
        &[
            "codec_name=h264|profile=High|width=640|height=360",
            "codec_name=aac",
        ],
    );
    assert_decodes(&edge.api("/hls/edge/src/index.m3u8"), 4, 90);

    // The origin's publisher goes away: the pull retries, and resumes when it is back.
    drop(publisher);
    edge.wait_for_state(
        &format!("/api/v1/pulls/{id}"),
        "retrying",
        Duration::from_secs(15),
    );
    publisher = ffmpeg_publish(&origin.rtmp_url("live/src"), Encoding::HighBFrames, 25, 60);
    origin.wait_for_stream("live/src", true);
    edge.wait_for_state(
        &format!("/api/v1/pulls/{id}"),
        "running",
        Duration::from_secs(15),
    );
    edge.wait_for_stream("edge/src", true);
    assert_decodes(&edge.rtmp_url("edge/src"), 2, 40);
    drop(publisher);

    let (status, _) = edge.request("DELETE", &format!("/api/v1/pulls/{id}"), None);
    assert_eq!(status, 204);
}

#[test]
fn on_demand_pull_starts_for_a_reader_and_stops_when_they_leave() {
    let origin = Switchyard::start();
    let _publisher = ffmpeg_publish(&origin.rtmp_url("live/od"), Encoding::Baseline, 25, 90);
    origin.wait_for_stream("live/od", true);
    let config = format!(
        "[pull]\non_demand_idle_secs = 2\n\n[[pulls]]\nsource = \"{}\"\nname = \"edge/od\"\non_demand = true\n",
        origin.rtmp_url("live/od")
    );
    let edge = Switchyard::start_with_config(&config);
    let (_, pulls) = edge.get_json("/api/v1/pulls");
    let id = pulls[0]["id"].as_str().unwrap().to_string();
    assert_eq!(pulls[0]["state"], "idle", "{pulls}");
    assert_eq!(
        edge.get_json("/api/v1/streams/edge/od").0,
        404,
        "nothing pulled before a reader comes"
    );

    // An RTMP player asks for it: the pull starts and the player gets the stream.
    assert_decodes(&edge.rtmp_url("edge/od"), 3, 60);
    // The reader left: after the idle time the pull stops and the stream goes away.
    edge.wait_for_state(
        &format!("/api/v1/pulls/{id}"),
        "idle",
        Duration::from_secs(15),
    );
    assert_eq!(edge.get_json("/api/v1/streams/edge/od").0, 404);

    // An HLS request starts it again.
    assert_decodes(&edge.api("/hls/edge/od/index.m3u8"), 3, 60);
    // An unknown name is still a quick 404.
    assert_eq!(edge.get_json("/api/v1/streams/edge/none").0, 404);
    let started = std::time::Instant::now();
    let (status, _) = edge.request("GET", "/hls/edge/none/index.m3u8", None);
    assert_eq!(status, 404);
    assert!(started.elapsed() < Duration::from_secs(1));
}
