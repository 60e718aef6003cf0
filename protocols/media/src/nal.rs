//! H.264/H.265 NAL unit framing: the 4-byte length-prefixed form of frames on the bus (the
//! AVCC/HVCC sample format of ISO/IEC 14496-15), other length sizes, and Annex B byte streams
//! (ITU-T H.264 Annex B) both ways.

use bytes::Bytes;

use crate::error::MediaError;

/// Iterates over the NAL units of a frame in 4-byte length-prefixed form, validating every length.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits { rest: data }
}

pub struct NalUnits<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 4 {
            let had = self.rest.len();
            self.rest = &[];
            return Some(Err(MediaError::Truncated {
                what: "NAL length prefix",
                needed: 4,
                had,
            }));
        }
        let len =
            u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]) as usize;
        let body = &self.rest[4..];
        if len > body.len() {
            self.rest = &[];
            return Some(Err(MediaError::Truncated {
                what: "NAL unit",
                needed: len,
                had: body.len(),
            }));
        }
        let (nal, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok(nal))
    }
}

/// Checks that `data` is a well-formed sequence of 4-byte length-prefixed NAL units.
pub fn validate_length_prefixed(data: &[u8]) -> Result<(), MediaError> {
    for nal in nal_units(data) {
        if nal?.is_empty() {
            return Err(MediaError::invalid("NAL unit", "zero length"));
        }
    }
    Ok(())
}

/// Converts length-prefixed NAL units with `size`-byte lengths (1, 2, 3 or 4) to 4-byte lengths.
pub fn to_four_byte_lengths(data: &[u8], size: usize) -> Result<Bytes, MediaError> {
    if !(1..=4).contains(&size) {
        return Err(MediaError::invalid(
            "NAL length size",
            format!("{size} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 8);
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < size {
            return Err(MediaError::Truncated {
                what: "NAL length prefix",
                needed: size,
                had: rest.len(),
            });
        }
        let len = rest[..size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[size..];
        if len > rest.len() {
            return Err(MediaError::Truncated {
                what: "NAL unit",
                needed: len,
                had: rest.len(),
            });
        }
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    Ok(Bytes::from(out))
}

/// Splits an Annex B byte stream (start codes `00 00 01` / `00 00 00 01`) into NAL units.
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &(_, body_start)) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |&(sc, _)| sc);
        // Trailing zeros belong to the next 4-byte start code (or are trailing_zero_8bits).
        while end > body_start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > body_start {
            nals.push(&data[body_start..end]);
        }
    }
    nals
}

/// Annex B byte stream -> 4-byte length-prefixed NAL units.
pub fn annexb_to_length_prefixed(data: &[u8]) -> Bytes {
    let nals = annexb_nal_units(data);
    let mut out = Vec::with_capacity(data.len() + 4 * nals.len());
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Bytes::from(out)
}

/// 4-byte length-prefixed NAL units -> Annex B with 4-byte start codes.
pub fn length_prefixed_to_annexb(data: &[u8]) -> Result<Bytes, MediaError> {
    let mut out = Vec::with_capacity(data.len());
    for nal in nal_units(data) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal?);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_round_trip_keeps_nal_units() {
        let annexb = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6,
        ];
        let lp = annexb_to_length_prefixed(&annexb);
        let nals: Vec<_> = nal_units(&lp).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5, 6][..]]
        );
        assert_eq!(
            &length_prefixed_to_annexb(&lp).unwrap()[..],
            &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6][..]
        );
    }

    #[test]
    fn absurd_nal_length_is_an_error() {
        let data = [0xff, 0xff, 0xff, 0xf0, 0x65, 1];
        assert!(matches!(
            validate_length_prefixed(&data),
            Err(MediaError::Truncated { .. })
        ));
        assert!(to_four_byte_lengths(&data, 4).is_err());
    }

    #[test]
    fn two_byte_lengths_become_four() {
        let data = [0, 2, 0x65, 9, 0, 1, 0x41];
        assert_eq!(
            &to_four_byte_lengths(&data, 2).unwrap()[..],
            &[0, 0, 0, 2, 0x65, 9, 0, 0, 0, 1, 0x41][..]
        );
    }
}
