//! HTTP connection timeouts: an idle keep-alive connection is closed after
//! `http.idle_timeout_secs`, and a request head must arrive complete within
//! `http.header_timeout_secs` (a slow-headers, "slowloris", client cannot hold sockets).
//!
//! RFC 9112 9.5 leaves the idle timeout to the server ("servers will usually have some timeout
//! value beyond which they will no longer maintain an inactive connection"); the header timeout
//! is nginx's `client_header_timeout`: it runs from the accept for the first request and from the
//! first byte of each later one, so it does not shorten the idle time between keep-alive
//! requests. hyper's own `header_read_timeout` cannot do that (its clock starts as soon as the
//! connection waits for a request, which bounds the idle time too), so both are kept here:
//!
//! - [`TimedListener`] hands axum each TCP connection as a [`TimedIo`], whose reads fail with
//!   `TimedOut` once a deadline passes (hyper then closes the connection);
//! - [`MakeConnService`] gives each connection a [`ConnService`] that counts its requests in
//!   progress, from the head to the end of the response body (an LL-HLS blocking playlist
//!   request that waits for the next part is in progress, not idle).
//!
//! Each connection also takes its place in `limits.max_sessions_per_ip` at the accept; one over
//! the limit gets `429 Too Many Requests` (RFC 6585 4) and is closed.
//! HTTPS connections (`super::tls`) run TLS over the same [`TimedIo`], so these timeouts hold
//! for them too, and the header timeout of the first request covers the TLS handshake (a client
//! that opens a connection and never finishes the handshake is cut off with it).
//!
//! A connection with a request in progress never times out. One upgraded to a WebSocket (`101`,
//! RFC 6455 4.2.2; or an HTTP/2 extended `CONNECT`, RFC 8441) leaves these timeouts for good:
//! MSE clients hold theirs as long as they watch, and the MSE writer has its own write timeout.
//! HTTP/2 (RFC 9113) connections get the header timeout for their first request only (frames
//! such as PING and WINDOW_UPDATE come between requests) and the idle timeout after their last
//! stream ends.

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, Response, StatusCode, Version};
use axum::serve::IncomingStream;
use axum::Router;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// How long a connection may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnTimeouts {
    /// No request in progress for this long: the connection is closed.
    pub idle: Duration,
    /// A request head must be complete this long after the accept (the first request) or after
    /// its first byte (later ones).
    pub header: Duration,
}

impl ConnTimeouts {
    pub fn from_config(config: &crate::config::HttpConfig) -> Self {
        ConnTimeouts {
            idle: Duration::from_secs(config.idle_timeout_secs),
            header: Duration::from_secs(config.header_timeout_secs),
        }
    }
}

/// Which timeout ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    Header,
}

/// What a connection is doing, as far as its timeouts care.
#[derive(Debug)]
struct Timing {
    in_flight: usize,
    /// A WebSocket (or other upgraded protocol) runs on the connection: no timeouts any more.
    upgraded: bool,
    http2: bool,
    /// The accept, or the end of the last request.
    idle_since: Instant,
    /// When the head of the next request started to arrive (the accept for the first one).
    head_since: Option<Instant>,
}

impl Timing {
    fn new(now: Instant) -> Self {
        Timing {
            in_flight: 0,
            upgraded: false,
            http2: false,
            idle_since: now,
            head_since: Some(now),
        }
    }

    /// Bytes came in: between HTTP/1 requests they are the next request's head.
    fn on_read(&mut self, now: Instant) {
        if self.in_flight == 0 && !self.http2 && self.head_since.is_none() {
            self.head_since = Some(now);
        }
    }

    fn request_started(&mut self, http2: bool) {
        self.in_flight += 1;
        self.http2 |= http2;
        self.head_since = None;
    }

    /// True when the connection became idle.
    fn request_ended(&mut self, now: Instant) -> bool {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.idle_since = now;
        }
        self.in_flight == 0
    }

    /// The moment the connection is to be closed, and why; `None` while it is busy.
    fn deadline(&self, timeouts: &ConnTimeouts) -> Option<(Instant, Expiry)> {
        if self.upgraded || self.in_flight > 0 {
            return None;
        }
        let idle = (self.idle_since + timeouts.idle, Expiry::Idle);
        match self.head_since {
            Some(since) if since + timeouts.header < idle.0 => {
                Some((since + timeouts.header, Expiry::Header))
            }
            _ => Some(idle),
        }
    }
}

/// Shared by a connection's IO and its service.
pub struct ConnState {
    timeouts: ConnTimeouts,
    remote: SocketAddr,
    timing: Mutex<Timing>,
    /// The task that last found the socket with nothing to read: woken when the connection
    /// becomes idle, so that its read arms the idle timer.
    reader: Mutex<Option<Waker>>,
    /// The connection's place in `limits.max_sessions_per_ip`.
    #[allow(dead_code)] // held for its Drop
    permit: Option<crate::limits::SessionPermit>,
}

impl ConnState {
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    fn request_ended(&self) {
        let idle = self.timing.lock().unwrap().request_ended(Instant::now());
        if idle {
            if let Some(waker) = self.reader.lock().unwrap().take() {
                waker.wake();
            }
        }
    }
}

/// Accepts TCP connections as [`TimedIo`]s.
pub struct TimedListener {
    listener: TcpListener,
    timeouts: ConnTimeouts,
    ip_sessions: Option<Arc<crate::limits::IpSessions>>,
    /// Whether a connection over the limit is answered with a plain-text 429 (on a TLS port it
    /// would be garbage to the client: such a connection is only closed).
    answer_refusals: bool,
}

impl TimedListener {
    pub fn new(listener: TcpListener, timeouts: ConnTimeouts) -> Self {
        TimedListener {
            listener,
            timeouts,
            ip_sessions: None,
            answer_refusals: true,
        }
    }

    /// Counts each connection in `ip_sessions` (`limits.max_sessions_per_ip`); one over the
    /// limit is answered 429 and closed.
    pub fn limit_sessions(mut self, ip_sessions: Arc<crate::limits::IpSessions>) -> Self {
        self.ip_sessions = Some(ip_sessions);
        self
    }

    /// Like [`Self::limit_sessions`], for a TLS port: a connection over the limit is closed
    /// without an answer (before the TLS handshake, nothing readable can be said).
    pub fn limit_tls_sessions(mut self, ip_sessions: Arc<crate::limits::IpSessions>) -> Self {
        self.ip_sessions = Some(ip_sessions);
        self.answer_refusals = false;
        self
    }
}

/// Answers a connection over `limits.max_sessions_per_ip` with a 429 and closes it. Its request
/// is read first (for at most a second), so that the close does not reset the connection
/// before the client reads the answer.
fn refuse_over_limit(mut stream: TcpStream, max: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({
        "error": format!("too many connections from your address (at most {max}, limits.max_sessions_per_ip)")
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
            while matches!(stream.read(&mut head).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

impl axum::serve::Listener for TimedListener {
    type Io = TimedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TimedIo, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, remote)) => {
                    let permit = match &self.ip_sessions {
                        Some(table) => match table.admit(remote.ip(), "HTTP connection") {
                            Some(permit) => Some(permit),
                            None => {
                                if self.answer_refusals {
                                    refuse_over_limit(stream, table.max());
                                }
                                continue;
                            }
                        },
                        None => None,
                    };
                    let state = Arc::new(ConnState {
                        timeouts: self.timeouts,
                        remote,
                        timing: Mutex::new(Timing::new(Instant::now())),
                        reader: Mutex::new(None),
                        permit,
                    });
                    let io = TimedIo {
                        stream,
                        state,
                        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                        armed: None,
                    };
                    return (io, remote);
                }
                // The peer gave up before we got to it.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                // Out of file descriptors, most likely: wait for some to close.
                Err(e) => {
                    tracing::error!(error = %e, "HTTP accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A TCP connection whose reads fail with `TimedOut` once it has been idle, or has taken to
/// send a request head, for too long.
pub struct TimedIo {
    stream: TcpStream,
    state: Arc<ConnState>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    armed: Option<Instant>,
}

impl TimedIo {
    fn expired(&self, expiry: Expiry) -> io::Error {
        let (what, after) = match expiry {
            Expiry::Idle => ("idle", self.state.timeouts.idle),
            Expiry::Header => {
                crate::limits::hit(crate::limits::Limit::HttpHeaderTimeout);
                ("request head not complete", self.state.timeouts.header)
            }
        };
        tracing::debug!(remote = %self.state.remote, what, after_secs = after.as_secs(), "HTTP connection timed out; closing");
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("HTTP connection {what} for {} s", after.as_secs()),
        )
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.timing.lock().unwrap().on_read(Instant::now());
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        // Nothing to read: is it time to give up on the peer?
        let deadline = {
            let timing = this.state.timing.lock().unwrap();
            if timing.upgraded {
                return Poll::Pending;
            }
            let deadline = timing.deadline(&this.state.timeouts);
            let mut reader = this.state.reader.lock().unwrap();
            if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *reader = Some(cx.waker().clone());
            }
            deadline
        };
        let Some((at, expiry)) = deadline else {
            return Poll::Pending;
        };
        if at <= Instant::now() {
            return Poll::Ready(Err(this.expired(expiry)));
        }
        if this.armed != Some(at) {
            this.sleep.as_mut().reset(at);
            this.armed = Some(at);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(this.expired(expiry))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The body of an `AsyncWrite` impl that hands every write to the wrapper's field `$inner`
/// (a wrapper that only changes how it reads).
macro_rules! delegate_async_write {
    ($inner:ident) => {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().$inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().$inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.$inner.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().$inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().$inner).poll_shutdown(cx)
        }
    };
}
pub(super) use delegate_async_write;

impl AsyncWrite for TimedIo {
    delegate_async_write!(stream);
}

/// A connection's IO that carries its timing state: a [`TimedIo`], or TLS over one.
pub trait ConnIo {
    fn conn_state(&self) -> &Arc<ConnState>;
}

impl ConnIo for TimedIo {
    fn conn_state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

/// Makes each connection's [`ConnService`] (what `axum::serve` takes for a make-service), for
/// any listener whose connections are [`ConnIo`]s.
#[derive(Clone)]
pub struct MakeConnService(pub Router);

impl<'a, L> tower_service::Service<IncomingStream<'a, L>> for MakeConnService
where
    L: axum::serve::Listener,
    L::Io: ConnIo,
{
    type Response = ConnService;
    type Error = Infallible;
    type Future = std::future::Ready<Result<ConnService, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(ConnService {
            router: self.0.clone(),
            state: incoming.io().conn_state().clone(),
        }))
    }
}

/// The router for one connection: gives handlers the peer's address (`ConnectInfo`) and keeps
/// the count of the requests in progress.
#[derive(Clone)]
pub struct ConnService {
    router: Router,
    state: Arc<ConnState>,
}

/// A request in progress, until the end of its response body.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

impl<B> tower_service::Service<Request<B>> for ConnService
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.state
            .timing
            .lock()
            .unwrap()
            .request_started(request.version() == Version::HTTP_2);
        let in_flight = InFlight(self.state.clone());
        let connect = request.method() == Method::CONNECT;
        request
            .extensions_mut()
            .insert(ConnectInfo(self.state.remote));
        let response = tower_service::Service::call(&mut self.router, request);
        Box::pin(async move {
            let response = response.await?;
            let status = response.status();
            if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
                in_flight.0.timing.lock().unwrap().upgraded = true;
            }
            Ok(response.map(|body| Body::new(TrackedBody { body, in_flight })))
        })
    }
}

/// A response body that ends its request's time in flight when it is dropped (sent, or the
/// connection closed).
struct TrackedBody {
    body: Body,
    #[allow(dead_code)] // held for its Drop
    in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: ConnTimeouts = ConnTimeouts {
        idle: Duration::from_secs(60),
        header: Duration::from_secs(10),
    };

    #[test]
    fn first_request_head_is_timed_from_the_accept() {
        let t0 = Instant::now();
        let mut timing = Timing::new(t0);
        assert_eq!(timing.deadline(&T), Some((t0 + T.header, Expiry::Header)));
        // Bytes of the head do not move it (slowloris).
        timing.on_read(t0 + Duration::from_secs(5));
        assert_eq!(timing.deadline(&T), Some((t0 + T.header, Expiry::Header)));
        timing.request_started(false);
        assert_eq!(timing.deadline(&T), None, "a request in progress");
    }

    #[test]
    fn idle_keep_alive_is_timed_from_the_last_response_and_the_next_head_from_its_first_byte() {
        let t0 = Instant::now();
        let mut timing = Timing::new(t0);
        timing.request_started(false);
        let t1 = t0 + Duration::from_secs(30);
        assert!(timing.request_ended(t1));
        assert_eq!(timing.deadline(&T), Some((t1 + T.idle, Expiry::Idle)));
        let t2 = t1 + Duration::from_secs(55);
        timing.on_read(t2);
        assert_eq!(
            timing.deadline(&T),
            Some((t1 + T.idle, Expiry::Idle)),
            "the earlier one"
        );
        let short = ConnTimeouts {
            idle: Duration::from_secs(600),
            ..T
        };
        assert_eq!(
            timing.deadline(&short),
            Some((t2 + T.header, Expiry::Header))
        );
    }

    #[test]
    fn pipelined_and_concurrent_requests_keep_the_connection_busy() {
        let t0 = Instant::now();
        let mut timing = Timing::new(t0);
        timing.request_started(true);
        timing.request_started(true);
        assert!(!timing.request_ended(t0));
        assert_eq!(timing.deadline(&T), None);
        assert!(timing.request_ended(t0));
        // HTTP/2 control frames between requests are not a request head.
        timing.on_read(t0 + Duration::from_secs(1));
        assert_eq!(timing.deadline(&T), Some((t0 + T.idle, Expiry::Idle)));
    }

    #[test]
    fn upgraded_connections_never_time_out() {
        let t0 = Instant::now();
        let mut timing = Timing::new(t0);
        timing.request_started(false);
        timing.upgraded = true;
        timing.request_ended(t0);
        assert_eq!(timing.deadline(&T), None);
    }
}
