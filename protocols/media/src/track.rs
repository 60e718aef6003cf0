//! A stream's elementary streams ([`Track`]) and access units ([`Frame`]), with timestamps in
//! the track's clock rate, and [`rescale`] between clock rates.

use bytes::Bytes;

use crate::codec::{CodecConfig, MediaKind};

/// Identifies a track within one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u32);

/// One elementary stream of a [`Stream`](https://docs.rs) on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub id: TrackId,
    pub codec: CodecConfig,
    /// Units per second of this track's `pts`/`dts` (90000 for video, the sample rate for audio).
    pub clock_rate: u32,
}

impl Track {
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }
}

/// One access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: TrackId,
    /// Presentation time in the track's clock rate, from the stream's time origin.
    pub pts: i64,
    /// Decode time in the track's clock rate; `dts <= pts`, monotonic per track.
    pub dts: i64,
    /// A random access point: an IDR picture for video; every audio frame is one.
    pub keyframe: bool,
    /// Video: H.264/H.265 NAL units each prefixed by a 4-byte big-endian length; VP8/VP9 the
    /// frame as encoded (a WebM block); AV1 a temporal unit in the low overhead format, every
    /// OBU with its size field, no temporal delimiter (an MP4 `av01` sample). Audio: one raw
    /// frame.
    pub data: Bytes,
}

/// Rescales a timestamp between clock rates, rounding to nearest (no drift across calls, since
/// each call converts an absolute time).
pub fn rescale(ts: i64, from_rate: u32, to_rate: u32) -> i64 {
    if from_rate == to_rate {
        return ts;
    }
    let num = ts as i128 * to_rate as i128;
    let den = from_rate as i128;
    let half = den / 2;
    (if num >= 0 {
        (num + half) / den
    } else {
        (num - half) / den
    }) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        assert_eq!(rescale(1000, 1000, 90000), 90000);
        assert_eq!(rescale(23, 1000, 44100), 1014);
        assert_eq!(rescale(1014, 44100, 1000), 23);
        assert_eq!(rescale(-3, 90000, 1000), 0);
    }
}
