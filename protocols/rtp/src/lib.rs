//! RTP payloads <-> Switchyard frames, for inputs that receive RTP (WHIP, RTSP raw mode) and
//! outputs that send it (WHEP).
//!
//! RTP itself is RFC 3550. The caller owns the sockets, SRTP and header parsing; this crate
//! starts at the fields of a parsed packet ([`PacketRef`]) and ends at [`Payload`]s to put
//! behind a header:
//!
//! - [`reorder`]: puts packets back in sequence-number order and counts losses
//!   (RFC 3550 A.1 rules for 16-bit sequence numbers).
//! - [`h264`]: RFC 6184 packetization-mode 1 (single NAL unit, STAP-A, FU-A) both ways.
//! - [`vp8`]: RFC 7741, VP8 payload descriptor both ways.
//! - [`vp9`]: RFC 9628, VP9 payload descriptor both ways (one spatial layer), and the
//!   `vpcC` record from a keyframe.
//! - [`av1`]: the AV1 RTP payload specification v1.0, OBU elements both ways, and the `av1C`
//!   record from a sequence header.
//! - [`opus`]: RFC 7587, one packet per frame; frame durations from the TOC byte.
//! - [`clock`]: 32-bit RTP timestamps of several tracks onto one time origin, aligned by
//!   arrival time and then by RTCP sender reports (RFC 3550 6.4.1).
//!
//! Nothing here does I/O, spawns tasks or reads a clock: time comes in as arguments. Bad input
//! from the network is an [`RtpError`], never a panic.

mod assembler;
pub mod av1;
pub mod clock;
pub mod h264;
pub mod opus;
pub mod reorder;
#[cfg(test)]
mod testutil;
pub mod vp8;
pub mod vp9;

use bytes::Bytes;

/// Why a packet (or a frame to packetize) could not be used. Depacketizers stay usable after
/// an error: the access unit the packet belonged to is dropped and output resumes at the next
/// keyframe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// The payload contradicts itself: a length overruns the packet, a header is cut short.
    #[error("RTP packet seq={sequence} ts={timestamp}: {what}: {reason}")]
    Malformed {
        sequence: u16,
        timestamp: u32,
        what: &'static str,
        reason: String,
    },
    /// A valid payload structure that this crate does not implement (e.g. H.264 interleaved
    /// mode), so every packet like it will fail the same way.
    #[error("RTP packet seq={sequence} ts={timestamp}: {what} is not supported")]
    Unsupported {
        sequence: u16,
        timestamp: u32,
        what: &'static str,
    },
    /// An access unit grew past the size any real encoder produces (a sender that never ends
    /// its frames); it is dropped rather than kept in memory.
    #[error("RTP packet seq={sequence} ts={timestamp}: access unit of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        sequence: u16,
        timestamp: u32,
        size: usize,
        max: usize,
    },
    /// A frame handed to a packetizer is not well-formed 4-byte length-prefixed NAL units.
    #[error("frame to packetize, byte {offset}: {reason}")]
    BadFrame { offset: usize, reason: String },
}

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

pub(crate) fn malformed(packet: &PacketRef<'_>, what: &'static str, reason: String) -> RtpError {
    RtpError::Malformed {
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        what,
        reason,
    }
}
