//! The presentation description a camera answers DESCRIBE with (SDP, RFC 8866, as RTSP uses
//! it: RFC 2326 appendix C), and which of its streams a pull takes.
//!
//! Only what a pull needs is read: each media section's type, first payload type, its
//! `a=rtpmap` (or the static payload types of RFC 3551 6: PCMU 0, PCMA 8), `a=fmtp` and
//! `a=control`, and the session's `a=control`. Control URLs are joined to the base URL
//! (Content-Base, Content-Location or the request URL, RFC 2326 C.1.1) the way cameras expect
//! it: a relative control is appended to the base as a path segment even when the base has no
//! trailing slash (`rtsp://cam/live` + `trackID=1` is `rtsp://cam/live/trackID=1`), as
//! live555, GStreamer and ffmpeg do.

use switchyard_media::G711Law;
use switchyard_rtp::fmtp;
use url::Url;

/// One media section.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaDescription {
    /// `video`, `audio`, `application`...
    pub media: String,
    /// The first payload type of the section; 255 when it is not RTP.
    pub payload_type: u8,
    /// The encoding name in lower case (`h264`, `mpeg4-generic`, `pcmu`); empty if unknown.
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    /// The fmtp parameters of the payload type (after `a=fmtp:PT `), or empty.
    pub fmtp: String,
    /// Where SETUP for this stream goes.
    pub control: Url,
}

/// A parsed DESCRIBE answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Presentation {
    pub streams: Vec<MediaDescription>,
    /// Where PLAY (aggregate control) goes: the session's `a=control`, else the base URL.
    pub control: Url,
}

/// Parses an SDP body. `base` is the URL relative controls are joined to.
pub fn parse(body: &[u8], base: &Url) -> Result<Presentation, String> {
    let text = String::from_utf8_lossy(body);
    if !text.trim_start().starts_with("v=") {
        return Err("the DESCRIBE answer is not SDP (no v= line)".to_string());
    }
    let mut session_control = None;
    let mut streams: Vec<MediaDescription> = Vec::new();
    // rtpmap and fmtp lines of the current section: (payload type, value).
    let mut rtpmaps: Vec<Vec<(u8, String)>> = Vec::new();
    let mut fmtps: Vec<Vec<(u8, String)>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let _port = parts.next();
            let proto = parts.next().unwrap_or_default();
            let payload_type = parts.next().and_then(|p| p.parse::<u8>().ok());
            // A section that is not RTP (`MP2T/...`) or has no payload type is kept, so the
            // indexes stay those of the description, but never chosen (no encoding).
            let payload_type = payload_type
                .filter(|p| *p < 128 && proto.contains("RTP/"))
                .unwrap_or(u8::MAX);
            streams.push(MediaDescription {
                media,
                payload_type,
                encoding: String::new(),
                clock_rate: 0,
                channels: None,
                fmtp: String::new(),
                control: base.clone(),
            });
            rtpmaps.push(Vec::new());
            fmtps.push(Vec::new());
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        let value = value.trim();
        match (name.to_ascii_lowercase().as_str(), streams.last_mut()) {
            ("control", None) => session_control = Some(join_control(base, value)?),
            ("control", Some(s)) => s.control = join_control(base, value)?,
            ("rtpmap" | "fmtp", Some(_)) => {
                let (pt, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
                let Ok(pt) = pt.parse::<u8>() else {
                    continue;
                };
                let list = if name.eq_ignore_ascii_case("rtpmap") {
                    rtpmaps.last_mut()
                } else {
                    fmtps.last_mut()
                };
                if let Some(list) = list {
                    list.push((pt, rest.trim().to_string()));
                }
            }
            _ => {}
        }
    }
    for (i, s) in streams.iter_mut().enumerate() {
        let pt = s.payload_type;
        if let Some((_, map)) = rtpmaps[i].iter().find(|(p, _)| *p == pt) {
            let mut parts = map.split('/');
            s.encoding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            s.clock_rate = parts
                .next()
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or(0);
            s.channels = parts.next().and_then(|c| c.trim().parse().ok());
        } else {
            // RFC 3551 6: static payload types need no rtpmap.
            let (encoding, rate) = match pt {
                0 => ("pcmu", 8000),
                8 => ("pcma", 8000),
                _ => ("", 0),
            };
            s.encoding = encoding.to_string();
            s.clock_rate = rate;
        }
        if let Some((_, f)) = fmtps[i].iter().find(|(p, _)| *p == pt) {
            s.fmtp = f.clone();
        }
    }
    Ok(Presentation {
        streams,
        control: session_control.unwrap_or_else(|| base.clone()),
    })
}

/// RFC 2326 C.1.1, as cameras use it (see the module documentation).
fn join_control(base: &Url, control: &str) -> Result<Url, String> {
    if control.is_empty() || control == "*" {
        return Ok(base.clone());
    }
    if let Ok(url) = Url::parse(control) {
        return Ok(url);
    }
    let mut base = base.clone();
    base.set_query(None);
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(control)
        .map_err(|e| format!("bad control URL {control:?}: {e}"))
}

/// A video codec a pull takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoKind {
    /// RFC 6184, packetization-mode 1 (or 0, a subset).
    H264,
    /// RFC 7798 without DONL (`sprop-max-don-diff` 0).
    H265,
}

/// An audio codec a pull takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioKind {
    /// AAC as `mpeg4-generic` (RFC 3640).
    Aac,
    /// Opus (RFC 7587).
    Opus,
    /// G.711 (RFC 3551).
    G711(G711Law),
}

/// The streams a pull takes (by index in [`Presentation::streams`]) and those it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub video: Option<(usize, VideoKind)>,
    pub audio: Option<(usize, AudioKind)>,
    /// What was left and why, for the log and for the error when nothing is taken.
    pub skipped: Vec<String>,
}

impl Choice {
    /// The chosen stream indexes, video first.
    pub fn indexes(&self) -> Vec<usize> {
        self.video
            .map(|v| v.0)
            .into_iter()
            .chain(self.audio.map(|a| a.0))
            .collect()
    }
}

/// Picks the first H.264/H.265 stream and the first AAC/Opus/G.711 stream.
pub fn choose(presentation: &Presentation) -> Choice {
    let mut choice = Choice {
        video: None,
        audio: None,
        skipped: Vec::new(),
    };
    for (i, s) in presentation.streams.iter().enumerate() {
        let what = format!("{}/{}", s.media, s.encoding);
        let video = match s.encoding.as_str() {
            "h264" => Some(VideoKind::H264),
            "h265" | "hevc" => Some(VideoKind::H265),
            _ => None,
        };
        let audio = match s.encoding.as_str() {
            "mpeg4-generic" => Some(AudioKind::Aac),
            "opus" => Some(AudioKind::Opus),
            "pcma" => Some(AudioKind::G711(G711Law::ALaw)),
            "pcmu" => Some(AudioKind::G711(G711Law::MuLaw)),
            _ => None,
        };
        match (s.media.as_str(), video, audio) {
            ("video", Some(VideoKind::H265), _) if don_diff(&s.fmtp) > 0 => {
                choice.skipped.push(format!(
                    "{what} (sprop-max-don-diff > 0: decoding-order numbers, RFC 7798 4.4, are not supported)"
                ));
            }
            ("video", Some(kind), _) if choice.video.is_none() => choice.video = Some((i, kind)),
            ("audio", _, Some(kind)) if choice.audio.is_none() => choice.audio = Some((i, kind)),
            _ => choice.skipped.push(what),
        }
    }
    choice
}

fn don_diff(fmtp: &str) -> u32 {
    let params = fmtp::parameters(fmtp);
    fmtp::get(&params, "sprop-max-don-diff")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What gst-rtsp-server 1.22 answers for H.265 + AAC (x265enc, avenc_aac).
    const GST_H265_AAC: &str = "v=0\r\n\
        o=- 1188340656180883 1 IN IP4 127.0.0.1\r\n\
        s=Session streamed with GStreamer\r\n\
        t=0 0\r\n\
        a=tool:GStreamer\r\n\
        a=type:broadcast\r\n\
        a=control:*\r\n\
        a=range:npt=now-\r\n\
        m=video 0 RTP/AVP 96\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=rtpmap:96 H265/90000\r\n\
        a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8koCQ;sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZKkkyv/wABAAFqDAwMCAAAAMAIAAAAwMh;sprop-pps=RAHBcrRCQA==\r\n\
        a=control:stream=0\r\n\
        m=audio 0 RTP/AVP 97\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
        a=fmtp:97 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1210;sizelength=13;indexlength=3;indexdeltalength=3\r\n\
        a=control:stream=1\r\n";

    #[test]
    fn gstreamer_description_is_read() {
        let base = Url::parse("rtsp://127.0.0.1:8554/cam").unwrap();
        let p = parse(GST_H265_AAC.as_bytes(), &base).unwrap();
        assert_eq!(p.control.as_str(), "rtsp://127.0.0.1:8554/cam");
        assert_eq!(p.streams.len(), 2);
        let v = &p.streams[0];
        assert_eq!((v.media.as_str(), v.payload_type), ("video", 96));
        assert_eq!((v.encoding.as_str(), v.clock_rate), ("h265", 90_000));
        assert!(v.fmtp.starts_with("sprop-vps="));
        assert_eq!(v.control.as_str(), "rtsp://127.0.0.1:8554/cam/stream=0");
        let a = &p.streams[1];
        assert_eq!(
            (a.encoding.as_str(), a.clock_rate, a.channels),
            ("mpeg4-generic", 44_100, Some(2))
        );
        let choice = choose(&p);
        assert_eq!(choice.video, Some((0, VideoKind::H265)));
        assert_eq!(choice.audio, Some((1, AudioKind::Aac)));
        assert_eq!(choice.indexes(), [0, 1]);
    }

    #[test]
    fn controls_static_payload_types_and_choices() {
        let base = Url::parse("rtsp://cam/live/").unwrap();
        let sdp = "v=0\r\na=control:rtsp://cam/live/agg\r\n\
            m=audio 0 RTP/AVP 0\r\na=control:track1\r\n\
            m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:rtsp://other/v\r\n\
            m=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\na=fmtp:97 sprop-max-don-diff=2\r\n\
            m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n\
            m=audio 0 RTP/AVP 8\r\n";
        let p = parse(sdp.as_bytes(), &base).unwrap();
        assert_eq!(p.control.as_str(), "rtsp://cam/live/agg");
        assert_eq!(p.streams[0].encoding, "pcmu");
        assert_eq!(p.streams[0].clock_rate, 8000);
        assert_eq!(p.streams[0].control.as_str(), "rtsp://cam/live/track1");
        assert_eq!(p.streams[1].control.as_str(), "rtsp://other/v");
        let choice = choose(&p);
        assert_eq!(choice.video, Some((1, VideoKind::H264)));
        assert_eq!(choice.audio, Some((0, AudioKind::G711(G711Law::MuLaw))));
        assert_eq!(choice.skipped.len(), 3, "{:?}", choice.skipped);
        assert!(choice.skipped[0].contains("sprop-max-don-diff"));
        assert!(parse(b"<html>", &base).is_err());
        // Sections that are not RTP are there, and never chosen.
        let p = parse(
            b"v=0\r\nm=video 0 RTP/AVP x\r\nm=video 0 TCP/MP2T 33\r\n",
            &base,
        )
        .unwrap();
        assert_eq!(p.streams.len(), 2);
        assert!(p.streams.iter().all(|s| s.encoding.is_empty()));
        assert!(choose(&p).video.is_none());
    }
}
