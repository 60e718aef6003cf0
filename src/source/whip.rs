//! The source over WHIP (RFC 9725): the file's frames go onto a bus stream of this process
//! (through the RTMP ingest, as if an RTMP publisher sent them), and the WebRTC engine's client
//! role pushes that stream: it offers, POSTs the offer to the WHIP endpoint, and packetizes
//! what the stream carries (RFC 6184 for H.264). Each connection has an engine, a UDP port
//! and a bus stream of its own, so a new session never starts on frames of the last one.
//!
//! Video only: WebRTC carries Opus, not AAC, and the source does not convert audio.

use super::file::{FileFrame, SourceFile};
use super::sink::{stamp_now, Sink, SinkError};
use crate::bus::{BusConfig, Peer, Registry};
use crate::inputs::rtmp::RtmpIngest;
use crate::webrtc::{ClientRole, SessionError, WebRtc, WebRtcSettings};
use std::time::Duration;
use switchyard_media::MediaKind;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// ICE and DTLS must complete within this time of the POST.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that lost its connection (consent freshness, RFC 7675) this long is given up.
const DISCONNECTED_FOR: Duration = Duration::from_secs(5);
/// How often the session's state is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);

pub struct WhipSink {
    url: String,
    http: reqwest::Client,
    session: Option<Session>,
    /// Whether the file's audio left out was said (once).
    told_audio: bool,
}

/// One WHIP session and what feeds it.
struct Session {
    engine: WebRtc,
    engine_stop: CancellationToken,
    /// Our session in the engine, and the WHIP resource (for `DELETE`).
    id: String,
    resource: Option<String>,
    ingest: RtmpIngest,
    _registry: Registry,
    posted: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    next_check: Instant,
}

impl WhipSink {
    pub fn new(url: &str) -> WhipSink {
        WhipSink {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with rustls"),
            session: None,
            told_audio: false,
        }
    }

    fn failed(&self, reason: impl Into<String>) -> SinkError {
        SinkError::Failed {
            target: self.url.clone(),
            reason: reason.into(),
        }
    }

    /// Drops the session, telling the server when it can still hear.
    async fn end(&mut self) {
        if let Some(s) = self.session.take() {
            if let Some(resource) = &s.resource {
                let _ = self
                    .http
                    .delete(resource)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
            }
            s.engine_stop.cancel();
        }
    }

    /// Looks at the session's state; an error if it ended or cannot connect.
    async fn check(&mut self) -> Result<(), SinkError> {
        let Some(s) = &mut self.session else {
            return Err(self.failed("not connected"));
        };
        let now = Instant::now();
        s.next_check = now + CHECK_EVERY;
        let info = s.engine.sessions().await.into_iter().find(|i| i.id == s.id);
        let problem = match info {
            None => {
                let reason = s
                    .engine
                    .closed_sessions()
                    .await
                    .into_iter()
                    .find(|i| i.id == s.id)
                    .and_then(|i| i.closed_reason)
                    .unwrap_or_else(|| "closed".into());
                Some(format!("the WebRTC session ended: {reason}"))
            }
            Some(i) if i.state == "connected" => {
                if !s.connected {
                    tracing::info!(target = %self.url, "WebRTC connected");
                }
                s.connected = true;
                s.disconnected_since = None;
                None
            }
            Some(_) if !s.connected => (now.duration_since(s.posted) > CONNECT_TIMEOUT)
                .then(|| format!("ICE and DTLS did not connect within {CONNECT_TIMEOUT:?}")),
            Some(i) => {
                let since = *s.disconnected_since.get_or_insert(now);
                (now.duration_since(since) > DISCONNECTED_FOR).then(|| {
                    format!(
                        "the WebRTC connection is {} for more than {DISCONNECTED_FOR:?}",
                        i.state
                    )
                })
            }
        };
        match problem {
            Some(reason) => {
                self.end().await;
                Err(self.failed(reason))
            }
            None => Ok(()),
        }
    }
}

impl Sink for WhipSink {
    fn target(&self) -> String {
        self.url.clone()
    }

    async fn connect(&mut self, file: &SourceFile, timestamp_ms: u64) -> Result<(), SinkError> {
        self.end().await;
        let registry = Registry::new(BusConfig::default());
        let publisher = registry
            .publish("source", Peer::new("source", None))
            .map_err(|e| self.failed(e.to_string()))?;
        let mut ingest = RtmpIngest::new(publisher);
        ingest
            .video(file.video_sequence_header(), timestamp_ms as u32)
            .map_err(|e| self.failed(e.to_string()))?;
        let reader = registry
            .subscribe("source", Peer::new("webrtc", None))
            .map_err(|e| self.failed(e.to_string()))?;
        let engine_stop = CancellationToken::new();
        let settings = WebRtcSettings::client([0, 0, 0, 0].into());
        let engine = crate::webrtc::bind(settings.udp)
            .map_err(|e| e.to_string())
            .and_then(|socket| {
                crate::webrtc::start(socket, settings, engine_stop.clone())
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| self.failed(format!("WebRTC engine: {e}")))?;
        let posted = Instant::now();
        let (id, resource) = match engine
            .client(&self.http, &self.url, ClientRole::Push(reader))
            .await
        {
            Ok(opened) => opened,
            Err(e) => {
                engine_stop.cancel();
                return Err(match e {
                    // `client` says "POST URL: STATUS BODY" for an answer other than 201.
                    SessionError::BadRequest(reason) if is_refusal(&reason) => SinkError::Refused {
                        target: self.url.clone(),
                        reason,
                    },
                    e => self.failed(e.to_string()),
                });
            }
        };
        self.session = Some(Session {
            engine,
            engine_stop,
            id,
            resource,
            ingest,
            _registry: registry,
            posted,
            connected: false,
            disconnected_since: None,
            next_check: posted,
        });
        Ok(())
    }

    fn established(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.connected)
    }

    async fn send(
        &mut self,
        file: &SourceFile,
        frame: &FileFrame,
        timestamp_ms: u64,
    ) -> Result<(), SinkError> {
        if frame.kind != MediaKind::Video {
            if !self.told_audio && self.established() {
                self.told_audio = true;
                tracing::info!("over WHIP the source sends video only: the file's audio is AAC, and WebRTC carries Opus");
            }
            return Ok(());
        }
        let Some(s) = &mut self.session else {
            return Err(self.failed("not connected"));
        };
        // The engine's feed takes the frame from the bus at once and packetizes it.
        let body = file.video_body(frame, &stamp_now(*b"whip"));
        let published = s.ingest.video(body, timestamp_ms as u32);
        published.map_err(|e| self.failed(e.to_string()))
    }

    async fn wait_until(&mut self, until: Instant) -> Result<(), SinkError> {
        loop {
            let Some(s) = &self.session else {
                return Err(self.failed("not connected"));
            };
            let next_check = s.next_check;
            if next_check >= until {
                tokio::time::sleep_until(until).await;
                return Ok(());
            }
            tokio::time::sleep_until(next_check).await;
            self.check().await?;
        }
    }

    async fn close(&mut self) {
        self.end().await;
    }
}

/// A WHIP endpoint's 4xx answer: the publish is refused, not the network at fault.
fn is_refusal(reason: &str) -> bool {
    reason
        .split_once(": ")
        .map(|(_, rest)| rest.starts_with('4'))
        .unwrap_or(false)
}
