//! VP8, VP9 and AV1 passed through WebRTC: published over WHIP by headless Chromium (the
//! publish page with `?codec=vp8` / `av1`) and by GStreamer's webrtcbin
//! (`tests/interop/gst_whip.py --codec vp9`), played over WHEP by Chromium, over Enhanced RTMP
//! by FFmpeg 9 (VP8 with its decoder named: FFmpeg's FLV demuxer does not know `vp08`), and as
//! fMP4 (`vp08`/`vp09` with `vpcC`, `av01` with `av1C`) over HLS by ffmpeg and over MSE (and
//! hls.js) by Chromium; VP8 pushed over Enhanced RTMP to another node and through nginx-rtmp,
//! and read back by that node's RTMP publish and pull; and the plain 422 a viewer gets when its
//! offer cannot receive the stream's codec (there is no transcoding of video).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::browser::{play, Publishing};
use support::*;

/// Chromium encoding in software on a busy machine drops layers or frames. The SVC test, which
/// needs the top spatial layer at a steady rate, runs alone (`write`); the other tests with a
/// browser encoder may run together (`read`).
static BROWSER_ENCODERS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// `tests/interop/gst_whip.py URL SECONDS --codec CODEC` in the background (Debian's Python
/// with GStreamer's introspection data; `scripts/test` installs them).
fn gst_whip(url: &str, seconds: u32, codec: &str) -> Proc {
    require("gst-launch-1.0");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/gst_whip.py");
    let child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(url)
        .arg(seconds.to_string())
        .args(["--codec", codec])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start gst_whip.py: {e}"));
    Proc(child)
}

/// The stream's video track as the API shows it.
fn video_track(info: &serde_json::Value) -> serde_json::Value {
    info["tracks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["kind"] == "video"))
        .cloned()
        .unwrap_or_else(|| panic!("no video track: {info}"))
}

/// The stream's HLS as Debian's ffprobe (5.1) sees it: a `codec` video stream with a picture
/// size, and an Opus one; ffmpeg decodes it without an error.
fn assert_hls_carries(server: &Switchyard, name: &str, codec: &str) {
    let url = server.api(&format!("/hls/{name}/index.m3u8"));
    let streams = ffprobe_streams(&url);
    let video = streams
        .iter()
        .find(|s| s.starts_with(&format!("codec_name={codec}|")))
        .unwrap_or_else(|| panic!("no {codec} stream in HLS: {streams:?}"));
    assert!(!video.contains("width=0"), "{streams:?}");
    assert!(
        streams.iter().any(|s| s.starts_with("codec_name=opus")),
        "{streams:?}"
    );
    let decoded = ffmpeg_decode(&url, 3);
    assert!(
        decoded.success && decoded.errors.is_empty() && decoded.video_frames > 20,
        "{codec} over HLS: {decoded:?}"
    );
}

/// What Chromium does with a codec's fMP4.
enum ChromiumFmp4 {
    /// Plays it over MSE and over HLS with hls.js.
    MseAndHlsJs,
    /// Has no MSE support for it in MP4 (VP8: `isTypeSupported` says no to `vp08` and `vp8`
    /// in `video/mp4`; Firefox plays it): the player page says so.
    Unsupported,
}

/// FFmpeg 9 records `name`'s VP8 from our RTMP output (`vp08`, Enhanced RTMP v2) to an IVF
/// file, and Debian's ffmpeg decodes the recording.
///
/// FFmpeg 9.0's FLV demuxer does not know the FourCC `vp08` (it reads the stream as codec
/// `none (80pv)`: its table has `hvc1`, `av01`, `vp09`), but it splits Enhanced RTMP tags of
/// any FourCC, so with the decoder named (`-c:v vp8` before `-i`) it takes the frames; it hands
/// the sequence start's `vpcC` on as a first 12-byte packet, which the decoder rejects once
/// ("Invalid data found when processing input"). Everything else must decode.
fn ffmpeg9_records_vp8_over_rtmp(server: &Switchyard, name: &str) {
    let dir = TempDir::new("vp8-rtmp");
    let ivf = dir.path.join("rtmp.ivf");
    let recorded = Command::new(ffmpeg9())
        .args(["-nostdin", "-v", "error", "-rw_timeout", "5000000"])
        .args(["-c:v", "vp8", "-i"])
        .arg(server.rtmp_url(name))
        .args(["-t", "4", "-map", "0:v", "-c", "copy", "-f", "ivf", "-y"])
        .arg(&ivf)
        .output()
        .unwrap();
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    let frames = ivf_frames(&std::fs::read(&ivf).unwrap());
    assert!(frames.len() > 40, "{} packets recorded", frames.len());
    // The `vpcC` of our sequence start (version 1, profile 0, 8-bit 4:2:0, BT.601 matrix).
    assert_eq!(frames[0].len(), 12, "the vp08 sequence start");
    assert_eq!(&frames[0][..5], &[1, 0, 0, 0, 0]);
    assert_eq!(&frames[0][6..], &[0x82, 2, 2, 6, 0, 0]);
    let keyframe = switchyard_media::vp8::Vp8KeyframeInfo::parse(&frames[1])
        .unwrap_or_else(|| panic!("the first frame is a keyframe: {:02x?}", &frames[1][..10]));
    assert_eq!(
        frames[0][5],
        switchyard_media::vpcc::level_for_picture_size(keyframe.width, keyframe.height),
        "the level of {}x{}",
        keyframe.width,
        keyframe.height
    );
    let decoded = ffmpeg_decode(ivf.to_str().unwrap(), 10);
    let rejected = decoded.errors.lines().filter(|l| !l.trim().is_empty());
    assert!(
        decoded.success
            && decoded.video_frames + 1 >= frames.len() as u64
            && rejected.count() <= 1
            && (decoded.errors.trim().is_empty()
                || decoded
                    .errors
                    .contains("Invalid data found when processing input")),
        "{} packets: {decoded:?}",
        frames.len()
    );
}

/// Chromium publishes `codec` through the publish page (`?codec=`) and a second Chromium
/// plays it over WHEP, and as fMP4 as `fmp4` says; ffmpeg decodes its HLS; FFmpeg 9 decodes
/// it over Enhanced RTMP too (VP8: records it, see [`ffmpeg9_records_vp8_over_rtmp`]).
fn chromium_publishes_and_plays(codec: &str, mime: &str, fmp4: ChromiumFmp4) {
    let _encoders = BROWSER_ENCODERS.read().unwrap_or_else(|e| e.into_inner());
    let server = Switchyard::start();
    let name = format!("live/{codec}");
    // The page publishes long enough for every step below on a busy machine.
    let publishing = Publishing::start(&server.api(&format!("/publish/{name}?codec={codec}")), 100);
    let info = server.wait_for_stream(&name, true);
    let video = video_track(&info);
    assert_eq!(video["codec"], codec, "{info}");
    assert_eq!(info["webrtc"]["video"], format!("sent ({codec})"), "{info}");

    let report = play(&server.api(&format!("/play/{name}?mode=webrtc")), 10);
    support::browser::assert_webrtc_video(&report, mime);
    if codec == "vp8" {
        ffmpeg9_records_vp8_over_rtmp(&server, &name);
    } else {
        let decoded = ffmpeg_decode_with(&ffmpeg9(), &server.rtmp_url(&name), 3);
        assert!(
            decoded.success && decoded.errors.is_empty() && decoded.video_frames > 20,
            "{decoded:?}"
        );
    }
    assert_hls_carries(&server, &name, codec);
    let mse = play(&server.api(&format!("/play/{name}?mode=mse")), 8);
    match fmp4 {
        ChromiumFmp4::Unsupported => {
            let errors = mse["errors"].to_string();
            assert!(
                errors.contains("cannot play the stream's format") && mse["state"] == "error",
                "{mse}"
            );
        }
        ChromiumFmp4::MseAndHlsJs => {
            support::browser::assert_plays_fmp4(&mse, "MSE");
            let hls = play(&server.api(&format!("/play/{name}?mode=hls")), 12);
            support::browser::assert_plays_fmp4(&hls, "HLS (hls.js)");
        }
    }

    let published = publishing.finish();
    assert_eq!(
        published["errors"].as_array().map(Vec::len),
        Some(0),
        "{published}"
    );
    assert!(
        published["videoCodec"]
            .as_str()
            .is_some_and(|c| c.starts_with(mime)),
        "the page published {mime}: {published}"
    );
}

/// VP8 over WHEP, over Enhanced RTMP (`vp08`, recorded by FFmpeg 9) and over HLS.
#[test]
fn chromium_publishes_vp8_and_chromium_plays_it_over_whep_ffmpeg_over_rtmp_and_hls() {
    chromium_publishes_and_plays("vp8", "video/VP8", ChromiumFmp4::Unsupported);
}

/// libwebrtc's VP9 descriptors (non-flexible mode, SS on keyframes) in, ours out; fMP4 with
/// the vpcC built from a keyframe's header, played by hls.js too.
#[test]
fn chromium_publishes_vp9_and_chromium_ffmpeg_play_it() {
    chromium_publishes_and_plays("vp9", "video/VP9", ChromiumFmp4::MseAndHlsJs);
}

/// AV1 both ways (Chromium encodes it with libaom in real-time mode), over Enhanced RTMP
/// with the av1C built from the sequence header, and in fMP4 (`av01`) over MSE and hls.js.
#[test]
fn chromium_publishes_av1_and_chromium_ffmpeg_play_it() {
    chromium_publishes_and_plays("av1", "video/AV1", ChromiumFmp4::MseAndHlsJs);
}

#[test]
fn gstreamer_publishes_vp9_over_whip_and_chromium_plays_it() {
    let _encoders = BROWSER_ENCODERS.read().unwrap_or_else(|e| e.into_inner());
    let server = Switchyard::start();
    let _publisher = gst_whip(&server.api("/whip/live/vp9"), 60, "vp9");
    let info = server.wait_for_stream("live/vp9", true);
    let video = video_track(&info);
    assert_eq!(video["codec"], "vp9", "{info}");
    assert_eq!(info["webrtc"]["video"], "sent (vp9)", "{info}");

    // Our VP9 packetizer (flexible mode, PictureID, SS with the size on keyframes), not
    // GStreamer's, is what Chromium decodes.
    let report = play(&server.api("/play/live/vp9?mode=webrtc"), 10);
    support::browser::assert_webrtc_video(&report, "video/VP9");
    assert_eq!(
        (
            report["videoWidth"].as_u64(),
            report["videoHeight"].as_u64()
        ),
        (Some(640), Some(360)),
        "{report}"
    );

    // Enhanced RTMP carries VP9 (FourCC vp09) with the vpcC built from a keyframe's header:
    // FFmpeg 9 decodes it.
    let decoded = ffmpeg_decode_with(&ffmpeg9(), &server.rtmp_url("live/vp9"), 3);
    assert!(
        decoded.success && decoded.errors.is_empty() && decoded.video_frames > 20,
        "{decoded:?}"
    );
    // fMP4 (HLS) carries VP9: the `vp09` sample entry has the keyframe's picture size.
    assert_hls_carries(&server, "live/vp9", "vp9");
    let hls = ffprobe_streams(&server.api("/hls/live/vp9/index.m3u8"));
    assert!(
        hls.iter()
            .any(|s| s.starts_with("codec_name=vp9|profile=Profile 0|width=640|height=360")),
        "{hls:?}"
    );
}

/// A WHEP offer that can only receive H.264, for a VP8 stream.
const H264_ONLY_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB:CC\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=setup:actpass\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

#[test]
fn a_whep_offer_without_the_streams_codec_gets_422_saying_so() {
    let server = Switchyard::start();
    let _publisher = gst_whip(&server.api("/whip/live/vp8"), 20, "vp8");
    let info = server.wait_for_stream("live/vp8", true);
    assert_eq!(video_track(&info)["codec"], "vp8", "{info}");

    let response = ureq::post(&server.api("/whep/live/vp8"))
        .timeout(Duration::from_secs(10))
        .set("content-type", "application/sdp")
        .send_string(H264_ONLY_OFFER);
    let Err(ureq::Error::Status(status, response)) = response else {
        panic!("the offer was accepted: {response:?}");
    };
    assert_eq!(status, 422);
    let body: serde_json::Value = response.into_json().unwrap_or_default();
    let text = body["error"].as_str().unwrap_or_default();
    assert!(
        text.contains("this stream is VP8; your offer has only H.264"),
        "{body}"
    );
}

/// The frames of an IVF file (32-byte header; per frame a 4-byte little-endian size, an 8-byte
/// pts and the frame).
fn ivf_frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = data.get(32..).unwrap_or_default();
    let mut frames = Vec::new();
    while rest.len() >= 12 {
        let size = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(frame) = rest.get(12..12 + size) else {
            break;
        };
        frames.push(frame.to_vec());
        rest = &rest[12 + size..];
    }
    frames
}

/// The encoder's frames of a capture in `protocols/rtp/testdata` (see its README), with
/// their keyframe flags: VP9 from the IVF file, AV1 temporal units from the OBU stream
/// (temporal delimiters removed, as on the bus).
fn vpx_fixture(codec: &str) -> Vec<(bytes::Bytes, bool)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/protocols/rtp/testdata");
    match codec {
        "vp9" => ivf_frames(&std::fs::read(format!("{dir}/gst-vp9.ivf")).unwrap())
            .into_iter()
            .enumerate()
            .map(|(i, f)| (bytes::Bytes::from(f), i % 6 == 0))
            .collect(),
        _ => {
            let data = std::fs::read(format!("{dir}/aom-av1.obu")).unwrap();
            // Every OBU has a size field; a temporal delimiter (`12 00`) starts each unit.
            let mut units: Vec<Vec<u8>> = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let (mut size, mut n) = (0usize, 1);
                loop {
                    let b = rest[n];
                    size |= usize::from(b & 0x7f) << (7 * (n - 1));
                    n += 1;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                let (obu, tail) = rest.split_at(n + size);
                if obu[0] >> 3 & 0x0f == 2 {
                    units.push(Vec::new());
                } else {
                    units.last_mut().unwrap().extend_from_slice(obu);
                }
                rest = tail;
            }
            units
                .into_iter()
                .map(|u| {
                    let keyframe = switchyard_rtp::av1::is_keyframe(&u);
                    (bytes::Bytes::from(u), keyframe)
                })
                .collect()
        }
    }
}

/// Our own WebRTC client (the engine's client role) pushes a VP9 or AV1 encode over WHIP (our
/// packetizer), the server depacketizes it and republishes it over Enhanced RTMP, where FFmpeg
/// 9 copies it to an IVF file: every frame is one of the encoder's, in order.
fn whip_push_comes_back_over_rtmp_unchanged(codec: &str) {
    use switchyard::bus::{BusConfig, Peer, Registry};
    use switchyard::webrtc::{self, ClientRole, WebRtcSettings};
    use switchyard_media::{CodecConfig, Track, TrackId};

    let server = Switchyard::start();
    let frames = vpx_fixture(codec);
    let config = match codec {
        "vp9" => CodecConfig::Vp9 {
            vpcc: switchyard_rtp::vp9::Vp9KeyframeInfo::parse(&frames[0].0)
                .unwrap()
                .vpcc(),
        },
        _ => CodecConfig::Av1 {
            av1c: switchyard_rtp::av1::av1c_from_temporal_unit(&frames[0].0).unwrap(),
        },
    };
    let name = format!("live/push-{codec}");
    let dir = TempDir::new("vpx-push");
    let ivf = dir.path.join("out.ivf");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let settings = WebRtcSettings::client([127, 0, 0, 1].into());
        let stop = tokio_util::sync::CancellationToken::new();
        let http = reqwest::Client::new();
        let local = Registry::new(BusConfig::default());
        let mut source = local.publish("fixture", Peer::new("test", None)).unwrap();
        source.set_tracks(vec![Track {
            id: TrackId(1),
            codec: config,
            clock_rate: 90_000,
        }]);
        let engine = webrtc::start(
            webrtc::bind(settings.udp).unwrap(),
            settings.clone(),
            stop.clone(),
        )
        .unwrap();
        let reader = local
            .subscribe("fixture", Peer::new("webrtc", None))
            .unwrap();
        let feeding = support::feed_in_real_time(source, frames.clone());
        engine
            .client(
                &http,
                &server.api(&format!("/whip/{name}")),
                ClientRole::Push(reader),
            )
            .await
            .unwrap();
        let info = tokio::task::block_in_place(|| server.wait_for_stream(&name, false));
        assert_eq!(video_track(&info)["codec"], codec, "{info}");
        let copied = tokio::task::block_in_place(|| {
            Command::new(ffmpeg9())
                .args(["-nostdin", "-v", "error", "-rw_timeout", "5000000", "-i"])
                .arg(server.rtmp_url(&name))
                .args(["-t", "3", "-map", "0:v", "-c", "copy", "-f", "ivf", "-y"])
                .arg(&ivf)
                .output()
                .unwrap()
        });
        assert!(
            copied.status.success(),
            "{}",
            String::from_utf8_lossy(&copied.stderr)
        );
        feeding.abort();
        stop.cancel();
    });
    let received: Vec<Vec<u8>> = ivf_frames(&std::fs::read(&ivf).unwrap())
        .into_iter()
        // FFmpeg's IVF muxer puts a temporal delimiter before each AV1 temporal unit.
        .map(|f| {
            f.strip_prefix(&[0x12, 0x00][..])
                .map_or(f.clone(), <[u8]>::to_vec)
        })
        .collect();
    assert!(received.len() > 40, "{} frames", received.len());
    let index = |data: &[u8]| frames.iter().position(|(f, _)| &f[..] == data);
    assert!(
        index(&received[0]).is_some_and(|i| frames[i].1),
        "starts on a keyframe"
    );
    for (i, pair) in received.windows(2).enumerate() {
        let (a, b) = (index(&pair[0]), index(&pair[1]));
        assert_eq!(
            b,
            a.map(|a| (a + 1) % frames.len()),
            "frame {i}: {} then {} bytes",
            pair[0].len(),
            pair[1].len()
        );
    }
}

/// A VP9 stream is pulled over WHEP by a second node (its offer has every codec; the origin
/// answers with the stream's), which republishes it: FFmpeg 9 decodes the edge's RTMP.
#[test]
fn a_vp9_stream_is_pulled_over_whep_by_another_node() {
    let origin = Switchyard::start();
    let _publisher = gst_whip(&origin.api("/whip/live/vp9"), 30, "vp9");
    origin.wait_for_stream("live/vp9", true);
    let edge = Switchyard::start();
    let body = serde_json::json!({"source": origin.api("/whep/live/vp9"), "name": "edge/vp9"});
    let (status, created) = edge.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let info = edge.wait_for_stream("edge/vp9", true);
    assert_eq!(video_track(&info)["codec"], "vp9", "{info}");
    let decoded = ffmpeg_decode_with(&ffmpeg9(), &edge.rtmp_url("edge/vp9"), 3);
    assert!(
        decoded.success && decoded.errors.is_empty() && decoded.video_frames > 20,
        "{decoded:?}"
    );
}

#[test]
fn vp9_pushed_over_whip_comes_back_over_rtmp_unchanged() {
    whip_push_comes_back_over_rtmp_unchanged("vp9");
}

#[test]
fn av1_pushed_over_whip_comes_back_over_rtmp_unchanged() {
    whip_push_comes_back_over_rtmp_unchanged("av1");
}

/// VP8 goes out in RTMP pushes as Enhanced RTMP (`vp08` with the `vpcC` of its first
/// keyframe) and comes back in over RTMP: GStreamer publishes VP8 over WHIP to node A, which
/// pushes it to node B's RTMP publish (Chromium plays B's copy over WHEP) and to nginx-rtmp,
/// from which B pulls it over RTMP; ffmpeg decodes B's HLS of it.
///
/// nginx-rtmp 1.2.2 (Debian's) knows no Enhanced RTMP: it reads a video tag's frame type from
/// the first byte's high nibble, which with the IsExHeader bit is 9 for an Enhanced RTMP
/// keyframe, never "key frame" (1). With its default `wait_key on` a player that joins after
/// the publisher never gets Enhanced RTMP video (seen with VP8; VP9, HEVC and AV1 tags start
/// with the same bit), so this nginx
/// has `wait_key off`; then the player starts mid-GOP, and, since nginx-rtmp replays sequence
/// headers to late players only for AVC and AAC, without the `vp08` sequence start: B's pull
/// drops frames to the first keyframe and takes the configuration from it.
#[test]
fn vp8_goes_out_in_rtmp_pushes_and_comes_back_in_over_rtmp_publish_and_pull() {
    let a = Switchyard::start();
    let _publisher = gst_whip(&a.api("/whip/live/vp8"), 60, "vp8");
    a.wait_for_stream("live/vp8", true);
    let b = Switchyard::start();
    let nginx = support::nginx::Nginx::start_with("wait_key off;");
    for url in [b.rtmp_url("live/pushed"), nginx.url("vp8")] {
        let body = serde_json::json!({"stream": "live/vp8", "url": url});
        let (status, created) = a.request("POST", "/api/v1/pushes", Some(&body.to_string()));
        assert_eq!(status, 201, "{created}");
    }
    let info = b.wait_for_stream("live/pushed", false);
    assert_eq!(video_track(&info)["codec"], "vp8", "{info}");
    assert_eq!(info["publisher"]["protocol"], "rtmp", "{info}");
    let (_, pushes) = a.get_json("/api/v1/pushes");
    assert!(
        pushes
            .to_string()
            .contains("video sent as Enhanced RTMP (vp8)"),
        "{pushes}"
    );
    let report = play(&b.api("/play/live/pushed?mode=webrtc"), 10);
    support::browser::assert_webrtc_video(&report, "video/VP8");

    let body = serde_json::json!({"source": nginx.url("vp8"), "name": "live/relayed"});
    let (status, created) = b.request("POST", "/api/v1/pulls", Some(&body.to_string()));
    assert_eq!(status, 201, "{created}");
    let info = b.wait_for_stream("live/relayed", false);
    assert_eq!(video_track(&info)["codec"], "vp8", "{info}");
    assert!(
        b.log_text().contains("keyframe without a sequence start"),
        "nginx-rtmp sent no vp08 sequence start"
    );
    let hls = b.api("/hls/live/relayed/index.m3u8");
    let streams = ffprobe_streams(&hls);
    assert!(
        streams.iter().any(|s| s.starts_with("codec_name=vp8|")),
        "{streams:?}"
    );
    assert_decodes(&hls, 3, 20);
}

/// Chromium publishes VP9 with two spatial layers (`scalabilityMode: 'L2T1'`: 640x360 and
/// 1280x720, the upper predicted from the lower): the layers are joined per picture, not
/// dropped. Chromium plays it over WHEP at the top layer's size (our packetizer sends the
/// layer frames with their layer indices), and FFmpeg's own VP9 decoder shows every picture
/// once, at 1280x720, from the RTMP copy (FFmpeg 9) and the HLS copy (Debian's ffmpeg): the
/// base layer is hidden in the superframe.
#[test]
fn chromium_publishes_vp9_svc_and_every_output_gets_the_top_layer() {
    let _alone = BROWSER_ENCODERS.write().unwrap_or_else(|e| e.into_inner());
    let server = Switchyard::start();
    let name = "live/svc";
    let publishing = Publishing::start_with_scalability_mode(
        &server.api(&format!("/publish/{name}?codec=vp9")),
        70,
        "L2T1",
    );
    server.wait_for_stream(name, true);
    // Chromium starts with its base layer and adds the upper one a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let info = loop {
        let (_, info) = server.get_json(&format!("/api/v1/streams/{name}"));
        if video_track(&info)["codec_string"] == "vp09.00.31.08" {
            break info;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 1280x720 keyframe: {info}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(info["webrtc"]["video"], "sent (vp9)", "{info}");

    let report = play(&server.api(&format!("/play/{name}?mode=webrtc")), 10);
    support::browser::assert_webrtc_video(&report, "video/VP9");
    assert_eq!(
        (
            report["videoWidth"].as_u64(),
            report["videoHeight"].as_u64()
        ),
        (Some(1280), Some(720)),
        "{report}"
    );

    // One decoded picture per frame, all at the top layer's size.
    let sizes = |ffmpeg: &Path, url: &str| -> (std::collections::BTreeMap<String, u32>, String) {
        let out = Command::new(ffmpeg)
            .args([
                "-nostdin",
                "-v",
                "info",
                "-rw_timeout",
                "5000000",
                "-i",
                url,
            ])
            .args([
                "-t", "3", "-map", "0:v", "-vf", "showinfo", "-f", "null", "-",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let mut sizes = std::collections::BTreeMap::new();
        for line in stderr
            .lines()
            .filter(|l| l.contains("Parsed_showinfo") && l.contains(" s:"))
        {
            let size = line
                .split(" s:")
                .nth(1)
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("");
            *sizes.entry(size.to_string()).or_insert(0) += 1;
        }
        (sizes, stderr)
    };
    let rtmp = server.rtmp_url(name);
    let hls = server.api(&format!("/hls/{name}/index.m3u8"));
    for (ffmpeg, url) in [
        (ffmpeg9(), rtmp.as_str()),
        (Path::new("ffmpeg").to_path_buf(), hls.as_str()),
    ] {
        let (sizes, stderr) = sizes(&ffmpeg, url);
        assert!(
            sizes.len() == 1 && sizes.get("1280x720").is_some_and(|&n| n > 20),
            "{url}: {sizes:?}\n{stderr}"
        );
        let decoded = ffmpeg_decode_with(&ffmpeg, url, 3);
        assert!(
            decoded.success && decoded.errors.is_empty() && decoded.video_frames > 20,
            "{url}: {decoded:?}"
        );
    }

    let published = publishing.finish();
    assert_eq!(published["scalabilityMode"], "L2T1", "{published}");
    assert_eq!(
        published["errors"].as_array().map(Vec::len),
        Some(0),
        "{published}"
    );
}
