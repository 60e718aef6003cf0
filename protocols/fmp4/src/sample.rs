//! The input of a fragment: [`Sample`]s (access units with their timing) grouped per track
//! into [`TrackFragment`]s.

use bytes::Bytes;
use switchyard_media::TrackId;

/// One sample (access unit) in a fragment. Timestamps in the track's clock rate (= the MP4
/// timescale).
#[derive(Debug, Clone)]
pub struct Sample {
    /// Decode time. Only the first sample's is written (as `tfdt`); later samples' decode times
    /// follow from the durations, and each sample's composition offset is taken against that
    /// implied decode time so its `pts` is kept exactly even if durations and `dts` disagree.
    pub dts: i64,
    pub pts: i64,
    pub duration: u32,
    pub keyframe: bool,
    pub data: Bytes,
}

impl Sample {
    /// A sample from a bus frame, with the duration the caller knows (usually next dts - dts).
    pub fn from_frame(frame: &switchyard_media::Frame, duration: u32) -> Sample {
        Sample {
            dts: frame.dts,
            pts: frame.pts,
            duration,
            keyframe: frame.keyframe,
            data: frame.data.clone(),
        }
    }
}

/// The samples of one track in one fragment (in decode order).
#[derive(Debug, Clone)]
pub struct TrackFragment {
    pub track: TrackId,
    pub samples: Vec<Sample>,
}
