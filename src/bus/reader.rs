//! The reading end of a stream.

use super::peer::Peer;
use super::stream::{BusFrame, BusItem, Stream, TrackSet};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// What a reader receives.
#[derive(Debug, Clone)]
pub enum ReaderEvent {
    /// The stream's tracks; always the first event, then again on every change.
    Tracks(Arc<TrackSet>),
    Frame(Arc<BusFrame>),
    /// The reader fell behind and `frames` were dropped for it; it resumes at the next video
    /// keyframe (frames skipped while waiting for it are counted in the stream's counters).
    Lost {
        frames: u64,
    },
}

/// A reader of one stream. Starts with the current tracks and the GOP cache.
pub struct Reader {
    stream: Arc<Stream>,
    peer: Peer,
    backlog: VecDeque<BusItem>,
    rx: Option<broadcast::Receiver<BusItem>>,
    skipping_to_keyframe: bool,
    last_generation: Option<u64>,
    has_video: bool,
    /// Whether this reader is in the stream's per-protocol reader counts.
    counted: bool,
    /// Whether this reader is in the stream's session reader count (`max_readers_per_stream`).
    session: bool,
}

/// Result of [`Reader::try_recv`].
#[derive(Debug)]
pub enum TryRecv {
    Event(ReaderEvent),
    Empty,
    Ended,
}

impl Reader {
    pub(crate) fn new(stream: Arc<Stream>, peer: Peer) -> Self {
        let (backlog, rx) = {
            let shared = stream.shared.lock().unwrap();
            let mut backlog = VecDeque::with_capacity(shared.gop.len() + 1);
            backlog.push_back(BusItem::Tracks(shared.tracks.clone()));
            backlog.extend(shared.gop.iter().cloned().map(BusItem::Frame));
            (backlog, shared.tx.as_ref().map(|tx| tx.subscribe()))
        };
        *stream
            .accounting()
            .readers
            .lock()
            .unwrap()
            .entry(peer.protocol)
            .or_default() += 1;
        Reader {
            stream,
            peer,
            backlog,
            rx,
            skipping_to_keyframe: false,
            last_generation: None,
            has_video: false,
            counted: true,
            session: false,
        }
    }

    /// Adds this reader to its stream's session readers; returns how many there were before.
    pub(crate) fn count_as_session(&mut self) -> usize {
        if std::mem::replace(&mut self.session, true) {
            return self
                .stream
                .accounting()
                .session_readers
                .load(Ordering::SeqCst)
                - 1;
        }
        self.stream
            .accounting()
            .session_readers
            .fetch_add(1, Ordering::SeqCst)
    }

    /// Takes this reader out of the stream's reader counts: for an output that reads once on
    /// behalf of clients it counts with readers of their own (WebRTC fans one reader out).
    pub fn uncounted(mut self) -> Self {
        self.uncount();
        self
    }

    fn uncount(&mut self) {
        if !std::mem::replace(&mut self.counted, false) {
            return;
        }
        if let Some(n) = self
            .stream
            .accounting()
            .readers
            .lock()
            .unwrap()
            .get_mut(self.peer.protocol)
        {
            *n = n.saturating_sub(1);
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Counts bytes this reader's output sent, for the stream's bitrate out.
    pub fn add_bytes_out(&self, n: usize) {
        self.stream.add_bytes_out(n);
    }

    /// Counts frames an output skipped for this reader (e.g. to get back to the live edge).
    pub fn add_frames_dropped(&self, n: u64) {
        self.stream
            .accounting()
            .counters
            .frames_dropped
            .fetch_add(n, Ordering::Relaxed);
    }

    /// The next event, or `None` when the stream has ended and everything was delivered.
    /// Cancel-safe: usable in `select!`.
    pub async fn recv(&mut self) -> Option<ReaderEvent> {
        loop {
            let item = match self.backlog.pop_front() {
                Some(item) => item,
                None => match self.rx.as_mut()?.recv().await {
                    Ok(item) => item,
                    Err(RecvError::Lagged(n)) => return Some(self.lost(n)),
                    Err(RecvError::Closed) => return None,
                },
            };
            if let Some(event) = self.admit(item) {
                return Some(event);
            }
        }
    }

    /// Like [`Reader::recv`] without waiting; lets an output drain everything pending at once.
    pub fn try_recv(&mut self) -> TryRecv {
        loop {
            let item = match self.backlog.pop_front() {
                Some(item) => item,
                None => match self.rx.as_mut().map(|rx| rx.try_recv()) {
                    Some(Ok(item)) => item,
                    Some(Err(TryRecvError::Lagged(n))) => return TryRecv::Event(self.lost(n)),
                    Some(Err(TryRecvError::Empty)) => return TryRecv::Empty,
                    Some(Err(TryRecvError::Closed)) | None => return TryRecv::Ended,
                },
            };
            if let Some(event) = self.admit(item) {
                return TryRecv::Event(event);
            }
        }
    }

    fn lost(&mut self, frames: u64) -> ReaderEvent {
        self.stream
            .accounting()
            .counters
            .frames_dropped
            .fetch_add(frames, Ordering::Relaxed);
        self.skipping_to_keyframe = self.has_video;
        // A track change may have been among the lost items.
        let current = self.stream.tracks().borrow().clone();
        self.backlog.push_front(BusItem::Tracks(current));
        ReaderEvent::Lost { frames }
    }

    fn admit(&mut self, item: BusItem) -> Option<ReaderEvent> {
        match item {
            BusItem::Tracks(set) => {
                if self.last_generation == Some(set.generation) {
                    return None;
                }
                self.last_generation = Some(set.generation);
                self.has_video = set.video().is_some();
                Some(ReaderEvent::Tracks(set))
            }
            BusItem::Frame(frame) => {
                if self.skipping_to_keyframe {
                    if !frame.starts_gop {
                        self.stream
                            .accounting()
                            .counters
                            .frames_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    self.skipping_to_keyframe = false;
                }
                Some(ReaderEvent::Frame(frame))
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.session {
            self.stream
                .accounting()
                .session_readers
                .fetch_sub(1, Ordering::SeqCst);
        }
        self.uncount();
    }
}
