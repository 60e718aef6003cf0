//! HTTPS: the HTTP listener's connections with TLS (RFC 8446) over them, for the same router.
//!
//! [`TlsListener`] wraps any listener whose connections are [`ConnIo`]s (the
//! [`super::TimedListener`]) and hands axum each one as a [`TlsIo`] that does its handshake
//! lazily, on the connection's own task at its first read: `accept` never waits for a client's
//! handshake, so a client that stalls in it holds up nobody, and the connection timeouts of
//! the IO below (`super::conn`) cut it off.
//!
//! A client that speaks plain HTTP to this port (`http://host:8443/`) is told so with a `400`
//! and its connection closed, as nginx does (its status 497), instead of a TLS alert it cannot
//! show; anything else that is not a TLS handshake (RFC 8446 5.1: a record of content type 22
//! comes first) is closed with a log line.

use super::conn::{delegate_async_write, ConnIo, ConnState};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The first byte of a TLS connection: a handshake record (RFC 8446 5.1, `ContentType`).
const TLS_HANDSHAKE_RECORD: u8 = 22;

/// What a plain HTTP request on the HTTPS port gets.
const PLAIN_HTTP_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 73\r\nconnection: close\r\n\r\n{\"error\": \"plain HTTP request sent to the HTTPS port: use https:// here\"}";

/// A plain request's head is read (up to this much) before the answer, so that closing the
/// socket does not reset it under the client before it reads the answer.
const PLAIN_HEAD_MAX: usize = 8 * 1024;

/// Accepts connections of `L` as [`TlsIo`]s.
pub struct TlsListener<L> {
    inner: L,
    acceptor: TlsAcceptor,
}

impl<L> TlsListener<L> {
    pub fn new(inner: L, acceptor: TlsAcceptor) -> Self {
        TlsListener { inner, acceptor }
    }
}

impl<L> axum::serve::Listener for TlsListener<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: ConnIo,
{
    type Io = TlsIo<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsIo<L::Io>, SocketAddr) {
        let (io, remote) = self.inner.accept().await;
        let state = io.conn_state().clone();
        let io = TlsIo {
            state,
            stage: Stage::Sniffing {
                io,
                acceptor: self.acceptor.clone(),
            },
        };
        (io, remote)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A server-side TLS connection over `IO`, its handshake done at the first read or write.
pub struct TlsIo<IO> {
    state: Arc<ConnState>,
    stage: Stage<IO>,
}

enum Stage<IO> {
    /// Waiting for the first byte: a TLS handshake, or something else.
    Sniffing {
        io: IO,
        acceptor: TlsAcceptor,
    },
    Handshaking(Box<tokio_rustls::Accept<Rewound<IO>>>),
    /// A plain HTTP client: read its head, answer 400, close.
    RefusingPlain {
        io: IO,
        head: Vec<u8>,
        written: usize,
    },
    Ready(Box<TlsStream<Rewound<IO>>>),
    Closed,
}

impl<IO> ConnIo for TlsIo<IO> {
    fn conn_state(&self) -> &Arc<ConnState> {
        &self.state
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> TlsIo<IO> {
    /// Drives the connection to `Ready` (Ok) or to its end (an error, or Ok at `Closed` for a
    /// client that left before sending anything).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let remote = self.state.remote();
        loop {
            match &mut self.stage {
                Stage::Ready(_) | Stage::Closed => return Poll::Ready(Ok(())),
                Stage::Sniffing { io, .. } => {
                    let mut byte = [0u8; 1];
                    let mut buf = ReadBuf::new(&mut byte);
                    if let Err(e) = ready!(Pin::new(io).poll_read(cx, &mut buf)) {
                        tracing::info!(%remote, error = %e, "HTTPS connection closed before its TLS handshake");
                        self.stage = Stage::Closed;
                        return Poll::Ready(Err(e));
                    }
                    let Stage::Sniffing { io, acceptor } =
                        std::mem::replace(&mut self.stage, Stage::Closed)
                    else {
                        unreachable!()
                    };
                    match buf.filled().first() {
                        None => return Poll::Ready(Ok(())),
                        Some(&TLS_HANDSHAKE_RECORD) => {
                            let io = Rewound {
                                first: Some(TLS_HANDSHAKE_RECORD),
                                io,
                            };
                            self.stage = Stage::Handshaking(Box::new(acceptor.accept(io)));
                        }
                        Some(&b) if b.is_ascii_uppercase() => {
                            tracing::info!(%remote, "plain HTTP request on the HTTPS port; answering 400");
                            self.stage = Stage::RefusingPlain {
                                io,
                                head: vec![b],
                                written: 0,
                            };
                        }
                        Some(&b) => {
                            tracing::info!(%remote, first_byte = b, "not TLS on the HTTPS port; closing");
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "not a TLS handshake",
                            )));
                        }
                    }
                }
                Stage::Handshaking(accept) => match ready!(Pin::new(accept.as_mut()).poll(cx)) {
                    Ok(stream) => self.stage = Stage::Ready(Box::new(stream)),
                    Err(e) => {
                        tracing::info!(%remote, error = %e, "TLS handshake failed; closing");
                        self.stage = Stage::Closed;
                        return Poll::Ready(Err(e));
                    }
                },
                Stage::RefusingPlain { io, head, written } => {
                    let result = ready!(refuse_plain(io, head, written, cx));
                    self.stage = Stage::Closed;
                    result?;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "plain HTTP on the HTTPS port",
                    )));
                }
            }
        }
    }
}

/// Reads a plain request's head (to its blank line, or [`PLAIN_HEAD_MAX`]), writes the 400,
/// shuts the sending side.
fn refuse_plain<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut IO,
    head: &mut Vec<u8>,
    written: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    let mut chunk = [0u8; 1024];
    while *written == 0 && !head.ends_with(b"\r\n\r\n") && head.len() < PLAIN_HEAD_MAX {
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        if buf.filled().is_empty() {
            break;
        }
        head.extend_from_slice(buf.filled());
        // Only the end of the head matters.
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end + 4);
        }
    }
    while *written < PLAIN_HTTP_REPLY.len() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, &PLAIN_HTTP_REPLY[*written..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *written += n;
    }
    Pin::new(io).poll_shutdown(cx)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsIo<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        match &mut this.stage {
            Stage::Ready(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            // The client left: end of stream.
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        match &mut this.stage {
            Stage::Ready(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            _ => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_ready(cx))?;
        match &mut this.stage {
            Stage::Ready(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            _ => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stage {
            Stage::Ready(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stage {
            Stage::Ready(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stage::Sniffing { io, .. } | Stage::RefusingPlain { io, .. } => {
                Pin::new(io).poll_shutdown(cx)
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// `IO` with the byte the sniffer took put back in front.
pub struct Rewound<IO> {
    first: Option<u8>,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewound<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(b) = this.first.take() {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewound<IO> {
    delegate_async_write!(io);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_reply_is_well_formed() {
        let text = std::str::from_utf8(PLAIN_HTTP_REPLY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
