//! RTP payloads <-> Switchyard frames, for inputs that receive RTP (WHIP, RTSP pulls) and
//! outputs that send it (WHEP).
//!
//! RTP itself is RFC 3550. The caller owns the sockets, SRTP and header parsing; this crate
//! starts at the fields of a parsed packet ([`PacketRef`]) and ends at [`Payload`]s to put
//! behind a header:
//!
//! - [`reorder`]: puts packets back in sequence-number order and counts losses
//!   (RFC 3550 A.1 rules for 16-bit sequence numbers).
//! - [`h264`]: RFC 6184 packetization-mode 1 (single NAL unit, STAP-A, FU-A) both ways.
//! - [`h265`]: RFC 7798 single NAL unit packets, AP and FU both ways.
//! - [`vp8`]: RFC 7741, VP8 payload descriptor both ways.
//! - [`vp9`]: RFC 9628, VP9 payload descriptor both ways (one spatial layer), and the
//!   `vpcC` record from a keyframe.
//! - [`av1`]: the AV1 RTP payload specification v1.0, OBU elements both ways, and the `av1C`
//!   record from a sequence header.
//! - [`aac`]: RFC 3640 `mpeg4-generic` (AAC-hbr, AAC-lbr), receiving side.
//! - [`opus`]: RFC 7587, one packet per frame; frame durations from the TOC byte.
//! - [`header`]: the fixed RTP header of a plain (not SRTP) datagram.
//! - [`rtcp`]: sender reports in, receiver reports out (RFC 3550 6.4).
//! - [`fmtp`]: SDP format parameters and their base64.
//! - [`clock`]: 32-bit RTP timestamps of several tracks onto one time origin, aligned by
//!   arrival time and then by RTCP sender reports (RFC 3550 6.4.1).
//!
//! Nothing here does I/O, spawns tasks or reads a clock: time comes in as arguments. Bad input
//! from the network is an [`RtpError`], never a panic.

pub mod aac;
mod assembler;
pub mod av1;
pub mod clock;
mod error;
pub mod fmtp;
mod framing;
pub mod h264;
pub mod h265;
pub mod header;
pub mod opus;
mod packet;
pub mod reorder;
pub mod rtcp;
#[cfg(test)]
mod test_rng;
#[cfg(test)]
mod testutil;
pub mod vp8;
pub mod vp9;

pub use error::RtpError;
pub use packet::{CodedFrame, PacketRef, Payload};
