//! A fragment: `moof` + `mdat` (ISO/IEC 14496-12 8.8.4-8.8.8, 8.8.12 `tfdt`; a CMAF chunk,
//! ISO/IEC 23000-19 7.3.2.3).
//!
//! Every `traf` has `default-base-is-moof`, so its `trun` `data_offset` counts from the first
//! byte of the `moof`; the `mdat` holds the trafs' samples one traf after another. The `moof`
//! is encoded once to learn its size (every `trun` has a data offset field, so the size does not
//! depend on the values), then again with the offsets filled in. The `mdat` is written here
//! rather than with mp4-atom's `Mdat`, which would first copy every payload into a `Vec`.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{Atom, Header, Mdat, Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunEntry};
use switchyard_media::{MediaKind, Track, TrackId};

use crate::error::{encode, Fmp4Error};
use crate::init::{FLAGS_NON_SYNC, FLAGS_SYNC};
use crate::sample::TrackFragment;

/// moof (mfhd with `sequence_number`, one traf per [`TrackFragment`]: tfhd with
/// default-base-is-moof, tfdt = first sample's dts (version 1), trun with data offset and
/// per-sample duration, size, flags, and signed composition offsets (trun version 1) where
/// pts != dts) + one mdat holding the samples in the order of `fragments`.
///
/// Track fragments without samples are left out; a fragment with no samples at all is an
/// error, as is a track that is not in `tracks` or appears twice.
pub fn fragment(
    sequence_number: u32,
    fragments: &[TrackFragment],
    tracks: &[Track],
) -> Result<Bytes, Fmp4Error> {
    let fragments: Vec<&TrackFragment> =
        fragments.iter().filter(|f| !f.samples.is_empty()).collect();
    if fragments.is_empty() {
        return Err(Fmp4Error::EmptyFragment);
    }

    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: Vec::with_capacity(fragments.len()),
    };
    // Bytes of sample data of each traf, in mdat order.
    let mut traf_sizes = Vec::with_capacity(fragments.len());
    for (i, frag) in fragments.iter().enumerate() {
        if fragments[..i].iter().any(|f| f.track == frag.track) {
            return Err(Fmp4Error::DuplicateTrack(frag.track));
        }
        let track = tracks
            .iter()
            .find(|t| t.id == frag.track)
            .ok_or(Fmp4Error::UnknownTrack(frag.track))?;
        let (traf, size) = traf(track, frag)?;
        moof.traf.push(traf);
        traf_sizes.push(size);
    }
    let payload_len: u64 = traf_sizes.iter().sum();
    let payload_len = usize::try_from(payload_len).map_err(|_| Fmp4Error::Encode {
        what: "mdat",
        reason: format!("{payload_len} bytes of samples"),
    })?;
    let mdat_header = Header {
        kind: Mdat::KIND,
        size: Some(payload_len),
    };
    let mut mdat_header_bytes = Vec::with_capacity(16);
    encode("mdat", &mdat_header, &mut mdat_header_bytes)?;

    let mut moof_bytes = Vec::with_capacity(256 + 16 * fragments.len());
    encode("moof", &moof, &mut moof_bytes)?;
    let mut offset = (moof_bytes.len() + mdat_header_bytes.len()) as u64;
    for (traf, size) in moof.traf.iter_mut().zip(&traf_sizes) {
        let data_offset = i32::try_from(offset).map_err(|_| Fmp4Error::Encode {
            what: "trun",
            reason: format!("data offset {offset} does not fit 32 bits"),
        })?;
        for trun in &mut traf.trun {
            trun.data_offset = Some(data_offset);
        }
        offset += size;
    }
    let first_size = moof_bytes.len();
    moof_bytes.clear();
    encode("moof", &moof, &mut moof_bytes)?;
    if moof_bytes.len() != first_size {
        // Cannot happen while every trun carries a data offset; checked since offsets would
        // otherwise point into the wrong bytes.
        return Err(Fmp4Error::Encode {
            what: "moof",
            reason: format!("size changed from {first_size} to {}", moof_bytes.len()),
        });
    }

    let mut out = BytesMut::with_capacity(moof_bytes.len() + mdat_header_bytes.len() + payload_len);
    out.put_slice(&moof_bytes);
    out.put_slice(&mdat_header_bytes);
    for frag in &fragments {
        for s in &frag.samples {
            out.put_slice(&s.data);
        }
    }
    Ok(out.freeze())
}

/// One traf (with a placeholder data offset) and the number of sample bytes it refers to.
fn traf(track: &Track, frag: &TrackFragment) -> Result<(Traf, u64), Fmp4Error> {
    let id: TrackId = track.id;
    let first = frag.samples.first().ok_or(Fmp4Error::EmptyFragment)?;
    let base = u64::try_from(first.dts).map_err(|_| Fmp4Error::NegativeDecodeTime {
        track: id,
        dts: first.dts,
    })?;
    let video = track.kind() == MediaKind::Video;

    let mut entries = Vec::with_capacity(frag.samples.len());
    let mut decode_time = first.dts;
    let mut bytes = 0u64;
    let mut any_offset = false;
    for (index, s) in frag.samples.iter().enumerate() {
        let bad = |reason: String| Fmp4Error::InvalidSample {
            track: id,
            index,
            reason,
        };
        let size = u32::try_from(s.data.len())
            .map_err(|_| bad(format!("{} bytes do not fit a trun", s.data.len())))?;
        // Against the decode time the durations imply, so pts survives inconsistent durations.
        let cts = s
            .pts
            .checked_sub(decode_time)
            .and_then(|c| i32::try_from(c).ok())
            .ok_or_else(|| {
                bad(format!(
                    "composition offset pts {} - decode time {decode_time} does not fit 32 bits",
                    s.pts
                ))
            })?;
        any_offset |= cts != 0;
        let flags = if !video || s.keyframe {
            FLAGS_SYNC
        } else {
            FLAGS_NON_SYNC
        };
        entries.push(TrunEntry {
            duration: Some(s.duration),
            size: Some(size),
            flags: Some(flags),
            cts: Some(cts.into()),
        });
        decode_time = decode_time.saturating_add(s.duration.into());
        bytes += u64::from(size);
    }
    if !any_offset {
        for e in &mut entries {
            e.cts = None;
        }
    }

    let traf = Traf {
        tfhd: Tfhd {
            track_id: id.0,
            default_base_is_moof: true,
            ..Default::default()
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: base,
        }),
        trun: vec![Trun {
            data_offset: Some(0),
            samples: entries.into(),
        }],
        ..Default::default()
    };
    Ok((traf, bytes))
}
