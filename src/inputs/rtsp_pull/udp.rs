//! RTSP with RTP over UDP (RFC 2326 10.4 SETUP with `client_port`, 12.39), our own client.
//!
//! Retina (the TCP path) receives UDP too, but drops every packet that arrives after a later
//! one (retina issue #40: no reorder buffer), so a swapped pair of packets costs a packet and,
//! for video, everything until the next keyframe. Over UDP a pull therefore speaks RTSP itself
//! and hands every packet, in whatever order it came, to the ingest's reorder buffer. What it
//! does, in order:
//!
//! 1. OPTIONS (its `Public` header picks the keepalive: GET_PARAMETER if listed, else OPTIONS),
//!    DESCRIBE (`Accept: application/sdp`); a 401 is answered once with Basic or Digest
//!    credentials (RFC 2617, through `http-auth`, as retina does).
//! 2. SETUP per chosen stream with `RTP/AVP;unicast;client_port=N-N+1`: an even RTP port and
//!    the next one for RTCP, on the local address of the RTSP connection. The sockets are
//!    connected to the server's `source` (or RTSP address) and `server_port`, so nothing else
//!    is read. Then PLAY on the aggregate control URL.
//! 3. Playing: RTP and RTCP from every socket as they come; a keepalive request every half
//!    session timeout (RFC 2326 12.37); an RTCP receiver report per stream every 5 s (RFC 3550
//!    6.2; it also opens a NAT or firewall towards us, as does one dummy packet to each server
//!    port after SETUP, what retina does for the same reason).
//! 4. TEARDOWN when the pull ends (a UDP session would otherwise keep sending until it times
//!    out).
//!
//! Camera quirks handled here, each harmless with a compliant server:
//! - **Session id changes across SETUPs** (some cheap cameras): the first one is kept.
//! - **Bare-LF line ends, blank lines between messages, server-sent requests** (some cameras
//!   send GET_PARAMETER or ANNOUNCE): read; requests are answered 501 Not Implemented.
//! - **GET_PARAMETER refused** as keepalive: OPTIONS from then on.
//! - **Interleaved data on the RTSP connection** although UDP was set up: skipped.
//!
//! Errors: 401, 403 and 404 are permanent (the source must change); everything else is
//! retried by the pull manager. Nothing here logs or shows credentials.

use super::message::{self, Message, Response};
use super::sdp::{self, Presentation};
use super::source::RtspSource;
use crate::inputs::pull::PullError;
use bytes::{Bytes, BytesMut};
use retina::client::Credentials;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::Duration;
use switchyard_rtp::header::{self, RtpHeader};
use switchyard_rtp::rtcp::{self, ReceptionStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;
use url::Url;

/// Interval between receiver reports (RFC 3550 6.2's minimum).
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// The RTSP connection: requests, responses and what else the server sends.
struct Connection {
    stream: TcpStream,
    buf: BytesMut,
    next_cseq: u32,
    creds: Option<Credentials>,
    auth: Option<http_auth::PasswordClient>,
    session: Option<String>,
    user_agent: String,
}

fn rtsp_error(method: &str, response: &Response) -> PullError {
    let message = format!(
        "{method}: {} {}",
        response.status,
        message_text(&response.reason)
    );
    match response.status {
        // Wrong credentials or a path that does not exist: retrying cannot help until
        // someone changes the source.
        401 | 403 | 404 => PullError::permanent(message),
        _ => PullError::retry(message),
    }
}

/// Printable text of at most 100 characters (a reason phrase from the network).
fn message_text(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

impl Connection {
    async fn connect(url: &Url, creds: Option<Credentials>) -> Result<Connection, PullError> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port().unwrap_or(554);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| PullError::retry(format!("connecting to {host}:{port}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(4096),
            next_cseq: 1,
            creds,
            auth: None,
            session: None,
            user_agent: concat!("switchyard/", env!("CARGO_PKG_VERSION")).to_string(),
        })
    }

    fn local_ip(&self) -> Result<IpAddr, PullError> {
        self.stream
            .local_addr()
            .map(|a| a.ip())
            .map_err(|e| PullError::retry(format!("RTSP connection: {e}")))
    }

    fn peer_ip(&self) -> Result<IpAddr, PullError> {
        self.stream
            .peer_addr()
            .map(|a| a.ip())
            .map_err(|e| PullError::retry(format!("RTSP connection: {e}")))
    }

    /// Writes a request; returns its CSeq.
    async fn send(
        &mut self,
        method: &str,
        uri: &Url,
        mut headers: Vec<(&'static str, String)>,
    ) -> Result<u32, PullError> {
        let cseq = self.next_cseq;
        self.next_cseq += 1;
        headers.push(("User-Agent", self.user_agent.clone()));
        if let Some(session) = &self.session {
            headers.push(("Session", session.clone()));
        }
        if let (Some(auth), Some(creds)) = (self.auth.as_mut(), self.creds.as_ref()) {
            let value = auth
                .respond(&http_auth::PasswordParams {
                    username: &creds.username,
                    password: &creds.password,
                    uri: uri.as_str(),
                    method,
                    body: Some(&[]),
                })
                .map_err(|e| PullError::permanent(format!("{method}: authentication: {e}")))?;
            headers.push(("Authorization", value));
        }
        let request = message::request(method, uri.as_str(), cseq, &headers);
        self.stream
            .write_all(&request)
            .await
            .map_err(|e| PullError::retry(format!("{method}: {e}")))?;
        Ok(cseq)
    }

    /// The next message from the server. Cancel-safe: bytes read stay in the buffer.
    async fn read_message(&mut self) -> Result<Message, PullError> {
        loop {
            if let Some((msg, used)) = message::parse(&self.buf)
                .map_err(|e| PullError::retry(format!("RTSP: {}", message_text(&e))))?
            {
                let _ = self.buf.split_to(used);
                return Ok(msg);
            }
            self.buf.reserve(4096);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| PullError::retry(format!("RTSP connection: {e}")))?;
            if n == 0 {
                return Err(PullError::retry("the camera closed the RTSP connection"));
            }
        }
    }

    /// Answers a request the server sent: we implement none.
    async fn refuse(&mut self, cseq: Option<u32>) -> Result<(), PullError> {
        self.stream
            .write_all(&message::response(501, "Not Implemented", cseq))
            .await
            .map_err(|e| PullError::retry(format!("RTSP connection: {e}")))
    }

    /// Sends a request and waits for its response; a 401 is answered once with credentials.
    /// Responses other than 2xx are errors.
    async fn request(
        &mut self,
        method: &str,
        uri: &Url,
        headers: Vec<(&'static str, String)>,
    ) -> Result<Response, PullError> {
        let mut authenticated = self.auth.is_some();
        loop {
            let cseq = self.send(method, uri, headers.clone()).await?;
            let response = loop {
                match self.read_message().await? {
                    Message::Response(r) if r.cseq().is_none_or(|c| c == cseq) => break r,
                    Message::Response(_) | Message::Data { .. } => {}
                    Message::Request { cseq, .. } => self.refuse(cseq).await?,
                }
            };
            if response.status == 401 && self.creds.is_some() && !authenticated {
                let mut builder = http_auth::PasswordClient::builder();
                for challenge in response.headers_named("WWW-Authenticate") {
                    builder = builder.challenges(challenge);
                }
                self.auth = Some(builder.build().map_err(|e| {
                    PullError::permanent(format!(
                        "{method}: cannot answer the camera's authentication request: {}",
                        message_text(&e)
                    ))
                })?);
                authenticated = true;
                continue;
            }
            if !(200..300).contains(&response.status) {
                return Err(rtsp_error(method, &response));
            }
            return Ok(response);
        }
    }
}

/// One set-up stream's sockets and reception statistics.
struct UdpStream {
    /// Its index in the presentation.
    index: usize,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    stats: ReceptionStats,
    /// The sender's SSRC, from SETUP or its first packet.
    ssrc: Option<u32>,
}

/// What a playing session received.
pub enum Received {
    Rtp {
        index: usize,
        header: RtpHeader,
        packet: Bytes,
    },
    Rtcp {
        index: usize,
        packet: Bytes,
    },
    /// Something on the RTSP connection to deal with ([`UdpSession::handle`]).
    Rtsp(Message),
    /// A datagram that is not this stream's RTP (a stray one, an old session's).
    Ignored,
}

/// An RTSP session with its media on UDP.
pub struct UdpSession {
    conn: Connection,
    play_url: Url,
    streams: Vec<UdpStream>,
    keepalive: &'static str,
    keepalive_interval: Duration,
    next_keepalive: Instant,
    next_report: Instant,
    /// Our SSRC in receiver reports.
    ssrc: u32,
    epoch: Instant,
    recv_buf: Vec<u8>,
    /// The socket (2 per stream: RTP, RTCP) the next read starts at.
    next_socket: usize,
}

impl UdpSession {
    /// OPTIONS and DESCRIBE: the presentation, and a session to set up.
    pub async fn describe(source: &RtspSource) -> Result<(UdpSession, Presentation), PullError> {
        let mut conn = Connection::connect(&source.url, source.creds.clone()).await?;
        let mut keepalive = "OPTIONS";
        match conn.request("OPTIONS", &source.url, Vec::new()).await {
            Ok(r) => {
                if r.header("Public").is_some_and(|p| {
                    p.split(',')
                        .any(|m| m.trim().eq_ignore_ascii_case("GET_PARAMETER"))
                }) {
                    keepalive = "GET_PARAMETER";
                }
            }
            // Some cameras refuse OPTIONS before DESCRIBE; credentials problems show there too.
            Err(e) if e.permanent => return Err(e),
            Err(_) => {}
        }
        let response = conn
            .request(
                "DESCRIBE",
                &source.url,
                vec![("Accept", "application/sdp".to_string())],
            )
            .await?;
        let base = ["Content-Base", "Content-Location"]
            .iter()
            .find_map(|h| response.header(h))
            .and_then(|v| Url::parse(v.trim()).ok())
            .unwrap_or_else(|| source.url.clone());
        let presentation = sdp::parse(&response.body, &base)
            .map_err(|e| PullError::retry(format!("DESCRIBE: {}", message_text(&e))))?;
        let now = Instant::now();
        let session = UdpSession {
            play_url: presentation.control.clone(),
            conn,
            streams: Vec::new(),
            keepalive,
            keepalive_interval: Duration::from_secs(30),
            next_keepalive: now,
            next_report: now,
            ssrc: rand::random(),
            epoch: now,
            recv_buf: vec![0; 65_536],
            next_socket: 0,
        };
        Ok((session, presentation))
    }

    /// SETUP of presentation stream `index` over UDP.
    pub async fn setup(
        &mut self,
        presentation: &Presentation,
        index: usize,
    ) -> Result<(), PullError> {
        let desc = &presentation.streams[index];
        let local = self.conn.local_ip()?;
        let (rtp, rtcp, port) = bind_pair(local)?;
        let response = self
            .conn
            .request(
                "SETUP",
                &desc.control,
                vec![(
                    "Transport",
                    format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1),
                )],
            )
            .await?;
        if let Some(session) = response.header("Session") {
            let (id, timeout) = message::parse_session(session);
            if self.conn.session.is_none() {
                self.conn.session = Some(id);
                self.keepalive_interval = Duration::from_secs((timeout / 2).clamp(5, 60));
            }
        }
        if self.conn.session.is_none() {
            return Err(PullError::retry("SETUP: the answer has no Session header"));
        }
        let transport = message::parse_transport(response.header("Transport").unwrap_or(""));
        let Some((server_rtp, server_rtcp)) = transport.server_port else {
            return Err(PullError::retry(format!(
                "SETUP: the Transport answer has no server_port: {:?}",
                message_text(response.header("Transport").unwrap_or(""))
            )));
        };
        let source = match transport.source {
            Some(ip) if !ip.is_unspecified() => ip,
            _ => self.conn.peer_ip()?,
        };
        let connected = match rtp.connect(SocketAddr::new(source, server_rtp)).await {
            Ok(()) => rtcp.connect(SocketAddr::new(source, server_rtcp)).await,
            Err(e) => Err(e),
        };
        connected.map_err(|e| PullError::retry(format!("SETUP: UDP to {source}: {e}")))?;
        // Opens a NAT or firewall between us and the camera (what retina does).
        let _ = rtp.send(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).await;
        let _ = rtcp
            .send(&rtcp::receiver_report(self.ssrc, &[], "switchyard"))
            .await;
        self.streams.push(UdpStream {
            index,
            rtp,
            rtcp,
            stats: ReceptionStats::new(desc.clock_rate),
            ssrc: transport.ssrc,
        });
        Ok(())
    }

    /// PLAY from now (live: no Range).
    pub async fn play(&mut self) -> Result<(), PullError> {
        let url = self.play_url.clone();
        self.conn
            .request("PLAY", &url, vec![("Range", "npt=0.000-".to_string())])
            .await?;
        let now = Instant::now();
        self.next_keepalive = now + self.keepalive_interval;
        self.next_report = now + REPORT_INTERVAL;
        Ok(())
    }

    /// When [`UdpSession::maintain`] has something to do.
    pub fn next_timer(&self) -> Instant {
        self.next_keepalive.min(self.next_report)
    }

    /// Sends a keepalive and receiver reports when they are due. Not cancel-safe: call it
    /// outside a `select!`.
    pub async fn maintain(&mut self) -> Result<(), PullError> {
        let now = Instant::now();
        if now >= self.next_keepalive {
            self.next_keepalive = now + self.keepalive_interval;
            let url = self.play_url.clone();
            self.conn.send(self.keepalive, &url, Vec::new()).await?;
        }
        if now >= self.next_report {
            self.next_report = now + REPORT_INTERVAL;
            let micros = self.micros(now);
            for s in &mut self.streams {
                let block = s.stats.report_block(micros);
                let report = rtcp::receiver_report(self.ssrc, block.as_slice(), "switchyard");
                let _ = s.rtcp.send(&report).await;
            }
        }
        Ok(())
    }

    fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Deals with what came on the RTSP connection while playing. Not cancel-safe.
    pub async fn handle(&mut self, msg: Message) -> Result<(), PullError> {
        match msg {
            Message::Request { cseq, .. } => self.conn.refuse(cseq).await,
            // A keepalive's answer: GET_PARAMETER not allowed means OPTIONS from now on; a
            // session the server forgot is the end.
            Message::Response(r) if r.status == 454 => Err(rtsp_error(self.keepalive, &r)),
            Message::Response(r) if r.status >= 400 && self.keepalive == "GET_PARAMETER" => {
                self.keepalive = "OPTIONS";
                Ok(())
            }
            Message::Response(_) | Message::Data { .. } => Ok(()),
        }
    }

    /// The next packet or RTSP message. Cancel-safe (it only reads).
    pub async fn recv(&mut self) -> Result<Received, PullError> {
        let UdpSession {
            conn,
            streams,
            recv_buf,
            epoch,
            next_socket,
            ..
        } = self;
        let udp = std::future::poll_fn(|cx| {
            // Round robin from where the last read was, so a burst of video does not hold
            // the audio back.
            let count = 2 * streams.len();
            for k in 0..count {
                let n = (*next_socket + k) % count;
                let (i, is_rtcp) = (n / 2, n % 2 == 1);
                let s = &streams[i];
                let socket = if is_rtcp { &s.rtcp } else { &s.rtp };
                let mut buf = tokio::io::ReadBuf::new(recv_buf);
                match socket.poll_recv(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        *next_socket = (n + 1) % count;
                        return Poll::Ready(Ok((i, is_rtcp, Bytes::copy_from_slice(buf.filled()))));
                    }
                    // ICMP port unreachable and the like: the camera's problem, reported
                    // by silence (the idle timeout) rather than here.
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        });
        tokio::select! {
            msg = conn.read_message() => Ok(Received::Rtsp(msg?)),
            packet = udp => {
                let (i, is_rtcp, packet) = packet.map_err(|e| PullError::retry(format!("UDP: {e}")))?;
                let stream = &mut streams[i];
                if is_rtcp {
                    let now = Instant::now().saturating_duration_since(*epoch).as_micros() as u64;
                    for sr in rtcp::sender_reports(&packet) {
                        if stream.ssrc.is_none_or(|s| s == sr.ssrc) {
                            stream.stats.sender_report(sr.ntp, now);
                        }
                    }
                    return Ok(Received::Rtcp { index: stream.index, packet });
                }
                let header = match header::parse(&packet) {
                    Ok(h) => h,
                    // Not RTP (a stray datagram): ignored, as the dummy packet we sent is by
                    // the camera.
                    Err(_) => return Ok(Received::Ignored),
                };
                let ssrc = *stream.ssrc.get_or_insert(header.ssrc);
                if header.ssrc != ssrc {
                    // An old session's packets or another sender: not this stream.
                    return Ok(Received::Ignored);
                }
                let now = Instant::now().saturating_duration_since(*epoch).as_micros() as u64;
                stream.stats.packet(header.ssrc, header.sequence, header.timestamp, now);
                Ok(Received::Rtp { index: stream.index, header, packet })
            }
        }
    }

    /// TEARDOWN, waiting at most a second for the answer.
    pub async fn teardown(mut self) {
        let url = self.play_url.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            self.conn.request("TEARDOWN", &url, Vec::new()).await
        })
        .await;
    }
}

/// Receive buffer of each RTP socket. The system default (208 KiB on Linux) overflows when a
/// keyframe's burst comes while the process is busy; GStreamer's rtspsrc asks for 512 KiB,
/// ffmpeg for 384 KiB. (The kernel caps it at `net.core.rmem_max`.)
const RECEIVE_BUFFER: usize = 2 << 20;

/// A UDP socket on `addr` with a [`RECEIVE_BUFFER`].
fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works.
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Two UDP sockets on consecutive ports, the first even (RFC 3550 11), on `ip`.
fn bind_pair(ip: IpAddr) -> Result<(UdpSocket, UdpSocket, u16), PullError> {
    for _ in 0..20 {
        let rtp = udp_socket(SocketAddr::new(ip, 0))
            .map_err(|e| PullError::retry(format!("binding a UDP port on {ip}: {e}")))?;
        let port = rtp
            .local_addr()
            .map_err(|e| PullError::retry(format!("UDP: {e}")))?
            .port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = udp_socket(SocketAddr::new(ip, port + 1)) {
            return Ok((rtp, rtcp, port));
        }
    }
    Err(PullError::retry(format!(
        "no pair of free UDP ports (even, even + 1) on {ip}"
    )))
}
