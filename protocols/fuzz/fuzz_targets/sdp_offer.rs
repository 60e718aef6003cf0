//! Fuzzes what WHIP and WHEP do with an SDP offer (RFC 9725, RFC 8866), and a WHEP pull with
//! the answer of a remote server: our checks (`switchyard::webrtc::peer::check_offer_for`, the
//! BUNDLE check of RFC 9143, which video section sends), then `peer::build`, the same call the
//! engine makes for `POST /whip` and `/whep`: `rtc`'s SDP parser, `set_remote_description`,
//! the answer and the codec it settles on. For an answer: `peer::answered_video` and
//! `peer::apply_answer` on a connection from `peer::build_offer`. No sockets.
//!
//! Input: a byte that picks the role (bit 0: publisher or viewer; bit 7: the text is a WHEP
//! server's answer) and for a viewer the stream's video codec (bits 1-3), then the SDP text
//! (lossily decoded from UTF-8; the server refuses other bodies). Invariants beyond "no
//! panic": what our checks refuse is refused; an answer names our ICE ufrag, parses back as
//! SDP, and carries the video codec picked for it; a viewer is never given another codec than
//! the stream's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::sdp::RTCSessionDescription;
use std::sync::OnceLock;
use std::time::Instant;
use switchyard::webrtc::bundle::{check_bundle, offer_sends_video};
use switchyard::webrtc::peer::{
    answered_video, apply_answer, build, build_offer, check_offer_for, Direction, Local,
};
use switchyard::webrtc::VideoCodec;

const STREAM_VIDEO: [Option<VideoCodec>; 8] = [
    None,
    Some(VideoCodec::H264),
    Some(VideoCodec::Vp8),
    Some(VideoCodec::Vp9 { profile: 0 }),
    Some(VideoCodec::Vp9 { profile: 2 }),
    Some(VideoCodec::Av1),
    Some(VideoCodec::H265),
    Some(VideoCodec::H264),
];

/// The engine's process-wide certificate and host candidate, made once.
fn local() -> &'static Local {
    static LOCAL: OnceLock<Local> = OnceLock::new();
    LOCAL.get_or_init(|| {
        let provider = rtc::crypto::default_provider().expect("a crypto provider");
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            CertificateParams::new(vec!["fuzz".to_owned()]).expect("certificate parameters"),
        )
        .expect("a certificate");
        Local {
            certificate,
            candidates: vec!["192.0.2.1:8189".parse().unwrap()],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let sdp = String::from_utf8_lossy(text);
    let now = Instant::now();
    if selector & 0x80 != 0 {
        // A WHEP pull's answer from another server.
        let _ = answered_video(&sdp);
        let direction = if selector & 1 == 0 {
            Direction::Receive
        } else {
            Direction::Send
        };
        let (mut built, _) = build_offer(local(), direction, None, false, now).expect("an offer");
        let _ = apply_answer(&mut built.pc, &sdp, now);
        return;
    }
    let (direction, stream_video) = if selector & 1 == 0 {
        (Direction::Receive, None)
    } else {
        (
            Direction::Send,
            STREAM_VIDEO[usize::from(selector >> 1 & 7)],
        )
    };
    let checked = check_offer_for(&sdp, direction, stream_video);
    let bundled = check_bundle(&sdp);
    let _ = offer_sends_video(&sdp);
    match build(local(), &sdp, direction, stream_video, now) {
        Ok(built) => {
            let summary = checked.expect("an offer our checks refuse is refused");
            assert!(bundled.is_ok(), "an unbundled offer was answered");
            assert!(
                built.sdp.contains(&format!("a=ice-ufrag:{}", built.ufrag)),
                "{}",
                built.sdp
            );
            RTCSessionDescription::answer(built.sdp.clone()).expect("our answer parses");
            assert_eq!(built.video_codec, summary.video);
            if let (Direction::Send, Some(codec), Some(stream)) =
                (direction, built.video_codec, stream_video)
            {
                assert_eq!(
                    codec, stream,
                    "a viewer given another codec than the stream's"
                );
            }
        }
        Err(_) => {}
    }
});
