//! The handle to the engine ([`WebRtc`]) that the HTTP layer, pulls, pushes and the load
//! generator call, and what crosses it: the commands it sends the engine's loop, the session
//! roles, and the replies and errors it hands back.

use super::client::ClientRole;
use super::settings::{IceServer, WebRtcSettings};
use super::stats::EngineStats;
use crate::bus::{Publisher, Reader};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Why a session could not be opened or changed; the HTTP layer maps these to statuses.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The offer or fragment is malformed or lacks something required (400).
    #[error("{0}")]
    BadRequest(String),
    /// The offer is well formed but asks for something we cannot do (406 / 422).
    #[error("{0}")]
    Unsupported(String),
    #[error("session not found")]
    NotFound,
    /// `If-Match` did not match the session's ETag (412).
    #[error("the session's ETag is {current}, not the one in If-Match")]
    PreconditionFailed { current: String },
    #[error("the WebRTC engine is not running")]
    Stopped,
    #[error("WebRTC engine error: {0}")]
    Internal(String),
}

/// What a new session tells its client.
#[derive(Debug)]
pub struct Opened {
    pub session: String,
    pub answer: String,
    pub etag: String,
}

/// One session, for the API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: String,
    /// `publish` (WHIP) or `play` (WHEP).
    pub role: &'static str,
    pub stream: String,
    pub state: String,
    #[schema(value_type = Option<String>)]
    pub remote: Option<SocketAddr>,
    pub age_secs: u64,
    /// The video codec a viewer's session negotiated (`play`, with video).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<&'static str>,
    /// Why audio or video is not sent, when it is not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A closed session (state `closed`): why it ended ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<String>,
    /// ... and when, in milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at_unix_ms: Option<u64>,
}

/// The two sides a session can take when the peer makes the offer.
pub enum Role {
    /// WHIP: the peer publishes into this bus publisher.
    Publish(Publisher),
    /// WHEP: the peer plays this bus reader's stream.
    Play(Reader),
}

pub(crate) enum Command {
    Open {
        role: Role,
        offer: String,
        permit: Option<crate::limits::SessionPermit>,
        reply: oneshot::Sender<Result<Opened, SessionError>>,
    },
    /// Starts a client session: our offer, to be sent to a WHEP endpoint.
    Offer {
        role: ClientRole,
        reply: oneshot::Sender<Result<(String, String), SessionError>>,
    },
    /// The endpoint's answer to a client session's offer.
    Answer {
        session: String,
        answer: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Trickle {
        session: String,
        if_match: Option<String>,
        fragment: String,
        reply: oneshot::Sender<Result<String, SessionError>>,
    },
    Close {
        session: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    List {
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
    /// Sessions closed lately, newest first.
    ListClosed {
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
}

/// Handle to the engine; cheap to clone.
#[derive(Clone)]
pub struct WebRtc {
    /// One loop per UDP socket (`webrtc.threads`; one for client engines).
    pub(super) shards: Arc<[Shard]>,
    /// Where the next session goes: loops take new sessions in turn.
    pub(super) next_shard: Arc<AtomicUsize>,
    pub(super) settings: Arc<WebRtcSettings>,
    pub(super) stats: Arc<EngineStats>,
}

/// One engine loop: its commands and its socket's address.
pub(super) struct Shard {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) local_addr: SocketAddr,
}

impl WebRtc {
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The first loop's bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shards[0].local_addr
    }

    /// Every loop's bound UDP address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.local_addr).collect()
    }

    pub fn ice_servers(&self) -> &[IceServer] {
        &self.settings.ice_servers
    }

    /// The loop that takes the next new session.
    fn next(&self) -> &Shard {
        let n = self.next_shard.fetch_add(1, Ordering::Relaxed);
        &self.shards[n % self.shards.len()]
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        Self::call_on(self.next(), make).await
    }

    async fn call_on<T>(
        shard: &Shard,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (reply, rx) = oneshot::channel();
        shard
            .commands
            .send(make(reply))
            .await
            .map_err(|_| SessionError::Stopped)?;
        rx.await.map_err(|_| SessionError::Stopped)
    }

    /// A command about an existing session, to the loop that has it (each loop is asked in
    /// turn until one knows the session).
    async fn call_session<T>(
        &self,
        make: impl Fn(oneshot::Sender<Result<T, SessionError>>) -> Command,
    ) -> Result<T, SessionError> {
        for shard in self.shards.iter() {
            match Self::call_on(shard, &make).await? {
                Err(SessionError::NotFound) => continue,
                done => return done,
            }
        }
        Err(SessionError::NotFound)
    }

    /// What every loop answers, one list.
    async fn call_all<T>(&self, make: impl Fn(oneshot::Sender<Vec<T>>) -> Command) -> Vec<T> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(Self::call_on(shard, &make).await.unwrap_or_default());
        }
        all
    }

    /// Answers a WHIP or WHEP offer. `permit` (the client's place in
    /// `limits.max_sessions_per_ip`) is held as long as the session lives.
    pub async fn open(
        &self,
        role: Role,
        offer: String,
        permit: Option<crate::limits::SessionPermit>,
    ) -> Result<Opened, SessionError> {
        self.call(|reply| Command::Open {
            role,
            offer,
            permit,
            reply,
        })
        .await?
    }

    /// Adds trickled candidates (an `application/trickle-ice-sdpfrag` body, RFC 8840);
    /// returns the session's ETag.
    pub async fn trickle(
        &self,
        session: String,
        if_match: Option<String>,
        fragment: String,
    ) -> Result<String, SessionError> {
        self.call_session(|reply| Command::Trickle {
            session: session.clone(),
            if_match: if_match.clone(),
            fragment: fragment.clone(),
            reply,
        })
        .await
    }

    /// Opens a client session with `url` (a WHEP endpoint for `Count`/`Pull`, a WHIP endpoint
    /// for `Push`): offers, POSTs the offer, applies the answer. Returns the local session id
    /// and the remote session URL (for `DELETE`).
    pub async fn client(
        &self,
        http: &reqwest::Client,
        url: &str,
        role: ClientRole,
    ) -> Result<(String, Option<String>), SessionError> {
        let (session, offer) = self.offer(role).await?;
        let response = http
            .post(url)
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await;
        let failed = |e: String| async {
            let _ = self.close(session.clone()).await;
            Err(SessionError::BadRequest(e))
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return failed(format!("POST {url}: {e}")).await,
        };
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| reqwest::Url::parse(url).ok()?.join(l).ok())
            .map(|u| u.to_string());
        let body = response.text().await.unwrap_or_default();
        if status.as_u16() != 201 {
            return failed(format!("POST {url}: {status} {}", body.trim())).await;
        }
        if let Err(e) = self.answer(session.clone(), body).await {
            return failed(format!("the answer from {url} was refused: {e}")).await;
        }
        Ok((session, location))
    }

    /// Starts a client session: returns its id and our offer (for a caller that does the
    /// HTTP exchange itself, like the WHEP pull input).
    pub async fn offer(&self, role: ClientRole) -> Result<(String, String), SessionError> {
        self.call(|reply| Command::Offer { role, reply }).await?
    }

    /// Applies the remote's answer to a client session's offer.
    pub async fn answer(&self, session: String, answer: String) -> Result<(), SessionError> {
        self.call_session(|reply| Command::Answer {
            session: session.clone(),
            answer: answer.clone(),
            reply,
        })
        .await
    }

    pub async fn close(&self, session: String) -> Result<(), SessionError> {
        self.call_session(|reply| Command::Close {
            session: session.clone(),
            reply,
        })
        .await
    }

    pub async fn sessions(&self) -> Vec<SessionInfo> {
        self.call_all(|reply| Command::List { reply }).await
    }

    /// Sessions closed in the last few minutes (the last 100 at most), newest first, each with
    /// state `closed` and the reason.
    pub async fn closed_sessions(&self) -> Vec<SessionInfo> {
        let mut closed = self.call_all(|reply| Command::ListClosed { reply }).await;
        closed.sort_by_key(|s| std::cmp::Reverse(s.closed_at_unix_ms));
        closed
    }
}
