//! WHEP pull: this server as a WHEP client (RFC 9725) of another server, publishing what it
//! receives under a local stream name.
//!
//! One attempt ([`run`]): claim the local name, start a WebRTC engine of its own (the same
//! loop as the server's, as a task, on an ephemeral UDP port), have it make a receive-only
//! offer (its client role), `POST` it as `application/sdp` with an optional
//! `Authorization: Bearer` token (RFC 9725 4.1, 4.5) and the chain of nodes the pull came
//! through ([`VIA_HEADER`], which lets origins in a loop refuse at once), apply the
//! `201 Created` answer and keep the `Location` of the session resource. Media then goes into
//! the bus publisher exactly as a WHIP publisher's does ([`crate::inputs::whip`]).
//!
//! Why not the server's own socket: every session between two Switchyard nodes would then
//! share one 5-tuple (one UDP socket on each side), and DTLS records carry nothing that tells
//! sessions apart, so a second pull from the same origin could not connect. A port per pull
//! gives each its own 5-tuple; pulls are few next to viewers, whose hot path stays on the one
//! socket.
//!
//! The attempt ends with a [`PullError`] when the session ends (ICE/DTLS failure, the remote
//! closes it, the engine stops) or no RTP arrives for the media timeout (an origin whose
//! publisher left closes our session, but a vanished host only goes quiet). Whatever ends
//! it, the local session is closed and the remote resource is deleted with `DELETE` (RFC 9725
//! 4.2), from a short task of its own when the attempt is dropped mid-way. A publisher that
//! had tracks goes back to the sink ([`PullSink::hold`]), so the next attempt can continue
//! the same stream and its readers stay attached through the gap.

use crate::bus::{BusError, Publisher};
use crate::inputs::pull::{PullError, PullSink};
use crate::webrtc::{ClientCounters, ClientRole, SessionError, WebRtc, WebRtcSettings};
use reqwest::{StatusCode, Url};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The request header of a pull's WHEP `POST` that lists, oldest first, the ids of the nodes
/// the request came through (`Switchyard-Via: a1b2c3d4, edge-2`; our own extension, in the
/// spirit of HTTP's `Via`, RFC 9110 7.6.3). A node that finds its own id in it is asked, through
/// a loop of origins, for a stream it is itself looking for: it answers `508 Loop Detected`
/// at once instead of pulling again.
pub const VIA_HEADER: &str = "switchyard-via";

/// The longest chain a node accepts (a longer one is refused like a loop).
pub const MAX_VIA: usize = 16;

/// The node ids of `Switchyard-Via` header values (comma-separated, in order).
pub fn parse_via<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// A parsed `http(s)://host[:port]/path` WHEP endpoint and its optional bearer token.
#[derive(Clone)]
pub struct WhepSource {
    url: Url,
    token: Option<String>,
    /// The `Switchyard-Via` value sent with the POST.
    via: Option<String>,
}

impl WhepSource {
    /// Checks the URL; credentials belong in the token, not in the URL (they would be shown).
    pub fn parse(source: &str, token: Option<String>) -> Result<Self, String> {
        let shown = crate::inputs::pull::redact(source);
        let url = Url::parse(source).map_err(|e| format!("malformed source URL {shown:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("not a WHEP URL (http or https): {shown:?}"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("malformed source URL {shown:?}: no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "credentials in a WHEP URL are not used: give a bearer token in \"token\" ({shown:?})"
            ));
        }
        let token = token.filter(|t| !t.is_empty());
        if let Some(t) = &token {
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("the token must be printable ASCII without spaces".to_string());
            }
        }
        Ok(WhepSource {
            url,
            token,
            via: None,
        })
    }

    /// The same source, its POST listing `chain` (ending with this node's id) in
    /// [`VIA_HEADER`].
    pub fn with_via(mut self, chain: &[String]) -> Self {
        self.via = (!chain.is_empty()).then(|| chain.join(", "));
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// What WHEP pulls share: how to set up their engines, and an HTTP client.
#[derive(Clone)]
pub struct WhepClient {
    settings: WebRtcSettings,
    http: reqwest::Client,
}

impl WhepClient {
    /// `settings`: the server's WebRTC settings (candidate addresses); each attempt binds an
    /// ephemeral port on the same address.
    pub fn new(settings: WebRtcSettings, connect_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            // One POST per attempt and one DELETE per session: no idle connections (and their
            // tasks) kept around between them.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        WhepClient {
            settings: WebRtcSettings {
                udp: SocketAddr::new(settings.udp.ip(), 0),
                own_thread: false,
                ..settings
            },
            http,
        }
    }

    /// An engine for one attempt, stopped when `stop` is cancelled.
    fn engine(&self, stop: CancellationToken) -> Result<WebRtc, String> {
        let socket = crate::webrtc::bind(self.settings.udp).map_err(|e| e.to_string())?;
        crate::webrtc::start(socket, self.settings.clone(), stop).map_err(|e| e.to_string())
    }
}

/// Timeouts of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct WhepSettings {
    /// The POST, ICE/DTLS and the first keyframe must all come within this time.
    pub connect_timeout: Duration,
    /// A running pull that receives no RTP for this long reconnects.
    pub media_timeout: Duration,
}

/// How an attempt saw the remote: for the pull API's statistics.
pub type PullCounters = Arc<ClientCounters>;

/// Closes the local session and deletes the remote one when the attempt ends, however it
/// ends (including a dropped future: a cancelled pull).
struct SessionGuard {
    webrtc: WebRtc,
    http: reqwest::Client,
    session: String,
    location: Option<Url>,
    token: Option<String>,
}

impl SessionGuard {
    /// Closes the local session now (the engine hands the publisher back on closing); the
    /// remote `DELETE` still goes from the drop.
    async fn close(&mut self) {
        if !self.session.is_empty() {
            let _ = self.webrtc.close(std::mem::take(&mut self.session)).await;
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let webrtc = self.webrtc.clone();
        let http = self.http.clone();
        let session = std::mem::take(&mut self.session);
        let location = self.location.take();
        let token = self.token.take();
        runtime.spawn(async move {
            if !session.is_empty() {
                let _ = webrtc.close(session).await;
            }
            if let Some(location) = location {
                let mut delete = http.delete(location.clone());
                if let Some(token) = &token {
                    delete = delete.bearer_auth(token);
                }
                match tokio::time::timeout(Duration::from_secs(3), delete.send()).await {
                    Ok(Ok(r)) => {
                        tracing::debug!(%location, status = %r.status(), "WHEP pull: remote session deleted")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%location, error = %e, "WHEP pull: DELETE failed")
                    }
                    Err(_) => tracing::debug!(%location, "WHEP pull: DELETE timed out"),
                }
            }
        });
    }
}

/// Statuses of the POST that retrying cannot fix: the token is refused, or the endpoint
/// does not take our offer (RFC 9725 4.2: 4xx other than "not there yet" or "too busy").
fn permanent_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 403 | 405 | 406 | 415 | 422)
}

/// One attempt: connect, publish, run until the session ends. Never returns success: a pull
/// runs until it fails or is cancelled (dropped).
pub async fn run(
    client: &WhepClient,
    source: &WhepSource,
    settings: &WhepSettings,
    sink: &mut dyn PullSink,
) -> PullError {
    let stop = CancellationToken::new();
    // Declared before the session guard, so dropped after it: the session is closed first.
    let _stop_engine = stop.clone().drop_guard();
    let webrtc = match client.engine(stop) {
        Ok(w) => w,
        Err(e) => return PullError::retry(format!("no WebRTC engine for the pull: {e}")),
    };
    let (webrtc, http) = (&webrtc, &client.http);
    let publisher = match sink.publish() {
        Ok(p) => p,
        Err(e @ (BusError::AlreadyPublishing { .. } | BusError::TooManyStreams { .. })) => {
            return PullError::retry(e.to_string())
        }
        Err(e) => return PullError::permanent(e.to_string()),
    };
    let stream = publisher.stream().clone();
    let counters: PullCounters = Arc::default();
    sink.counters(counters.clone());
    let (session_id, offer) = match webrtc
        .offer(ClientRole::Pull(publisher, counters.clone()))
        .await
    {
        Ok(o) => o,
        Err(e @ SessionError::Stopped) => return PullError::retry(e.to_string()),
        Err(e) => return PullError::permanent(format!("cannot make an offer: {e}")),
    };
    let mut guard = SessionGuard {
        webrtc: webrtc.clone(),
        http: http.clone(),
        session: session_id,
        location: None,
        token: source.token.clone(),
    };
    let error = session(
        webrtc, http, source, settings, sink, &mut guard, offer, &stream, &counters,
    )
    .await;
    guard.close().await;
    let publisher: Option<Publisher> = counters.publisher.lock().unwrap().take();
    if let Some(publisher) = publisher.filter(|p| !p.tracks().tracks.is_empty()) {
        sink.hold(publisher);
    }
    error
}

/// The HTTP exchange and the life of the session, until it ends.
#[allow(clippy::too_many_arguments)]
async fn session(
    webrtc: &WebRtc,
    http: &reqwest::Client,
    source: &WhepSource,
    settings: &WhepSettings,
    sink: &mut dyn PullSink,
    guard: &mut SessionGuard,
    offer: String,
    stream: &crate::bus::Stream,
    counters: &ClientCounters,
) -> PullError {
    let url = &source.url;
    let session = guard.session.clone();
    let deadline = Instant::now() + settings.connect_timeout;

    // RFC 9725 4.2: POST the offer, expect 201 with the answer and a Location.
    let mut post = http
        .post(url.clone())
        .header("content-type", "application/sdp")
        .body(offer);
    if let Some(token) = &source.token {
        post = post.bearer_auth(token);
    }
    if let Some(via) = &source.via {
        post = post.header(VIA_HEADER, via);
    }
    let response = match tokio::time::timeout_at(deadline, post.send()).await {
        Err(_) => {
            return PullError::retry(format!(
                "POST {url}: no answer within {} s",
                settings.connect_timeout.as_secs()
            ))
        }
        Ok(Err(e)) => return PullError::retry(format!("POST {url}: {}", error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    guard.location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .and_then(|l| url.join(l).ok());
    let body = match tokio::time::timeout_at(deadline, response.text()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return PullError::retry(format!("POST {url}: reading the answer: {e}")),
        Err(_) => return PullError::retry(format!("POST {url}: the answer did not complete")),
    };
    if status != StatusCode::CREATED {
        let detail = crate::inputs::pull::one_line(body.trim(), 200);
        let message = format!("POST {url}: {status} {detail}");
        // Not a session: nothing to DELETE.
        guard.location = None;
        return if permanent_status(status) {
            PullError::permanent(message)
        } else {
            PullError::retry(message)
        };
    }
    if let Err(e) = webrtc.answer(session.clone(), body).await {
        return match e {
            SessionError::Stopped => PullError::retry(e.to_string()),
            e => PullError::permanent(format!("the answer from {url} is not usable SDP: {e}")),
        };
    }

    // ICE, DTLS, then the first keyframe (the tracks are announced with it; a held
    // publisher has the previous session's tracks until then).
    let mut tracks = stream.tracks();
    let before = tracks.borrow().generation;
    loop {
        if counters.closed.load(Ordering::Relaxed) {
            return PullError::retry(format!(
                "the WebRTC session ended while connecting: {}",
                close_reason(counters)
            ));
        }
        let now = tracks.borrow_and_update().clone();
        if now.generation != before && !now.tracks.is_empty() {
            break;
        }
        let wait = tokio::time::sleep(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let what = if counters.connected.load(Ordering::Relaxed) {
                    "connected, but no media (no keyframe)"
                } else {
                    "no ICE/DTLS connection"
                };
                return PullError::retry(format!("{url}: {what} within {} s", settings.connect_timeout.as_secs()));
            }
            _ = counters.ended.notified() => {}
            _ = tracks.changed() => {}
            _ = wait => {}
        }
    }
    sink.running();

    // Running: until the session ends or the media stops.
    let mut packets = counters.packets.load(Ordering::Relaxed);
    let mut last_media = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = counters.ended.notified() => {}
            _ = tick.tick() => {}
        }
        if counters.closed.load(Ordering::Relaxed) {
            return PullError::retry(format!(
                "the WebRTC session ended: {}",
                close_reason(counters)
            ));
        }
        let now_packets = counters.packets.load(Ordering::Relaxed);
        if now_packets != packets {
            packets = now_packets;
            last_media = Instant::now();
        } else if last_media.elapsed() >= settings.media_timeout {
            return PullError::retry(format!(
                "no media from {url} for {} s",
                settings.media_timeout.as_secs()
            ));
        }
    }
}

fn close_reason(counters: &ClientCounters) -> String {
    counters
        .close_reason
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| "closed".to_string())
}

/// reqwest's error with its causes ("error sending request" alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_checked() {
        assert!(WhepSource::parse("http://10.0.0.1:8080/whep/live/a", None).is_ok());
        assert!(WhepSource::parse("https://cdn.example/whep/x", Some("t0k".into())).is_ok());
        let e = WhepSource::parse("http://", None).err().unwrap();
        assert!(e.contains("malformed"), "{e}");
        let e = WhepSource::parse("http://u:secret@h/whep/x", None)
            .err()
            .unwrap();
        assert!(!e.contains("secret") && e.contains("token"), "{e}");
        assert!(WhepSource::parse("http://h/whep/x", Some("a b".into())).is_err());
    }

    #[test]
    fn via_chains_are_read_from_every_header_line() {
        assert_eq!(
            parse_via(["a1, edge-2", " ,c.3 "]),
            vec!["a1", "edge-2", "c.3"]
        );
        assert!(parse_via([""]).is_empty());
        let source = WhepSource::parse("http://h/whep/x", None).unwrap();
        assert_eq!(source.clone().with_via(&[]).via, None);
        let chain = ["a".to_string(), "b".to_string()];
        assert_eq!(source.with_via(&chain).via.as_deref(), Some("a, b"));
    }

    #[test]
    fn refusals_that_retrying_cannot_fix() {
        assert!(permanent_status(StatusCode::UNAUTHORIZED));
        assert!(permanent_status(StatusCode::UNPROCESSABLE_ENTITY));
        assert!(
            !permanent_status(StatusCode::NOT_FOUND),
            "may be published later"
        );
        assert!(!permanent_status(StatusCode::SERVICE_UNAVAILABLE));
    }
}
