//! Tests of offer checks and answers against offers of real clients (Chromium, OBS,
//! GStreamer, Switchyard's own pulls) and hand-made ones.

use super::*;

const CHROME_RECVONLY: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=fingerprint:sha-256 AA:BB\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

#[test]
fn offers_are_checked_with_plain_reasons() {
    let ok = check_offer(CHROME_RECVONLY, Direction::Send).unwrap();
    assert!(ok.video == Some(VideoCodec::H264) && ok.audio);
    let err = |sdp: &str, d| check_offer(sdp, d).unwrap_err().to_string();
    assert!(err("hello", Direction::Send).contains("not an SDP offer"));
    assert!(err("v=0\r\ns=-\r\n", Direction::Send).contains("no audio or video"));
    assert!(err(
        &CHROME_RECVONLY.replace("a=ice-pwd", "a=x-pwd"),
        Direction::Send
    )
    .contains("ICE credentials"));
    assert!(err(
        &CHROME_RECVONLY.replace("a=fingerprint", "a=x"),
        Direction::Send
    )
    .contains("fingerprint"));
    // A receive-only offer cannot publish.
    assert!(err(CHROME_RECVONLY, Direction::Receive).contains("does not send H.264"));
    let vp8_only = CHROME_RECVONLY
        .replace("a=rtpmap:102 H264/90000\r\n", "")
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
    assert!(err(&vp8_only, Direction::Send).contains("video [vp8]"));
}

#[test]
fn publishers_may_send_vp8_vp9_or_av1_and_h264_is_preferred() {
    let send = CHROME_RECVONLY.replace("a=recvonly", "a=sendonly");
    let codec = |sdp: &str| check_offer(sdp, Direction::Receive).unwrap().video;
    assert_eq!(codec(&send), Some(VideoCodec::H264));
    let no_h264 = send.replace("a=rtpmap:102 H264/90000\r\n", "");
    assert_eq!(codec(&no_h264), Some(VideoCodec::Vp8));
    let vp9_av1 = no_h264
        .replace("SAVPF 96 102", "SAVPF 98 100 45")
        .replace("96 VP8/90000", "98 VP9/90000\r\na=rtpmap:100 VP9/90000\r\na=fmtp:100 profile-id=2\r\na=rtpmap:45 AV1/90000");
    assert_eq!(codec(&vp9_av1), Some(VideoCodec::Vp9 { profile: 0 }));
    let vp9_2 = vp9_av1.replace("a=rtpmap:98 VP9/90000\r\n", "");
    assert_eq!(codec(&vp9_2), Some(VideoCodec::Vp9 { profile: 2 }));
    let av1 = vp9_2.replace("VP9", "X");
    assert_eq!(codec(&av1), Some(VideoCodec::Av1));
}

fn test_local() -> Local {
    use rtc::peer_connection::certificate::CertificateParams;
    let provider = rtc::crypto::default_provider().unwrap();
    let certificate = RTCCertificate::generate(
        provider.crypto(),
        rtc::crypto::SignatureScheme::EcdsaP256Sha256,
        CertificateParams::new(vec!["test".to_owned()]).unwrap(),
    )
    .unwrap();
    let candidates = vec!["127.0.0.1:9".parse().unwrap()];
    Local {
        certificate,
        candidates,
    }
}

#[test]
fn a_pull_offers_every_codec_and_learns_the_streams_from_the_answer() {
    let (local, now) = (test_local(), Instant::now());
    for stream in VideoCodec::PUBLISH_ORDER {
        let (offer, _) = build_offer(&local, Direction::Receive, None, false, now).unwrap();
        assert!(offer.video_codec.is_none(), "known from the answer");
        let answer = build(&local, &offer.sdp, Direction::Send, Some(stream), now).unwrap();
        assert_eq!(answered_video(&answer.sdp), Some(stream), "{}", answer.sdp);
    }
}

#[test]
fn viewers_must_take_the_streams_codec() {
    let check = |sdp: &str, codec| check_offer_for(sdp, Direction::Send, Some(codec));
    // The offer has VP8 and H.264: a VP8 stream and an H.264 stream both play.
    assert_eq!(
        check(CHROME_RECVONLY, VideoCodec::Vp8).unwrap().video,
        Some(VideoCodec::Vp8)
    );
    assert_eq!(
        check(CHROME_RECVONLY, VideoCodec::H264).unwrap().video,
        Some(VideoCodec::H264)
    );
    let h264_only = CHROME_RECVONLY.replace("a=rtpmap:96 VP8/90000\r\n", "");
    let e = check(&h264_only, VideoCodec::Vp8).unwrap_err();
    assert!(matches!(e, SessionError::Unsupported(_)));
    assert!(
        e.to_string()
            .contains("this stream is VP8; your offer has only H.264"),
        "{e}"
    );
    let e = check(CHROME_RECVONLY, VideoCodec::Av1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("this stream is AV1; your offer has only H.264, VP8"),
        "{e}"
    );
    // Not known yet: H.264 if offered, else audio alone.
    let vp8_only = CHROME_RECVONLY.replace("a=rtpmap:102 H264/90000\r\n", "");
    let s = check_offer_for(&vp8_only, Direction::Send, None).unwrap();
    assert!(s.video.is_none() && s.audio);
}

#[test]
fn h265_goes_to_viewers_whose_offer_has_it() {
    let e = check_offer_for(CHROME_RECVONLY, Direction::Send, Some(VideoCodec::H265));
    let e = e.unwrap_err().to_string();
    assert!(
        e.contains("this stream is H.265; your offer has only H.264, VP8"),
        "{e}"
    );
    let offer = CHROME_RECVONLY.replace(" 96 102\r\n", " 96 102 49\r\n").replace(
        "a=rtpmap:102 H264/90000\r\n",
        "a=rtpmap:102 H264/90000\r\na=rtpmap:49 H265/90000\r\na=fmtp:49 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST\r\n",
    );
    let (local, now) = (test_local(), Instant::now());
    let built = build(&local, &offer, Direction::Send, Some(VideoCodec::H265), now).unwrap();
    assert_eq!(built.video_codec, Some(VideoCodec::H265));
    assert_eq!(
        built.video.map(|v| v.payload_type),
        Some(49),
        "{}",
        built.sdp
    );
    assert!(
        built.sdp.contains("a=rtpmap:49 H265/90000"),
        "{}",
        built.sdp
    );
}

/// Found by the `sdp_offer` fuzz target: `rtc` answers an offer none of whose codecs it
/// matches without any m-line, and such offers passed our checks, e.g. one whose only H.264
/// payload type has no packetization-mode=1 (another payload type's fmtp line has it).
#[test]
fn h264_in_packetization_mode_0_only_is_refused_not_answered_without_media() {
    let mode0 = CHROME_RECVONLY.replace("a=fmtp:102 ", "a=fmtp:96 ");
    let err = check_offer_for(&mode0, Direction::Send, Some(VideoCodec::H264)).unwrap_err();
    assert!(matches!(err, SessionError::Unsupported(_)), "{err}");
    let seed = include_bytes!("../../../fixtures/fuzz/sdp_offer/regression-answer-without-media");
    let offer = String::from_utf8_lossy(&seed[1..]);
    let local = test_local();
    let now = Instant::now();
    // This one passes the checks; `rtc` matches none of its codecs all the same.
    match build(&local, &offer, Direction::Send, Some(VideoCodec::H264), now) {
        Ok(built) => panic!("answered:\n{}", built.sdp),
        Err(e) => assert!(e.to_string().contains("could be answered"), "{e}"),
    }
}

/// Found by the `sdp_offer` fuzz target: a codec is offered only by a payload type the m-line
/// lists (RFC 8866 5.14); `rtc` refuses a section whose listed types it does not know (port
/// 0), and an answer that accepts no section is no answer.
#[test]
fn codecs_of_payload_types_the_m_line_does_not_list_are_not_offered() {
    let unlisted = CHROME_RECVONLY
        .replace("SAVPF 96 102\r\n", "SAVPF 96 103\r\n")
        .replace("SAVPF 111\r\n", "SAVPF 0\r\n");
    let err = check_offer_for(&unlisted, Direction::Send, Some(VideoCodec::H264)).unwrap_err();
    assert!(matches!(err, SessionError::Unsupported(_)), "{err}");
    let opus_unlisted = CHROME_RECVONLY
        .replace("SAVPF 96 102\r\n", "SAVPF 96\r\n")
        .replace("SAVPF 111\r\n", "SAVPF 0\r\n");
    let (local, now) = (test_local(), Instant::now());
    let err = build(
        &local,
        &opus_unlisted,
        Direction::Send,
        Some(VideoCodec::H264),
        now,
    );
    assert!(matches!(err, Err(SessionError::Unsupported(_))));
    let seed = include_bytes!("../../../fixtures/fuzz/sdp_offer/regression-unlisted-payload-type");
    let offer = String::from_utf8_lossy(&seed[1..]);
    let err = build(&local, &offer, Direction::Receive, None, now);
    assert!(
        matches!(err, Err(SessionError::Unsupported(_))),
        "{:?}",
        err.err()
    );
}
