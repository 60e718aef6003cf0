//! [`RtpError`]: why a packet (or a frame to packetize) could not be used, and the
//! constructor of its most common kind.

use crate::packet::PacketRef;

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
    /// A format parameter of the session description (SDP `a=fmtp`) that cannot be used.
    #[error("{what}: {reason}")]
    BadParameter { what: &'static str, reason: String },
    /// A frame handed to a packetizer is not well-formed 4-byte length-prefixed NAL units.
    #[error("frame to packetize, byte {offset}: {reason}")]
    BadFrame { offset: usize, reason: String },
}

/// An [`RtpError::Malformed`] about `packet`.
pub(crate) fn malformed(packet: &PacketRef<'_>, what: &'static str, reason: String) -> RtpError {
    RtpError::Malformed {
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        what,
        reason,
    }
}
