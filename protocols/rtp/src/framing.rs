//! Access-unit framing shared by the H.264 and H.265 depacketizers. An access unit is every
//! packet with one RTP timestamp (RFC 6184 5.1, RFC 7798 4.1); it ends at the marker bit or,
//! for senders that never set it, when the timestamp changes. Packets lost before a packet, or
//! a packet that cannot be read, damage the access unit they belong to.

use crate::error::{malformed, RtpError};
use crate::packet::PacketRef;

/// The access unit in progress: its timestamp and whether part of it is missing.
#[derive(Debug, Default)]
pub(crate) struct AccessUnitFraming {
    /// RTP timestamp of the access unit in progress; `None` between access units.
    pub timestamp: Option<u32>,
    /// Part of the access unit in progress is missing or unusable.
    pub damaged: bool,
    /// Packets were lost with no access unit in progress: the next one may lack its start.
    next_damaged: bool,
}

/// What a depacketizer of NAL units does with the packets that [`push`] frames.
pub(crate) trait NalUnitPayloads {
    type AccessUnit;
    fn framing(&mut self) -> &mut AccessUnitFraming;
    /// Takes one packet's payload into the access unit in progress.
    fn payload(&mut self, packet: &PacketRef<'_>) -> Result<(), RtpError>;
    /// Forgets a NAL unit being reassembled from fragments.
    fn abandon_fragment(&mut self);
    /// Marks the access unit in progress damaged; output resumes at the next random access
    /// point.
    fn damage(&mut self);
    /// Ends the access unit in progress and hands it out unless it is damaged.
    fn finish(&mut self, out: &mut Vec<Self::AccessUnit>);
}

/// Takes the next packet in sequence-number order (`lost` packets missing just before it) and
/// appends the access units it completes to `out`. On an error the access unit this packet
/// belongs to is dropped; the depacketizer stays usable.
pub(crate) fn push<D: NalUnitPayloads>(
    depacketizer: &mut D,
    packet: PacketRef<'_>,
    lost: u16,
    out: &mut Vec<D::AccessUnit>,
) -> Result<(), RtpError> {
    if lost > 0 {
        // The lost packets may have ended the access unit in progress or started the next.
        depacketizer.damage();
        depacketizer.framing().next_damaged = true;
    }
    if packet.payload.is_empty() {
        return Ok(());
    }
    if depacketizer.framing().timestamp != Some(packet.timestamp) {
        // A new timestamp is a new access unit, whether or not the last one had its marker.
        depacketizer.finish(out);
        let framing = depacketizer.framing();
        framing.timestamp = Some(packet.timestamp);
        framing.damaged = framing.next_damaged;
    }
    depacketizer.framing().next_damaged = false;
    let result = depacketizer.payload(&packet);
    if result.is_err() {
        depacketizer.abandon_fragment();
        depacketizer.damage();
    }
    if packet.marker {
        depacketizer.finish(out);
    }
    result
}

/// Calls `nal` with each NAL unit of an aggregation packet (H.264 STAP-A, RFC 6184 5.7.1; H.265
/// AP, RFC 7798 4.4.2): 16-bit size-prefixed NAL units after a `header_len`-byte header.
pub(crate) fn for_each_aggregated(
    packet: &PacketRef<'_>,
    header_len: usize,
    what: &'static str,
    mut nal: impl FnMut(&[u8]) -> Result<(), RtpError>,
) -> Result<(), RtpError> {
    let payload = packet.payload;
    let mut offset = header_len;
    while offset < payload.len() {
        let size = payload.get(offset..offset + 2).ok_or_else(|| {
            malformed(
                packet,
                what,
                format!("1 byte left at offset {offset}, too short for a NAL unit size"),
            )
        })?;
        let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
        let unit = payload.get(offset + 2..offset + 2 + size).ok_or_else(|| {
            malformed(
                packet,
                what,
                format!(
                    "NAL unit size {size} at offset {offset} overruns the packet ({} bytes left)",
                    payload.len() - offset - 2
                ),
            )
        })?;
        nal(unit)?;
        offset += 2 + size;
    }
    Ok(())
}
