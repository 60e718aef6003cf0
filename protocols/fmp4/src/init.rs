//! The init segment: `ftyp` + `moov` (ISO/IEC 14496-12 8.2, 8.3, 8.4; 8.8.1 `mvex`), with an
//! empty sample table per track since every sample lives in a fragment (ISO/IEC 23000-19 7.3.1).
//!
//! mp4-atom writes a container's optional children before its repeated ones, which would put
//! `mvex` ahead of the `trak`s. That is legal, but players are tested against the usual order
//! (`mvhd`, `trak`..., `mvex`, as ffmpeg and the CMAF examples write it), so the `moov` header is
//! written here and its children encoded one by one in that order.

use bytes::Bytes;
use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Dinf, Dops, Dref, DrefEntry, Esds, FourCC, Ftyp,
    Hdlr, Header, Hvc1, Hvcc, Mdhd, Mdia, Minf, Mp4a, Mvex, Mvhd, Opus, OpusChannelMapping, Smhd,
    Stbl, Stco, Stsd, Tkhd, Trak, Trex, Url, Visual, Vmhd, Vp08, Vp09, VpcC,
};
use switchyard_media::vp8::Vp8KeyframeInfo;
use switchyard_media::{aac::AudioSpecificConfig, h264::AvcConfig, h265::HevcConfig};
use switchyard_media::{CodecConfig, Frame, MediaKind, Track, TrackId};

use crate::error::{encode, Fmp4Error};

/// `trex` / `trun` sample flags (ISO/IEC 14496-12 8.8.3.1): `sample_depends_on` = 2, a sync
/// sample that depends on no other.
pub(crate) const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_depends_on` = 1 and `sample_is_non_sync_sample`.
pub(crate) const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// ftyp + moov (mvhd, one trak per track, mvex with trex per track). MP4 `track_ID` =
/// `TrackId.0` (ids are >= 1); timescale = `track.clock_rate`.
///
/// A track that [`needs_keyframe`] is refused here: use [`init_segment_with_keyframes`].
pub fn init_segment(tracks: &[Track]) -> Result<Bytes, Fmp4Error> {
    init_segment_with_keyframes(tracks, &[])
}

/// Whether a track's sample entry needs a keyframe for its picture size: VP8 and VP9 (no
/// out-of-band configuration tells it), and AV1 whose av1C has no sequence header among its
/// configOBUs (FFmpeg's Enhanced RTMP sends none).
///
/// Browsers' MSE refuses a video sample entry of 0x0, so the fMP4 outputs wait for the first
/// keyframe of such a track (where they start anyway) before writing the init segment.
pub fn needs_keyframe(track: &Track) -> bool {
    matches!(
        track.codec,
        CodecConfig::Vp8 | CodecConfig::Vp9 { .. } | CodecConfig::Av1 { .. }
    ) && track.codec.resolution().is_none()
}

/// [`init_segment`] with, for tracks that [`needs_keyframe`], a keyframe of theirs (matched by
/// `Frame::track`; others are ignored) that gives the sample entry's picture size.
pub fn init_segment_with_keyframes(
    tracks: &[Track],
    keyframes: &[&Frame],
) -> Result<Bytes, Fmp4Error> {
    if tracks.is_empty() {
        return Err(Fmp4Error::NoTracks);
    }
    for (i, t) in tracks.iter().enumerate() {
        if tracks[..i].iter().any(|o| o.id == t.id) {
            return Err(Fmp4Error::DuplicateTrack(t.id));
        }
    }

    let mut out = Vec::with_capacity(1024);
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    };
    encode("ftyp", &ftyp, &mut out)?;

    let mut moov = Vec::with_capacity(1024);
    let next_track_id = tracks
        .iter()
        .map(|t| t.id.0)
        .max()
        .and_then(|id| id.checked_add(1))
        .unwrap_or(u32::MAX);
    let mvhd = Mvhd {
        timescale: 1000,
        rate: 1.into(),
        volume: 1.into(),
        next_track_id,
        ..Default::default()
    };
    encode("mvhd", &mvhd, &mut moov)?;
    let mut mvex = Mvex::default();
    for track in tracks {
        let keyframe = keyframes
            .iter()
            .find(|f| f.track == track.id && f.keyframe)
            .map(|f| &f.data[..]);
        encode("trak", &trak(track, keyframe)?, &mut moov)?;
        mvex.trex.push(Trex {
            track_id: track.id.0,
            default_sample_description_index: 1,
            default_sample_duration: 0,
            default_sample_size: 0,
            default_sample_flags: match track.kind() {
                MediaKind::Video => FLAGS_NON_SYNC,
                MediaKind::Audio => FLAGS_SYNC,
            },
        });
    }
    encode("mvex", &mvex, &mut moov)?;

    let header = Header {
        kind: mp4_atom::Moov::KIND,
        size: Some(moov.len()),
    };
    encode("moov", &header, &mut out)?;
    out.extend_from_slice(&moov);
    Ok(Bytes::from(out))
}

fn trak(track: &Track, keyframe: Option<&[u8]>) -> Result<Trak, Fmp4Error> {
    if track.id.0 == 0 {
        return Err(invalid(track.id, "track id 0 (MP4 track_IDs start at 1)"));
    }
    if track.clock_rate == 0 {
        return Err(invalid(track.id, "clock rate 0"));
    }
    let entry = sample_entry(track, keyframe)?;
    let video = track.kind() == MediaKind::Video;
    let (width, height) = entry.visual().map_or((0, 0), |v| (v.width, v.height));
    let (handler, name) = if video {
        (b"vide", "VideoHandler")
    } else {
        (b"soun", "SoundHandler")
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: track.id.0,
            enabled: true,
            in_movie: true,
            volume: if video { 0.into() } else { 1.into() },
            width: width.into(),
            height: height.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.clock_rate,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: name.into(),
            },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![DrefEntry::Url(Url::default())],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![entry],
                    },
                    stco: Some(Stco::default()),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    })
}

fn invalid(track: TrackId, reason: impl Into<String>) -> Fmp4Error {
    Fmp4Error::InvalidTrack {
        track,
        reason: reason.into(),
    }
}

fn sample_entry(track: &Track, keyframe: Option<&[u8]>) -> Result<Codec, Fmp4Error> {
    let id = track.id;
    match &track.codec {
        CodecConfig::H264(c) => Ok(avc1(id, c)?.into()),
        CodecConfig::H265(c) => Ok(hvc1(id, c)?.into()),
        CodecConfig::Vp8 => Ok(vp08(id, keyframe)?.into()),
        CodecConfig::Vp9 { vpcc } => Ok(vp09(track, vpcc, keyframe)?.into()),
        CodecConfig::Av1 { av1c } => Ok(av01(track, av1c, keyframe)?.into()),
        CodecConfig::Aac(c) => Ok(mp4a(c).into()),
        CodecConfig::Opus { channels, head } => Ok(opus(id, *channels, head.as_deref())?.into()),
        other => Err(Fmp4Error::Unsupported {
            track: id,
            codec: other.name(),
        }),
    }
}

fn visual(width: u32, height: u32) -> Visual {
    Visual {
        data_reference_index: 1,
        width: u16::try_from(width).unwrap_or(u16::MAX),
        height: u16::try_from(height).unwrap_or(u16::MAX),
        ..Default::default()
    }
}

fn audio(channels: u16, sample_rate: u32) -> Audio {
    Audio {
        data_reference_index: 1,
        channel_count: channels,
        sample_size: 16,
        // 16.16 fixed point; rates above 65535 Hz do not fit and are written as 0 (the
        // decoder config carries the real rate).
        sample_rate: u16::try_from(sample_rate).unwrap_or(0).into(),
    }
}

/// `avc1` + `avcC` (ISO/IEC 14496-15 5.4.2). The record is the config's own bytes
/// (`lengthSizeMinusOne` already 3); if mp4-atom cannot parse it (some encoders write a
/// malformed High-profile extension), the record is rebuilt from the parameter sets without
/// that optional extension.
fn avc1(track: TrackId, c: &AvcConfig) -> Result<Avc1, Fmp4Error> {
    let mut avcc = match Avcc::decode_body(&mut c.record.as_ref()) {
        Ok(avcc) => avcc,
        Err(_) => Avcc {
            configuration_version: 1,
            avc_profile_indication: c.sps.profile_idc,
            profile_compatibility: c.sps.constraint_flags,
            avc_level_indication: c.sps.level_idc,
            length_size: 4,
            sequence_parameter_sets: c.sps_nals.iter().map(|s| s.to_vec()).collect(),
            picture_parameter_sets: c.pps_nals.iter().map(|p| p.to_vec()).collect(),
            ext: None,
        },
    };
    if avcc.sequence_parameter_sets.is_empty() || avcc.picture_parameter_sets.is_empty() {
        return Err(invalid(track, "avcC without SPS or PPS"));
    }
    avcc.length_size = 4;
    Ok(Avc1 {
        visual: visual(c.sps.width, c.sps.height),
        avcc,
        ..Default::default()
    })
}

/// `hvc1` + `hvcC` (ISO/IEC 14496-15 8.4.1): parameter sets only in the record, which is what
/// `hvc1` (rather than `hev1`) promises and what Safari and Chromium expect.
fn hvc1(track: TrackId, c: &HevcConfig) -> Result<Hvc1, Fmp4Error> {
    let mut hvcc = Hvcc::decode_body(&mut c.record.as_ref())
        .map_err(|e| invalid(track, format!("hvcC: {e}")))?;
    // Frames on the bus always carry 4-byte NAL lengths, whatever the source's record said.
    hvcc.length_size_minus_one = 3;
    // Chromium's MSE rejects a video config with an empty coded size, so when the record does
    // not say the size it is read from the SPS (ITU-T H.265 7.3.2.2.1).
    let (width, height) = match c.resolution {
        Some(size) => size,
        None => hvcc
            .arrays
            .iter()
            .filter(|a| a.nal_unit_type == 33)
            .flat_map(|a| a.nalus.iter())
            .find_map(|sps| switchyard_media::h265::parse_sps(sps).ok())
            .map(|sps| (sps.width, sps.height))
            .unwrap_or((0, 0)),
    };
    Ok(Hvc1 {
        visual: visual(width, height),
        hvcc,
        ..Default::default()
    })
}

/// The picture size of a VP8, VP9 or AV1 track: from its keyframe, else its configuration.
fn picture_size(track: &Track, keyframe: Option<&[u8]>) -> Result<(u32, u32), Fmp4Error> {
    keyframe
        .and_then(|k| track.codec.keyframe_resolution(k))
        .or_else(|| track.codec.resolution())
        .ok_or_else(|| {
            invalid(
                track.id,
                format!(
                    "{}: picture size unknown (the sample entry needs a keyframe's)",
                    track.codec.name()
                ),
            )
        })
}

/// `vp08` + `vpcC` (VP Codec ISO Media File Format Binding 2.1, 2.2). VP8 has no record of
/// its own, so it is written from the keyframe: its profile (the frame tag's version), 8-bit
/// 4:2:0 (the only format VP8 has; chroma "colocated with luma" as ffmpeg assumes), BT.601
/// colour left unspecified, and level 4.1 as in the codec string
/// ([`CodecConfig::rfc6381_codec`]).
fn vp08(track: TrackId, keyframe: Option<&[u8]>) -> Result<Vp08, Fmp4Error> {
    let info = keyframe
        .and_then(Vp8KeyframeInfo::parse)
        .ok_or_else(|| invalid(track, "vp8: picture size unknown (needs a keyframe)"))?;
    Ok(Vp08 {
        visual: visual(info.width, info.height),
        vpcc: VpcC {
            profile: info.profile,
            level: 41,
            bit_depth: 8,
            chroma_subsampling: 1,
            video_full_range_flag: false,
            color_primaries: 2,
            transfer_characteristics: 2,
            matrix_coefficients: 2,
            codec_initialization_data: Vec::new(),
        },
        ..Default::default()
    })
}

/// `vp09` + `vpcC` (VP Codec ISO Media File Format Binding 2.1, 2.2): the track's record as
/// is (it is the box payload), the picture size from a keyframe.
fn vp09(track: &Track, vpcc: &[u8], keyframe: Option<&[u8]>) -> Result<Vp09, Fmp4Error> {
    let vpcc =
        VpcC::decode_body(&mut &vpcc[..]).map_err(|e| invalid(track.id, format!("vpcC: {e}")))?;
    let (width, height) = picture_size(track, keyframe)?;
    Ok(Vp09 {
        visual: visual(width, height),
        vpcc,
        ..Default::default()
    })
}

/// `av01` + `av1C` (AV1 Codec ISO Media File Format Binding 2.2, 2.3): the track's record as
/// is, the picture size from its sequence header (in the configOBUs or the keyframe).
fn av01(track: &Track, av1c: &[u8], keyframe: Option<&[u8]>) -> Result<Av01, Fmp4Error> {
    let av1c =
        Av1c::decode_body(&mut &av1c[..]).map_err(|e| invalid(track.id, format!("av1C: {e}")))?;
    let (width, height) = picture_size(track, keyframe)?;
    Ok(Av01 {
        visual: visual(width, height),
        av1c,
        ..Default::default()
    })
}

/// `mp4a` + `esds` (ISO/IEC 14496-14 5.6, 14496-1 7.2.6.5) carrying the AudioSpecificConfig.
fn mp4a(c: &AudioSpecificConfig) -> Mp4a {
    use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
    // channelConfiguration 0 means a program config element says it; 2 is the usual answer
    // and the sample entry's count is informative only.
    let channels = if c.channels == 0 { 2 } else { c.channels };
    Mp4a {
        audio: audio(channels.into(), c.sample_rate),
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: 0,
                dec_config: DecoderConfig {
                    object_type_indication: 0x40, // Audio ISO/IEC 14496-3
                    stream_type: 0x05,            // AudioStream
                    dec_specific: Some(DecoderSpecific {
                        raw: c.bytes.to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig::default(),
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    }
}

/// `Opus` + `dOps` ("Encapsulation of Opus in ISO Base Media File Format" 4.3).
///
/// With an OpusHead (RFC 7845 5.1) its pre-skip, gain and channel mapping are kept. Without one
/// (WebRTC and RTSP sources), the stream was joined mid-way, so there is no encoder priming to
/// trim: pre-skip 0, gain 0, family 0 (only mono and stereo can be described that way).
fn opus(track: TrackId, channels: u8, head: Option<&[u8]>) -> Result<Opus, Fmp4Error> {
    if channels == 0 {
        return Err(invalid(track, "Opus with 0 channels"));
    }
    let mut dops = Dops {
        output_channel_count: channels,
        pre_skip: 0,
        input_sample_rate: 48000,
        output_gain: 0,
        channel_mapping: None,
    };
    match head {
        Some(h) => {
            if h.len() < 19 || &h[..8] != b"OpusHead" {
                return Err(invalid(track, "Opus header is not an OpusHead"));
            }
            // OpusHead is little-endian; dOps is big-endian (mp4-atom converts).
            dops.pre_skip = u16::from_le_bytes([h[10], h[11]]);
            dops.output_gain = i16::from_le_bytes([h[16], h[17]]);
            let family = h[18];
            if family != 0 {
                let n = channels as usize;
                let table = h
                    .get(19..21 + n)
                    .ok_or_else(|| invalid(track, "OpusHead channel mapping table truncated"))?;
                dops.channel_mapping = Some(OpusChannelMapping {
                    family,
                    stream_count: table[0],
                    coupled_count: table[1],
                    channel_mapping: table[2..].to_vec(),
                });
            } else if channels > 2 {
                return Err(invalid(
                    track,
                    "Opus mapping family 0 with more than 2 channels",
                ));
            }
        }
        None if channels > 2 => {
            return Err(Fmp4Error::Unsupported {
                track,
                codec: "multichannel Opus without an OpusHead",
            })
        }
        None => {}
    }
    Ok(Opus {
        audio: audio(channels.into(), 48000),
        dops,
        btrt: None,
    })
}
