//! The RTCP a receiver needs (RFC 3550 6): sender reports read out of a compound packet
//! (6.4.1), the receiver report it sends back (6.4.2) with the SDES CNAME every compound
//! packet must carry (6.5.1), and the reception statistics a report block holds
//! ([`ReceptionStats`], RFC 3550 A.3 and A.8).
//!
//! Reading is lenient in what it skips (unknown packet types, padding, report blocks) and
//! strict in lengths: a length that overruns the datagram ends the parse, never a panic.

/// An RTCP sender report's sender info (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// The sender's wallclock, NTP format (32.32 fixed point seconds since 1900).
    pub ntp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

/// The sender reports of a compound RTCP packet, in order. Parsing stops at the first
/// malformed packet (what came before it is returned).
pub fn sender_reports(compound: &[u8]) -> Vec<SenderReport> {
    let mut out = Vec::new();
    let mut rest = compound;
    while rest.len() >= 4 {
        if rest[0] >> 6 != 2 {
            break;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        let Some(packet) = rest.get(..len) else {
            break;
        };
        if packet[1] == SR && packet.len() >= 28 {
            let word = |at: usize| {
                u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
            };
            out.push(SenderReport {
                ssrc: word(4),
                ntp: (u64::from(word(8)) << 32) | u64::from(word(12)),
                rtp: word(16),
                packet_count: word(20),
                octet_count: word(24),
            });
        }
        rest = &rest[len..];
    }
    out
}

/// True when the compound packet holds a BYE (RFC 3550 6.6): the sender leaves.
pub fn has_bye(compound: &[u8]) -> bool {
    let mut rest = compound;
    while rest.len() >= 4 && rest[0] >> 6 == 2 {
        if rest[1] == BYE {
            return true;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        rest = rest.get(len..).unwrap_or_default();
    }
    false
}

/// What a receiver reports about one source (RFC 3550 6.4.1, report block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of those expected, times 256.
    pub fraction_lost: u8,
    /// Packets lost since the start (24-bit signed; clamped).
    pub cumulative_lost: i32,
    /// Highest sequence number received, extended by its wrap-around count.
    pub highest_sequence: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP timestamp of the last sender report received (0: none).
    pub last_sr: u32,
    /// Time since that report, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// A compound receiver report: RR with `blocks` (at most 31) and SDES with `cname`.
pub fn receiver_report(ssrc: u32, blocks: &[ReportBlock], cname: &str) -> Vec<u8> {
    let blocks = &blocks[..blocks.len().min(31)];
    let mut out = Vec::with_capacity(8 + 24 * blocks.len() + 12 + cname.len());
    out.push(0x80 | blocks.len() as u8);
    out.push(RR);
    out.extend_from_slice(&((1 + 6 * blocks.len()) as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&b.highest_sequence.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.last_sr.to_be_bytes());
        out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
    }
    // SDES: one chunk, CNAME item, then a null item padding to a 32-bit boundary.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.push(0x81);
    out.push(SDES);
    out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1); // CNAME
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk + 1, 0);
    out
}

/// What a receiver counts about one source for its report blocks: packets expected and
/// received (RFC 3550 A.3), interarrival jitter (A.8), the last sender report (6.4.1). Times
/// come in as arguments (microseconds on any monotonic clock).
#[derive(Debug, Clone, Default)]
pub struct ReceptionStats {
    ssrc: u32,
    clock_rate: u32,
    /// First sequence number, extended (`None` before any packet).
    base: Option<u32>,
    /// Highest sequence number, extended by its wrap-around count.
    max: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// (arrival - RTP timestamp) of the previous packet, in RTP units.
    transit: Option<i64>,
    /// Jitter in RTP units, times 16 (A.8's fixed point).
    jitter16: u64,
    /// Middle 32 bits of the last SR's NTP timestamp and when it came.
    last_sr: Option<(u32, u64)>,
}

impl ReceptionStats {
    pub fn new(clock_rate: u32) -> Self {
        ReceptionStats {
            clock_rate: clock_rate.max(1),
            ..Default::default()
        }
    }

    /// One RTP packet received (duplicates and reordered ones too; A.3 counts them all).
    pub fn packet(&mut self, ssrc: u32, sequence: u16, timestamp: u32, arrival_micros: u64) {
        self.ssrc = ssrc;
        if self.base.is_none() {
            self.base = Some(u32::from(sequence));
            self.max = u32::from(sequence);
            self.received = 1;
            self.transit = Some(self.transit_of(timestamp, arrival_micros));
            return;
        }
        let delta = sequence.wrapping_sub(self.max as u16);
        if delta < 0x8000 {
            // Forward (possibly across a wrap): the extended maximum moves.
            self.max = self.max.wrapping_add(u32::from(delta));
        }
        self.received = self.received.wrapping_add(1);
        let transit = self.transit_of(timestamp, arrival_micros);
        if let Some(prev) = self.transit.replace(transit) {
            let d = (transit - prev).unsigned_abs();
            // J += (|D| - J) / 16, in 1/16 units (A.8).
            self.jitter16 = (self.jitter16 + d).saturating_sub(self.jitter16.div_ceil(16));
        }
    }

    /// A sender report of this source arrived.
    pub fn sender_report(&mut self, ntp: u64, arrival_micros: u64) {
        self.last_sr = Some(((ntp >> 16) as u32, arrival_micros));
    }

    /// The report block as of now; starts the next reporting interval.
    pub fn report_block(&mut self, now_micros: u64) -> Option<ReportBlock> {
        let base = self.base?;
        let expected = self.max.wrapping_sub(base).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((middle, at)) => (
                middle,
                (now_micros.saturating_sub(at) * 65536 / 1_000_000).min(u64::from(u32::MAX)) as u32,
            ),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            highest_sequence: self.max,
            jitter: (self.jitter16 / 16).min(u64::from(u32::MAX)) as u32,
            last_sr,
            delay_since_last_sr,
        })
    }

    fn transit_of(&self, timestamp: u32, arrival_micros: u64) -> i64 {
        let arrival = (u128::from(arrival_micros) * u128::from(self.clock_rate) / 1_000_000) as u32;
        i64::from(arrival.wrapping_sub(timestamp) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compound packet as GStreamer's rtpbin sends it: SR (no report blocks) + SDES.
    const GST_SR_SDES: &[u8] = &[
        0x80, 0xc8, 0x00, 0x06, 0x54, 0x9e, 0x3b, 0x38, 0xe9, 0x9b, 0x6a, 0x57, 0x1f, 0x6b, 0x8a,
        0x6c, 0x9d, 0x2c, 0x2e, 0x72, 0x00, 0x00, 0x00, 0x7b, 0x00, 0x01, 0x3d, 0x24, 0x81, 0xca,
        0x00, 0x06, 0x54, 0x9e, 0x3b, 0x38, 0x01, 0x0e, b'u', b's', b'e', b'r', b'@', b'h', b'o',
        b's', b't', b'-', b'a', b'b', b'c', b'd', 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn sender_reports_are_read_from_a_compound_packet() {
        let srs = sender_reports(GST_SR_SDES);
        assert_eq!(
            srs,
            [SenderReport {
                ssrc: 0x549e_3b38,
                ntp: 0xe99b_6a57_1f6b_8a6c,
                rtp: 0x9d2c_2e72,
                packet_count: 123,
                octet_count: 0x13d24,
            }]
        );
        assert!(!has_bye(GST_SR_SDES));
        // Cut anywhere: no panic, nothing made up.
        for n in 0..GST_SR_SDES.len() {
            assert!(sender_reports(&GST_SR_SDES[..n]).len() <= 1);
        }
        assert!(sender_reports(&GST_SR_SDES[..20]).is_empty());
    }

    #[test]
    fn reception_stats_count_losses_across_wrap_around() {
        let mut stats = ReceptionStats::new(90_000);
        assert!(stats.report_block(0).is_none());
        // 65530..65535, 0..9 with 3 and 4 lost; 7 twice and reordered; steady 10 ms spacing.
        let mut seqs: Vec<u16> = (65530..=65535)
            .chain(0..10)
            .filter(|s| !matches!(s, 3 | 4))
            .collect();
        seqs.swap(8, 9);
        seqs.push(7);
        for (i, s) in seqs.iter().enumerate() {
            stats.packet(9, *s, 900 * i as u32, 10_000 * i as u64);
        }
        stats.sender_report(0x1122_3344_5566_7788, 1_000_000);
        let block = stats.report_block(1_500_000).unwrap();
        assert_eq!(block.ssrc, 9);
        assert_eq!(block.highest_sequence, 0x1_0009);
        // 16 expected, 15 received (a duplicate counts): 1, as A.3 computes it.
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(block.fraction_lost, 16);
        assert_eq!(block.jitter, 0);
        assert_eq!(block.last_sr, 0x3344_5566);
        assert_eq!(block.delay_since_last_sr, 32768);
        // Nothing new: nothing lost in this interval.
        assert_eq!(stats.report_block(2_000_000).unwrap().fraction_lost, 0);
    }

    #[test]
    fn receiver_report_is_a_valid_compound_packet() {
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 3,
            cumulative_lost: -2,
            highest_sequence: 0x1_0005,
            jitter: 9,
            last_sr: 0x6a57_1f6b,
            delay_since_last_sr: 65536,
        };
        let rr = receiver_report(0xabcd, &[block], "switchyard");
        assert_eq!(rr.len() % 4, 0);
        assert_eq!(&rr[..4], &[0x81, RR, 0, 7]);
        assert_eq!(&rr[12..16], &[3, 0xff, 0xff, 0xfe]);
        // The SDES packet's length field covers it exactly.
        let sdes = &rr[32..];
        assert_eq!(sdes[1], SDES);
        assert_eq!(4 * (usize::from(sdes[3]) + 1), sdes.len());
        assert_eq!(&sdes[8..10], &[1, 10]);
        assert!(sender_reports(&rr).is_empty());
        let bye = [0x81, BYE, 0, 1, 0, 0, 0, 7];
        let mut with_bye = rr.clone();
        with_bye.extend_from_slice(&bye);
        assert!(has_bye(&with_bye));
    }
}
