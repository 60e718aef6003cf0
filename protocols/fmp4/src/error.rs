//! [`Fmp4Error`], why an init segment or fragment could not be built, and [`encode`], which
//! writes one box with `mp4-atom` and reports its failure as one.

use switchyard_media::TrackId;

/// Why an init segment or fragment could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    #[error("track {}: {codec} has no fMP4 mapping that browsers play", track.0)]
    Unsupported { track: TrackId, codec: &'static str },
    #[error("track {}: not among the init segment's tracks", .0 .0)]
    UnknownTrack(TrackId),
    #[error("track {}: listed twice", .0 .0)]
    DuplicateTrack(TrackId),
    #[error("track {}: {reason}", track.0)]
    InvalidTrack { track: TrackId, reason: String },
    #[error("track {}: negative decode time {dts} cannot be written as tfdt", track.0)]
    NegativeDecodeTime { track: TrackId, dts: i64 },
    #[error("track {}: sample {index}: {reason}", track.0)]
    InvalidSample {
        track: TrackId,
        index: usize,
        reason: String,
    },
    #[error("no tracks")]
    NoTracks,
    #[error("fragment has no samples")]
    EmptyFragment,
    #[error("writing {what}: {reason}")]
    Encode { what: &'static str, reason: String },
}

/// Encodes one box (or any mp4-atom value) onto `buf`.
pub(crate) fn encode<T: mp4_atom::Encode>(
    what: &'static str,
    atom: &T,
    buf: &mut Vec<u8>,
) -> Result<(), Fmp4Error> {
    atom.encode(buf).map_err(|e| Fmp4Error::Encode {
        what,
        reason: e.to_string(),
    })
}
