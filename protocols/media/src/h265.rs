//! H.265 helpers: the HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) and its
//! RFC 6381 codec string (ISO/IEC 14496-15 E.3).

use crate::error::MediaError;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    pub general_profile_compatibility_flags: u32,
    pub general_constraint_indicator_flags: [u8; 6],
    pub general_level_idc: u8,
    /// Picture size, when known from elsewhere (stream metadata).
    pub resolution: Option<(u32, u32)>,
    pub record: Bytes,
}

impl HevcConfig {
    pub fn parse(record: Bytes) -> Result<HevcConfig, MediaError> {
        const WHAT: &str = "HEVCDecoderConfigurationRecord";
        if record.len() < 23 {
            return Err(MediaError::Truncated {
                what: WHAT,
                needed: 23,
                had: record.len(),
            });
        }
        if record[0] != 1 {
            return Err(MediaError::invalid(
                WHAT,
                format!("configurationVersion {}", record[0]),
            ));
        }
        let mut constraints = [0u8; 6];
        constraints.copy_from_slice(&record[6..12]);
        Ok(HevcConfig {
            general_profile_space: record[1] >> 6,
            general_tier_flag: record[1] & 0x20 != 0,
            general_profile_idc: record[1] & 0x1f,
            general_profile_compatibility_flags: u32::from_be_bytes([
                record[2], record[3], record[4], record[5],
            ]),
            general_constraint_indicator_flags: constraints,
            general_level_idc: record[12],
            resolution: None,
            record,
        })
    }

    /// e.g. `hvc1.1.6.L93.B0`.
    pub fn rfc6381_codec(&self) -> String {
        let space = match self.general_profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        // The compatibility flags are written in reverse bit order, as hex without leading zeros.
        let compat = self.general_profile_compatibility_flags.reverse_bits();
        let tier = if self.general_tier_flag { 'H' } else { 'L' };
        let mut s = format!(
            "hvc1.{space}{}.{compat:X}.{tier}{}",
            self.general_profile_idc, self.general_level_idc
        );
        let last = self
            .general_constraint_indicator_flags
            .iter()
            .rposition(|b| *b != 0);
        if let Some(last) = last {
            for b in &self.general_constraint_indicator_flags[..=last] {
                s.push_str(&format!(".{b:X}"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_profile_codec_string() {
        let mut rec = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        rec.resize(23, 0);
        let cfg = HevcConfig::parse(Bytes::from(rec)).unwrap();
        assert_eq!(cfg.rfc6381_codec(), "hvc1.1.6.L93.90");
        assert!(HevcConfig::parse(Bytes::from_static(&[1, 2, 3])).is_err());
    }
}
