//! What the clients share: the default ramp, the uninhabited result of a session that only
//! ends on error, the read helper.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

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
