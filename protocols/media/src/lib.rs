//! Switchyard's media model: what every input produces and every output consumes.
//!
//! A stream is a set of [`Track`]s and a sequence of [`Frame`]s. A frame is one access unit
//! with timestamps in its track's clock rate. Video frames are length-prefixed NAL units with
//! 4-byte big-endian lengths (the AVCC/HVCC sample format of ISO/IEC 14496-15); parameter sets
//! live in the track's [`CodecConfig`], never only in-band. Codec helpers (H.264, H.265, AAC,
//! and the VP8, VP9 and AV1 headers that give a picture size, the `vpcC` record of VP8 and VP9)
//! live in their own modules, as do the latency probe's stamps (`probe_stamp`).
//!
//! This file only declares the modules and re-exports the model at the crate root: the
//! [`Track`]/[`Frame`] model is in `track.rs`, codec configurations in `codec.rs`, NAL unit
//! framing in `nal.rs`, [`MediaError`] in `error.rs`.
//!
//! This crate does no I/O and depends on nothing async, so every parser here is testable
//! against captured bytes and fuzzable.

pub mod aac;
pub mod av1;
pub mod bits;
mod codec;
mod error;
pub mod h264;
pub mod h265;
mod nal;
pub mod probe_stamp;
#[cfg(test)]
mod test_fixtures;
mod track;
pub mod vp8;
pub mod vp9;
pub mod vp9_svc;
pub mod vpcc;

pub use codec::{CodecConfig, G711Law, MediaKind};
pub use error::MediaError;
pub use nal::{
    annexb_nal_units, annexb_to_length_prefixed, length_prefixed_to_annexb, nal_units,
    to_four_byte_lengths, validate_length_prefixed, NalUnits,
};
pub use track::{rescale, Frame, Track, TrackId};
