//! WHEP load: many WebRTC viewers of one stream, as light as a WebRTC client can be.
//!
//! Each session is a WHEP client of this crate's own engine (`crate::webrtc`): it offers
//! receive-only H.264 + Opus, POSTs the offer, completes ICE (controlling) and DTLS (client),
//! and from then on counts the SRTP packets it receives without decrypting or decoding them.
//! Every session has its own engine and UDP socket: a WHEP server tells its peers apart by
//! address, so sessions to one server must not share a port. The session is closed with a
//! `DELETE` of its WHEP resource at the end.

use crate::webrtc::{ClientCounters, ClientRole, WebRtcSettings};
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::report::{keep_earliest, Tally, WebRtcLoadReport};
use super::session::ramp_step;

/// Opens `sessions` WHEP sessions on `url` (`http://HOST:PORT/whep/{name}`), keeps them
/// receiving for `duration`, then closes them and reports.
pub async fn whep_load(url: &str, sessions: usize, duration: Duration) -> Result<WebRtcLoadReport> {
    let parsed = reqwest::Url::parse(url)?;
    anyhow::ensure!(
        parsed.path().contains("/whep/"),
        "a WHEP URL is http(s)://HOST/whep/NAME"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + duration;
    let step = ramp_step(sessions);
    let mut tasks = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let (http, url, stop) = (http.clone(), url.to_string(), stop.clone());
        let at = tokio::time::Instant::now() + step * i as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            session(&http, &url, deadline, stop).await
        }));
    }
    let mut tally = Tally::new();
    let mut packets_total = 0;
    let mut packets_min = u64::MAX;
    for task in tasks {
        let (packets, bytes, error) = match task.await {
            Ok(outcome) => outcome,
            Err(e) => (0, 0, Some((Instant::now(), format!("session task: {e}")))),
        };
        packets_total += packets;
        if error.is_none() {
            packets_min = packets_min.min(packets);
        }
        tally.add(bytes, error);
    }
    stop.cancel();
    let totals = tally.into_report(sessions, started);
    Ok(WebRtcLoadReport {
        protocol: "whep",
        packets_min: if totals.playing > 0 { packets_min } else { 0 },
        totals,
        packets_total,
    })
}

type Outcome = (u64, u64, Option<(Instant, String)>);

async fn session(
    http: &reqwest::Client,
    url: &str,
    deadline: tokio::time::Instant,
    stop: CancellationToken,
) -> Outcome {
    let failed = |e: String| (0, 0, Some((Instant::now(), e)));
    let socket = match crate::webrtc::bind(([0, 0, 0, 0], 0).into()) {
        Ok(s) => s,
        Err(e) => return failed(e.to_string()),
    };
    let settings = WebRtcSettings::client([0, 0, 0, 0].into());
    let engine_stop = stop.child_token();
    let engine = match crate::webrtc::start(socket, settings, engine_stop.clone()) {
        Ok(e) => e,
        Err(e) => return failed(e.to_string()),
    };
    let counters = Arc::new(ClientCounters::default());
    let remote = match engine
        .client(http, url, ClientRole::Count(counters.clone()))
        .await
    {
        Ok((_, remote)) => remote,
        Err(e) => return failed(e.to_string()),
    };
    tokio::time::sleep_until(deadline).await;
    if let Some(remote) = remote {
        let _ = http.delete(remote).send().await;
    }
    engine_stop.cancel();
    let packets = counters.packets.load(Ordering::Relaxed);
    let bytes = counters.bytes.load(Ordering::Relaxed);
    let mut error = None;
    if !counters.connected.load(Ordering::Relaxed) {
        keep_earliest(
            &mut error,
            (Instant::now(), "never connected (ICE/DTLS)".to_string()),
        );
    } else if counters.closed.load(Ordering::Relaxed) {
        keep_earliest(
            &mut error,
            (
                Instant::now(),
                "the connection closed before the end".to_string(),
            ),
        );
    } else if packets == 0 {
        keep_earliest(&mut error, (Instant::now(), "no RTP received".to_string()));
    }
    (packets, bytes, error)
}
