//! Whether an offer bundles its media. A session's media all go over one transport here
//! (one ICE agent, one DTLS association), so an offer with more than one media section must
//! put them all in one BUNDLE group (RFC 9143). RFC 9725 4.4.1 asks WHIP (and WHEP) clients for
//! the "max-bundle" policy; offers that give each section a transport and no group
//! (webrtcbin's `bundle-policy=none`) get a 400 that says so, where `rtc` would only refuse
//! "multiple conflicting ice-ufrag values". Also whether an offer's video section sends
//! ([`offer_sends_video`]).

use super::handle::SessionError;

/// A session's media all go over one transport here (one ICE agent, one DTLS association), so
/// an offer with more than one media section must put them all in one BUNDLE group (RFC 9143;
/// RFC 9725 4.4.1 asks WHIP clients and endpoints for "max-bundle"). Without it each section
/// has its own transport (its own ICE credentials and port), which cannot be answered.
pub fn check_bundle(offer: &str) -> Result<(), SessionError> {
    let mut groups: Vec<Vec<&str>> = Vec::new();
    // (kind, mid) of each section that is not rejected (port 0 without a=bundle-only).
    let mut sections: Vec<(&str, Option<&str>, bool)> = Vec::new();
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split_whitespace();
            let kind = fields.next().unwrap_or_default();
            sections.push((kind, None, fields.next() != Some("0")));
        } else if let Some(mids) = line.strip_prefix("a=group:BUNDLE") {
            groups.push(mids.split_whitespace().collect());
        } else if let (Some(mid), Some(s)) = (line.strip_prefix("a=mid:"), sections.last_mut()) {
            s.1 = Some(mid.trim());
        } else if let ("a=bundle-only", Some(s)) = (line, sections.last_mut()) {
            s.2 = true;
        }
    }
    let used: Vec<_> = sections.iter().filter(|s| s.2).collect();
    if used.len() < 2 {
        return Ok(());
    }
    let bundled = |g: &Vec<&str>| used.iter().all(|s| s.1.is_some_and(|mid| g.contains(&mid)));
    if groups.iter().any(bundled) {
        return Ok(());
    }
    let kinds: Vec<&str> = used.iter().map(|s| s.0).collect();
    let what = if groups.is_empty() {
        "offer without a=group:BUNDLE".to_string()
    } else {
        let outside: Vec<String> = used
            .iter()
            .filter(|s| !s.1.is_some_and(|mid| groups[0].contains(&mid)))
            .map(|s| format!("{} (mid {})", s.0, s.1.unwrap_or("none")))
            .collect();
        format!(
            "offer whose a=group:BUNDLE leaves out {}",
            outside.join(", ")
        )
    };
    Err(SessionError::BadRequest(format!(
        "{what}: its {} media sections ({}) would each need a transport of their own, and this server carries a session's media on one (BUNDLE, RFC 9143; RFC 9725 4.4.1): offer with bundle policy max-bundle (RTCPeerConnection {{bundlePolicy: \"max-bundle\"}}, webrtcbin bundle-policy=max-bundle)",
        kinds.len(),
        kinds.join(", ")
    )))
}

/// Whether an offer's video section sends (sendrecv or sendonly, the default being sendrecv):
/// a WHIP publisher whose offer only receives video publishes audio alone.
pub fn offer_sends_video(offer: &str) -> bool {
    let mut in_video = false;
    let mut sends = false;
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if in_video && sends {
                return true;
            }
            in_video = m.starts_with("video");
            sends = true; // sendrecv by default
        } else if in_video && (line == "a=recvonly" || line == "a=inactive") {
            sends = false;
        }
    }
    in_video && sends
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_RECVONLY: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=fingerprint:sha-256 AA:BB\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn offers_must_bundle_their_media_sections() {
        let bundled = CHROME_RECVONLY;
        assert!(check_bundle(bundled).is_ok());
        let unbundled = bundled.replace("a=group:BUNDLE 0 1\r\n", "");
        let e = check_bundle(&unbundled).unwrap_err().to_string();
        assert!(
            e.starts_with("offer without a=group:BUNDLE: its 2 media sections (video, audio)"),
            "{e}"
        );
        let partly = bundled.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
        let e = check_bundle(&partly).unwrap_err().to_string();
        assert!(e.contains("leaves out audio (mid 1)"), "{e}");
        // One section needs no group; a rejected one (port 0) does not count.
        let video_only = &unbundled[..unbundled.find("m=audio").unwrap()];
        assert!(check_bundle(video_only).is_ok());
        let audio_rejected = unbundled.replace("m=audio 9 ", "m=audio 0 ");
        assert!(check_bundle(&audio_rejected).is_ok());
    }
}
