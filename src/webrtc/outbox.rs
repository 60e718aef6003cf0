//! Datagrams on their way out of the engine: one buffer, reused from flush to flush, that
//! DTLS, STUN and RTCP from `rtc` are copied into and media is protected into (SRTP, see
//! [`super::srtp`]), sent in `sendmmsg` batches ([`super::udp`]); and the counters of what was
//! sent, dropped, retransmitted and how long a frame took to leave.

use super::srtp::SrtpSender;
use super::stats::EngineStats;
use super::udp::{self, Outgoing};
use crate::outputs::whep::OutPacket;
use rtc::peer_connection::RTCPeerConnection;
use rtc::sansio::Protocol;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Outgoing datagrams are sent once this many are pending, even mid-turn: bounds the memory
/// a burst (a keyframe to many viewers, GOP catch-up) holds at once.
pub(super) const FLUSH_AT: usize = 128;

/// Datagrams waiting to go out, in one buffer reused from flush to flush.
pub(super) struct Outbox {
    fd: RawFd,
    buffer: Vec<u8>,
    /// (to, from, start, end) of each datagram in `buffer`.
    datagrams: Vec<(SocketAddr, Option<IpAddr>, usize, usize)>,
    stats: Arc<EngineStats>,
    /// When the frame being fanned out entered the bus (for the send-delay statistics).
    pub(super) sending_frame: Option<Instant>,
    /// `simulate_loss_one_in` and its count.
    loss_one_in: u32,
    media_count: u32,
}

impl Outbox {
    pub(super) fn new(fd: RawFd, stats: Arc<EngineStats>, loss_one_in: u32) -> Self {
        Outbox {
            fd,
            buffer: Vec::with_capacity(FLUSH_AT * 1300),
            datagrams: Vec::with_capacity(FLUSH_AT),
            stats,
            sending_frame: None,
            loss_one_in,
            media_count: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub(super) fn push(&mut self, to: SocketAddr, from: Option<IpAddr>, data: &[u8]) {
        let start = self.buffer.len();
        self.buffer.extend_from_slice(data);
        self.datagrams.push((to, from, start, self.buffer.len()));
    }

    /// Protects `packet` with `srtp` straight into the buffer; `again` for a retransmission.
    /// Returns the datagram's size (0 when a loss is simulated).
    pub(super) fn push_media(
        &mut self,
        (to, from): (SocketAddr, Option<IpAddr>),
        srtp: &mut SrtpSender,
        packet: &OutPacket,
        again: bool,
    ) -> Result<usize, rtc::crypto::CryptoError> {
        if again {
            self.stats.retransmitted.fetch_add(1, Ordering::Relaxed);
        } else if self.loss_one_in > 0 {
            self.media_count = self.media_count.wrapping_add(1);
            if self.media_count.is_multiple_of(self.loss_one_in) {
                self.stats.simulated_losses.fetch_add(1, Ordering::Relaxed);
                return Ok(0);
            }
        }
        let start = self.buffer.len();
        srtp.protect(
            &packet.header,
            &packet.payload,
            packet.roc,
            &mut self.buffer,
        )?;
        self.datagrams.push((to, from, start, self.buffer.len()));
        Ok(self.buffer.len() - start)
    }

    pub(super) fn flush(&mut self) {
        if self.datagrams.is_empty() {
            return;
        }
        let batch: Vec<Outgoing<'_>> = self
            .datagrams
            .iter()
            .map(|&(to, from_ip, start, end)| Outgoing {
                to,
                from_ip,
                data: &self.buffer[start..end],
            })
            .collect();
        let sent = match udp::send(self.fd, &batch) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::debug!(error = %e, "webrtc send");
                0
            }
        };
        let dropped = batch.len() - sent;
        drop(batch);
        if dropped > 0 {
            tracing::debug!(dropped, "webrtc socket full; datagrams dropped");
        }
        self.stats
            .datagrams_sent
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.stats
            .datagrams_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        if let Some(published_at) = self.sending_frame {
            self.stats.record_delay(published_at.elapsed(), sent);
        }
        self.datagrams.clear();
        self.buffer.clear();
    }
}

/// Moves a connection's pending datagrams to the outbox; whether there were any. The
/// destination of its DTLS and RTCP is the selected ICE pair: `media_to` follows it (STUN goes
/// to whichever address checked in, RFC 7983 tells them apart by the first byte).
pub(super) fn drain_writes(
    pc: &mut RTCPeerConnection,
    media_to: &mut Option<(SocketAddr, Option<IpAddr>)>,
    outbox: &mut Outbox,
) -> bool {
    let mut any = false;
    while let Some(out) = pc.poll_write() {
        any = true;
        let from = out.transport.local_addr.ip();
        let from = (!from.is_unspecified()).then_some(from);
        if matches!(out.message.first(), Some(20..=63 | 128..=191)) {
            *media_to = Some((out.transport.peer_addr, from));
        }
        outbox.push(out.transport.peer_addr, from, &out.message);
        if outbox.len() >= FLUSH_AT {
            outbox.flush();
        }
    }
    any
}
