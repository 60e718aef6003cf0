//! The units the payload formats work on: a parsed packet in ([`PacketRef`]), a payload out
//! ([`Payload`]), and a coded picture out of the VP8, VP9 and AV1 depacketizers
//! ([`CodedFrame`]).

use bytes::Bytes;

/// One RTP packet as the depacketizers see it (header fields already parsed by the caller,
/// padding and header extensions already removed from `payload`).
#[derive(Clone, Copy, Debug)]
pub struct PacketRef<'a> {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// One payload produced by a packetizer, shared by every receiver ([`Bytes`], never copied per
/// receiver). The caller adds the RTP header (sequence number, timestamp, SSRC) per receiver.
#[derive(Clone, Debug)]
pub struct Payload {
    pub data: Bytes,
    /// The RTP marker bit: set on the last packet of a video access unit.
    pub marker: bool,
}

/// One coded picture out of the VP8, VP9 and AV1 depacketizers: the bytes a WebM or MP4
/// sample of that codec holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodedFrame {
    /// The RTP timestamp of its packets (90 kHz).
    pub timestamp: u32,
    pub data: Bytes,
    /// Decodable without any earlier frame.
    pub keyframe: bool,
}
