//! WebSocket MSE output: `ws://HOST/mse/{name}` sends a stream as fMP4 for Media Source
//! Extensions players (W3C Media Source Extensions, ISO BMFF byte stream format).
//!
//! Protocol: a text message `{"mime": "video/mp4; codecs=\"...\""}` (and `"skipped"`: codecs of
//! tracks fMP4 cannot carry), then the init segment as a binary message, then one binary
//! fragment (moof+mdat) per frame. A change of the tracks (another codec, or new parameter
//! sets at another picture size) repeats the text message and the init segment. For VP8 and VP9 (and AV1 without a sequence header in its av1C) the init segment
//! waits for the track's first keyframe, which gives its picture size. Errors are a text message `{"error": "..."}` followed by a close.
//!
//! Each frame's fragment is built once and shared by every MSE client of the stream
//! ([`EncodedSlot::Fmp4Fragment`]). A client that falls behind live by more than
//! `mse.max_lag_ms` (its socket backed up) skips to the next keyframe instead of drifting.

use super::fmp4::{PendingInit, SampleClock};
use crate::bus::{BusFrame, EncodedSlot, Reader, ReaderEvent, TrackSet, TryRecv};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::SinkExt;
use std::sync::Arc;
use std::time::Duration;
use switchyard_fmp4::{Sample, TrackFragment};
use switchyard_media::{MediaKind, Track};
use tokio_util::sync::CancellationToken;

/// Close code for "no such stream" (4000-4999 are the application's, RFC 6455 7.4.2).
const CLOSE_NOT_FOUND: u16 = 4404;
/// Close code for "the stream has all the readers it may have" (`limits.max_readers_per_stream`).
const CLOSE_READER_LIMIT: u16 = 4503;

#[derive(Debug, Clone)]
pub struct MseSettings {
    pub max_lag: Duration,
    pub write_timeout: Duration,
    pub coalesce: Duration,
}

/// Turns one reader's events into MSE messages.
pub struct MseSession {
    reader: Reader,
    max_lag: Duration,
    /// The tracks fMP4 carries, in the init segment's order.
    tracks: Vec<Track>,
    clock: SampleClock,
    waiting_for_keyframe: bool,
    has_video: bool,
    /// The init segment of `tracks` while it waits for a keyframe that gives a picture size,
    /// with the codecs of the tracks left out (for the mime message).
    pending_init: Option<(PendingInit, Vec<&'static str>)>,
}

impl MseSession {
    pub fn new(reader: Reader, max_lag: Duration) -> Self {
        MseSession {
            reader,
            max_lag,
            tracks: Vec::new(),
            clock: SampleClock::default(),
            waiting_for_keyframe: true,
            has_video: false,
            pending_init: None,
        }
    }

    fn on_tracks(&mut self, set: &TrackSet, out: &mut Vec<Message>) {
        let (playable, skipped): (Vec<&Track>, Vec<&Track>) = set
            .tracks
            .iter()
            .partition(|t| switchyard_fmp4::supports(&t.codec));
        let playable: Vec<Track> = playable.into_iter().cloned().collect();
        if playable == self.tracks {
            return;
        }
        self.tracks = playable;
        self.clock.reset();
        self.waiting_for_keyframe = true;
        self.has_video = self.tracks.iter().any(|t| t.kind() == MediaKind::Video);
        self.pending_init = None;
        if self.tracks.is_empty() {
            return;
        }
        let skipped: Vec<&'static str> = skipped.iter().map(|t| t.codec.name()).collect();
        let mut pending = PendingInit::new(self.tracks.clone());
        match pending.offer(None) {
            Some(init) => self.init_ready(init, skipped, out),
            None => self.pending_init = Some((pending, skipped)),
        }
    }

    /// The mime message and the init segment, or the error that ends the session's video.
    fn init_ready(
        &mut self,
        init: Result<bytes::Bytes, switchyard_fmp4::Fmp4Error>,
        skipped: Vec<&'static str>,
        out: &mut Vec<Message>,
    ) {
        let init = match init {
            Ok(init) => init,
            Err(e) => {
                tracing::warn!(stream = %self.reader.stream().name(), error = %e, "cannot build an fMP4 init segment");
                out.push(text(
                    serde_json::json!({ "error": format!("cannot mux this stream to fMP4: {e}") }),
                ));
                self.tracks.clear();
                return;
            }
        };
        let mime = switchyard_fmp4::mime_type(&self.tracks);
        out.push(text(
            serde_json::json!({ "mime": mime, "skipped": skipped }),
        ));
        out.push(Message::Binary(init));
    }

    fn on_frame(&mut self, frame: Arc<BusFrame>, out: &mut Vec<Message>) {
        if !self.tracks.iter().any(|t| t.id == frame.frame.track) {
            return;
        }
        if let Some((mut pending, skipped)) = self.pending_init.take() {
            let Some(init) = pending.offer(Some(&frame.frame)) else {
                self.pending_init = Some((pending, skipped));
                self.reader.add_frames_dropped(1);
                return;
            };
            self.init_ready(init, skipped, out);
            if self.tracks.is_empty() {
                return;
            }
        }
        if frame.published_at.elapsed() > self.max_lag && !self.waiting_for_keyframe {
            tracing::debug!(stream = %self.reader.stream().name(), "MSE client behind live; skipping to the next keyframe");
            self.waiting_for_keyframe = true;
            self.clock.reset();
        }
        if self.waiting_for_keyframe {
            if self.has_video && !frame.starts_gop {
                self.reader.add_frames_dropped(1);
                return;
            }
            self.waiting_for_keyframe = false;
        }
        let Some((previous, duration)) = self.clock.push(frame) else {
            return;
        };
        let tracks = &self.tracks;
        let fragment = previous.encoded(EncodedSlot::Fmp4Fragment, |f| {
            let part = TrackFragment {
                track: f.track,
                samples: vec![Sample::from_frame(&previous.frame, duration)],
            };
            switchyard_fmp4::fragment(previous.sequence as u32 + 1, &[part], tracks)
                .unwrap_or_default()
        });
        if !fragment.is_empty() {
            out.push(Message::Binary(fragment.clone()));
        }
    }

    /// Messages for everything already pending; `false` once the stream ended.
    fn drain(&mut self, out: &mut Vec<Message>) -> bool {
        match self.reader.try_recv() {
            TryRecv::Event(e) => self.collect(e, out),
            TryRecv::Empty => true,
            TryRecv::Ended => false,
        }
    }

    /// Messages for `event` and everything already pending; `false` once the stream ended.
    fn collect(&mut self, event: ReaderEvent, out: &mut Vec<Message>) -> bool {
        let mut next = Some(event);
        while let Some(event) = next.take() {
            match event {
                ReaderEvent::Tracks(set) => self.on_tracks(&set, out),
                ReaderEvent::Frame(frame) => self.on_frame(frame, out),
                ReaderEvent::Lost { .. } => {
                    self.clock.reset();
                    self.waiting_for_keyframe = true;
                }
            }
            match self.reader.try_recv() {
                TryRecv::Event(e) => next = Some(e),
                TryRecv::Empty => {}
                TryRecv::Ended => return false,
            }
        }
        true
    }
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(value.to_string().into())
}

enum Wake {
    Shutdown,
    Media(Option<ReaderEvent>),
    Client(Option<Result<Message, axum::Error>>),
    /// The coalescing window is over: send what is pending.
    FlushDue,
}

/// Sends `messages` with one flush (one write where the socket takes it); false if the client
/// is gone or stopped reading.
async fn send_all(
    socket: &mut WebSocket,
    messages: &mut Vec<Message>,
    session: &MseSession,
    settings: &MseSettings,
    name: &str,
) -> bool {
    let bytes: usize = messages
        .iter()
        .map(|m| {
            if let Message::Binary(b) = m {
                b.len()
            } else {
                0
            }
        })
        .sum();
    let send = async {
        for message in messages.drain(..) {
            socket.feed(message).await?;
        }
        socket.flush().await
    };
    match tokio::time::timeout(settings.write_timeout, send).await {
        Ok(Ok(())) => {
            session.reader.add_bytes_out(bytes);
            true
        }
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!(stream = %name, "MSE client stopped reading; closing");
            false
        }
    }
}

/// Serves one WebSocket MSE client until it leaves, the stream ends or the server stops.
///
/// Like RTMP players, a client that wakes for a frame gathers what arrives during
/// `mse.coalesce_ms` (one frame interval) and sends it with one write, instead of waking and
/// writing for every audio and video frame.
pub async fn serve(
    mut socket: WebSocket,
    reader: Result<Reader, crate::bus::BusError>,
    settings: MseSettings,
    shutdown: CancellationToken,
) {
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            let (code, reason) = match e {
                crate::bus::BusError::TooManyReaders { .. } => {
                    (CLOSE_READER_LIMIT, "reader limit reached")
                }
                _ => (CLOSE_NOT_FOUND, "stream not found"),
            };
            let _ = socket
                .send(text(serde_json::json!({ "error": e.to_string() })))
                .await;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
            return;
        }
    };
    let name = reader.stream().name().to_string();
    let mut session = MseSession::new(reader, settings.max_lag);
    let mut out = Vec::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let wake = tokio::select! {
            _ = shutdown.cancelled() => Wake::Shutdown,
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => Wake::FlushDue,
            e = session.reader.recv(), if flush_at.is_none() => Wake::Media(e),
            m = socket.recv() => Wake::Client(m),
        };
        let more = match wake {
            Wake::Shutdown => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1001,
                        reason: "server shutting down".into(),
                    })))
                    .await;
                return;
            }
            Wake::Client(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
            Wake::Client(Some(Ok(_))) => continue, // clients have nothing to say; pings are answered by axum
            Wake::Media(None) => false,
            Wake::Media(Some(event)) => {
                let more = session.collect(event, &mut out);
                if more && !settings.coalesce.is_zero() {
                    flush_at = Some(tokio::time::Instant::now() + settings.coalesce);
                    continue;
                }
                more
            }
            Wake::FlushDue => {
                flush_at = None;
                session.drain(&mut out)
            }
        };
        if !out.is_empty() && !send_all(&mut socket, &mut out, &session, &settings, &name).await {
            return;
        }
        if !more {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "stream ended".into(),
                })))
                .await;
            return;
        }
    }
}
