//! Helpers shared by the unit tests: reading the captures in `testdata/`, a seeded PRNG.

/// One RTP packet of a capture.
#[derive(Clone, Debug)]
pub struct Captured {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

impl Captured {
    pub fn packet(&self) -> crate::PacketRef<'_> {
        crate::PacketRef {
            sequence: self.sequence,
            timestamp: self.timestamp,
            marker: self.marker,
            payload: &self.payload,
        }
    }
}

/// RTP packets framed by 2-byte lengths (RFC 4571), as GStreamer's `rtpstreampay` writes them.
pub fn read_rfc4571(mut data: &[u8]) -> Vec<Captured> {
    let mut packets = Vec::new();
    while !data.is_empty() {
        let len = u16::from_be_bytes([data[0], data[1]]) as usize;
        let p = &data[2..2 + len];
        data = &data[2 + len..];
        assert_eq!(p[0] >> 6, 2, "RTP version");
        let mut start = 12 + 4 * (p[0] & 0x0f) as usize;
        if p[0] & 0x10 != 0 {
            let words = u16::from_be_bytes([p[start + 2], p[start + 3]]) as usize;
            start += 4 + 4 * words;
        }
        let end = if p[0] & 0x20 != 0 {
            len - p[len - 1] as usize
        } else {
            len
        };
        packets.push(Captured {
            sequence: u16::from_be_bytes([p[2], p[3]]),
            timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            marker: p[1] & 0x80 != 0,
            payload: p[start..end].to_vec(),
        });
    }
    packets
}

/// Xorshift64: a deterministic pseudo-random sequence without a dependency.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
