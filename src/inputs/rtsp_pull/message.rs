//! RTSP 1.0 messages as a client writes and reads them (RFC 2326 6, 7), and the header values
//! a UDP session needs: `Transport` (12.39), `Session` (12.37), `Public` (12.28).
//!
//! Reading is incremental (a message may arrive in pieces) and bounded: a head over 64 KiB or
//! a body over 1 MiB is an error, not a buffer that grows. What a server sends besides
//! responses is recognised and skipped by the caller: its own requests (some cameras send
//! `GET_PARAMETER` or `ANNOUNCE`) and interleaved binary data (`$`, 10.12).

use bytes::Bytes;
use std::net::IpAddr;

const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 1 << 20;

/// A response to one of our requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names as sent; look them up with [`Response::header`].
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`, in order (a server may send several `WWW-Authenticate`).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cseq(&self) -> Option<u32> {
        self.header("CSeq").and_then(|v| v.trim().parse().ok())
    }
}

/// Something read from the RTSP connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Response(Response),
    /// A request from the server, to be answered (or refused) by its CSeq.
    Request {
        method: String,
        cseq: Option<u32>,
    },
    /// Interleaved binary data on the connection (a server that sends some RTCP this way).
    Data {
        channel: u8,
    },
}

/// Reads one message from the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// message and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Message, usize)>, String> {
    if buf.first() == Some(&b'$') {
        let Some(header) = buf.get(..4) else {
            return Ok(None);
        };
        let len = 4 + usize::from(u16::from_be_bytes([header[2], header[3]]));
        if buf.len() < len {
            return Ok(None);
        }
        return Ok(Some((Message::Data { channel: header[1] }, len)));
    }
    // Blank lines between messages are allowed (RFC 2326 says CRLF; some servers send more).
    let skip = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let buf_rest = &buf[skip..];
    let Some(head_end) = find_head_end(buf_rest) else {
        if buf_rest.len() > MAX_HEAD {
            return Err(format!("an RTSP message head longer than {MAX_HEAD} bytes"));
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf_rest[..head_end.0]);
    let mut lines = head.lines();
    let start = lines.next().unwrap_or_default().trim();
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        } else if let (Some(last), true) = (headers.last_mut(), line.starts_with([' ', '\t'])) {
            // A folded header line continues the previous value.
            let (_, value): &mut (String, String) = last;
            value.push(' ');
            value.push_str(line.trim());
        }
    }
    let content_length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| "a Content-Length that is not a number".to_string())?
        .unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(format!(
            "an RTSP body of {content_length} bytes (more than {MAX_BODY})"
        ));
    }
    let total = skip + head_end.1 + content_length;
    if buf.len() < total {
        return Ok(None);
    }
    let body = Bytes::copy_from_slice(&buf[skip + head_end.1..total]);
    if let Some(status_line) = start.strip_prefix("RTSP/") {
        // "RTSP/1.0 200 OK"
        let mut parts = status_line.splitn(3, ' ');
        let _version = parts.next();
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| format!("not an RTSP status line: {:?}", shorten(start)))?;
        let reason = parts.next().unwrap_or_default().to_string();
        return Ok(Some((
            Message::Response(Response {
                status,
                reason,
                headers,
                body,
            }),
            total,
        )));
    }
    match start.split_whitespace().collect::<Vec<_>>()[..] {
        [method, _uri, version] if version.starts_with("RTSP/") => {
            let cseq = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("CSeq"))
                .and_then(|(_, v)| v.trim().parse().ok());
            Ok(Some((
                Message::Request {
                    method: method.to_string(),
                    cseq,
                },
                total,
            )))
        }
        _ => Err(format!("not an RTSP message: {:?}", shorten(start))),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(60).collect()
}

/// The end of the head (its length without the blank line, and with it).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    // Some servers end lines with a bare LF.
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// A request: `METHOD uri RTSP/1.0`, CSeq, then `headers`.
pub fn request(method: &str, uri: &str, cseq: u32, headers: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("{method} {uri} RTSP/1.0\r\nCSeq: {cseq}\r\n");
    for (k, v) in headers {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A response to a server's request (RFC 2326 7): status only.
pub fn response(status: u16, reason: &str, cseq: Option<u32>) -> Vec<u8> {
    match cseq {
        Some(cseq) => format!("RTSP/1.0 {status} {reason}\r\nCSeq: {cseq}\r\n\r\n"),
        None => format!("RTSP/1.0 {status} {reason}\r\n\r\n"),
    }
    .into_bytes()
}

/// What a server's `Transport` answer to a UDP SETUP says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// The server's RTP port (its RTCP port is the next one, or the second of the pair).
    pub server_port: Option<(u16, u16)>,
    /// Where the media comes from, when not the RTSP server's address.
    pub source: Option<IpAddr>,
    pub ssrc: Option<u32>,
}

/// Reads a `Transport` header (RFC 2326 12.39); the first transport spec is the answer.
pub fn parse_transport(value: &str) -> Transport {
    let mut t = Transport::default();
    let spec = value.split(',').next().unwrap_or_default();
    for param in spec.split(';').map(str::trim) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        match k.to_ascii_lowercase().as_str() {
            "server_port" => {
                let mut ports = v.split('-').map(|p| p.trim().parse::<u16>().ok());
                if let Some(Some(rtp)) = ports.next() {
                    let rtcp = ports.next().flatten().unwrap_or(rtp.wrapping_add(1));
                    t.server_port = Some((rtp, rtcp));
                }
            }
            "source" => t.source = v.trim().parse().ok(),
            // Hex, 8 digits (some servers send fewer).
            "ssrc" => t.ssrc = u32::from_str_radix(v.trim(), 16).ok(),
            _ => {}
        }
    }
    t
}

/// Reads a `Session` header (RFC 2326 12.37): the id and the timeout in seconds (60 when not
/// given).
pub fn parse_session(value: &str) -> (String, u64) {
    let mut parts = value.split(';');
    let id = parts.next().unwrap_or_default().trim().to_string();
    let timeout = parts
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("timeout"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(60);
    (id, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_in_pieces() {
        let wire = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n\
            Content-Base: rtsp://127.0.0.1:8554/cam/\r\nContent-Length: 5\r\n\r\nv=0\r\nRTSP/1.0 4";
        let first = wire.len() - b"RTSP/1.0 4".len();
        for cut in 0..first {
            assert_eq!(parse(&wire[..cut]).unwrap(), None, "{cut}");
        }
        let (msg, used) = parse(wire).unwrap().unwrap();
        assert_eq!(used, first);
        let Message::Response(r) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (r.status, r.reason.as_str(), r.cseq()),
            (200, "OK", Some(2))
        );
        assert_eq!(r.header("content-base"), Some("rtsp://127.0.0.1:8554/cam/"));
        assert_eq!(&r.body[..], b"v=0\r\n");
    }

    #[test]
    fn server_requests_data_and_garbage() {
        let (msg, used) = parse(b"$\x01\x00\x02ab$").unwrap().unwrap();
        assert_eq!((msg, used), (Message::Data { channel: 1 }, 6));
        assert_eq!(parse(b"$\x01\x00\x09ab").unwrap(), None);
        let (msg, _) = parse(b"\r\nGET_PARAMETER rtsp://x RTSP/1.0\r\nCSeq: 9\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            msg,
            Message::Request {
                method: "GET_PARAMETER".into(),
                cseq: Some(9)
            }
        );
        assert!(parse(b"\x00\xffHELLO garbage\r\n\r\n").is_err());
        assert!(parse(b"RTSP/1.0 abc OK\r\n\r\n").is_err());
        assert!(parse(b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(parse(&vec![b'a'; MAX_HEAD + 1]).is_err());
        // Bare LF line ends.
        let (msg, _) =
            parse(b"RTSP/1.0 401 Unauthorized\nCSeq: 1\nWWW-Authenticate: Basic realm=\"x\"\n\n")
                .unwrap()
                .unwrap();
        let Message::Response(r) = msg else { panic!() };
        assert_eq!(r.headers_named("www-authenticate").count(), 1);
    }

    #[test]
    fn requests_and_header_values() {
        let r = request(
            "SETUP",
            "rtsp://cam/live/trackID=1",
            3,
            &[("Transport", "RTP/AVP;unicast;client_port=5000-5001".into())],
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "SETUP rtsp://cam/live/trackID=1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast;client_port=5000-5001\r\n\r\n"
        );
        let t = parse_transport(
            "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=1A2b3C4d;mode=\"PLAY\"",
        );
        assert_eq!(t.server_port, Some((6970, 6971)));
        assert_eq!(t.ssrc, Some(0x1a2b_3c4d));
        assert_eq!(t.source, None);
        let t = parse_transport("RTP/AVP;unicast;source=10.0.0.5;server_port=7000");
        assert_eq!(t.server_port, Some((7000, 7001)));
        assert_eq!(t.source, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(
            parse_session("12345678;timeout=30"),
            ("12345678".into(), 30)
        );
        assert_eq!(parse_session(" abc "), ("abc".into(), 60));
        assert_eq!(
            String::from_utf8(response(501, "Not Implemented", Some(4))).unwrap(),
            "RTSP/1.0 501 Not Implemented\r\nCSeq: 4\r\n\r\n"
        );
    }
}
