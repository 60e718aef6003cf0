//! Minimal FLV file reader (Adobe FLV spec v10.1, annex E.2-E.3), used to feed captured files
//! to the tag parsers in tests and fuzzing.

use crate::error::FlvError;
use bytes::Bytes;

/// One FLV tag: type 8 audio, 9 video, 18 script data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTag {
    pub tag_type: u8,
    pub timestamp_ms: u32,
    pub body: Bytes,
}

/// Splits an FLV file into its tags.
pub fn read_tags(file: &Bytes) -> Result<Vec<FileTag>, FlvError> {
    const WHAT: &str = "FLV file";
    if file.len() < 13 || &file[..3] != b"FLV" {
        return Err(FlvError::Invalid {
            what: WHAT,
            reason: "no FLV signature".into(),
        });
    }
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    let mut pos = header_len + 4;
    let mut tags = Vec::new();
    while pos + 11 <= file.len() {
        let h = &file[pos..pos + 11];
        let size = (h[1] as usize) << 16 | (h[2] as usize) << 8 | h[3] as usize;
        let timestamp_ms =
            (h[7] as u32) << 24 | (h[4] as u32) << 16 | (h[5] as u32) << 8 | h[6] as u32;
        let start = pos + 11;
        if start + size > file.len() {
            return Err(FlvError::Truncated {
                what: WHAT,
                needed: start + size,
                had: file.len(),
            });
        }
        tags.push(FileTag {
            tag_type: h[0] & 0x1f,
            timestamp_ms,
            body: file.slice(start..start + size),
        });
        pos = start + size + 4;
    }
    Ok(tags)
}
