//! What the fMP4 outputs (HLS, MSE) share: sample durations from decode times.
//!
//! An fMP4 sample carries its duration (ISO/IEC 14496-12 8.8.8, `trun`), which only the next
//! frame of the same track tells. So each track's latest frame is held back until its successor
//! arrives: one frame interval of delay, and durations that add up exactly to the decode times.

use crate::bus::BusFrame;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_media::TrackId;

/// Holds back each track's latest frame until the next one gives its duration.
#[derive(Default)]
pub struct SampleClock {
    held: HashMap<TrackId, Arc<BusFrame>>,
    last_duration: HashMap<TrackId, u32>,
}

impl SampleClock {
    /// Takes the next frame of its track and returns the previous frame of that track with its
    /// duration. Frames must be consecutive: after a gap (frames lost or skipped), call
    /// [`SampleClock::reset`] first, or the held frame gets the gap as its duration.
    pub fn push(&mut self, frame: Arc<BusFrame>) -> Option<(Arc<BusFrame>, u32)> {
        let track = frame.frame.track;
        let previous = self.held.insert(track, frame.clone())?;
        let delta = frame.frame.dts - previous.frame.dts;
        let duration = if delta > 0 {
            u32::try_from(delta).unwrap_or(u32::MAX)
        } else {
            // Two frames with one decode time (a publisher's rounding): reuse the last duration.
            self.last_duration.get(&track).copied().unwrap_or(1)
        };
        self.last_duration.insert(track, duration);
        Some((previous, duration))
    }

    /// Forgets held frames (after a gap in the frames, or a track change).
    pub fn reset(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchyard_media::Frame;

    fn frame(track: u32, dts: i64) -> Arc<BusFrame> {
        let f = Frame {
            track: TrackId(track),
            pts: dts,
            dts,
            keyframe: true,
            data: Bytes::new(),
        };
        Arc::new(BusFrame::new(f, false, 0))
    }

    #[test]
    fn durations_come_from_the_next_frame_of_the_same_track() {
        let mut clock = SampleClock::default();
        assert!(clock.push(frame(1, 0)).is_none());
        assert!(clock.push(frame(2, 0)).is_none());
        let (f, d) = clock.push(frame(1, 3000)).unwrap();
        assert_eq!((f.frame.dts, d), (0, 3000));
        let (f, d) = clock.push(frame(2, 1024)).unwrap();
        assert_eq!((f.frame.track, d), (TrackId(2), 1024));
        let (_, d) = clock.push(frame(1, 3000)).unwrap();
        assert_eq!(d, 3000, "equal decode times reuse the last duration");
        clock.reset();
        assert!(clock.push(frame(1, 9000)).is_none());
    }
}
