//! RTMP play load generator (being written).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RtmpLoadReport {}
pub async fn rtmp_play_load(
    _url: &str,
    _sessions: usize,
    _duration: std::time::Duration,
) -> anyhow::Result<RtmpLoadReport> {
    anyhow::bail!("not yet")
}
