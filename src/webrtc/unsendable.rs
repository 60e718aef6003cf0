//! Viewers of a stream whose video WebRTC here cannot send: H.265 (RTSP cameras, Enhanced-RTMP
//! publishers). There is no H.265 RTP packetizer here, and no browser we test offers H.265
//! (Chromium 156 on Linux without a hardware decoder lists VP8, VP9, H.264 and AV1 only), so
//! a viewer whose offer has video gets a 422 that says why, as one whose offer lacks a VP8 or
//! VP9 stream's codec does ([`super::peer::check_offer_for`]). An offer without video gets the
//! audio. Malformed offers are left to [`super::peer::build`] to refuse. (A file of its own:
//! `peer.rs` is at the size limit.)

use super::handle::SessionError;
use super::peer::VideoCodec;
use crate::bus::Stream;
use switchyard_media::CodecConfig;

/// 422 for a viewer whose offer has video, if the stream's video cannot be sent.
pub fn refuse_unsendable_video(offer: &str, stream: &Stream) -> Result<(), SessionError> {
    let codec = stream.tracks().borrow().video().map(|t| t.codec.clone());
    let Some(codec) = codec.filter(|c| VideoCodec::of(c).is_none()) else {
        return Ok(());
    };
    let label = match codec {
        CodecConfig::H265(_) => "H.265",
        _ => codec.name(),
    };
    // The first video section the viewer receives in: its codec names and direction.
    let Some((codecs, direction)) = offer.split("\nm=").skip(1).find_map(|section| {
        let direction = ["recvonly", "sendrecv", "sendonly", "inactive"]
            .into_iter()
            .find(|d| section.contains(&format!("a={d}")))
            .unwrap_or("sendrecv");
        let mut codecs: Vec<String> = Vec::new();
        for line in section.lines().filter_map(|l| l.strip_prefix("a=rtpmap:")) {
            let name = line.split([' ', '/']).nth(1).unwrap_or_default();
            let name = name.to_ascii_lowercase();
            if !codecs.contains(&name) {
                codecs.push(name);
            }
        }
        (section.starts_with("video") && matches!(direction, "recvonly" | "sendrecv"))
            .then_some((codecs, direction))
    }) else {
        return Ok(());
    };
    let labels = [
        ("h264", "H.264"),
        ("vp8", "VP8"),
        ("vp9", "VP9"),
        ("av1", "AV1"),
        ("h265", "H.265"),
    ];
    let known: Vec<&str> = codecs
        .iter()
        .filter_map(|c| labels.iter().find(|(n, _)| n == c).map(|(_, l)| *l))
        .collect();
    let has = if known.is_empty() {
        "none we know".to_string()
    } else {
        format!("only {}", known.join(", "))
    };
    Err(SessionError::Unsupported(format!(
        "this stream is {label}; your offer has {has}, and WebRTC here sends H.264, VP8, VP9 \
         and AV1 (there is no transcoding of video); it offers video [{}] {direction}",
        codecs.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Peer, Registry};
    use switchyard_media::{h265::HevcConfig, Track, TrackId};

    /// What Chromium offers as a WHEP viewer (trimmed): VP8 and H.264 video, Opus audio.
    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=mid:0\r\na=recvonly\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn h265_streams_are_refused_to_video_viewers_only() {
        let registry = Registry::new(Default::default());
        let mut publisher = registry.publish("cam", Peer::new("rtsp", None)).unwrap();
        let record = [&[1u8, 1, 0x60, 0, 0, 0, 0x90][..], &[0; 16]].concat();
        let codec = CodecConfig::H265(HevcConfig::parse(record.into()).unwrap());
        publisher.set_tracks(vec![Track {
            id: TrackId(1),
            codec,
            clock_rate: 90_000,
        }]);
        let stream = registry.get("cam").unwrap();
        let e = refuse_unsendable_video(OFFER, &stream)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("this stream is H.265; your offer has only VP8, H.264")
                && e.ends_with("[vp8, rtx, h264] recvonly"),
            "{e}"
        );
        let audio_only = OFFER.replace("m=video", "m=text");
        assert!(refuse_unsendable_video(&audio_only, &stream).is_ok());
        // Streams WebRTC can carry are not this file's business.
        let registry = Registry::new(Default::default());
        let _publisher = registry.publish("h264", Peer::new("rtmp", None)).unwrap();
        let stream = registry.get("h264").unwrap();
        assert!(refuse_unsendable_video(OFFER, &stream).is_ok());
    }
}
