//! `switchyard source FILE --to URL`: plays a file in a loop, in real time, to a target, as a
//! live source would, and stamps every video frame with the time it is sent (see
//! `switchyard_media::probe_stamp`), so that the load generator can measure end-to-end latency.
//!
//! Frames go out at `start + their time` on the monotonic clock, loop after loop (see
//! [`Pacer`]), so a long run does not drift. A connection starts at a keyframe. When the
//! target drops the connection, the source reconnects with backoff and goes on at the next
//! keyframe, with timestamps that kept growing meanwhile; the first connection, though, must
//! succeed: a target that cannot be reached or refuses the publish is an error.

use super::file::SourceFile;
use super::pace::Pacer;
use super::rtmp::RtmpSink;
use super::sink::{Sink, SinkError};
use super::whip::WhipSink;
use crate::rtmp::client::RtmpUrl;
use std::path::Path;
use std::time::Duration;
use switchyard_media::MediaKind;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Connecting (RTMP: TCP, handshake, connect, publish; WHIP: the POST) must take no longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff between reconnections.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A frame this late is skipped rather than sent, when a connection starts.
const LATE: Duration = Duration::from_millis(200);

/// Where the source sends, from its URL.
#[derive(Debug)]
pub enum Target {
    Rtmp(RtmpUrl),
    Whip(String),
}

impl Target {
    /// `rtmp[s]://HOST[:PORT]/APP/KEY` or `http[s]://HOST[:PORT]/whip/NAME`.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            "rtmp" | "rtmps" => Ok(Target::Rtmp(RtmpUrl::parse(url)?)),
            "http" | "https" => {
                let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
                anyhow::ensure!(
                    parsed.host_str().is_some(),
                    "{url}: no host; a WHIP URL is http(s)://HOST:PORT/whip/NAME"
                );
                Ok(Target::Whip(url.to_string()))
            }
            _ => anyhow::bail!(
                "unsupported URL {url:?}: a source publishes to rtmp://HOST:PORT/APP/KEY, rtmps://... or http(s)://HOST:PORT/whip/NAME (WHIP)"
            ),
        }
    }
}

/// Plays `file` to `url` until `stop` is cancelled or `duration` has passed.
pub async fn run(
    file: &Path,
    url: &str,
    duration: Option<Duration>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let target = Target::parse(url)?;
    let file = SourceFile::load(file)?;
    match target {
        Target::Rtmp(url) => drive(&file, RtmpSink::new(url)?, duration, stop).await?,
        Target::Whip(url) => drive(&file, WhipSink::new(&url), duration, stop).await?,
    }
    Ok(())
}

/// Runs until Ctrl-C or SIGTERM, or `duration`.
pub async fn run_until_signal(
    file: &Path,
    url: &str,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    run(file, url, duration, stop).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The connection's state, as the loop sees it.
enum Link {
    /// Not connected; the next attempt not before this time.
    Down { retry_at: Instant, attempt: u32 },
    /// Connected; `sending` once a keyframe went out on this connection.
    Up { sending: bool },
}

/// Paces the file's frames and keeps a connection to the target.
async fn drive<S: Sink>(
    file: &SourceFile,
    mut sink: S,
    duration: Option<Duration>,
    stop: CancellationToken,
) -> Result<(), SinkError> {
    let start = Instant::now();
    let end = duration.map(|d| start + d);
    let mut pacer = Pacer::default();
    let mut link = Link::Down {
        retry_at: start,
        attempt: 0,
    };
    // Until the first connection is established, a failure ends the run.
    let mut established = false;
    let mut loops_logged = 0;
    let result = loop {
        let (frame, at_ms) = pacer.next(file);
        let due = start + Duration::from_millis(at_ms);
        if end.is_some_and(|end| due >= end) {
            break Ok(());
        }
        let waited = tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            r = async {
                match link {
                    Link::Up { .. } => sink.wait_until(due).await,
                    Link::Down { .. } => {
                        tokio::time::sleep_until(due).await;
                        Ok(())
                    }
                }
            } => r,
        };
        let mut failure = waited.err();
        let is_keyframe = frame.kind == MediaKind::Video && frame.keyframe;
        if let Link::Down { retry_at, attempt } = link {
            if failure.is_none() && is_keyframe && Instant::now() >= retry_at {
                let connect = tokio::time::timeout(CONNECT_TIMEOUT, sink.connect(file, at_ms));
                let connected = tokio::select! {
                    _ = stop.cancelled() => break Ok(()),
                    r = connect => r.unwrap_or_else(|_| Err(SinkError::Failed {
                        target: sink.target(),
                        reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
                    })),
                };
                match connected {
                    Ok(()) => {
                        tracing::info!(target = %sink.target(), "connected");
                        link = Link::Up { sending: false };
                    }
                    Err(e) if !established => break Err(e),
                    Err(e) => {
                        let delay = crate::pulls::backoff(attempt + 1, RETRY_MIN, RETRY_MAX);
                        tracing::warn!(error = %e, retry_in = ?delay, "cannot reconnect");
                        link = Link::Down {
                            retry_at: Instant::now() + delay,
                            attempt: attempt + 1,
                        };
                    }
                }
            }
        }
        if let (None, Link::Up { sending }) = (&failure, &mut link) {
            if !*sending && is_keyframe && Instant::now().duration_since(due) < LATE {
                *sending = true;
            }
            if *sending {
                failure = sink.send(file, frame, at_ms).await.err();
            }
        }
        if let Some(e) = failure {
            if !established {
                break Err(e);
            }
            tracing::warn!(error = %e, "the target dropped the connection; reconnecting");
            sink.close().await;
            link = Link::Down {
                retry_at: Instant::now() + RETRY_MIN,
                attempt: 0,
            };
        }
        if !established && sink.established() {
            established = true;
            tracing::info!(target = %sink.target(), "publishing");
        }
        if pacer.loops() > loops_logged {
            loops_logged = pacer.loops();
            tracing::debug!(loops = loops_logged, "the file starts again");
        }
    };
    sink.close().await;
    result
}
