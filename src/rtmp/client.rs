//! The client side of RTMP, for pushes (publish to another server) and pulls (play from one):
//! handshake, `connect` and `publish`/`play` through rml_rtmp's `ClientSession`, over a tokio
//! socket, or TLS (rustls) for `rtmps://`. `rtmp[s]://HOST[:PORT]/APP/KEY`: the first path
//! segment is the application, the rest (with any query string, which CDNs use for keys) is the
//! stream key. Default ports: 1935 for RTMP, 443 for RTMPS.

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
    PublishRequestType, StreamMetadata,
};
use rml_rtmp::time::RtmpTimestamp;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// A byte stream to the server: plain TCP or TLS.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Trust for `rtmps://` servers: the web PKI roots plus optional extra CA certificates.
#[derive(Clone)]
pub struct TlsTrust {
    config: Arc<rustls::ClientConfig>,
}

impl TlsTrust {
    /// `extra_ca_pem`: a PEM file of additional CA certificates, or empty for none.
    pub fn new(extra_ca_pem: &str) -> Result<TlsTrust, ClientError> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if !extra_ca_pem.is_empty() {
            let bad = |e: &dyn std::fmt::Display| {
                ClientError::Url(format!("CA file {extra_ca_pem}: {e}"))
            };
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(extra_ca_pem)
                .map_err(|e| bad(&e))?
            {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Url(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsTrust {
            config: Arc::new(config),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Url(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("handshake: {0:?}")]
    Handshake(rml_rtmp::handshake::HandshakeError),
    #[error("RTMP session: {0:?}")]
    Session(rml_rtmp::sessions::ClientSessionError),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS with {host}: {source}")]
    Tls { host: String, source: io::Error },
}

impl From<rml_rtmp::sessions::ClientSessionError> for ClientError {
    fn from(e: rml_rtmp::sessions::ClientSessionError) -> Self {
        ClientError::Session(e)
    }
}

/// A parsed `rtmp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `rtmps://`: RTMP over TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub app: String,
    pub key: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, ClientError> {
        let bad =
            |why: &str| ClientError::Url(format!("{why}: expected rtmp://HOST[:PORT]/APP/KEY"));
        let (tls, rest) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtmps://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(bad("not an rtmp:// or rtmps:// URL")),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no application"))?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| bad("bad port"))?)
            }
            _ => (authority, if tls { 443 } else { 1935 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad("bad host"));
        }
        let (app, key) = path.split_once('/').ok_or_else(|| bad("no stream key"))?;
        if app.is_empty() || key.is_empty() {
            return Err(bad("empty application or stream key"));
        }
        Ok(RtmpUrl {
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            key: key.to_string(),
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "rtmps"
        } else {
            "rtmp"
        }
    }

    fn tc_url(&self) -> String {
        format!(
            "{}://{}:{}/{}",
            self.scheme(),
            self.host,
            self.port,
            self.app
        )
    }

    /// The URL with the stream key hidden (keys are credentials), for logs.
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}:{}/{}/***",
            self.scheme(),
            self.host,
            self.port,
            self.app
        )
    }
}

/// An RTMP client connection.
pub struct RtmpClient {
    socket: Box<dyn Transport>,
    session: ClientSession,
    buf: Box<[u8]>,
    out: Vec<u8>,
}

impl RtmpClient {
    /// Connects, handshakes and `connect`s to the URL's application.
    pub async fn connect(url: &RtmpUrl, trust: &TlsTrust) -> Result<RtmpClient, ClientError> {
        let addr = format!("{}:{}", url.host, url.port);
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let socket: Box<dyn Transport> = if url.tls {
            let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| ClientError::Url(format!("TLS server name {}: {e}", url.host)))?;
            let tls = tokio_rustls::TlsConnector::from(trust.config.clone())
                .connect(name, tcp)
                .await
                .map_err(|source| ClientError::Tls {
                    host: url.host.clone(),
                    source,
                })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut handshake = Handshake::new(PeerType::Client);
        let p0p1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(ClientError::Handshake)?;
        let config = ClientSessionConfig {
            tc_url: Some(url.tc_url()),
            ..ClientSessionConfig::new()
        };
        let (session, results) = ClientSession::new(config)?;
        let mut client = RtmpClient {
            socket,
            session,
            buf: vec![0; 16 * 1024].into_boxed_slice(),
            out: Vec::new(),
        };
        client.socket.write_all(&p0p1).await?;
        let leftover = loop {
            let n = client.socket.read(&mut client.buf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            match handshake
                .process_bytes(&client.buf[..n])
                .map_err(ClientError::Handshake)?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    client.socket.write_all(&response_bytes).await?
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    client.socket.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        client.apply(results)?;
        let events = client.session.handle_input(&leftover)?;
        client.apply(events)?;
        let request = client.session.request_connection(url.app.clone())?;
        client.apply(vec![request])?;
        client.flush().await?;
        client
            .wait_for(|e| match e {
                ClientSessionEvent::ConnectionRequestAccepted => Some(Ok(())),
                ClientSessionEvent::ConnectionRequestRejected { description } => {
                    Some(Err(description.clone()))
                }
                _ => None,
            })
            .await?;
        Ok(client)
    }

    /// Asks to publish `key` and waits for the answer.
    pub async fn publish(&mut self, key: &str) -> Result<(), ClientError> {
        let request = self
            .session
            .request_publishing(key.to_string(), PublishRequestType::Live)?;
        self.apply(vec![request])?;
        self.flush().await?;
        self.wait_for(|e| match e {
            ClientSessionEvent::PublishRequestAccepted => Some(Ok(())),
            ClientSessionEvent::UnhandleableOnStatusCode { code }
                if code.contains("Publish") || code.contains("Failed") =>
            {
                Some(Err(code.clone()))
            }
            // A refusal sent as an `_error` result (rml_rtmp servers, ours among them, answer
            // `publish`, transaction 0, that way): its status object names the code.
            ClientSessionEvent::UnknownTransactionResultReceived {
                additional_values, ..
            } => error_status(additional_values).map(Err),
            _ => None,
        })
        .await
    }

    /// Asks to play `key` and waits for the answer.
    pub async fn play(&mut self, key: &str) -> Result<(), ClientError> {
        let request = self.session.request_playback(key.to_string())?;
        self.apply(vec![request])?;
        self.flush().await?;
        self.wait_for(|e| match e {
            ClientSessionEvent::PlaybackRequestAccepted => Some(Ok(())),
            ClientSessionEvent::UnhandleableOnStatusCode { code }
                if code.contains("NotFound") || code.contains("Failed") =>
            {
                Some(Err(code.clone()))
            }
            _ => None,
        })
        .await
    }

    /// Reads until `decide` answers; the server closing first is an error.
    async fn wait_for(
        &mut self,
        decide: impl Fn(&ClientSessionEvent) -> Option<Result<(), String>>,
    ) -> Result<(), ClientError> {
        loop {
            for event in self.read_events().await? {
                if let Some(answer) = decide(&event) {
                    return answer.map_err(ClientError::Refused);
                }
            }
        }
    }

    /// Reads once from the server, answers what the session must (acknowledgements, pings),
    /// and returns the events. Cancel-safe.
    pub async fn read_events(&mut self) -> Result<Vec<ClientSessionEvent>, ClientError> {
        let n = self.socket.read(&mut self.buf).await?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        let results = self.session.handle_input(&self.buf[..n])?;
        let events = self.apply(results)?;
        self.flush().await?;
        Ok(events)
    }

    fn apply(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> Result<Vec<ClientSessionEvent>, ClientError> {
        let mut events = Vec::new();
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => self.out.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    pub fn queue_video(&mut self, body: Bytes, timestamp: u32) -> Result<(), ClientError> {
        let r = self
            .session
            .publish_video_data(body, RtmpTimestamp::new(timestamp), false)?;
        self.apply(vec![r]).map(drop)
    }

    pub fn queue_audio(&mut self, body: Bytes, timestamp: u32) -> Result<(), ClientError> {
        let r = self
            .session
            .publish_audio_data(body, RtmpTimestamp::new(timestamp), false)?;
        self.apply(vec![r]).map(drop)
    }

    pub fn queue_metadata(&mut self, metadata: &StreamMetadata) -> Result<(), ClientError> {
        let r = self.session.publish_metadata(metadata)?;
        self.apply(vec![r]).map(drop)
    }

    /// Sends everything queued; returns the byte count.
    pub async fn flush(&mut self) -> Result<usize, ClientError> {
        let n = self.out.len();
        if n > 0 {
            self.socket.write_all(&self.out).await?;
            // TLS keeps written data in its buffer until flushed.
            self.socket.flush().await?;
            self.out.clear();
        }
        Ok(n)
    }
}

/// `code: description` of a status object whose code says an error (`NetStream.Publish.BadName`).
fn error_status(values: &[rml_amf0::Amf0Value]) -> Option<String> {
    use rml_amf0::Amf0Value;
    values.iter().find_map(|v| {
        let Amf0Value::Object(properties) = v else {
            return None;
        };
        let text = |key: &str| match properties.get(key) {
            Some(Amf0Value::Utf8String(s)) => Some(s.as_str()),
            _ => None,
        };
        let code = text("code")?;
        let is_error = text("level").is_some_and(|l| l.contains("error"))
            || ["BadName", "Failed", "Rejected", "Denied"]
                .iter()
                .any(|w| code.contains(w));
        if !is_error || code.ends_with(".Start") {
            return None;
        }
        Some(match text("description").filter(|d| !d.is_empty()) {
            Some(d) => format!("{code}: {d}"),
            None => code.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_results_name_their_code() {
        use rml_amf0::Amf0Value;
        let status = |level: &str, code: &str| {
            vec![
                Amf0Value::Null,
                Amf0Value::Object(
                    [("level", level), ("code", code), ("description", "in use")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), Amf0Value::Utf8String(v.to_string())))
                        .collect(),
                ),
            ]
        };
        assert_eq!(
            error_status(&status("_error", "NetStream.Publish.BadName")).as_deref(),
            Some("NetStream.Publish.BadName: in use")
        );
        assert_eq!(
            error_status(&status("error", "NetStream.Publish.Denied")).as_deref(),
            Some("NetStream.Publish.Denied: in use")
        );
        assert_eq!(
            error_status(&status("status", "NetStream.Publish.Start")),
            None
        );
        assert_eq!(error_status(&[Amf0Value::Null]), None);
    }

    #[test]
    fn urls_split_into_host_app_and_key() {
        let u = RtmpUrl::parse("rtmp://a.rtmp.youtube.com/live2/abcd-efgh?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.key.as_str()),
            ("a.rtmp.youtube.com", 1935, "live2", "abcd-efgh?x=1")
        );
        let u = RtmpUrl::parse("rtmp://127.0.0.1:19350/live/a/b").unwrap();
        assert_eq!(
            (u.port, u.app.as_str(), u.key.as_str()),
            (19350, "live", "a/b")
        );
        assert_eq!(u.redacted(), "rtmp://127.0.0.1:19350/live/***");
        let u = RtmpUrl::parse("rtmps://live.example/app/key").unwrap();
        assert_eq!((u.tls, u.port), (true, 443));
        for bad in [
            "http://x/a/b",
            "rtmp://x",
            "rtmp://x/app",
            "rtmp://x:notaport/a/b",
            "rtmp:///a/b",
            "rtmps://x",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
