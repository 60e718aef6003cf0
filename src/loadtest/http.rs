//! A small HTTP/1.1 client (RFC 9112), shared by the HLS and MSE clients: URL parsing
//! ([`HttpTarget`]), response heads ([`parse_head`]), chunked bodies ([`ChunkedDecoder`]) and
//! a keep-alive connection that reconnects when needed ([`HttpConn`]). Plain TCP only.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::probe::SessionProbe;
use super::report::SessionStats;
use super::session::read_some;

/// Size of the buffer each HTTP connection reads into.
const HTTP_READ_BUFFER: usize = 32 * 1024;
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes of an error response's body kept for the error message.
pub(super) const ERROR_BODY_KEPT: usize = 200;

/// Where to connect and what to request, parsed from an `http://` or `ws://` URL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct HttpTarget {
    /// Host name or address, without IPv6 brackets.
    pub(super) host: String,
    pub(super) port: u16,
    /// The URL's authority, sent as `Host`.
    pub(super) authority: String,
    /// Path and query (at least `/`), without the fragment.
    pub(super) path: String,
    /// The URL's fragment was `plain`: HLS clients poll even an LL-HLS playlist.
    pub(super) force_plain: bool,
}

impl HttpTarget {
    pub(super) fn parse(url: &str, scheme: &str) -> Result<Self> {
        let rest = url
            .get(..scheme.len() + 3)
            .filter(|prefix| prefix.eq_ignore_ascii_case(&format!("{scheme}://")))
            .map(|_| &url[scheme.len() + 3..])
            .with_context(|| format!("not a {scheme}:// URL: {url}"))?;
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (rest, None),
        };
        let force_plain = match fragment {
            None | Some("") => false,
            Some("plain") => true,
            Some(other) => bail!("unknown fragment #{other} in {url} (only #plain is known)"),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = match path.strip_prefix('?') {
            Some(_) => format!("/{path}"),
            None if path.is_empty() => "/".to_string(),
            None => path.to_string(),
        };
        let (host, port) = split_authority(authority, 80).with_context(|| format!("in {url}"))?;
        Ok(Self {
            host,
            port,
            authority: authority.to_string(),
            path,
            force_plain,
        })
    }

    /// The request path of `uri` from a playlist at `base` (a path): relative URIs resolve
    /// against the playlist's directory; absolute ones must be on this server.
    pub(super) fn resolve(&self, base: &str, uri: &str) -> Result<String> {
        if let Some(rest) = uri.strip_prefix("http://") {
            let split = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(split);
            let (host, port) = split_authority(authority, 80)?;
            if !host.eq_ignore_ascii_case(&self.host) || port != self.port {
                bail!("{uri} is on another server than the playlist");
            }
            return Ok(if path.is_empty() { "/" } else { path }.to_string());
        }
        if uri.contains("://") {
            bail!("unsupported URI {uri}");
        }
        if uri.starts_with('/') {
            return Ok(uri.to_string());
        }
        let base = base.split('?').next().unwrap_or(base);
        let dir = &base[..=base.rfind('/').unwrap_or(0)];
        Ok(format!("{dir}{uri}"))
    }
}

/// `host[:port]` or `[v6][:port]` -> (host without brackets, port).
fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16)> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').context("unclosed [")?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => bail!("bad authority {authority}"),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains('@') {
        bail!("no host (or user info) in authority '{authority}'");
    }
    let port = match port {
        Some(port) => port.parse().with_context(|| format!("bad port '{port}'"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// How the body of a response is delimited (RFC 9112, 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    /// No body (1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) status: u16,
    body: BodyLength,
    /// The connection can carry another request after this response.
    keep_alive: bool,
    /// `Upgrade: websocket` was present.
    pub(super) upgrade_websocket: bool,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete; `Ok(Some((head,
/// n)))`: the head took `n` bytes.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => bail!("not an HTTP/1.x response: {status_line:?}"),
    };
    let status: u16 = words
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = !http10;
    let mut upgrade_websocket = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse()
                .with_context(|| format!("bad Content-Length {value:?}"))?;
            if content_length.is_some_and(|l| l != length) {
                bail!("conflicting Content-Length headers");
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding (RFC 9112, 6.1); we ask for no other.
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if !last.eq_ignore_ascii_case("chunked") {
                bail!("unsupported Transfer-Encoding {value:?}");
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_websocket = value.eq_ignore_ascii_case("websocket");
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLength::Empty
    } else if chunked {
        BodyLength::Chunked
    } else if let Some(length) = content_length {
        BodyLength::Length(length)
    } else {
        keep_alive = false;
        BodyLength::UntilClose
    };
    Ok(Some((
        Head {
            status,
            body,
            keep_alive,
            upgrade_websocket,
        },
        end + 4,
    )))
}

/// Decodes a chunked body (RFC 9112, 7.1) as it arrives, in pieces of any size.
#[derive(Debug, Default)]
struct ChunkedDecoder {
    state: ChunkState,
    /// The incomplete size, CRLF or trailer line.
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailer,
    Done,
}

impl ChunkedDecoder {
    fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Feeds `input`; passes body bytes to `body`; returns how many bytes of `input` belonged
    /// to the chunked body (all of them unless it ended inside `input`).
    fn feed(&mut self, input: &[u8], body: &mut impl FnMut(&[u8])) -> Result<usize> {
        let mut rest = input;
        while !rest.is_empty() && !self.is_done() {
            if let ChunkState::Data(remaining) = self.state {
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                body(&rest[..n]);
                rest = &rest[n..];
                self.state = match remaining - n as u64 {
                    0 => ChunkState::DataEnd,
                    left => ChunkState::Data(left),
                };
                continue;
            }
            let (taken, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (rest.len(), false),
            };
            self.line.extend_from_slice(&rest[..taken]);
            rest = &rest[taken..];
            if self.line.len() > 4096 {
                bail!("chunk size or trailer line too long");
            }
            if !complete {
                break;
            }
            let line = std::mem::take(&mut self.line);
            let text = std::str::from_utf8(&line).context("chunked framing is not UTF-8")?;
            let text = text.trim_end_matches(['\r', '\n']);
            self.state = match self.state {
                ChunkState::Size => {
                    let size = text.split(';').next().unwrap_or_default().trim();
                    let size = u64::from_str_radix(size, 16)
                        .with_context(|| format!("bad chunk size {size:?}"))?;
                    if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    }
                }
                ChunkState::DataEnd if text.is_empty() => ChunkState::Size,
                ChunkState::DataEnd => bail!("no CRLF after chunk data"),
                ChunkState::Trailer if text.is_empty() => ChunkState::Done,
                ChunkState::Trailer => ChunkState::Trailer,
                ChunkState::Data(_) | ChunkState::Done => unreachable!("handled above"),
            };
        }
        Ok(input.len() - rest.len())
    }
}

/// Largest media body kept for reading its frames (a segment at 60 Mbit/s of 4 s).
pub(super) const MAX_MEDIA_KEPT: usize = 32 * 1024 * 1024;

/// Where a response body goes.
pub(super) enum Sink<'a> {
    /// Kept, up to a limit (playlists).
    Keep(&'a mut Vec<u8>, usize),
    /// Media: counted as the session's bytes, and kept (up to a limit) for the client to
    /// read the frames in it.
    Media(&'a SessionProbe, &'a mut Vec<u8>),
}

impl Sink<'_> {
    fn take(&mut self, data: &[u8]) -> bool {
        match self {
            Sink::Keep(body, limit) => {
                if body.len() + data.len() > *limit {
                    return false;
                }
                body.extend_from_slice(data);
            }
            Sink::Media(probe, body) => {
                probe.add_bytes(data.len() as u64);
                if body.len() + data.len() <= MAX_MEDIA_KEPT {
                    body.extend_from_slice(data);
                }
            }
        }
        true
    }
}

/// An HTTP/1.1 keep-alive connection that (re)connects when needed. One request at a time.
pub(super) struct HttpConn {
    target: Arc<HttpTarget>,
    stats: Arc<SessionStats>,
    stream: Option<TcpStream>,
    /// Has answered a request: a close before the next response is a keep-alive timeout.
    reused: bool,
    buf: Vec<u8>,
    /// Received bytes not yet consumed: `buf[start..end]`.
    start: usize,
    end: usize,
}

/// Status of a response and, if not 2xx, the start of its body.
pub(super) struct Answer {
    status: u16,
    error_body: String,
}

impl Answer {
    pub(super) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(super) fn not_found(&self) -> bool {
        self.status == 404
    }

    pub(super) fn describe(&self, path: &str) -> String {
        format!("GET {path}: {} {}", self.status, self.error_body.trim())
    }
}

impl HttpConn {
    pub(super) fn new(target: Arc<HttpTarget>, stats: Arc<SessionStats>) -> Self {
        Self {
            target,
            stats,
            stream: None,
            reused: false,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Closes the connection (e.g. to abandon a request in flight).
    pub(super) fn close(&mut self) {
        self.stream = None;
    }

    /// GETs `path`; a 2xx body goes to `sink`. Retries once on a fresh connection when a
    /// reused one turns out closed before any byte of the response.
    pub(super) async fn get(&mut self, path: &str, mut sink: Sink<'_>) -> Result<Answer> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchyard-loadtest\r\nAccept: */*\r\n\r\n",
            self.target.authority
        );
        let head = loop {
            let retry_allowed = self.stream.is_some() && self.reused;
            match self.send_and_read_head(request.as_bytes()).await {
                Ok(Some(head)) => break head,
                Ok(None) if retry_allowed => self.stream = None,
                Ok(None) => bail!("GET {path}: connection closed before the response"),
                Err(e) => {
                    self.stream = None;
                    return Err(e.context(format!("GET {path}")));
                }
            }
        };
        let result = self.read_body(&head, &mut sink).await;
        if result.is_err() || !head.keep_alive {
            self.stream = None;
        } else {
            self.reused = true;
        }
        let error_body = result.with_context(|| format!("GET {path}: body"))?;
        Ok(Answer {
            status: head.status,
            error_body,
        })
    }

    /// Sends the request and reads the head; `Ok(None)` if the server closed the connection
    /// before sending anything.
    async fn send_and_read_head(&mut self, request: &[u8]) -> Result<Option<Head>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect((self.target.host.as_str(), self.target.port))
                .await
                .context("connect")?;
            stream.set_nodelay(true).context("set TCP_NODELAY")?;
            SessionStats::add(&self.stats.connects, 1);
            self.stream = Some(stream);
            self.reused = false;
            self.start = 0;
            self.end = 0;
            if self.buf.is_empty() {
                self.buf = vec![0; HTTP_READ_BUFFER];
            }
        }
        let stream = self.stream.as_mut().expect("connected above");
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if let Err(e) = stream.write_all(request).await {
            if self.reused {
                return Ok(None);
            }
            return Err(anyhow::Error::from(e).context("send request"));
        }
        let mut received_any = self.end > self.start;
        loop {
            if let Some((head, n)) = parse_head(&self.buf[self.start..self.end])? {
                self.start += n;
                return Ok(Some(head));
            }
            if self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = match stream.read(&mut self.buf[self.end..]).await {
                Ok(n) => n,
                Err(e) if !received_any && self.reused => {
                    tracing::debug!(error = %e, "keep-alive connection failed; reconnecting");
                    return Ok(None);
                }
                Err(e) => return Err(anyhow::Error::from(e).context("read response head")),
            };
            if n == 0 {
                if received_any {
                    bail!("connection closed inside the response head");
                }
                return Ok(None);
            }
            received_any = true;
            self.end += n;
        }
    }

    /// Reads the body that `head` announces; returns the start of it for a non-2xx answer.
    async fn read_body(&mut self, head: &Head, sink: &mut Sink<'_>) -> Result<String> {
        let success = (200..300).contains(&head.status);
        let mut error_body = Vec::new();
        let mut overflow = false;
        let mut take = |data: &[u8]| {
            if success {
                overflow |= !sink.take(data);
            } else if error_body.len() < ERROR_BODY_KEPT {
                let n = data.len().min(ERROR_BODY_KEPT - error_body.len());
                error_body.extend_from_slice(&data[..n]);
            }
        };
        let stream = self.stream.as_mut().context("not connected")?;
        match head.body {
            BodyLength::Empty => {}
            BodyLength::Length(mut remaining) => loop {
                let available = (self.end - self.start) as u64;
                let n = usize::try_from(remaining.min(available)).unwrap_or(usize::MAX);
                take(&self.buf[self.start..self.start + n]);
                self.start += n;
                remaining -= n as u64;
                if remaining == 0 {
                    break;
                }
                self.start = 0;
                self.end = read_some(stream, &mut self.buf).await?;
            },
            BodyLength::Chunked => {
                let mut decoder = ChunkedDecoder::default();
                loop {
                    let n = decoder.feed(&self.buf[self.start..self.end], &mut take)?;
                    self.start += n;
                    if decoder.is_done() {
                        break;
                    }
                    self.start = 0;
                    self.end = read_some(stream, &mut self.buf).await?;
                }
            }
            BodyLength::UntilClose => loop {
                take(&self.buf[self.start..self.end]);
                self.start = 0;
                self.end = 0;
                let n = stream.read(&mut self.buf).await.context("read")?;
                if n == 0 {
                    break;
                }
                self.end = n;
            },
        }
        if overflow {
            bail!("body larger than the limit");
        }
        Ok(String::from_utf8_lossy(&error_body).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_http_urls_and_resolves_uris() {
        let t = HttpTarget::parse("http://127.0.0.1:18081/hls/live/b/index.m3u8", "http").unwrap();
        assert_eq!(
            t,
            HttpTarget {
                host: "127.0.0.1".into(),
                port: 18081,
                authority: "127.0.0.1:18081".into(),
                path: "/hls/live/b/index.m3u8".into(),
                force_plain: false,
            }
        );
        let base = t.path.as_str();
        assert_eq!(
            t.resolve(base, "part3.1.m4s").unwrap(),
            "/hls/live/b/part3.1.m4s"
        );
        assert_eq!(t.resolve(base, "/x/seg.ts").unwrap(), "/x/seg.ts");
        assert_eq!(
            t.resolve(base, "http://127.0.0.1:18081/y/seg.ts?a=1")
                .unwrap(),
            "/y/seg.ts?a=1"
        );
        assert!(t.resolve(base, "http://other:18081/y.ts").is_err());
        assert!(t.resolve(base, "https://127.0.0.1:18081/y.ts").is_err());
        assert_eq!(t.resolve("/a/i.m3u8?x=/b/", "s.ts").unwrap(), "/a/s.ts");

        let t = HttpTarget::parse("HTTP://[::1]/live.m3u8?k=v#plain", "http").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert_eq!(t.path, "/live.m3u8?k=v");
        assert!(t.force_plain);
        let t = HttpTarget::parse("ws://h:8080?x", "ws").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("h:8080", "/?x"));
        for bad in [
            "rtmp://h/a/b",
            "http://",
            "http://:80/x",
            "http://h:port/x",
            "http://u@h/x",
            "http://h/x#other",
        ] {
            assert!(HttpTarget::parse(bad, "http").is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_response_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(), None);
        let text =
            b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\nContent-Length: 1234\r\n\r\nBODY";
        let (head, n) = parse_head(text).unwrap().unwrap();
        assert_eq!(n, text.len() - 4);
        assert_eq!(
            head,
            Head {
                status: 200,
                body: BodyLength::Length(1234),
                keep_alive: true,
                upgrade_websocket: false
            }
        );
        let (head, _) = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: gzip, chunked\r\n\
              Content-Length: 5\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.body, head.keep_alive),
            (503, BodyLength::Chunked, false)
        );
        let (head, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (head.body, head.keep_alive),
            (BodyLength::UntilClose, false)
        );
        let (head, _) = parse_head(b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.body, head.keep_alive), (BodyLength::Empty, true));
        let (head, _) = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.body, head.upgrade_websocket),
            (101, BodyLength::Empty, true)
        );
        for bad in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn decodes_chunked_bodies_split_anywhere() {
        let wire =
            b"4;ext=1\r\nWiki\r\n13\r\npedia in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let body_end = wire.len() - 4;
        for split in 0..=wire.len() {
            for step in [1, 3, wire.len()] {
                let mut decoder = ChunkedDecoder::default();
                let mut body = Vec::new();
                let mut consumed = 0;
                // First the bytes before `split`, then the rest in pieces of `step`.
                let mut pieces = vec![&wire[..split]];
                pieces.extend(wire[split..].chunks(step));
                for piece in pieces {
                    if decoder.is_done() {
                        break;
                    }
                    consumed += decoder
                        .feed(piece, &mut |d: &[u8]| body.extend_from_slice(d))
                        .unwrap();
                }
                assert!(decoder.is_done(), "split {split} step {step}");
                assert_eq!(consumed, body_end, "split {split} step {step}");
                assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
            }
        }
        for bad in [&b"zz\r\n"[..], b"2\r\nabX\r\n", b"-1\r\n"] {
            let mut decoder = ChunkedDecoder::default();
            assert!(decoder.feed(bad, &mut |_: &[u8]| {}).is_err());
        }
    }

    /// A tiny HTTP server on loopback: answers each request on a connection with the next of
    /// `answers` (closing the connection where an answer is `None`).
    async fn serve(
        answers: Vec<Option<&'static [u8]>>,
    ) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut requests = Vec::new();
            let mut answers = answers.into_iter().peekable();
            'connections: loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = socket.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            continue 'connections;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let request = String::from_utf8(buf.drain(..end).collect()).unwrap();
                    requests.push(request.lines().next().unwrap().to_string());
                    let answer = answers.next().expect("a request too many");
                    if let Some(answer) = answer {
                        socket.write_all(answer).await.unwrap();
                    }
                    if answers.peek().is_none() {
                        return requests;
                    }
                    if answer.is_none() {
                        continue 'connections;
                    }
                }
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn http_client_keeps_alive_reads_bodies_and_reconnects() {
        let (port, server) = serve(vec![
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Some(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            // Closed before answering: a keep-alive timeout; the client retries on a new one.
            None,
            Some(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ])
        .await;
        let target =
            Arc::new(HttpTarget::parse(&format!("http://127.0.0.1:{port}/"), "http").unwrap());
        let stats = Arc::new(SessionStats::default());
        let probe = SessionProbe::new(0);
        let mut media = Vec::new();
        let mut conn = HttpConn::new(target, stats.clone());
        let mut body = Vec::new();
        let answer = conn.get("/a", Sink::Keep(&mut body, 100)).await.unwrap();
        assert!(answer.ok());
        assert_eq!(body, b"hello");
        let answer = conn
            .get("/b", Sink::Media(&probe, &mut media))
            .await
            .unwrap();
        assert!(answer.ok());
        assert_eq!((probe.bytes(), &media[..]), (3, &b"abc"[..]));
        let answer = conn
            .get("/c", Sink::Media(&probe, &mut media))
            .await
            .unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(answer.describe("/c"), "GET /c: 404 not found");
        assert_eq!(probe.bytes(), 3);
        let mut body = Vec::new();
        assert!(conn.get("/d", Sink::Keep(&mut body, 1)).await.is_err()); // over the limit
        drop(conn);
        assert_eq!(SessionStats::get(&stats.connects), 2);
        assert_eq!(
            server.await.unwrap(),
            [
                "GET /a HTTP/1.1",
                "GET /b HTTP/1.1",
                "GET /c HTTP/1.1",
                "GET /c HTTP/1.1",
                "GET /d HTTP/1.1"
            ]
        );
    }
}
