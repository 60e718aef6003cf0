//! How sessions run: their connects spread over a ramp, all ending at one deadline, and what the
//! clients share (the uninhabited result of a session that only ends on error, the read
//! helper, the runner of HLS and MSE sessions).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::report::{
    keep_earliest, HttpLoadReport, SessionStats, Tally, MODE_LL_HLS, MODE_PLAIN_HLS,
};

/// Longest gap between two session starts.
pub const RAMP_STEP: Duration = Duration::from_millis(2);
/// Longest ramp: with many sessions the gap shrinks so that all connects start within this time.
pub const RAMP_MAX: Duration = Duration::from_secs(1);
/// Size of the buffer each session reads into (reused for the whole session).
pub(super) const READ_BUFFER: usize = 64 * 1024;

/// Gap between two session starts for a run of `sessions`.
pub(super) fn ramp_step(sessions: usize) -> Duration {
    let per_session = u32::try_from(sessions.max(1)).unwrap_or(u32::MAX);
    RAMP_STEP.min(RAMP_MAX / per_session)
}

/// Uninhabited: a session (the RTMP client's `play`, an HLS or MSE session) only returns on
/// error, or is cancelled at the deadline.
pub(super) enum Never {}

/// Reads at least one byte; end of stream is an error.
pub(super) async fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize> {
    let n = stream.read(buf).await.context("read")?;
    if n == 0 {
        bail!("connection closed by the server");
    }
    Ok(n)
}

/// Runs `sessions` sessions of `play` over a ramp, all until `duration` after the call.
pub(super) async fn run_http_sessions<F, Fut>(
    sessions: usize,
    duration: Duration,
    mut play: F,
) -> HttpLoadReport
where
    F: FnMut(usize, Arc<SessionStats>) -> Fut,
    Fut: Future<Output = Result<Never>> + Send + 'static,
{
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let deadline = start + duration;
    let step = ramp_step(sessions);

    let mut tasks = Vec::with_capacity(sessions);
    let mut at = start;
    for index in 0..sessions {
        let stats = Arc::new(SessionStats::default());
        let session = play(index, stats.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let result = tokio::time::timeout_at(deadline, session).await;
            let playing = stats.playing.load(Ordering::Relaxed);
            let error = match result {
                Err(_elapsed) if playing => None,
                Err(_elapsed) => Some(match &*stats.first_request_error.lock().unwrap() {
                    Some((_, e)) => format!("no media before the end of the run; first error: {e}"),
                    None => "no media before the end of the run".to_string(),
                }),
                Ok(Err(e)) => Some(format!("{e:#}")),
                Ok(Ok(never)) => match never {},
            };
            (stats, error.map(|message| (Instant::now(), message)))
        });
        tasks.push(task);
        at += step;
    }

    let mut tally = Tally::new();
    let mut report = HttpLoadReport::default();
    let mut first_request_error: Option<(Instant, String)> = None;
    for task in tasks {
        let (bytes, error) = match task.await {
            Ok((stats, error)) => {
                report.playlist_requests += SessionStats::get(&stats.playlist_requests);
                report.media_requests += SessionStats::get(&stats.media_requests);
                report.request_errors += SessionStats::get(&stats.request_errors);
                report.connects += SessionStats::get(&stats.connects);
                report.abandoned_hints += SessionStats::get(&stats.abandoned_hints);
                match stats.mode.load(Ordering::Relaxed) {
                    MODE_LL_HLS => report.ll_hls_sessions += 1,
                    MODE_PLAIN_HLS => report.plain_hls_sessions += 1,
                    _ => {}
                }
                if let Some(error) = stats.first_request_error.lock().unwrap().take() {
                    keep_earliest(&mut first_request_error, error);
                }
                (SessionStats::get(&stats.media_bytes), error)
            }
            Err(e) => (0, Some((Instant::now(), format!("session task: {e}")))),
        };
        tally.add(bytes, error);
    }
    report.totals = tally.into_report(sessions, started);
    report.first_request_error = first_request_error.map(|(_, message)| message);
    report.mode = match (report.ll_hls_sessions, report.plain_hls_sessions) {
        (0, 0) => "unknown",
        (_, 0) => "ll-hls",
        (0, _) => "hls",
        _ => "mixed",
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_stays_short() {
        assert_eq!(ramp_step(10), RAMP_STEP);
        assert!(ramp_step(10_000) * 10_000 <= RAMP_MAX);
        assert_eq!(ramp_step(0), RAMP_STEP);
    }
}
