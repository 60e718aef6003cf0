//! HLS and LL-HLS end to end: ffmpeg publishes over RTMP; ffmpeg/ffprobe and m3u8-rs read the
//! HLS output.

mod support;

use std::time::{Duration, Instant};
use support::*;

fn get(server: &Switchyard, path: &str) -> (u16, Vec<u8>, Option<String>) {
    match ureq::get(&server.api(path))
        .timeout(Duration::from_secs(15))
        .call()
    {
        Ok(r) => {
            let ct = r.header("content-type").map(str::to_string);
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
            (200, body, ct)
        }
        Err(ureq::Error::Status(code, r)) => {
            (code, r.into_string().unwrap_or_default().into_bytes(), None)
        }
        Err(e) => panic!("GET {path}: {e}"),
    }
}

fn playlist_text(server: &Switchyard, path: &str) -> String {
    let (status, body, ct) = get(server, path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    assert_eq!(ct.as_deref(), Some("application/vnd.apple.mpegurl"));
    String::from_utf8(body).unwrap()
}

/// (msn, part index) of the last part listed (in-progress segment's parts included).
fn last_part(text: &str) -> (u64, u32) {
    let uri = text
        .lines()
        .rev()
        .find(|l| l.starts_with("#EXT-X-PART:"))
        .expect("playlist lists parts");
    let name = uri
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let (msn, idx) = name
        .strip_prefix("part")
        .unwrap()
        .strip_suffix(".m4s")
        .unwrap()
        .split_once('.')
        .unwrap();
    (msn.parse().unwrap(), idx.parse().unwrap())
}

fn parse_media_playlist(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

#[test]
fn ffmpeg_decodes_hls_with_and_without_b_frames() {
    for (encoding, name) in [
        (Encoding::HighBFrames, "live/hlsb"),
        (Encoding::Baseline, "live/hls"),
    ] {
        let server = Switchyard::start();
        let _publisher = ffmpeg_publish(&server.rtmp_url(name), encoding, 25, 40);
        server.wait_for_stream(name, true);
        let url = server.api(&format!("/hls/{name}/index.m3u8"));
        let decode = ffmpeg_decode(&url, 6);
        assert!(
            decode.success && decode.errors.is_empty(),
            "{name}: {decode:?}"
        );
        assert!(decode.video_frames >= 125, "{name}: {decode:?}");
        let streams = ffprobe_streams(&url);
        assert!(
            streams
                .iter()
                .any(|s| s.starts_with("codec_name=h264") && s.contains("width=640|height=360")),
            "{streams:?}"
        );
        assert!(
            streams.iter().any(|s| s.starts_with("codec_name=aac")),
            "{streams:?}"
        );
    }
}

#[test]
fn playlists_parse_and_segments_decode_when_concatenated() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/p"), Encoding::HighBFrames, 25, 40);
    server.wait_for_stream("live/p", true);
    let text = playlist_text(&server, "/hls/live/p/index.m3u8");
    for tag in [
        "#EXT-X-MAP:URI=\"init.mp4\"",
        "#EXT-X-PART-INF:PART-TARGET=",
        "CAN-BLOCK-RELOAD=YES",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        assert!(text.contains(tag), "missing {tag}:\n{text}");
    }
    let playlist = parse_media_playlist(&text);
    assert!(!playlist.segments.is_empty());
    for seg in &playlist.segments {
        assert!(
            seg.duration > 0.5 && seg.duration < 4.5,
            "segment of {} s",
            seg.duration
        );
    }
    // init + every complete segment, concatenated, is one valid fMP4 file.
    let dir = TempDir::new("hls");
    let mut file = get(&server, "/hls/live/p/init.mp4").1;
    for seg in &playlist.segments {
        let (status, body, _) = get(&server, &format!("/hls/live/p/{}", seg.uri));
        assert_eq!(status, 200);
        file.extend_from_slice(&body);
    }
    let path = assert_mp4_decodes(&dir, "all.mp4", &file);
    let streams = ffprobe_streams(path.to_str().unwrap());
    assert!(
        streams
            .iter()
            .any(|s| s.starts_with("codec_name=h264|profile=High") && s.contains("has_b_frames=2")),
        "{streams:?}"
    );
}

#[test]
fn blocking_reload_answers_when_the_next_part_exists() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/b"), Encoding::Baseline, 25, 40);
    server.wait_for_stream("live/b", true);
    let text = playlist_text(&server, "/hls/live/b/index.m3u8");
    let (msn, part) = last_part(&text);
    // The next part of the same segment, or of the next one (per spec either is accepted).
    let started = Instant::now();
    let next = playlist_text(
        &server,
        &format!(
            "/hls/live/b/index.m3u8?_HLS_msn={msn}&_HLS_part={}",
            part + 1
        ),
    );
    let waited = started.elapsed();
    let (new_msn, new_part) = last_part(&next);
    assert!(
        (new_msn, new_part) > (msn, part),
        "the answer lists a newer part: {msn}.{part} -> {new_msn}.{new_part}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "answered as the part appeared, not at a timeout ({waited:?})"
    );
    // The preload-hinted part is served as soon as it exists.
    let hint = next
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
        .unwrap();
    let uri = hint
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let (status, body, _) = get(&server, &format!("/hls/live/b/{uri}"));
    assert_eq!(status, 200);
    assert!(body.len() > 100);
}

#[test]
fn bad_playlist_requests_get_clear_errors() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/e"), Encoding::Baseline, 25, 40);
    server.wait_for_stream("live/e", true);
    let text = playlist_text(&server, "/hls/live/e/index.m3u8");
    let (msn, _) = last_part(&text);
    let far = get(
        &server,
        &format!("/hls/live/e/index.m3u8?_HLS_msn={}", msn + 50),
    );
    assert_eq!(far.0, 400, "{}", String::from_utf8_lossy(&far.1));
    for bad in ["_HLS_msn=abc", "_HLS_part=2", "_HLS_msn=-1"] {
        let (status, body, _) = get(&server, &format!("/hls/live/e/index.m3u8?{bad}"));
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&body));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["error"].is_string());
    }
    let started = Instant::now();
    assert_eq!(get(&server, "/hls/live/nothing/index.m3u8").0, 404);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "unknown streams are a quick 404"
    );
    assert_eq!(get(&server, "/hls/live/e/seg999999.m4s").0, 404);
    assert_eq!(get(&server, "/hls/live/e/whatever.txt").0, 404);
    // Still serving.
    assert_eq!(get(&server, "/hls/live/e/index.m3u8").0, 200);
}

#[test]
fn delta_update_skips_old_segments() {
    let server = Switchyard::start_with_config(
        "[hls]\nsegment_target_ms = 1000\npart_target_ms = 200\nwindow_segments = 12\n",
    );
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/d"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/d", true);
    // Let the window fill beyond CAN-SKIP-UNTIL.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let full = playlist_text(&server, "/hls/live/d/index.m3u8");
        let delta = playlist_text(&server, "/hls/live/d/index.m3u8?_HLS_skip=YES");
        if delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
            assert!(full.contains("CAN-SKIP-UNTIL="), "{full}");
            assert!(delta.len() < full.len());
            parse_media_playlist(&delta);
            return;
        }
        assert!(Instant::now() < deadline, "no EXT-X-SKIP in:\n{delta}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn muxer_stops_after_the_idle_timeout() {
    let server = Switchyard::start_with_config("[hls]\nidle_timeout_secs = 2\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/i"), Encoding::Baseline, 25, 40);
    server.wait_for_stream("live/i", true);
    playlist_text(&server, "/hls/live/i/index.m3u8");
    let (_, info) = server.get_json("/api/v1/streams/live/i");
    assert_eq!(info["readers"]["hls"], 1, "{info}");
    server.wait_for_log("HLS muxer stopped", Duration::from_secs(10));
    let (_, info) = server.get_json("/api/v1/streams/live/i");
    assert!(info["readers"]["hls"].is_null(), "{info}");
}

#[test]
fn preload_hinted_parts_are_served_or_refused_never_left_hanging() {
    // Short segments give many segment boundaries, where a hinted part can be replaced by the
    // next segment's first part.
    let server =
        Switchyard::start_with_config("[hls]\nsegment_target_ms = 400\npart_target_ms = 200\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/hint"), Encoding::Baseline, 10, 40);
    server.wait_for_stream("live/hint", true);
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut served, mut refused) = (0, 0);
    while Instant::now() < deadline {
        let text = playlist_text(&server, "/hls/live/hint/index.m3u8");
        let hint = text
            .lines()
            .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT"))
            .unwrap();
        let uri = hint
            .split("URI=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let started = Instant::now();
        let (status, _, _) = get(&server, &format!("/hls/live/hint/{uri}"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{uri} answered after {:?}",
            started.elapsed()
        );
        match status {
            200 => served += 1,
            404 => refused += 1,
            other => panic!("{uri}: HTTP {other}"),
        }
    }
    assert!(served > 10, "served {served}, refused {refused}");
}
