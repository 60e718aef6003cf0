//! CMAF / fragmented MP4 from Switchyard media: one init segment (`ftyp` + `moov`) per set of
//! tracks and one fragment (`moof` + `mdat`) per batch of samples, shared by the HLS and
//! WebSocket-MSE outputs.
//!
//! Boxes follow ISO/IEC 14496-12 (ISOBMFF; movie fragments 8.8), sample entries ISO/IEC 14496-15
//! (`avc1`/`avcC`, `hvc1`/`hvcC`), the VP Codec ISO Media File Format Binding (`vp08`/`vp09`
//! with `vpcC`), the AV1 Codec ISO Media File Format Binding (`av01`/`av1C`), ISO/IEC 14496-14
//! (`mp4a`/`esds`) and "Encapsulation of Opus in ISO Base Media File Format" (`Opus`/`dOps`,
//! with RFC 7845 for the OpusHead); the segment
//! layout is that of a CMAF track file (ISO/IEC 23000-19 7.3): `tfdt` in every `traf`,
//! `default-base-is-moof`, and `trun` data offsets into the `mdat` that follows.
//!
//! The MP4 `track_ID` of a track is its [`TrackId`] and its timescale is the track's clock rate,
//! so frames from the bus go in without rescaling. Video samples are the bus's frames as they
//! are: 4-byte length-prefixed NAL units (H.264, H.265), VP8/VP9 frames, AV1 temporal units in
//! the low overhead format, which are the MP4 sample formats of those codecs.
//!
//! [`TrackId`]: switchyard_media::TrackId
//!
//! Boxes are written with `mp4-atom`; the `moov` children and the `mdat` are arranged by hand
//! (see the `init` and `fragment` modules for why).
//! The `reader` module goes the other way: it reads init segments and fragments, ours or any
//! CMAF packager's, sample by sample without copying (the load generator's HLS and MSE players).
//! Pure code: bytes in, bytes out.
//!
//! This file holds what no other module uses (which codecs fMP4 carries, the MIME type) and
//! re-exports the rest: samples in `sample.rs`, errors in `error.rs`.

mod error;
mod fragment;
mod init;
pub mod reader;
mod sample;

use switchyard_media::{CodecConfig, MediaKind, Track};

pub use error::Fmp4Error;
pub use fragment::fragment;
pub use init::{init_segment, init_segment_with_keyframes, needs_keyframe};
pub use sample::{Sample, TrackFragment};

/// Whether a track's codec can be carried in fMP4: H.264, H.265, VP8, VP9, AV1, AAC and Opus
/// (VP8, VP9 and some AV1 tracks once a keyframe gives their picture size: see
/// [`needs_keyframe`]). G.711 is not: MSE does not play it in MP4.
pub fn supports(codec: &CodecConfig) -> bool {
    match codec {
        CodecConfig::H264(_)
        | CodecConfig::H265(_)
        | CodecConfig::Vp8
        | CodecConfig::Vp9 { .. }
        | CodecConfig::Av1 { .. }
        | CodecConfig::Aac(_) => true,
        CodecConfig::Opus { channels, head } => *channels > 0 && (*channels <= 2 || head.is_some()),
        CodecConfig::G711 { .. } => false,
    }
}

/// The MIME type with RFC 6381 codecs for the tracks fMP4 can carry, e.g.
/// `video/mp4; codecs="avc1.64001E,mp4a.40.2"` (`audio/mp4` when no video track is carried).
/// Tracks that [`supports`] rejects are left out, as [`init_segment`] would refuse them.
pub fn mime_type(tracks: &[Track]) -> String {
    let carried: Vec<&Track> = tracks.iter().filter(|t| supports(&t.codec)).collect();
    let major = if carried.iter().any(|t| t.kind() == MediaKind::Video) {
        "video"
    } else {
        "audio"
    };
    let codecs: Vec<String> = carried.iter().map(|t| t.codec.rfc6381_codec()).collect();
    format!("{major}/mp4; codecs=\"{}\"", codecs.join(","))
}

#[cfg(test)]
mod tests;
