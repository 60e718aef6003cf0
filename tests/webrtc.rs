//! WHIP publish and WHEP playback with real peers: headless Chromium (publish page and player),
//! FFmpeg 9's WHIP muxer, and ffmpeg/ffprobe reading what WebRTC published over RTMP and HLS.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::browser::{play, Publishing};
use support::*;

/// A request with a raw body and content type; returns status, headers of interest, body.
fn send(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, ureq::Response) {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    if let Some(ct) = content_type {
        req = req.set("content-type", ct);
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.send_string(body) {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn error_text(response: ureq::Response) -> String {
    let body: serde_json::Value = response.into_json().unwrap_or_default();
    body["error"].as_str().unwrap_or_default().to_string()
}

fn assert_webrtc_plays(report: &serde_json::Value, with_audio: bool) {
    support::browser::assert_webrtc_video(report, "video/H264");
    if with_audio {
        let samples = report["webrtc"]["audioSamplesReceived"]
            .as_u64()
            .unwrap_or(0);
        let samples_at_half = report["audioSamplesAtHalf"].as_u64().unwrap_or(0);
        assert!(
            samples > samples_at_half && samples > 48_000,
            "audio samples received and growing: {report}"
        );
    }
}

#[test]
fn chromium_publishes_over_whip_and_chromium_ffmpeg_read_it_back() {
    let server = Switchyard::start();
    let publishing = Publishing::start(&server.api("/publish/live/cam"), 40);
    server.wait_for_stream("live/cam", true);

    // A second browser watches it over WHEP: video frames and audio samples flow.
    let report = play(&server.api("/play/live/cam?mode=webrtc"), 10);
    assert_webrtc_plays(&report, true);

    // The same stream over the other outputs: ffprobe over HLS sees H.264 + Opus, and
    // FFmpeg 9 decodes it over RTMP, where the Opus becomes AAC (without the transcode
    // feature it travels as Enhanced RTMP Opus).
    assert_streams(
        &server.api("/hls/live/cam/index.m3u8"),
        &["codec_name=h264", "codec_name=opus"],
    );
    if cfg!(feature = "transcode") {
        assert_streams(
            &server.rtmp_url("live/cam"),
            &["codec_name=h264", "codec_name=aac"],
        );
    }
    let decoded = ffmpeg_decode_with(&ffmpeg9(), &server.rtmp_url("live/cam"), 4);
    assert!(decoded.success && decoded.video_frames > 30, "{decoded:?}");

    let published = publishing.finish();
    assert_eq!(
        published["errors"].as_array().map(Vec::len),
        Some(0),
        "{published}"
    );
    assert_eq!(published["advanced"], true, "{published}");
    // The page said goodbye with DELETE: the stream is gone.
    let (status, _) = server.get_json("/api/v1/streams/live/cam");
    assert_eq!(status, 404);
    assert!(server.log_text().contains("closed by the client (DELETE)"));
}

#[test]
fn chromium_plays_an_rtmp_stream_over_whep() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/rtmp"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/rtmp", true);
    let report = play(&server.api("/play/live/rtmp?mode=webrtc"), 8);
    // AAC goes to WebRTC converted to Opus; without the transcode feature, video only.
    let converts = cfg!(feature = "transcode");
    assert_webrtc_plays(&report, converts);
    assert_eq!(
        (
            report["videoWidth"].as_u64(),
            report["videoHeight"].as_u64()
        ),
        (Some(640), Some(360)),
        "{report}"
    );
    let (_, info) = server.get_json("/api/v1/streams/live/rtmp");
    assert_eq!(info["webrtc"]["video"], "sent (h264)", "{info}");
    let conversion = &info["audio_conversions"][0];
    assert_eq!(conversion["codec"], "opus", "{info}");
    if converts {
        assert_eq!(report["webrtc"]["audioCodec"], "audio/opus", "{report}");
        assert_eq!(
            info["webrtc"]["audio"], "sent (opus, converted from aac)",
            "{info}"
        );
        assert!(conversion["frames_out"].as_u64() > Some(100), "{info}");
        let metrics = ureq::get(&server.api("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let converted = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("switchyard_audio_converted_frames_total{codec=\"opus\"} ")
            })
            .and_then(|v| v.trim().parse::<u64>().ok());
        assert!(converted > Some(100), "{metrics}");
        // The viewer has gone: the conversion stops a few seconds later.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, info) = server.get_json("/api/v1/streams/live/rtmp");
            if info["audio_conversions"][0]["state"] == "idle" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still converting: {info}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        assert!(server
            .log_text()
            .contains("audio conversion stopped: no readers"));
    } else {
        assert!(
            server
                .log_text()
                .contains("this build has no audio conversion"),
            "the log says why there is no audio"
        );
        assert!(
            info["webrtc"]["audio"]
                .as_str()
                .unwrap_or_default()
                .starts_with("not sent: aac audio"),
            "{info}"
        );
        assert_eq!(conversion["state"], "unavailable", "{info}");
    }
}

/// One in twenty video packets to the viewer is left out on first send: Chromium asks for them
/// (NACK), gets them again, and keeps decoding.
#[test]
fn chromium_recovers_lost_packets_through_nack() {
    let server = Switchyard::start_with_config("[webrtc]\nsimulate_loss_one_in = 20\n");
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/lossy"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/lossy", true);
    let report = play(&server.api("/play/live/lossy?mode=webrtc"), 8);
    assert_webrtc_plays(&report, false);
    let (_, stats) = server.get_json("/api/v1/webrtc");
    let lost = stats["simulated_losses"].as_u64().unwrap();
    let again = stats["retransmitted"].as_u64().unwrap();
    assert!(lost > 20, "packets were left out: {stats}");
    assert!(again >= lost / 2, "Chromium asked for them again: {stats}");
}

#[test]
fn b_frames_are_detected_and_explained_for_webrtc_viewers() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/bf"), Encoding::HighBFrames, 25, 60);
    let info = server.wait_for_stream("live/bf", true);
    let video = info["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "video")
        .unwrap()
        .clone();
    assert_eq!(video["b_frames"], true, "{info}");
    assert!(
        info["webrtc"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("B-frames"),
        "{info}"
    );
    let offer = format!("{OFFER_HEAD}{VIDEO_RECVONLY}");
    let (status, _) = send(
        "POST",
        &server.api("/whep/live/bf"),
        Some("application/sdp"),
        &[],
        &offer,
    );
    assert_eq!(status, 201);
    server.wait_for_log("joined a stream with B-frames", Duration::from_secs(5));
    // Without B-frames the flag stays off.
    let _plain = ffmpeg_publish(&server.rtmp_url("live/nobf"), Encoding::Baseline, 25, 60);
    let info = server.wait_for_stream("live/nobf", true);
    assert_eq!(info["tracks"][0]["b_frames"], false, "{info}");
    assert!(info["webrtc"].get("warnings").is_none(), "{info}");
}

#[test]
fn ffmpeg_publishes_over_whip() {
    let server = Switchyard::start();
    let url = server.api("/whip/live/ff");
    let child = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x360:rate=30")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-bf",
            "0",
        ])
        .args(["-g", "30", "-tune", "zerolatency", "-b:v", "1M"])
        .args(["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-f", "whip"])
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ffmpeg = Proc(child);
    server.wait_for_stream("live/ff", true);
    assert!(ffmpeg.is_running());
    assert_streams(
        &server.api("/hls/live/ff/index.m3u8"),
        &[
            "codec_name=h264|profile=Constrained Baseline|width=640|height=360",
            "codec_name=opus",
        ],
    );
    assert_decodes(&server.api("/hls/live/ff/index.m3u8"), 3, 60);
    let decoded = ffmpeg_decode_with(&ffmpeg9(), &server.rtmp_url("live/ff"), 3);
    assert!(decoded.success && decoded.video_frames > 60, "{decoded:?}");
}

const OFFER_HEAD: &str =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB:CC\r\n";
const VIDEO_RECVONLY: &str = "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=setup:actpass\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

#[test]
fn bad_whip_and_whep_requests_get_clear_errors() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/bad"), Encoding::Baseline, 25, 60);
    server.wait_for_stream("live/bad", false);
    let whep = server.api("/whep/live/bad");
    let whip = server.api("/whip/live/new");

    let (status, r) = send("POST", &whep, Some("application/json"), &[], "{}");
    assert_eq!(status, 415);
    assert!(error_text(r).contains("application/sdp"));
    let (status, r) = send("POST", &whep, Some("application/sdp"), &[], "");
    assert_eq!(status, 400);
    assert!(error_text(r).contains("empty"));
    let (status, r) = send(
        "POST",
        &whep,
        Some("application/sdp"),
        &[],
        "garbage\r\n\x01\x02",
    );
    assert_eq!(status, 400);
    assert!(error_text(r).contains("not an SDP offer"));
    let (status, r) = send("POST", &whep, Some("application/sdp"), &[], OFFER_HEAD);
    assert_eq!(status, 400);
    assert!(error_text(r).contains("no audio or video"));
    let no_ice = format!("{OFFER_HEAD}{}", VIDEO_RECVONLY.replace("a=ice-pwd", "a=x"));
    let (status, r) = send("POST", &whep, Some("application/sdp"), &[], &no_ice);
    assert_eq!(status, 400);
    assert!(error_text(r).contains("ICE credentials"));
    // A receive-only offer cannot publish; a VP8-only offer has nothing we send.
    let offer = format!("{OFFER_HEAD}{VIDEO_RECVONLY}");
    let (status, r) = send("POST", &whip, Some("application/sdp"), &[], &offer);
    assert_eq!(status, 422);
    assert!(error_text(r).contains("does not send H.264"));
    let vp8 = offer
        .replace("H264/90000", "VP8/90000")
        .replace("packetization-mode=1", "x");
    let (status, r) = send("POST", &whep, Some("application/sdp"), &[], &vp8);
    assert_eq!(status, 422);
    assert!(error_text(r).contains("video [vp8]"));
    // Unknown stream; a name being published.
    let (status, r) = send(
        "POST",
        &server.api("/whep/live/none"),
        Some("application/sdp"),
        &[],
        &offer,
    );
    assert_eq!(status, 404);
    assert!(error_text(r).contains("not found"));
    let sendonly = offer.replace("a=recvonly", "a=sendonly");
    let (status, r) = send(
        "POST",
        &server.api("/whip/live/bad"),
        Some("application/sdp"),
        &[],
        &sendonly,
    );
    assert_eq!(status, 409);
    assert!(error_text(r).contains("already being published"));

    // A good offer: 201 with Location and ETag; PATCH needs the ETag; DELETE ends it.
    let (status, r) = send("POST", &whep, Some("application/sdp"), &[], &offer);
    assert_eq!(status, 201, "{}", r.into_string().unwrap_or_default());
    let location = r.header("location").unwrap().to_string();
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(r.content_type(), "application/sdp");
    let answer = r.into_string().unwrap();
    assert!(
        answer.contains("a=setup:passive") && answer.contains("a=ice-lite"),
        "{answer}"
    );
    assert!(location.starts_with("/whep/live/bad/"), "{location}");
    let session = server.api(&location);
    let fragment = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n";
    let frag_type = Some("application/trickle-ice-sdpfrag");
    let (status, _) = send(
        "PATCH",
        &session,
        frag_type,
        &[("if-match", "\"nope\"")],
        fragment,
    );
    assert_eq!(status, 412);
    let (status, r) = send("PATCH", &session, Some("application/sdp"), &[], fragment);
    assert_eq!(status, 415, "{}", error_text(r));
    let (status, _) = send(
        "PATCH",
        &session,
        frag_type,
        &[("if-match", &etag)],
        fragment,
    );
    assert_eq!(status, 204);
    let (status, r) = send(
        "PATCH",
        &session,
        frag_type,
        &[],
        "a=ice-ufrag:other\r\na=ice-pwd:x\r\n",
    );
    assert!(error_text(r).contains("ICE restart"), "{status}");
    let (status, body) = server.get_json("/api/v1/webrtc/sessions");
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    let (status, _) = send("DELETE", &session, None, &[], "");
    assert_eq!(status, 200);
    let (status, r) = send("DELETE", &session, None, &[], "");
    assert_eq!(status, 404);
    assert!(error_text(r).contains("session not found"));
    let (_, body) = server.get_json("/api/v1/webrtc/sessions");
    assert_eq!(body.as_array().unwrap().len(), 0, "{body}");
    // An offer with a data channel too: the media is answered, and so is the data channel.
    let with_data = format!(
        "{}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:1\r\na=setup:actpass\r\na=sctp-port:5000\r\n",
        offer
            .replace("t=0 0\r\n", "t=0 0\r\na=group:BUNDLE 0 1\r\n")
            .replace("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\n")
    );
    let (status, r) = send("POST", &whep, Some("application/sdp"), &[], &with_data);
    assert_eq!(status, 201);
    let location = r.header("location").unwrap().to_string();
    let answer = r.into_string().unwrap();
    assert!(
        answer.contains("m=video 9") && answer.contains("m=application 9"),
        "{answer}"
    );
    assert!(
        answer.contains("a=rtcp-fb:") && answer.contains("nack pli"),
        "{answer}"
    );
    assert_eq!(send("DELETE", &server.api(&location), None, &[], "").0, 200);
    // OPTIONS says what the endpoint takes.
    let (status, r) = send("OPTIONS", &whep, None, &[], "");
    assert_eq!(status, 204);
    assert_eq!(r.header("accept-post"), Some("application/sdp"));

    // Garbage on the UDP port disturbs nobody.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [0usize, 1, 20, 1500] {
        udp.send_to(&vec![0x80; len], server.webrtc).unwrap();
    }
    let (status, _) = server.get_json("/api/v1/streams/live/bad");
    assert_eq!(status, 200);
}

#[test]
fn ice_servers_are_handed_out_in_link_headers() {
    let server = Switchyard::start_with_config(
        "[[webrtc.ice_servers]]\nurls = [\"stun:stun.example.net:3478\"]\n\n[[webrtc.ice_servers]]\nurls = [\"turn:turn.example.net:3478?transport=udp\"]\nusername = \"u\"\ncredential = \"p\"\n",
    );
    let (status, r) = send("OPTIONS", &server.api("/whip/live/x"), None, &[], "");
    assert_eq!(status, 204);
    let links: Vec<String> = r.all("link").into_iter().map(str::to_string).collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(links[0], "<stun:stun.example.net:3478>; rel=\"ice-server\"");
    assert!(
        links[1].contains("username=\"u\"") && links[1].contains("credential-type=\"password\"")
    );
}

#[test]
fn a_viewer_that_vanishes_without_delete_is_freed() {
    let server = Switchyard::start();
    let _publisher = ffmpeg_publish(&server.rtmp_url("live/gone"), Encoding::Baseline, 25, 120);
    server.wait_for_stream("live/gone", false);
    // Our own WHEP client in another process, killed without a DELETE.
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "loadtest",
            &server.api("/whep/live/gone"),
            "--sessions",
            "1",
        ])
        .args(["--seconds", "120"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut client = Proc(child);
    let connected = |body: &serde_json::Value| {
        body.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["state"] == "connected")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = server.get_json("/api/v1/webrtc/sessions");
        if connected(&body) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session connected: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, stream) = server.get_json("/api/v1/streams/live/gone");
    assert_eq!(stream["readers"]["webrtc"], 1, "{stream}");
    client.0.kill().unwrap();
    client.0.wait().unwrap();
    // ICE consent stops: disconnected after a few seconds, failed after about 30; the
    // session and its reader go.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = server.get_json("/api/v1/webrtc/sessions");
        if body.as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session not freed: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, stream) = server.get_json("/api/v1/streams/live/gone");
    assert!(
        stream["readers"].get("webrtc").is_none_or(|n| n == 0),
        "{stream}"
    );
    assert!(server.log_text().contains("failed"), "the log says why");
}

/// The access units of a real x264 encode (`protocols/rtp/testdata/gst.h264`: 12 frames of
/// 320x240, IDR at 0 and 6, several slices each): length-prefixed NAL units without SPS, PPS
/// and AUD, whether it is a keyframe; and the SPS and PPS.
fn fixture() -> (Vec<(bytes::Bytes, bool)>, bytes::Bytes, bytes::Bytes) {
    let stream = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/protocols/rtp/testdata/gst.h264"
    ))
    .unwrap();
    let (mut sps, mut pps) = (None, None);
    let mut units: Vec<Vec<u8>> = Vec::new();
    for nal in switchyard_media::annexb_nal_units(&stream) {
        match nal[0] & 0x1f {
            9 => units.push(Vec::new()),
            7 => sps = Some(bytes::Bytes::copy_from_slice(nal)),
            8 => pps = Some(bytes::Bytes::copy_from_slice(nal)),
            _ => {
                let unit = units.last_mut().expect("the stream starts with an AUD");
                unit.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                unit.extend_from_slice(nal);
            }
        }
    }
    let frames = units
        .into_iter()
        .map(|u| {
            let keyframe = switchyard_media::h264::is_keyframe(&u);
            (bytes::Bytes::from(u), keyframe)
        })
        .collect();
    (frames, sps.unwrap(), pps.unwrap())
}

/// Our own WebRTC client (the engine's client role) publishes the fixture over WHIP and plays
/// it back over WHEP from the server; what comes back is what went in, frame for frame.
#[test]
fn frames_sent_over_whip_come_back_over_whep_unchanged() {
    whip_whep_round_trip(&Switchyard::start());
}

/// The server leaves out one in five media packets to its WHEP viewers; our client's NACKs
/// (webrtc-rs's NACK generator) get every one of them again, so the frames still come back
/// whole and in order.
#[test]
fn lost_packets_are_sent_again_on_nack() {
    let server = Switchyard::start_with_config("[webrtc]\nsimulate_loss_one_in = 5\n");
    whip_whep_round_trip(&server);
    let (_, stats) = server.get_json("/api/v1/webrtc");
    let lost = stats["simulated_losses"].as_u64().unwrap();
    let again = stats["retransmitted"].as_u64().unwrap();
    assert!(lost > 10, "packets were left out: {stats}");
    assert!(
        again >= lost * 9 / 10,
        "most lost packets were sent again: {stats}"
    );
}

/// Our client pushes a fixture over WHIP, pulls it back over WHEP, and compares frame for
/// frame.
fn whip_whep_round_trip(server: &Switchyard) {
    use switchyard::bus::{BusConfig, Peer, ReaderEvent, Registry};
    use switchyard::webrtc::{self, ClientRole, WebRtcSettings};
    use switchyard_media::{h264::AvcConfig, CodecConfig, Frame, Track, TrackId};

    let (frames, sps, pps) = fixture();
    assert_eq!(frames.len(), 12);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let settings = WebRtcSettings::client([127, 0, 0, 1].into());
        let stop = tokio_util::sync::CancellationToken::new();
        let http = reqwest::Client::new();
        // The source: a local bus stream fed with the fixture at 25 fps, pushed over WHIP.
        let local = Registry::new(BusConfig::default());
        let mut source = local.publish("fixture", Peer::new("test", None)).unwrap();
        source.set_tracks(vec![Track {
            id: TrackId(1),
            codec: CodecConfig::H264(AvcConfig::from_parameter_sets(vec![sps], vec![pps]).unwrap()),
            clock_rate: 90_000,
        }]);
        let push_engine = webrtc::start(
            webrtc::bind(settings.udp).unwrap(),
            settings.clone(),
            stop.clone(),
        )
        .unwrap();
        let reader = local
            .subscribe("fixture", Peer::new("webrtc", None))
            .unwrap();
        let feeding = support::feed_in_real_time(source, frames.clone());
        push_engine
            .client(
                &http,
                &server.api("/whip/live/fixture"),
                ClientRole::Push(reader),
            )
            .await
            .unwrap();
        // The sink: a WHEP pull from the server into another local stream.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while server.get_json("/api/v1/streams/live/fixture").0 != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the WHIP stream never appeared"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let back = Registry::new(BusConfig::default());
        let sink = back.publish("back", Peer::new("webrtc", None)).unwrap();
        let pull_engine = webrtc::start(
            webrtc::bind(settings.udp).unwrap(),
            settings.clone(),
            stop.clone(),
        )
        .unwrap();
        pull_engine
            .client(
                &http,
                &server.api("/whep/live/fixture"),
                ClientRole::Pull(sink, Default::default()),
            )
            .await
            .unwrap();
        let mut reader = back.subscribe("back", Peer::new("test", None)).unwrap();
        let mut received: Vec<Frame> = Vec::new();
        while received.len() < 50 {
            let event = tokio::time::timeout_at(deadline, reader.recv())
                .await
                .expect("frames come back within 15 s")
                .expect("the pulled stream stays up");
            if let ReaderEvent::Frame(f) = event {
                received.push(f.frame.clone());
            }
        }
        feeding.abort();
        stop.cancel();
        // Frame for frame: the data is one of the fixture's access units, in the fixture's
        // order, starting on a keyframe. The viewer joined mid-GOP, so the server first sent
        // the cached GOP with its timestamps squeezed (1 tick apart) to reach the live edge;
        // from there on frames are 40 ms apart.
        let index = |data: &bytes::Bytes| frames.iter().position(|(f, _)| f == data);
        assert!(index(&received[0].data).is_some(), "a fixture frame");
        assert!(received[0].keyframe, "playback starts on a keyframe");
        for (i, pair) in received.windows(2).enumerate() {
            let (a, b) = (index(&pair[0].data), index(&pair[1].data));
            assert_eq!(
                b,
                a.map(|a| (a + 1) % frames.len()),
                "frame {i}: {} then {} bytes",
                pair[0].data.len(),
                pair[1].data.len()
            );
            assert_eq!(pair[1].keyframe, frames[b.unwrap()].1);
        }
        let gaps: Vec<i64> = received.windows(2).map(|p| p[1].pts - p[0].pts).collect();
        let catch_up = gaps.iter().take_while(|g| **g == 1).count();
        assert!(catch_up < 6, "at most a GOP of catch-up frames: {gaps:?}");
        assert!(
            gaps[catch_up..].iter().all(|g| *g == 3600),
            "live frames 40 ms apart after {catch_up} catch-up frames: {gaps:?}"
        );
    });
}

/// The x264 settings of the files the codec-change tests splice.
const X264: [&str; 10] = [
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-profile:v",
    "baseline",
    "-bf",
    "0",
    "-x264-params",
    "sliced-threads=0",
];

/// Issue 17 item 3. ffmpeg publishes 12 s of 720p then 12 s of 480p H.264 on one RTMP connection
/// (a file of both, played with `-c copy`: the 480p sequence header goes out mid-stream), and
/// Chromium, watching over WHEP from the 720p part on, keeps decoding through the change at the
/// new size: the session stays, the new SPS/PPS reach it in band before the next IDR.
#[test]
fn chromium_keeps_playing_when_an_h264_stream_changes_resolution() {
    let dir = TempDir::new("resize");
    let ffmpeg = std::path::Path::new("ffmpeg");
    let (hd, sd, both) = (
        dir.path.join("720.flv"),
        dir.path.join("480.flv"),
        dir.path.join("both.flv"),
    );
    // 12 s of 720p: Chromium may take several seconds to start on a busy machine.
    encode_flv(ffmpeg, "1280x720", 12, &X264, &hd);
    encode_flv(ffmpeg, "854x480", 12, &X264, &sd);
    let spliced = splice_flv(&std::fs::read(&hd).unwrap(), &std::fs::read(&sd).unwrap());
    std::fs::write(&both, spliced).unwrap();
    let server = Switchyard::start();
    let _publisher = Proc(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&both)
            .args(["-c", "copy", "-f", "flv", &server.rtmp_url("live/resize")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    server.wait_for_stream("live/resize", false);
    let report =
        support::browser::whep_viewer(&server.api("/whep/live/resize"), 18, &["--family", "4"]);
    assert_eq!(report["status"], 201, "{report}");
    let frames = report["frames"].as_array().unwrap();
    let size = |f: &serde_json::Value| (f["w"].as_u64().unwrap(), f["h"].as_u64().unwrap());
    let switch = frames
        .iter()
        .position(|f| size(f) == (854, 480))
        .unwrap_or_else(|| panic!("no 480p frame shown: {report}"));
    assert!(switch > 25, "720p shown first: {report}");
    assert!(
        frames[..switch].iter().all(|f| size(f) == (1280, 720))
            && frames[switch..].iter().all(|f| size(f) == (854, 480)),
        "one switch, at a keyframe: {report}"
    );
    let t = |i: usize| frames[i]["t"].as_f64().unwrap();
    assert!(
        t(switch) - t(switch - 1) < 500.0,
        "no stall at the switch: {} ms",
        t(switch) - t(switch - 1)
    );
    assert!(frames.len() - switch > 75, "480p goes on: {report}");
    let stats = &report["stats"];
    assert_eq!(
        (stats["frameWidth"].as_u64(), stats["frameHeight"].as_u64()),
        (Some(854), Some(480)),
        "{stats}"
    );
    // The switch itself is checked above (no stall between the last 720p frame and the first
    // 480p one). Chromium's software decoder also freezes briefly when the machine is busy, so
    // the whole run is only held to a bound a stalled stream would break.
    assert!(
        stats["totalFreezesDuration"].as_f64().unwrap_or(f64::MAX) < 2.0,
        "{stats}"
    );
    let changed = server.wait_for_log("the stream's video changed", Duration::from_secs(1));
    assert!(
        changed.contains("from=H.264 to=H.264 viewers_closed=0"),
        "{changed}"
    );
    assert!(
        server.log_text().contains("closed by the client (DELETE)"),
        "the session lasted until the viewer left: {}",
        server.log_text()
    );
}

/// Issue 17 item 3. The stream's video changes codec under the same name (H.264 from ffmpeg,
/// then H.265 from FFmpeg 9 as Enhanced RTMP, on one RTMP connection): a WHEP viewer that
/// negotiated H.264 cannot be sent H.265, and WHEP has no way to offer it anew, so its session
/// is closed, with the reason in the log and in the closed-session list; Chromium sees its
/// connection end.
#[test]
fn a_codec_change_closes_the_webrtc_sessions_that_negotiated_the_old_codec() {
    let dir = TempDir::new("codec");
    let (avc, hevc) = (dir.path.join("h264.flv"), dir.path.join("h265.flv"));
    encode_flv(std::path::Path::new("ffmpeg"), "640x360", 8, &X264, &avc);
    let x265 = [
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error:bframes=0",
    ];
    encode_flv(&ffmpeg9(), "640x360", 6, &x265, &hevc);
    let spliced = splice_flv(
        &std::fs::read(&avc).unwrap(),
        &std::fs::read(&hevc).unwrap(),
    );
    let server = Switchyard::start();
    let mut client = support::rtmp_client::RtmpClient::connect(server.rtmp, "live");
    client.publish("codec");
    let publisher = std::thread::spawn(move || {
        let tags = flv_tags(&spliced);
        client.send_video_tags_in_real_time(&tags)
    });
    server.wait_for_stream("live/codec", false);
    let report = support::browser::whep_viewer(
        &server.api("/whep/live/codec"),
        20,
        &["--family", "4", "--until-closed"],
    );
    assert_eq!(report["status"], 201, "{report}");
    assert!(
        report["stats"]["framesDecoded"].as_u64().unwrap_or(0) > 25,
        "H.264 played first: {report}"
    );
    let states: Vec<&str> = report["states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s[1].as_str())
        .collect();
    assert!(
        states.contains(&"connected") && states.contains(&"dtls-closed"),
        "Chromium saw the session end (DTLS close_notify): {states:?}"
    );
    let (status, closed) = server.get_json("/api/v1/webrtc/sessions?state=closed");
    assert_eq!(status, 200, "{closed}");
    let session = &closed[0];
    assert_eq!(
        (&session["role"], &session["state"]),
        (&"play".into(), &"closed".into())
    );
    let reason = session["closed_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("the stream's video changed from H.264 to H.265")
            && reason.contains("this session negotiated H.264"),
        "{session}"
    );
    let id = session["id"].as_str().unwrap();
    let (status, one) = server.get_json(&format!("/api/v1/webrtc/sessions/{id}"));
    assert_eq!(
        (status, &one["closed_reason"]),
        (200, &session["closed_reason"])
    );
    assert!(server.log_text().contains(reason), "the log says why");
    assert!(publisher.join().unwrap(), "the publisher went on");
    let (status, open) = server.get_json("/api/v1/webrtc/sessions?state=open");
    assert_eq!((status, open.as_array().map(Vec::len)), (200, Some(0)));
    let (status, body) = server.get_json("/api/v1/webrtc/sessions?state=gone");
    assert!(
        status == 400 && body["error"].as_str().unwrap().contains("\"closed\""),
        "{body}"
    );
}
