//! What the fMP4 outputs (HLS, MSE) share: sample durations from decode times, and init
//! segments that wait for a keyframe when the codec configuration lacks the picture size.
//!
//! An fMP4 sample carries its duration (ISO/IEC 14496-12 8.8.8, `trun`), which only the next
//! frame of the same track tells. So each track's latest frame is held back until its successor
//! arrives: one frame interval of delay, and durations that add up exactly to the decode times.

use crate::bus::BusFrame;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use switchyard_fmp4::Fmp4Error;
use switchyard_media::{Frame, Track, TrackId};

/// The init segment of a set of tracks, built once it can be: VP8 and VP9 tracks (and AV1
/// whose av1C lacks the sequence header) get their sample entry's picture size from their
/// first keyframe (see [`switchyard_fmp4::needs_keyframe`]). Both outputs start at a keyframe
/// anyway, so waiting costs nothing; frames before it are dropped by the caller.
pub struct PendingInit {
    tracks: Vec<Track>,
    keyframes: Vec<Frame>,
}

impl PendingInit {
    pub fn new(tracks: Vec<Track>) -> Self {
        PendingInit {
            tracks,
            keyframes: Vec::new(),
        }
    }

    /// Offers the next frame (`None`: nothing yet). Returns the init segment (or why it cannot
    /// be built) once every track that needs a keyframe has had one; `None` while waiting.
    pub fn offer(&mut self, frame: Option<&Frame>) -> Option<Result<Bytes, Fmp4Error>> {
        if let Some(f) = frame {
            let wanted = f.keyframe
                && !self.keyframes.iter().any(|k| k.track == f.track)
                && self
                    .tracks
                    .iter()
                    .any(|t| t.id == f.track && switchyard_fmp4::needs_keyframe(t));
            if wanted {
                self.keyframes.push(f.clone());
            }
        }
        let waiting = self.tracks.iter().any(|t| {
            switchyard_fmp4::needs_keyframe(t) && !self.keyframes.iter().any(|k| k.track == t.id)
        });
        if waiting {
            return None;
        }
        let keyframes: Vec<&Frame> = self.keyframes.iter().collect();
        Some(switchyard_fmp4::init_segment_with_keyframes(
            &self.tracks,
            &keyframes,
        ))
    }
}

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
    use switchyard_media::CodecConfig;

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

    #[test]
    fn a_vp8_init_segment_waits_for_the_first_keyframe() {
        let vp8 = Track {
            id: TrackId(1),
            codec: CodecConfig::Vp8,
            clock_rate: 90000,
        };
        let mut pending = PendingInit::new(vec![vp8]);
        assert!(pending.offer(None).is_none());
        let mut f = frame(1, 0).frame.clone();
        // An inter frame, then a 320x240 keyframe header (RFC 6386 9.1).
        f.keyframe = false;
        f.data = Bytes::from_static(&[0x31, 0, 0]);
        assert!(pending.offer(Some(&f)).is_none());
        f.keyframe = true;
        f.data = Bytes::from_static(&[0x50, 0x42, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]);
        let init = pending.offer(Some(&f)).expect("ready").expect("init");
        assert!(init.windows(4).any(|w| w == b"vp08"));

        let h264_free = PendingInit::new(Vec::new()).offer(None);
        assert!(matches!(h264_free, Some(Err(Fmp4Error::NoTracks))));
    }
}
