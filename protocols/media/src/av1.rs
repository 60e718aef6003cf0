//! AV1 bitstream pieces outside the frame data (AV1 bitstream specification): OBUs (5.3) in
//! the low overhead format, LEB128 (4.10.5), and the sequence header (5.5), which gives the
//! profile, level and chroma format of an `av1C` record and the picture size of an `av01`
//! sample entry. Shared by the RTP payload format and the fMP4 muxer.

use crate::bits::BitReader;
use bytes::{BufMut, BytesMut};

pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_FRAME_HEADER: u8 = 3;
pub const OBU_FRAME: u8 = 6;
pub const OBU_TILE_LIST: u8 = 8;
pub const OBU_PADDING: u8 = 15;

/// One OBU (AV1 5.3) inside an element or a temporal unit.
#[derive(Debug, Clone, Copy)]
pub struct Obu<'a> {
    pub kind: u8,
    /// The OBU header bytes (one, or two with the extension), as received.
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Obu<'a> {
    /// An OBU with or without its size field; `data` is exactly one OBU when it has none.
    /// Returns the OBU and the bytes it took.
    pub fn parse_sized(data: &'a [u8]) -> Result<(Self, usize), String> {
        let first = *data.first().ok_or("an empty OBU")?;
        if first & 0x80 != 0 {
            return Err("the forbidden bit of the OBU header is set".into());
        }
        let header_len = if first & 0x04 != 0 { 2 } else { 1 };
        let header = data
            .get(..header_len)
            .ok_or("the OBU extension header is cut short")?;
        let rest = &data[header_len..];
        let (payload, used) = if first & 0x02 != 0 {
            let (size, n) = leb128(rest).ok_or("bad OBU size field")?;
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            let payload = rest.get(n..n.saturating_add(size)).ok_or_else(|| {
                format!(
                    "OBU size {size} overruns the data ({} bytes)",
                    rest.len() - n
                )
            })?;
            (payload, header_len + n + size)
        } else {
            (rest, data.len())
        };
        Ok((
            Obu {
                kind: (first >> 3) & 0x0f,
                header,
                payload,
            },
            used,
        ))
    }

    pub fn parse(element: &'a [u8]) -> Result<Self, String> {
        Obu::parse_sized(element).map(|(obu, _)| obu)
    }

    /// Writes the OBU with its size field (obu_has_size_field = 1).
    pub fn write(&self, out: &mut BytesMut) {
        out.put_u8(self.header[0] | 0x02);
        out.put_slice(&self.header[1..]);
        put_leb128(out, self.payload.len() as u64);
        out.put_slice(self.payload);
    }

    /// The OBU without its size field, as an RTP OBU element.
    pub fn element_len(&self) -> usize {
        self.header.len() + self.payload.len()
    }
}

/// The OBUs of a temporal unit in low overhead format; an error on the first bad one.
pub fn obus(mut data: &[u8]) -> impl Iterator<Item = Result<Obu<'_>, String>> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        if data[0] & 0x02 == 0 {
            data = &[];
            return Some(Err(
                "an OBU without size field inside a temporal unit".into()
            ));
        }
        match Obu::parse_sized(data) {
            Ok((obu, used)) => {
                data = &data[used..];
                Some(Ok(obu))
            }
            Err(e) => {
                data = &[];
                Some(Err(e))
            }
        }
    })
}

/// A low-overhead OBU stream (an `.obu` capture) split at its temporal delimiters into
/// temporal units without them (MP4 `av01` samples, AV1 ISOBMFF binding 2.4).
pub fn temporal_units(mut data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut units: Vec<Vec<u8>> = Vec::new();
    while !data.is_empty() {
        let (obu, used) = Obu::parse_sized(data)?;
        if obu.kind == OBU_TEMPORAL_DELIMITER {
            units.push(Vec::new());
        } else {
            units
                .last_mut()
                .ok_or("the stream does not start with a temporal delimiter")?
                .extend_from_slice(&data[..used]);
        }
        data = &data[used..];
    }
    Ok(units)
}

/// Reads a LEB128 value (AV1 4.10.5): at most 8 bytes, value below 2^32. Returns it and
/// its length.
pub fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (value <= u64::from(u32::MAX)).then_some((value, i + 1));
        }
    }
    None
}

pub fn leb128_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 0x80 {
        value >>= 7;
        n += 1;
    }
    n
}

pub fn put_leb128(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// What the AV1CodecConfigurationRecord takes from a sequence header (AV1 5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1SequenceInfo {
    pub profile: u8,
    pub level: u8,
    pub tier: u8,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub subsampling: (u8, u8),
    pub chroma_sample_position: u8,
    pub max_width: u32,
    pub max_height: u32,
}

impl Av1SequenceInfo {
    /// Reads a sequence header OBU's payload; `None` when it is cut short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let mut r = BitReader::new(payload, "AV1 sequence header");
        let profile = r.bits(3).ok()? as u8;
        r.skip(1).ok()?; // still_picture
        let reduced = r.flag().ok()?;
        let (level, tier);
        if reduced {
            level = r.bits(5).ok()? as u8;
            tier = 0;
        } else {
            let mut decoder_model = None;
            if r.flag().ok()? {
                // timing_info
                r.skip(64).ok()?;
                if r.flag().ok()? {
                    r.ue().ok()?; // num_ticks_per_picture_minus_1 (uvlc)
                }
                if r.flag().ok()? {
                    let buffer_delay_length = r.bits(5).ok()? + 1;
                    r.skip(32 + 5 + 5).ok()?;
                    decoder_model = Some(buffer_delay_length);
                }
            }
            let initial_display_delay = r.flag().ok()?;
            let points = r.bits(5).ok()? + 1;
            let (mut level0, mut tier0) = (0, 0);
            for i in 0..points {
                r.skip(12).ok()?; // operating_point_idc
                let level = r.bits(5).ok()? as u8;
                let tier = if level > 7 { r.bits(1).ok()? as u8 } else { 0 };
                if i == 0 {
                    (level0, tier0) = (level, tier);
                }
                if let Some(n) = decoder_model {
                    if r.flag().ok()? {
                        r.skip(2 * n + 1).ok()?;
                    }
                }
                if initial_display_delay && r.flag().ok()? {
                    r.skip(4).ok()?;
                }
            }
            (level, tier) = (level0, tier0);
        }
        let width_bits = r.bits(4).ok()? + 1;
        let height_bits = r.bits(4).ok()? + 1;
        let max_width = r.bits(width_bits).ok()? + 1;
        let max_height = r.bits(height_bits).ok()? + 1;
        if !reduced && r.flag().ok()? {
            r.skip(4 + 3).ok()?; // frame id lengths
        }
        r.skip(3).ok()?; // 128x128 superblock, filter intra, intra edge filter
        if !reduced {
            r.skip(4).ok()?; // interintra, masked compound, warped motion, dual filter
            let order_hint = r.flag().ok()?;
            if order_hint {
                r.skip(2).ok()?; // jnt_comp, ref_frame_mvs
            }
            let force_screen_content_tools = if r.flag().ok()? { 2 } else { r.bits(1).ok()? };
            if force_screen_content_tools > 0 && !r.flag().ok()? {
                r.skip(1).ok()?; // seq_force_integer_mv
            }
            if order_hint {
                r.skip(3).ok()?;
            }
        }
        r.skip(3).ok()?; // superres, cdef, restoration
                         // color_config (5.5.2)
        let high_bitdepth = r.flag().ok()?;
        let twelve_bit = profile == 2 && high_bitdepth && r.flag().ok()?;
        let monochrome = profile != 1 && r.flag().ok()?;
        let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
        if r.flag().ok()? {
            primaries = r.bits(8).ok()?;
            transfer = r.bits(8).ok()?;
            matrix = r.bits(8).ok()?;
        }
        let (subsampling, mut chroma_sample_position) = if monochrome {
            ((1, 1), 0)
        } else if primaries == 1 && transfer == 13 && matrix == 0 {
            ((0, 0), 0)
        } else {
            r.skip(1).ok()?; // color_range
            let subsampling = match profile {
                0 => (1, 1),
                1 => (0, 0),
                _ if twelve_bit => {
                    let x = r.bits(1).ok()? as u8;
                    let y = if x == 1 { r.bits(1).ok()? as u8 } else { 0 };
                    (x, y)
                }
                _ => (1, 0),
            };
            (subsampling, 0)
        };
        if !monochrome
            && subsampling == (1, 1)
            && !(primaries == 1 && transfer == 13 && matrix == 0)
        {
            chroma_sample_position = r.bits(2).ok()? as u8;
        }
        Some(Av1SequenceInfo {
            profile,
            level,
            tier,
            high_bitdepth,
            twelve_bit,
            monochrome,
            subsampling,
            chroma_sample_position,
            max_width,
            max_height,
        })
    }
}

/// The payload of the first sequence header OBU in `data` (OBUs with size fields: a temporal
/// unit, or an `av1C` record's configOBUs); `None` if there is none before a malformed OBU.
pub fn sequence_header(data: &[u8]) -> Option<&[u8]> {
    obus(data)
        .map_while(Result::ok)
        .find(|o| o.kind == OBU_SEQUENCE_HEADER)
        .map(|o| o.payload)
}

/// The picture size (max_frame_width, max_frame_height) from the first sequence header in
/// `data` (a temporal unit, or configOBUs).
pub fn picture_size(data: &[u8]) -> Option<(u32, u32)> {
    sequence_header(data)
        .and_then(Av1SequenceInfo::parse)
        .map(|i| (i.max_width, i.max_height))
}

/// The configOBUs of an `av1C` record (AV1 ISOBMFF binding 2.3.3: its bytes after the first 4).
pub fn av1c_config_obus(av1c: &[u8]) -> &[u8] {
    av1c.get(4..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The temporal units of `fixtures/ffmpeg9-av1-426x240.obu` (an AV1 low overhead
    /// bitstream), split at temporal delimiters, delimiters removed: MP4 `av01` samples.
    fn svtav1_temporal_units() -> Vec<Vec<u8>> {
        const OBU: &[u8] = include_bytes!("../../../fixtures/ffmpeg9-av1-426x240.obu");
        temporal_units(OBU).unwrap()
    }

    /// The first temporal unit of FFmpeg 9.0.2 + libsvtav1, 426x240 (coded as 432x240):
    /// its sequence header gives the picture size.
    #[test]
    fn svtav1_keyframe_gives_its_picture_size() {
        let units = svtav1_temporal_units();
        assert_eq!(picture_size(&units[0]), Some((426, 240)));
        assert_eq!(picture_size(&units[1]), None, "no sequence header");
    }

    #[test]
    fn cut_short_or_missing_sequence_headers_give_no_size() {
        let tu = svtav1_temporal_units().swap_remove(0);
        for n in 0..24.min(tu.len()) {
            let _ = picture_size(&tu[..n]);
        }
        assert_eq!(picture_size(&[]), None);
        assert_eq!(
            picture_size(&[0x32, 0x00]),
            None,
            "a temporal delimiter only"
        );
        assert_eq!(av1c_config_obus(&[0x81, 0, 0x0c, 0]), &[] as &[u8]);
    }
}
