//! Bit reader for codec headers: MSB-first bits and Exp-Golomb codes (H.264 9.1), over a
//! NAL unit payload from which emulation prevention bytes have been removed (H.264 7.4.1).

use crate::error::MediaError;

/// Removes `emulation_prevention_three_byte`s (`00 00 03` -> `00 00`), H.264 7.4.1.
pub fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    fn end(&self) -> MediaError {
        MediaError::Truncated {
            what: self.what,
            needed: self.pos / 8 + 1,
            had: self.data.len(),
        }
    }

    pub fn bit(&mut self) -> Result<u32, MediaError> {
        let byte = *self.data.get(self.pos / 8).ok_or_else(|| self.end())?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit as u32)
    }

    pub fn bits(&mut self, n: u32) -> Result<u32, MediaError> {
        debug_assert!(n <= 32);
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | self.bit()? as u64;
        }
        Ok(v as u32)
    }

    /// Bits read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn flag(&mut self) -> Result<bool, MediaError> {
        Ok(self.bit()? == 1)
    }

    pub fn skip(&mut self, n: u32) -> Result<(), MediaError> {
        for _ in 0..n {
            self.bit()?;
        }
        Ok(())
    }

    /// `ue(v)`: unsigned Exp-Golomb.
    pub fn ue(&mut self) -> Result<u32, MediaError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(MediaError::invalid(
                    self.what,
                    "Exp-Golomb code longer than 32 bits",
                ));
            }
        }
        let rest = self.bits(zeros)? as u64;
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }

    /// `se(v)`: signed Exp-Golomb.
    pub fn se(&mut self) -> Result<i32, MediaError> {
        let k = self.ue()? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_values() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3,4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        let v: Vec<u32> = (0..5).map(|_| r.ue().unwrap()).collect();
        assert_eq!(v, vec![0, 1, 2, 3, 4]);
        let mut r = BitReader::new(&[0b0100_1100], "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn emulation_prevention_removed() {
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }
}
