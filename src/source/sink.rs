//! What the source sends to: a connection to a target (RTMP or WHIP), opened, fed frame by
//! frame, watched while the source waits for the next frame, and closed.

use super::file::{FileFrame, SourceFile};
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_media::probe_stamp::ProbeStamp;
use tokio::time::Instant;

/// Why a connection to the target failed or ended.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The target refused the publish (a name in use, a 4xx): the words are the target's.
    #[error("{target} refused the publish: {reason}")]
    Refused { target: String, reason: String },
    /// The target could not be reached, or the connection failed or ended.
    #[error("{target}: {reason}")]
    Failed { target: String, reason: String },
}

/// A connection to a target, one at a time. `connect` opens one (and sends what a player needs
/// before the first frame); after an error the caller connects again.
pub trait Sink {
    /// The target's address, with any stream key hidden, for logs.
    fn target(&self) -> String;

    /// Connects and publishes; `timestamp_ms` is the time of the keyframe that comes next.
    async fn connect(&mut self, file: &SourceFile, timestamp_ms: u64) -> Result<(), SinkError>;

    /// True once the target takes media (RTMP: the publish was accepted; WHIP: ICE and DTLS
    /// are connected).
    fn established(&self) -> bool;

    /// Sends one frame; video is stamped here, as late as the path allows.
    async fn send(
        &mut self,
        file: &SourceFile,
        frame: &FileFrame,
        timestamp_ms: u64,
    ) -> Result<(), SinkError>;

    /// Keeps the connection serviced until `until`; an error if it ended meanwhile.
    async fn wait_until(&mut self, until: Instant) -> Result<(), SinkError>;

    /// Ends the connection politely (WHIP: `DELETE` of the session).
    async fn close(&mut self);
}

/// A stamp of now (the wall clock), for a frame of `source` (`rtmp`, `whip`).
pub fn stamp_now(source: [u8; 4]) -> ProbeStamp {
    let sent_unix_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    ProbeStamp {
        sent_unix_us,
        source,
    }
}
