//! The timeline of a file played in a loop: each frame's time on one continuous timeline,
//! loop after loop. Times are offsets from the start, so a caller that sleeps until
//! `start + time` on a monotonic clock never drifts, however long it runs.

use super::file::{FileFrame, SourceFile};

/// Walks the frames of a file, loop after loop.
#[derive(Default)]
pub struct Pacer {
    next: usize,
    loops: u64,
}

impl Pacer {
    /// The next frame and its time in milliseconds from the start of the first loop: its
    /// time in the file plus one loop length (`SourceFile::loop_ms`) per loop before.
    pub fn next<'a>(&mut self, file: &'a SourceFile) -> (&'a FileFrame, u64) {
        if self.next >= file.frames.len() {
            self.next = 0;
            self.loops += 1;
        }
        let frame = &file.frames[self.next];
        self.next += 1;
        let at = self.loops * u64::from(file.loop_ms) + u64::from(frame.timestamp_ms);
        (frame, at)
    }

    /// How many loops have ended.
    pub fn loops(&self) -> u64 {
        self.loops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use switchyard_media::MediaKind;

    fn file(times: &[(MediaKind, u32)], loop_ms: u32) -> SourceFile {
        let fixture = include_bytes!("../../fixtures/probe-640x360.flv");
        let mut file = SourceFile::parse(Bytes::from_static(fixture)).unwrap();
        file.frames = times
            .iter()
            .map(|&(kind, timestamp_ms)| FileFrame {
                kind,
                timestamp_ms,
                keyframe: timestamp_ms == 0,
                composition_ms: 0,
                data: Bytes::new(),
            })
            .collect();
        file.loop_ms = loop_ms;
        file
    }

    #[test]
    fn times_keep_growing_across_loops() {
        use MediaKind::{Audio, Video};
        let f = file(
            &[
                (Video, 0),
                (Audio, 10),
                (Video, 33),
                (Audio, 33),
                (Video, 66),
            ],
            99,
        );
        let mut pacer = Pacer::default();
        let times: Vec<(MediaKind, u64)> = (0..11)
            .map(|_| {
                let (frame, at) = pacer.next(&f);
                (frame.kind, at)
            })
            .collect();
        assert_eq!(
            times,
            [
                (Video, 0),
                (Audio, 10),
                (Video, 33),
                (Audio, 33),
                (Video, 66),
                (Video, 99),
                (Audio, 109),
                (Video, 132),
                (Audio, 132),
                (Video, 165),
                (Video, 198),
            ]
        );
        assert_eq!(pacer.loops(), 2);
    }

    #[test]
    fn the_fixture_loops_one_frame_interval_after_its_last_frame() {
        let f = SourceFile::parse(Bytes::from_static(include_bytes!(
            "../../fixtures/probe-640x360.flv"
        )))
        .unwrap();
        assert_eq!(f.frame_interval_ms, 33);
        let video: Vec<&FileFrame> = f
            .frames
            .iter()
            .filter(|f| f.kind == MediaKind::Video)
            .collect();
        assert_eq!(video.len(), 300);
        assert!(video[0].keyframe && video[30].keyframe && !video[1].keyframe);
        assert_eq!(f.loop_ms, video[299].timestamp_ms + 33);
        assert!(f.audio.is_some());
        assert!(f.frames.iter().all(|fr| fr.timestamp_ms < f.loop_ms));
        // Audio stays in order across the loop point.
        let mut pacer = Pacer::default();
        let mut last_audio = None;
        for _ in 0..f.frames.len() * 2 {
            let (frame, at) = pacer.next(&f);
            if frame.kind == MediaKind::Audio {
                assert!(last_audio < Some(at), "{last_audio:?} then {at}");
                last_audio = Some(at);
            }
        }
    }
}
