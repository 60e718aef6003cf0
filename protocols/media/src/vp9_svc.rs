//! VP9 spatial layers (SVC) as one superframe per picture that every VP9 decoder shows once.
//!
//! An SVC sender (Chromium with `scalabilityMode: 'L2T1'`, `'L3T3_KEY'`, ...) codes each
//! picture as one frame per spatial layer, the upper ones predicted from the lower ones (RFC
//! 9628 "layer frames"), and marks every one of them shown (`show_frame` = 1). libvpx, given
//! them as a superframe (VP9 bitstream specification Annex B), outputs only its last frame;
//! FFmpeg's own VP9 decoder outputs every shown frame, so each picture would come out once per
//! layer, at each layer's size and the same timestamp. [`SvcPictures::join`] therefore marks
//! every layer frame but the top one hidden (`show_frame` = 0), which makes the superframe the
//! same shape as libvpx's alt-ref superframes (hidden frames, then one shown frame), and
//! writes the superframe index.
//!
//! Hiding a frame changes no decoded picture when nothing reads `show_frame` later: VP9 reads
//! it only through `LastShowFrame` for the next frame's use of the previous frame's motion
//! vectors (spec 6.1.2, `UsePrevFrameMvs`), which needs that next frame to be of the same size
//! and not error resilient. So a layer frame is hidden only when the frame after it (the next
//! layer) is of another size or error resilient; else the picture keeps its layers as they
//! were (see [`SvcPictures::join`]).
//!
//! Hiding an inter frame inserts the `intra_only` bit (read only when `show_frame` is 0) into
//! the uncompressed header, so the whole header is read to find where it ends (spec 6.2:
//! loop filter, quantizer, segmentation and tile parameters), re-written one bit longer and
//! padded to a byte, and the compressed header and tiles follow unchanged. The tile
//! parameters depend on the frame width, which an inter frame may take from a reference:
//! [`RefSizes`] follows the eight reference slots (`refresh_frame_flags`) for that.

use crate::bits::BitReader;
use crate::vp9::{superframe_frames, superframe_index};

/// The picture sizes in the decoder's eight reference slots, as the frames so far left them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefSizes([Option<(u32, u32)>; 8]);

impl RefSizes {
    /// Stores `header`'s frame size in the slots it refreshes.
    pub fn update(&mut self, header: &UncompressedHeader) {
        for (i, slot) in self.0.iter_mut().enumerate() {
            if header.refresh_frame_flags & (1 << i) != 0 {
                *slot = Some(header.size);
            }
        }
    }
}

/// The fields of a frame's uncompressed header (VP9 bitstream specification 6.2) that the
/// layer handling needs, and where its bits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UncompressedHeader {
    pub keyframe: bool,
    pub shown: bool,
    pub error_resilient: bool,
    /// `intra_only` (false for keyframes, which are intra anyway).
    pub intra_only: bool,
    pub size: (u32, u32),
    pub refresh_frame_flags: u8,
    /// Bit position of `show_frame`; `error_resilient_mode` follows it.
    show_frame_bit: usize,
    /// Bits up to the end of `header_size_in_bytes` (before `trailing_bits`).
    end_bit: usize,
}

const WHAT: &str = "VP9 uncompressed header";

impl UncompressedHeader {
    /// Reads a frame's whole uncompressed header; `None` for `show_existing_frame`, a header
    /// cut short or malformed, or an inter frame whose size comes from a slot `refs` does not
    /// know.
    pub fn parse(frame: &[u8], refs: &RefSizes) -> Option<Self> {
        let mut r = BitReader::new(frame, WHAT);
        if r.bits(2).ok()? != 2 {
            return None; // frame_marker
        }
        let profile = {
            let low = r.bits(1).ok()?;
            low | r.bits(1).ok()? << 1
        };
        if profile == 3 {
            r.skip(1).ok()?;
        }
        if r.flag().ok()? {
            return None; // show_existing_frame
        }
        let keyframe = !r.flag().ok()?;
        let show_frame_bit = r.position();
        let shown = r.flag().ok()?;
        let error_resilient = r.flag().ok()?;
        let (intra_only, size, refresh_frame_flags);
        if keyframe {
            intra_only = false;
            sync_code(&mut r)?;
            color_config(&mut r, profile)?;
            size = frame_size(&mut r)?;
            render_size(&mut r)?;
            refresh_frame_flags = 0xff;
        } else {
            intra_only = !shown && r.flag().ok()?;
            if !error_resilient {
                r.skip(2).ok()?; // reset_frame_context
            }
            if intra_only {
                sync_code(&mut r)?;
                if profile > 0 {
                    color_config(&mut r, profile)?;
                }
                refresh_frame_flags = r.bits(8).ok()? as u8;
                size = frame_size(&mut r)?;
                render_size(&mut r)?;
            } else {
                refresh_frame_flags = r.bits(8).ok()? as u8;
                let mut ref_idx = [0usize; 3];
                for idx in &mut ref_idx {
                    *idx = r.bits(3).ok()? as usize;
                    r.skip(1).ok()?; // ref_frame_sign_bias
                }
                let mut from_ref = None;
                for idx in ref_idx {
                    if r.flag().ok()? {
                        from_ref = Some(refs.0[idx]?);
                        break;
                    }
                }
                size = match from_ref {
                    Some(s) => s,
                    None => frame_size(&mut r)?,
                };
                render_size(&mut r)?;
                r.skip(1).ok()?; // allow_high_precision_mv
                if !r.flag().ok()? {
                    r.skip(2).ok()?; // raw_interpolation_filter
                }
            }
        }
        if !error_resilient {
            r.skip(2).ok()?; // refresh_frame_context, frame_parallel_decoding_mode
        }
        r.skip(2).ok()?; // frame_context_idx
        loop_filter_params(&mut r)?;
        quantization_params(&mut r)?;
        segmentation_params(&mut r)?;
        tile_info(&mut r, size.0)?;
        if r.bits(16).ok()? == 0 {
            return None; // header_size_in_bytes: 0 is not allowed for a coded frame
        }
        Some(UncompressedHeader {
            keyframe,
            shown,
            error_resilient,
            intra_only,
            size,
            refresh_frame_flags,
            show_frame_bit,
            end_bit: r.position(),
        })
    }
}

fn sync_code(r: &mut BitReader<'_>) -> Option<()> {
    (r.bits(24).ok()? == 0x49_83_42).then_some(())
}

fn color_config(r: &mut BitReader<'_>, profile: u32) -> Option<()> {
    if profile >= 2 {
        r.skip(1).ok()?; // ten_or_twelve_bit
    }
    let color_space = r.bits(3).ok()?;
    let odd_profile = profile == 1 || profile == 3;
    if color_space != 7 {
        r.skip(1).ok()?; // color_range
        if odd_profile {
            r.skip(3).ok()?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if odd_profile {
        r.skip(1).ok()?; // reserved_zero
    }
    Some(())
}

fn frame_size(r: &mut BitReader<'_>) -> Option<(u32, u32)> {
    let width = r.bits(16).ok()? + 1;
    let height = r.bits(16).ok()? + 1;
    Some((width, height))
}

fn render_size(r: &mut BitReader<'_>) -> Option<()> {
    if r.flag().ok()? {
        r.skip(32).ok()?; // render_width_minus_1, render_height_minus_1
    }
    Some(())
}

/// `su(n)`: a value of `n` bits and a sign bit.
fn skip_su(r: &mut BitReader<'_>, n: u32) -> Option<()> {
    r.skip(n + 1).ok()
}

fn loop_filter_params(r: &mut BitReader<'_>) -> Option<()> {
    r.skip(6 + 3).ok()?; // loop_filter_level, loop_filter_sharpness
    if r.flag().ok()? && r.flag().ok()? {
        // loop_filter_delta_enabled, loop_filter_delta_update: 4 ref deltas, 2 mode deltas.
        for _ in 0..6 {
            if r.flag().ok()? {
                skip_su(r, 6)?;
            }
        }
    }
    Some(())
}

fn quantization_params(r: &mut BitReader<'_>) -> Option<()> {
    r.skip(8).ok()?; // base_q_idx
    for _ in 0..3 {
        if r.flag().ok()? {
            skip_su(r, 4)?; // delta_q_y_dc, delta_q_uv_dc, delta_q_uv_ac
        }
    }
    Some(())
}

fn read_prob(r: &mut BitReader<'_>) -> Option<()> {
    if r.flag().ok()? {
        r.skip(8).ok()?;
    }
    Some(())
}

fn segmentation_params(r: &mut BitReader<'_>) -> Option<()> {
    const FEATURE_BITS: [u32; 4] = [8, 6, 2, 0];
    const FEATURE_SIGNED: [bool; 4] = [true, true, false, false];
    if !r.flag().ok()? {
        return Some(()); // segmentation_enabled
    }
    if r.flag().ok()? {
        // segmentation_update_map: tree probabilities, then the temporal ones if asked.
        for _ in 0..7 {
            read_prob(r)?;
        }
        if r.flag().ok()? {
            for _ in 0..3 {
                read_prob(r)?;
            }
        }
    }
    if r.flag().ok()? {
        r.skip(1).ok()?; // segmentation_abs_or_delta_update
        for _ in 0..8 {
            for (bits, signed) in FEATURE_BITS.iter().zip(FEATURE_SIGNED) {
                if r.flag().ok()? {
                    r.skip(bits + u32::from(signed)).ok()?;
                }
            }
        }
    }
    Some(())
}

fn tile_info(r: &mut BitReader<'_>, width: u32) -> Option<()> {
    let mi_cols = (width + 7) >> 3;
    let sb64_cols = (mi_cols + 7) >> 3;
    let mut min_log2 = 0;
    while (64 << min_log2) < sb64_cols {
        min_log2 += 1;
    }
    let mut max_log2 = 1;
    while (sb64_cols >> max_log2) >= 4 {
        max_log2 += 1;
    }
    max_log2 -= 1;
    let mut log2 = min_log2;
    while log2 < max_log2 {
        if !r.flag().ok()? {
            break;
        }
        log2 += 1;
    }
    if r.flag().ok()? {
        r.skip(1).ok()?; // increment_tile_rows_log2
    }
    Some(())
}

/// Appends bits to bytes, most significant bit first.
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn put(&mut self, bit: bool) {
        if self.bits.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            *self.bytes.last_mut().expect("pushed") |= 0x80 >> (self.bits % 8);
        }
        self.bits += 1;
    }

    fn copy(&mut self, from: &[u8], bits: std::ops::Range<usize>) {
        for i in bits {
            self.put(from[i / 8] & (0x80 >> (i % 8)) != 0);
        }
    }
}

/// `frame` with `show_frame` = 0 (and, for an inter frame, the `intra_only` = 0 that then
/// follows), everything else the same; `header` is its parsed header.
pub fn hide(frame: &[u8], header: &UncompressedHeader) -> Vec<u8> {
    let mut w = BitWriter {
        bytes: Vec::with_capacity(frame.len() + 1),
        bits: 0,
    };
    let show = header.show_frame_bit;
    w.copy(frame, 0..show);
    w.put(false); // show_frame
    w.copy(frame, show + 1..show + 2); // error_resilient_mode
    if !header.keyframe {
        w.put(false); // intra_only
    }
    w.copy(frame, show + 2..header.end_bit);
    let rest = header.end_bit.div_ceil(8); // after trailing_bits
    w.bytes.extend_from_slice(&frame[rest..]);
    w.bytes
}

/// Joins the layer frames of SVC pictures into superframes, following the reference slots
/// from picture to picture. One per stream, fed every picture in order.
#[derive(Debug, Default)]
pub struct SvcPictures {
    refs: RefSizes,
}

/// What [`SvcPictures::join`] made of a picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The layers as a superframe in which only the top layer is shown.
    Hidden(Vec<u8>),
    /// The layers as a superframe as they came, every layer shown: a header could not be
    /// read, or a layer could not be hidden without changing the next one's decoding.
    AsSent(Vec<u8>),
}

impl SvcPictures {
    /// The superframe of one picture's layer frames (lowest layer first); `None` for a single
    /// layer, which stays as it is. Call it for every picture, so the reference slots stay
    /// known.
    pub fn join(&mut self, layers: &[&[u8]]) -> Option<Joined> {
        let mut headers = Vec::with_capacity(layers.len());
        let mut readable = true;
        for layer in layers {
            match UncompressedHeader::parse(layer, &self.refs).filter(|_| readable) {
                Some(h) => {
                    self.refs.update(&h);
                    headers.push(h);
                }
                None => {
                    // The slots are unknown until a keyframe refreshes them all.
                    readable = false;
                    self.refs = RefSizes::default();
                }
            }
        }
        if layers.len() == 1 {
            return None;
        }
        let as_sent = || -> Joined {
            let sizes: Vec<usize> = layers.iter().map(|l| l.len()).collect();
            Joined::AsSent([layers.concat(), superframe_index(&sizes)].concat())
        };
        if !readable {
            return Some(as_sent());
        }
        // A shown lower layer is hidden when that cannot change how the next one decodes.
        let hideable = headers.windows(2).all(|w| {
            let (this, next) = (&w[0], &w[1]);
            !this.shown || next.error_resilient || next.size != this.size
        });
        if !hideable || !headers.last().is_some_and(|h| h.shown) {
            return Some(as_sent());
        }
        let mut frames: Vec<Vec<u8>> = layers[..layers.len() - 1]
            .iter()
            .zip(&headers)
            .map(|(layer, h)| {
                if h.shown {
                    hide(layer, h)
                } else {
                    layer.to_vec()
                }
            })
            .collect();
        frames.push(layers[layers.len() - 1].to_vec());
        let sizes: Vec<usize> = frames.iter().map(Vec::len).collect();
        Some(Joined::Hidden(
            [frames.concat(), superframe_index(&sizes)].concat(),
        ))
    }
}

/// A layer frame of a picture and its picture size.
pub type LayerFrame<'a> = (&'a [u8], (u32, u32));

/// The layer frames of a superframe [`SvcPictures::join`] hid (hidden lower layers of growing
/// size, the top one shown), with their picture sizes, for a packetizer that sends them as
/// spatial layers; `None` for anything else (one frame, libvpx's alt-ref superframes of
/// equal sizes, unreadable headers). `refs` follows the stream's frames: call it for every
/// frame in order.
pub fn svc_layers<'a>(data: &'a [u8], refs: &mut RefSizes) -> Option<Vec<LayerFrame<'a>>> {
    let (frames, canonical) = match superframe_frames(data) {
        Some(ranges) => {
            let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
            let index = superframe_index(&sizes);
            // Only as [`SvcPictures::join`] writes them: the frames fill the superframe, and
            // the index has the fewest bytes per size.
            let canonical = ranges.last().map(|r| r.end) == Some(data.len() - index.len())
                && data.ends_with(&index);
            let frames: Vec<&[u8]> = ranges.into_iter().map(|r| &data[r]).collect();
            (frames, canonical)
        }
        None => (vec![data], false),
    };
    let mut headers = Vec::with_capacity(frames.len());
    for frame in &frames {
        match UncompressedHeader::parse(frame, refs) {
            Some(h) => {
                refs.update(&h);
                headers.push(h);
            }
            None => {
                *refs = RefSizes::default();
                return None;
            }
        }
    }
    let area = |h: &UncompressedHeader| u64::from(h.size.0) * u64::from(h.size.1);
    let layered = canonical
        && frames.len() > 1
        && headers.last().is_some_and(|h| h.shown)
        && headers[..headers.len() - 1].iter().all(|h| !h.shown)
        && headers.windows(2).all(|w| area(&w[0]) < area(&w[1]));
    layered.then(|| {
        frames
            .into_iter()
            .zip(headers.iter().map(|h| h.size))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::read_ivf;

    /// Chromium's VP9 with `scalabilityMode: 'L2T1'` (640x360 and 1280x720 layers, fake
    /// camera), five pictures from a keyframe, each joined by Switchyard's depacketizer into a
    /// superframe of both layer frames as sent (fixtures/README.md).
    const CHROMIUM_L2T1: &[u8] = include_bytes!("../../../fixtures/chromium-vp9-l2t1.ivf");

    fn layers(picture: &[u8]) -> Vec<&[u8]> {
        superframe_frames(picture)
            .unwrap()
            .into_iter()
            .map(|r| &picture[r])
            .collect()
    }

    #[test]
    fn chromium_layer_frames_read_to_their_ends() {
        let mut refs = RefSizes::default();
        for (i, picture) in read_ivf(CHROMIUM_L2T1).into_iter().enumerate() {
            let sizes: Vec<(u32, u32)> = layers(picture)
                .into_iter()
                .map(|layer| {
                    let h = UncompressedHeader::parse(layer, &refs).unwrap();
                    refs.update(&h);
                    assert!(h.shown && h.error_resilient, "picture {i}: {h:?}");
                    assert_eq!(h.keyframe, i == 0 && h.size.0 == 640);
                    // header_size_in_bytes and the compressed header follow, byte aligned.
                    assert!(h.end_bit.div_ceil(8) < layer.len());
                    h.size
                })
                .collect();
            assert_eq!(sizes, [(640, 360), (1280, 720)], "picture {i}");
        }
    }

    #[test]
    fn joined_pictures_show_only_their_top_layer() {
        let mut pictures = SvcPictures::default();
        let mut refs = RefSizes::default();
        let mut check = RefSizes::default();
        for picture in read_ivf(CHROMIUM_L2T1) {
            let sent = layers(picture);
            let Some(Joined::Hidden(joined)) = pictures.join(&sent) else {
                panic!("not hidden")
            };
            if let Some(key) = crate::vp9::Vp9KeyframeInfo::parse(&joined) {
                assert_eq!((key.width, key.height), (1280, 720), "the top layer's size");
            }
            let out = svc_layers(&joined, &mut refs).expect("spatial layers");
            assert_eq!(out.len(), 2);
            assert_eq!((out[0].1, out[1].1), ((640, 360), (1280, 720)));
            let out: Vec<&[u8]> = out.into_iter().map(|(f, _)| f).collect();
            assert_eq!(out[1], sent[1], "the top layer is untouched");
            let before = UncompressedHeader::parse(sent[0], &check).unwrap();
            let after = UncompressedHeader::parse(out[0], &check).unwrap();
            check.update(&before);
            check.update(&UncompressedHeader::parse(sent[1], &check).unwrap());
            assert!(!after.shown && !after.intra_only);
            assert_eq!(
                (after.size, after.refresh_frame_flags, after.keyframe),
                (before.size, before.refresh_frame_flags, before.keyframe)
            );
            // The compressed header and tiles are the same bytes.
            let tail = |f: &[u8], h: &UncompressedHeader| f.len() - h.end_bit.div_ceil(8);
            let n = tail(sent[0], &before);
            assert_eq!(n, tail(out[0], &after));
            assert_eq!(sent[0][sent[0].len() - n..], out[0][out[0].len() - n..]);
        }
        if let Some(path) = std::env::var_os("SWITCHYARD_DUMP_SVC") {
            // For a decoder check by hand: the joined pictures as an IVF file.
            let mut pictures = SvcPictures::default();
            let mut ivf = CHROMIUM_L2T1[..32].to_vec();
            for (i, picture) in read_ivf(CHROMIUM_L2T1).into_iter().enumerate() {
                let Some(Joined::Hidden(joined)) = pictures.join(&layers(picture)) else {
                    panic!()
                };
                ivf.extend_from_slice(&(joined.len() as u32).to_le_bytes());
                ivf.extend_from_slice(&(i as u64).to_le_bytes());
                ivf.extend_from_slice(&joined);
            }
            std::fs::write(path, ivf).unwrap();
        }
    }

    #[test]
    fn unreadable_or_equal_sized_layers_stay_as_sent() {
        let pictures = read_ivf(CHROMIUM_L2T1);
        let key = layers(pictures[0]);
        let mut joiner = SvcPictures::default();
        // Two layers of the same size that the next one would read motion vectors from.
        let same = [key[0], key[0]];
        assert!(
            matches!(joiner.join(&same), Some(Joined::Hidden(_))),
            "a keyframe next is intra"
        );
        // An inter picture before any keyframe: its sizes come from unknown slots.
        let mut fresh = SvcPictures::default();
        assert!(matches!(
            fresh.join(&layers(pictures[1])),
            Some(Joined::AsSent(_))
        ));
        // Garbage, and a single layer, stay as they are.
        assert_eq!(fresh.join(&[&[1, 2, 3]]), None);
        assert!(matches!(
            fresh.join(&[&[1, 2, 3], &[4]]),
            Some(Joined::AsSent(_))
        ));
        let mut refs = RefSizes::default();
        assert_eq!(svc_layers(&[1, 2, 3], &mut refs), None);
        // Cut short anywhere in the header: nothing read, no panic.
        let refs = RefSizes::default();
        let whole = UncompressedHeader::parse(key[0], &refs).unwrap();
        for n in 0..whole.end_bit / 8 {
            assert!(UncompressedHeader::parse(&key[0][..n], &refs).is_none());
        }
    }
}
