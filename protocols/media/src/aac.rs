//! AAC's AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1): object type, sample rate, channels.

use crate::bits::BitReader;
use crate::error::MediaError;
use bytes::Bytes;

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
    /// The config bytes as received.
    pub bytes: Bytes,
}

impl AudioSpecificConfig {
    pub fn parse(bytes: Bytes) -> Result<Self, MediaError> {
        const WHAT: &str = "AudioSpecificConfig";
        let mut r = BitReader::new(&bytes, WHAT);
        let mut object_type = r.bits(5)? as u8;
        if object_type == 31 {
            object_type = 32 + r.bits(6)? as u8;
        }
        if object_type == 0 {
            return Err(MediaError::invalid(WHAT, "audio object type 0"));
        }
        let index = r.bits(4)? as usize;
        let sample_rate = if index == 15 {
            r.bits(24)?
        } else {
            *SAMPLE_RATES.get(index).ok_or_else(|| {
                MediaError::invalid(WHAT, format!("sampling frequency index {index}"))
            })?
        };
        if sample_rate == 0 {
            return Err(MediaError::invalid(WHAT, "sample rate 0"));
        }
        let channels = r.bits(4)? as u8;
        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            channels,
            bytes,
        })
    }

    /// `mp4a.40.N` (RFC 6381 3.3).
    pub fn rfc6381_codec(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_44100_stereo() {
        // ffmpeg's native AAC encoder, 44.1 kHz stereo.
        let asc = AudioSpecificConfig::parse(Bytes::from_static(&[0x12, 0x10])).unwrap();
        assert_eq!(
            (asc.object_type, asc.sample_rate, asc.channels),
            (2, 44100, 2)
        );
        assert_eq!(asc.rfc6381_codec(), "mp4a.40.2");
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x17])).is_err());
        assert!(AudioSpecificConfig::parse(Bytes::from_static(&[0x00, 0x00])).is_err());
        assert!(AudioSpecificConfig::parse(Bytes::new()).is_err());
    }
}
