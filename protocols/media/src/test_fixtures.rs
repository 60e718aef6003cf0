//! Readers of the capture files in `fixtures/` (see its README for where each came from),
//! shared by the unit tests.

/// The frames of an IVF file (32-byte file header; per frame a 12-byte header with the
/// frame size, little-endian, first).
pub fn read_ivf(data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut rest = &data[32..];
    while rest.len() >= 12 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        frames.push(&rest[12..12 + len]);
        rest = &rest[12 + len..];
    }
    frames
}
