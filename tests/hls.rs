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

// ---- Changes of configuration under one name (draft-pantos-hls-rfc8216bis 6.2.1, 6.2.2) ----

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::changes::{self, decode_with_sizes, encode_flv, publish_file, FlvFeed};

/// 720p and 480p H.264 + AAC files of `seconds` each (encoded once per test, ahead of time).
fn h264_files(dir: &TempDir, seconds: u32) -> (PathBuf, PathBuf) {
    let ffmpeg = Path::new("ffmpeg");
    (
        encode_flv(ffmpeg, &dir.path, "1280x720", seconds, changes::H264),
        encode_flv(ffmpeg, &dir.path, "854x480", seconds, changes::H264),
    )
}

/// Polls a playlist every 300 ms, as a player that keeps reloading it would.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Poller {
    fn start(url: String) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(r) = ureq::get(&url).timeout(Duration::from_secs(10)).call() {
                    seen.push(r.into_string().unwrap());
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            seen
        });
        Poller { stop, thread }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn msn_of_uri(uri: &str) -> u64 {
    uri.strip_prefix("seg")
        .and_then(|u| u.strip_suffix(".m4s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("segment URI {uri}"))
}

/// Checks what a polling player saw across a change of configuration: every playlist parses
/// (m3u8-rs), the media sequence and the discontinuity sequence never go back, and the first
/// segment of the new configuration came after the old ones with EXT-X-DISCONTINUITY and, if
/// `new_init` is given, an EXT-X-MAP naming it. Returns the msn of that segment.
fn assert_playlist_goes_on(seen: &[String], new_init: Option<&str>) -> u64 {
    assert!(seen.len() > 10, "{} playlists", seen.len());
    let (mut media_sequence, mut discontinuity_sequence) = (0, 0);
    let mut changed_at = None;
    for text in seen {
        let p = parse_media_playlist(text);
        assert!(p.media_sequence >= media_sequence, "went back:\n{text}");
        assert!(p.discontinuity_sequence >= discontinuity_sequence, "{text}");
        (media_sequence, discontinuity_sequence) = (p.media_sequence, p.discontinuity_sequence);
        for (i, s) in p.segments.iter().enumerate() {
            assert_eq!(msn_of_uri(&s.uri), p.media_sequence + i as u64, "{text}");
            if s.discontinuity {
                let msn = msn_of_uri(&s.uri);
                assert!(
                    changed_at.is_none_or(|m| m == msn),
                    "one change, one discontinuity:\n{text}"
                );
                assert!(i > 0 || changed_at.is_some(), "segments before it:\n{text}");
                changed_at = Some(msn);
                assert_eq!(
                    s.map.as_ref().map(|m| m.uri.as_str()),
                    new_init,
                    "EXT-X-MAP of the new configuration:\n{text}"
                );
                assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
            }
        }
    }
    changed_at.expect("a playlist with EXT-X-DISCONTINUITY")
}

/// ffmpeg decoded `decoded` across a change from 1280x720 to 854x480: no error, both sizes.
fn assert_decoded_across(decoded: &changes::SizedDecode) {
    assert!(
        decoded.decode.success && decoded.decode.errors.is_empty(),
        "{decoded:?}"
    );
    let sizes: Vec<&str> = decoded.sizes.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(sizes, ["1280x720", "854x480"], "{decoded:?}");
    assert!(
        decoded.sizes.iter().all(|s| s.1 >= 40),
        "at least 40 frames of each: {decoded:?}"
    );
}

#[test]
fn hls_goes_on_across_a_publisher_takeover_at_another_resolution() {
    let dir = TempDir::new("takeover");
    let (hd, sd) = h264_files(&dir, 20);
    // (`sd` is looped for as long as the test needs.)
    let server = Switchyard::start_with_config("[bus]\npublisher_takeover = true\n");
    let url = server.rtmp_url("live/to");
    let _first = publish_file(Path::new("ffmpeg"), &url, &hd);
    server.wait_for_stream("live/to", true);
    playlist_text(&server, "/hls/live/to/index.m3u8"); // the muxer runs, a segment is out
    let playlist = server.api("/hls/live/to/index.m3u8");
    let poller = Poller::start(playlist.clone());
    let reader = {
        let playlist = playlist.clone();
        std::thread::spawn(move || decode_with_sizes(Path::new("ffmpeg"), &playlist, 16))
    };
    std::thread::sleep(Duration::from_secs(5));
    let _second = FlvFeed::start(Path::new("ffmpeg"), &url, &sd, None);
    server.wait_for_log("publisher takeover", Duration::from_secs(10));
    assert_decoded_across(&reader.join().unwrap());
    let seen = poller.finish();
    let changed_at = assert_playlist_goes_on(&seen, Some("init1.mp4"));
    assert!(changed_at >= 2, "{changed_at}");
    // Once the segment with EXT-X-DISCONTINUITY leaves the window, the tag is counted by
    // EXT-X-DISCONTINUITY-SEQUENCE (6.2.2).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = playlist_text(&server, "/hls/live/to/index.m3u8");
        let p = parse_media_playlist(&text);
        if p.media_sequence > changed_at {
            assert_eq!(p.discontinuity_sequence, 1, "{text}");
            assert!(p.segments.iter().all(|s| !s.discontinuity), "{text}");
            assert_eq!(p.segments[0].map.as_ref().unwrap().uri, "init1.mp4");
            assert_eq!(
                get(&server, "/hls/live/to/init.mp4").0,
                404,
                "no longer used"
            );
            break;
        }
        assert!(p.segments.iter().any(|s| s.discontinuity), "{text}");
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The new init segment is served under its own name, the old one while it is listed.
    let (status, init1, ct) = get(&server, "/hls/live/to/init1.mp4");
    assert_eq!((status, ct.as_deref()), (200, Some("video/mp4")));
    assert!(init1.windows(4).any(|w| w == b"avc1"));
    assert_eq!(get(&server, "/hls/live/to/init7.mp4").0, 404);
}

#[test]
fn hls_goes_on_when_the_publisher_reconnects_at_another_resolution() {
    let dir = TempDir::new("reconnect");
    let (hd, sd) = h264_files(&dir, 12);
    let server = Switchyard::start();
    let url = server.rtmp_url("live/rc");
    let first = FlvFeed::start(Path::new("ffmpeg"), &url, &hd, None);
    server.wait_for_stream("live/rc", true);
    playlist_text(&server, "/hls/live/rc/index.m3u8");
    let playlist = server.api("/hls/live/rc/index.m3u8");
    let poller = Poller::start(playlist.clone());
    let reader = {
        let playlist = playlist.clone();
        std::thread::spawn(move || decode_with_sizes(Path::new("ffmpeg"), &playlist, 14))
    };
    std::thread::sleep(Duration::from_secs(4));
    // The publisher stops (ffmpeg ends its input and disconnects) and a new one comes at once.
    first.finish();
    let _second = publish_file(Path::new("ffmpeg"), &url, &sd);
    server.wait_for_log("published again", Duration::from_secs(10));
    assert_decoded_across(&reader.join().unwrap());
    let seen = poller.finish();
    assert_playlist_goes_on(&seen, Some("init1.mp4"));
    let (_, info) = server.get_json("/api/v1/streams/live/rc");
    assert_eq!(
        info["readers"]["hls"], 1,
        "the muxer reads the new stream: {info}"
    );
}

#[test]
fn hls_goes_on_across_new_parameter_sets_on_one_connection() {
    let dir = TempDir::new("sps");
    let (hd, sd) = h264_files(&dir, 6);
    let server = Switchyard::start();
    let feed = FlvFeed::start(
        Path::new("ffmpeg"),
        &server.rtmp_url("live/sps"),
        &hd,
        Some(&sd),
    );
    server.wait_for_stream("live/sps", true);
    playlist_text(&server, "/hls/live/sps/index.m3u8");
    let playlist = server.api("/hls/live/sps/index.m3u8");
    let poller = Poller::start(playlist.clone());
    let reader = {
        let playlist = playlist.clone();
        std::thread::spawn(move || decode_with_sizes(Path::new("ffmpeg"), &playlist, 14))
    };
    std::thread::sleep(Duration::from_secs(4));
    feed.switch();
    assert_decoded_across(&reader.join().unwrap());
    let seen = poller.finish();
    assert_playlist_goes_on(&seen, Some("init1.mp4"));
    let log = server.log_text();
    assert!(
        !log.contains("publisher gone"),
        "one connection throughout: {log}"
    );
    feed.finish();
}

#[test]
fn hlsjs_keeps_playing_across_a_change_of_resolution() {
    let dir = TempDir::new("hlsjs");
    let (hd, sd) = h264_files(&dir, 6);
    let server = Switchyard::start();
    let url = server.rtmp_url("live/js");
    let first = FlvFeed::start(Path::new("ffmpeg"), &url, &hd, None);
    server.wait_for_stream("live/js", true);
    let player = support::browser::Playing::start(&server.api("/play/live/js?mode=hls"), 30);
    assert!(
        player.wait_until_playing(Duration::from_secs(25)),
        "hls.js did not start playing"
    );
    std::thread::sleep(Duration::from_secs(3));
    first.finish();
    // Looped for as long as the page plays.
    let _second = FlvFeed::start(Path::new("ffmpeg"), &url, &sd, None);
    let report = player.finish();
    support::browser::assert_plays_fmp4(&report, "hls.js across the change");
    assert_eq!(
        report["videoSizesSeen"],
        serde_json::json!(["1280x720", "854x480"]),
        "{report}"
    );
    let (at_half, end) = (
        report["currentTimeAtHalf"].as_f64().unwrap_or(0.0),
        report["currentTime"].as_f64().unwrap_or(0.0),
    );
    assert!(end > at_half + 5.0, "time kept growing: {report}");
}

#[test]
fn hls_goes_on_from_h264_to_h265_over_enhanced_rtmp() {
    let dir = TempDir::new("hevc");
    let ff9 = ffmpeg9();
    let hd = encode_flv(
        Path::new("ffmpeg"),
        &dir.path,
        "1280x720",
        12,
        changes::H264,
    );
    let hevc = encode_flv(&ff9, &dir.path, "854x480", 12, changes::H265);
    // A longer window, so the H.264 segments are still listed once the HEVC ones are.
    let server = Switchyard::start_with_config("[hls]\nwindow_segments = 10\n");
    let url = server.rtmp_url("live/hevc");
    let first = FlvFeed::start(Path::new("ffmpeg"), &url, &hd, None);
    server.wait_for_stream("live/hevc", true);
    playlist_text(&server, "/hls/live/hevc/index.m3u8");
    let playlist = server.api("/hls/live/hevc/index.m3u8");
    let poller = Poller::start(playlist.clone());
    std::thread::sleep(Duration::from_secs(4));
    first.finish();
    let _second = publish_file(&ff9, &url, &hevc);
    server.wait_for_log("published again", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(9));
    let seen = poller.finish();
    let changed_at = assert_playlist_goes_on(&seen, Some("init1.mp4"));

    // Each configuration decodes in FFmpeg 9: the old init segment with the segments before
    // the discontinuity, the new one (hvc1) with those after. (ffmpeg's HLS demuxer cannot
    // switch codecs inside one input: it keeps the first init segment's decoder.)
    let text = playlist_text(&server, "/hls/live/hevc/index.m3u8");
    let p = parse_media_playlist(&text);
    let mut before = get(&server, "/hls/live/hevc/init.mp4").1;
    let mut after = get(&server, "/hls/live/hevc/init1.mp4").1;
    assert!(after.windows(4).any(|w| w == b"hvc1"), "HEVC sample entry");
    for s in &p.segments {
        let body = get(&server, &format!("/hls/live/hevc/{}", s.uri)).1;
        if msn_of_uri(&s.uri) < changed_at {
            before.extend_from_slice(&body);
        } else {
            after.extend_from_slice(&body);
        }
    }
    for (name, bytes, size) in [
        ("h264.mp4", &before, "1280x720"),
        ("hevc.mp4", &after, "854x480"),
    ] {
        let path = dir.path.join(name);
        std::fs::write(&path, bytes).unwrap();
        let decoded = decode_with_sizes(&ff9, path.to_str().unwrap(), 30);
        assert!(
            decoded.decode.success && decoded.decode.errors.is_empty(),
            "{name}: {decoded:?}"
        );
        assert_eq!(decoded.sizes.len(), 1, "{name}: {decoded:?}");
        assert_eq!(decoded.sizes[0].0, size, "{name}: {decoded:?}");
        assert!(decoded.sizes[0].1 >= 25, "{name}: {decoded:?}");
    }
    // A player arriving now reads the same playlist and decodes the HEVC live edge.
    let live = decode_with_sizes(&ff9, &playlist, 3);
    assert!(live.decode.errors.is_empty(), "{live:?}");
    assert_eq!(
        live.sizes.last().map(|s| s.0.as_str()),
        Some("854x480"),
        "{live:?}"
    );
}

#[test]
fn hls_waits_for_a_publisher_that_left_then_lets_the_playlist_go() {
    let dir = TempDir::new("back");
    let hd = encode_flv(Path::new("ffmpeg"), &dir.path, "1280x720", 6, changes::H264);
    let server = Switchyard::start_with_config("[hls]\nidle_timeout_secs = 4\n");
    let url = server.rtmp_url("live/back");
    let first = FlvFeed::start(Path::new("ffmpeg"), &url, &hd, None);
    server.wait_for_stream("live/back", true);
    playlist_text(&server, "/hls/live/back/index.m3u8");
    let poller = Poller::start(server.api("/hls/live/back/index.m3u8"));
    std::thread::sleep(Duration::from_secs(4));
    first.finish();
    // Gone for a moment: the playlist is still served, as it was.
    std::thread::sleep(Duration::from_millis(1500));
    playlist_text(&server, "/hls/live/back/index.m3u8");
    // The same publisher comes back with the same parameter sets: a discontinuity (its
    // timestamps start again), the same init segment.
    let again = FlvFeed::start(Path::new("ffmpeg"), &url, &hd, None);
    server.wait_for_log("published again", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(5));
    let seen = poller.finish();
    assert_playlist_goes_on(&seen, None);
    assert_eq!(get(&server, "/hls/live/back/init1.mp4").0, 404);
    // Gone for good: the playlist goes once the idle timeout has passed.
    again.finish();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, ..) = get(&server, "/hls/live/back/index.m3u8");
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "the playlist outlived the publisher"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    server.wait_for_log("did not come back", Duration::from_secs(1));
}
