//! WHEP load: many WebRTC viewers of one stream, each measuring what it receives, as light as a
//! WebRTC client can be.
//!
//! Each session is a WHEP client of this crate's own engine (`crate::webrtc`): it offers
//! receive-only video + Opus, POSTs the offer, completes ICE (controlling) and DTLS (client),
//! and from then on the engine decrypts its SRTP on its fast path and measures it without
//! decoding (`ClientRole::Count`): packets, bytes, loss and jitter (RFC 3550), frames and
//! keyframes (depacketized, not decoded), freezes, probe-stamp latency; it sends NACKs and PLIs
//! like a real receiver. [`ProbeSink`] puts all of it into the session's [`SessionProbe`] and
//! [`FrameMeter`]. Every session has its own engine and UDP socket: a WHEP server tells its
//! peers apart by address, so sessions to one server must not share a port. When the session
//! ends (its future dropped), its engine stops and its WHEP resource is `DELETE`d.

use crate::webrtc::{ClientCounters, ClientRole, MediaSink, ReceivedFrame, WebRtcSettings};
use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::probe::{FrameMeter, FreezeRule, SeenFrame, SessionProbe};
use super::session::Never;

/// How long the `DELETE` of a session's WHEP resource may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// A WHEP endpoint to load, parsed once per run.
pub(super) struct WhepTarget {
    url: String,
    http: reqwest::Client,
}

impl WhepTarget {
    /// `http(s)://HOST[:PORT]/.../whep/NAME`.
    pub(super) fn parse(url: &str) -> Result<Self> {
        let parsed = reqwest::Url::parse(url)?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https") && parsed.path().contains("/whep/"),
            "a WHEP URL is http(s)://HOST/whep/NAME"
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(WhepTarget {
            url: url.to_string(),
            http,
        })
    }
}

/// One WHEP session: connects, measures into `probe`, and runs until an error (returned: the
/// connection failed or closed, with the reason) or until the future is dropped at the end of
/// the run, which stops its engine and `DELETE`s the remote session.
pub(super) async fn whep_session(
    target: Arc<WhepTarget>,
    probe: Arc<SessionProbe>,
) -> Result<Never> {
    let socket = crate::webrtc::bind(([0, 0, 0, 0], 0).into())?;
    let settings = WebRtcSettings::client([0, 0, 0, 0].into());
    let mut guard = SessionGuard {
        stop: CancellationToken::new(),
        http: target.http.clone(),
        remote: None,
    };
    let engine = crate::webrtc::start(socket, settings, guard.stop.clone())?;
    let counters = Arc::new(ClientCounters::default());
    let sink = ProbeSink::new(probe);
    let role = ClientRole::Count(counters.clone(), Box::new(sink));
    let (_, remote) = engine.client(&target.http, &target.url, role).await?;
    guard.remote = remote;
    counters.ended.notified().await;
    let reason = counters.close_reason.lock().unwrap().clone();
    bail!(
        "{}",
        reason.unwrap_or_else(|| "the session ended".to_string())
    )
}

/// Stops a session's engine and deletes its WHEP resource when the session ends.
struct SessionGuard {
    stop: CancellationToken,
    http: reqwest::Client,
    remote: Option<String>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if let (Some(remote), Ok(runtime)) =
            (self.remote.take(), tokio::runtime::Handle::try_current())
        {
            let http = self.http.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(DELETE_TIMEOUT, http.delete(remote).send()).await;
            });
        }
    }
}

/// What the engine measures for a session, into its probe and frame meter.
struct ProbeSink {
    probe: Arc<SessionProbe>,
    meter: FrameMeter,
    lost: u64,
    jitter: Duration,
}

impl ProbeSink {
    fn new(probe: Arc<SessionProbe>) -> Self {
        ProbeSink {
            meter: FrameMeter::new(probe.clone(), "whep", FreezeRule::Arrival, false),
            probe,
            lost: 0,
            jitter: Duration::ZERO,
        }
    }
}

impl MediaSink for ProbeSink {
    fn connected(&mut self) {
        self.probe.connected();
    }

    fn packet(&mut self, _video: bool, bytes: usize) {
        self.probe.add_packets(1);
        self.probe.add_bytes(bytes as u64);
    }

    fn frame(&mut self, frame: &ReceivedFrame) {
        self.meter.frame(SeenFrame {
            arrived: frame.arrived,
            media_time: Some(Duration::from_micros(frame.rtp_time * 100 / 9)),
            keyframe: frame.keyframe,
            stamp: frame.stamp,
        });
    }

    fn stats(&mut self, lost: u64, jitter: Duration) {
        if lost != self.lost {
            self.lost = lost;
            self.probe.set_packets_lost(lost);
        }
        if jitter != self.jitter {
            self.jitter = jitter;
            self.probe.set_jitter(jitter);
        }
    }

    fn feedback(&mut self, nacks: u64, plis: u64) {
        if nacks > 0 {
            self.probe.add_nacks_sent(nacks);
        }
        if plis > 0 {
            self.probe.add_plis_sent(plis);
        }
    }
}
