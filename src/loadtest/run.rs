//! The API that `switchyard loadtest` calls: [`run`] picks the load generator by the URL's
//! scheme and returns its report as a [`LoadReport`].

use std::time::Duration;

use anyhow::{bail, Result};

use super::hls::hls_load;
use super::mse::mse_load;
use super::report::{HttpLoadReport, RtmpLoadReport, WebRtcLoadReport};
use super::rtmp::rtmp_play_load;
use super::webrtc::whep_load;

/// Outcome of a [`run`]: the report of the protocol the URL named. Serialises to the report's
/// own JSON object (no wrapper), so an RTMP run prints exactly an [`RtmpLoadReport`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum LoadReport {
    Rtmp(RtmpLoadReport),
    /// HLS (`http://`) or MSE (`ws://`).
    Http(HttpLoadReport),
    /// WHEP (`http://.../whep/{name}`).
    WebRtc(WebRtcLoadReport),
}

/// Runs the load generator that the URL's scheme selects:
///
/// - `rtmp://HOST[:PORT]/app/key`: RTMP players ([`rtmp_play_load`]);
/// - `http://HOST[:PORT]/.../index.m3u8`: HLS players ([`hls_load`]); LL-HLS when the playlist
///   has `EXT-X-PART-INF`, plain HLS otherwise, or plain HLS always with a `#plain` fragment
///   (fragments are never sent to the server);
/// - `ws://HOST[:PORT]/mse/{name}`: WebSocket MSE players ([`mse_load`]);
/// - `http(s)://HOST[:PORT]/whep/{name}`: WebRTC players ([`whep_load`]).
///
/// # Errors
///
/// An unsupported scheme (`https://` and `wss://` included: plain TCP only) or a URL that
/// cannot be parsed; per-session errors are counted in the report.
pub async fn run(url: &str, sessions: usize, duration: Duration) -> Result<LoadReport> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("rtmp") => Ok(LoadReport::Rtmp(
            rtmp_play_load(url, sessions, duration).await?,
        )),
        Some("http" | "https") if url.contains("/whep/") => Ok(LoadReport::WebRtc(
            whep_load(url, sessions, duration).await?,
        )),
        Some("http") => Ok(LoadReport::Http(hls_load(url, sessions, duration).await?)),
        Some("ws") => Ok(LoadReport::Http(mse_load(url, sessions, duration).await?)),
        Some(scheme @ ("https" | "wss" | "rtmps")) => {
            bail!("{scheme}:// is not supported: the load generator speaks plain TCP only")
        }
        _ => bail!("unsupported URL {url}: expected rtmp://, http://...m3u8 or ws://"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dispatches_by_scheme() {
        for bad in ["https://h/x.m3u8", "wss://h/mse/x", "ftp://h/x", "nothing"] {
            assert!(
                run(bad, 1, Duration::from_millis(10)).await.is_err(),
                "{bad}"
            );
        }
        // Nothing listens on port 1: every session fails at connect.
        for url in [
            "http://127.0.0.1:1/hls/x/index.m3u8",
            "ws://127.0.0.1:1/mse/x",
        ] {
            let LoadReport::Http(report) = run(url, 2, Duration::from_millis(200)).await.unwrap()
            else {
                panic!("not an HTTP report");
            };
            assert_eq!(
                (
                    report.totals.sessions,
                    report.totals.playing,
                    report.totals.failed
                ),
                (2, 0, 2)
            );
            assert!(
                report.totals.first_error.unwrap().contains("connect"),
                "{url}"
            );
        }
        let LoadReport::Rtmp(report) =
            run("rtmp://127.0.0.1:1/live/x", 1, Duration::from_millis(200))
                .await
                .unwrap()
        else {
            panic!("not an RTMP report");
        };
        assert_eq!(report.failed, 1);
    }
}
