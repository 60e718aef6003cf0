//! A small reorder (jitter) buffer keyed by 16-bit RTP sequence numbers (RFC 3550 5.1).
//!
//! Packets over UDP arrive out of order and sometimes twice; the depacketizers need them in
//! order and need to know where something is missing. [`ReorderBuffer`] holds a window of
//! `capacity` sequence numbers starting at the next one to release:
//!
//! - in-order packets are released at once;
//! - a missing packet is waited for until a packet arrives that does not fit the window (it is
//!   full), or until the caller gives up with [`ReorderBuffer::skip_gap`] (on a timer: the
//!   buffer reads no clock);
//! - duplicates and packets older than what was already released are dropped;
//! - a jump of the sender's sequence numbers (a restarted encoder picks a new random start,
//!   RFC 3550 5.1) resets the window instead of waiting: a packet more than `capacity` past
//!   the highest one received releases everything held and starts the window at itself; a
//!   jump far backward is confirmed by a second consecutive packet first, as in RFC 3550 A.1
//!   (`MAX_MISORDER`), so one stray packet cannot reset the window.
//!
//! Memory is bounded by `capacity` packets plus those released but not yet popped.

use std::collections::VecDeque;

/// Packets up to this far behind the next expected one are late duplicates or retransmissions
/// and are dropped; further behind is a restarted sender (RFC 3550 A.1 `MAX_MISORDER`).
const MAX_MISORDER: usize = 100;

/// Largest window: well under half the sequence space, so "ahead" and "behind" stay
/// unambiguous across wrap-around.
const MAX_CAPACITY: usize = 1 << 14;

/// Reorders packets of one RTP stream (one SSRC) by sequence number.
pub struct ReorderBuffer<T> {
    /// `slots[(head + i) % slots.len()]` holds sequence number `next + i`.
    slots: Vec<Option<T>>,
    head: usize,
    /// The sequence number released next; `None` before the first packet.
    next: Option<u16>,
    /// Packets in `slots`.
    held: usize,
    /// Packets pushed out of the window (it slid forward) and not yet popped, with `lost`.
    ready: VecDeque<(T, u16)>,
    /// Sequence numbers given up since the last released packet (the next one's `lost`).
    skipped: u16,
    /// A packet far behind the window: maybe the first of a restarted sender.
    restart: Option<(u16, T)>,
}

impl<T> ReorderBuffer<T> {
    /// A buffer whose window spans `capacity` sequence numbers (clamped to 1..=16384). At
    /// 200 packets/s (2 Mbit/s of video), 64 waits up to about 300 ms for a missing packet.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        ReorderBuffer {
            slots: std::iter::repeat_with(|| None).take(capacity).collect(),
            head: 0,
            next: None,
            held: 0,
            ready: VecDeque::new(),
            skipped: 0,
            restart: None,
        }
    }

    /// Accepts a packet. Duplicates and packets older than what was already released are
    /// dropped (returns false). A packet far behind the window is kept as the possible start
    /// of a restarted sender (returns true) and dropped later unless the next packet follows it.
    pub fn push(&mut self, sequence: u16, item: T) -> bool {
        let Some(next) = self.next else {
            self.next = Some(sequence);
            return self.place(0, item);
        };
        let ahead = sequence.wrapping_sub(next) as usize;
        if ahead < 0x8000 {
            let len = self.slots.len();
            if ahead >= len {
                // Past the highest packet held (or released) by more than the window: a jump
                // (restarted sender, long outage). Nothing behind it is worth waiting for.
                let highest = (0..len).rev().find(|&i| self.slot(i).is_some());
                if ahead - highest.map_or(0, |i| i + 1) >= len {
                    self.advance(ahead);
                } else {
                    // The window is full: give up on what is missing at its start.
                    self.advance(ahead + 1 - len);
                }
            }
            self.restart = None;
            return self.place(sequence.wrapping_sub(self.next_seq()) as usize, item);
        }
        let behind = 0x10000 - ahead;
        if behind <= MAX_MISORDER.max(self.slots.len()) {
            return false; // late: its place was already released or given up
        }
        match self.restart.take() {
            Some((first, first_item)) if first.wrapping_add(1) == sequence => {
                // Two consecutive packets far from the window: the sender restarted. What is
                // held is released first, then the new sequence starts at `first`.
                self.advance(first.wrapping_sub(next) as usize);
                self.place(0, first_item);
                self.push(sequence, item)
            }
            Some((first, first_item)) if first == sequence => {
                self.restart = Some((first, first_item));
                false
            }
            _ => {
                self.restart = Some((sequence, item));
                true
            }
        }
    }

    /// The next packet in order, with the number of sequence numbers skipped just before it
    /// (0 normally; after a sender restart, the distance between the two sequences mod 2^16).
    /// `None` when nothing is ready, i.e. the buffer is empty or waits for a missing packet.
    pub fn pop(&mut self) -> Option<(T, u16)> {
        if let Some(ready) = self.ready.pop_front() {
            return Some(ready);
        }
        if self.held == 0 {
            return None;
        }
        let item = self.slots[self.head].take()?;
        self.held -= 1;
        self.head = (self.head + 1) % self.slots.len();
        self.next = Some(self.next_seq().wrapping_add(1));
        Some((item, std::mem::take(&mut self.skipped)))
    }

    /// Gives up on the missing packets before the first held one, so [`pop`](Self::pop)
    /// releases it (with `lost` counting them). Does nothing without a gap.
    pub fn skip_gap(&mut self) {
        if !self.has_gap() {
            return;
        }
        let len = self.slots.len();
        let first = (1..len)
            .find(|i| self.slots[(self.head + i) % len].is_some())
            .expect("held > 0 and the head slot is empty");
        self.advance(first);
    }

    /// Something is held behind a missing packet.
    pub fn has_gap(&self) -> bool {
        self.held > 0 && self.slots[self.head].is_none()
    }

    /// The slot of sequence number `next + offset`.
    fn slot(&self, offset: usize) -> &Option<T> {
        &self.slots[(self.head + offset) % self.slots.len()]
    }

    fn next_seq(&self) -> u16 {
        self.next.unwrap_or(0)
    }

    /// Stores `item` at `offset` from the window's start; false for a duplicate.
    fn place(&mut self, offset: usize, item: T) -> bool {
        let len = self.slots.len();
        let slot = &mut self.slots[(self.head + offset) % len];
        if slot.is_some() {
            return false;
        }
        *slot = Some(item);
        self.held += 1;
        true
    }

    /// Moves the window's start `n` sequence numbers forward: held packets it passes become
    /// ready, empty places count as lost.
    fn advance(&mut self, n: usize) {
        let len = self.slots.len();
        let steps = if self.held == 0 { 0 } else { n.min(len) };
        for _ in 0..steps {
            match self.slots[self.head].take() {
                Some(item) => {
                    self.held -= 1;
                    self.ready
                        .push_back((item, std::mem::take(&mut self.skipped)));
                }
                None => self.skipped = self.skipped.wrapping_add(1),
            }
            self.head = (self.head + 1) % len;
        }
        // Whatever is left passes only empty places (n < 2^16).
        self.skipped = self.skipped.wrapping_add((n - steps) as u16);
        self.head = (self.head + (n - steps)) % len;
        self.next = Some(self.next_seq().wrapping_add(n as u16));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::xorshift;

    fn drain(b: &mut ReorderBuffer<u16>) -> Vec<(u16, u16)> {
        std::iter::from_fn(|| b.pop()).collect()
    }

    #[test]
    fn in_order_packets_are_released_at_once() {
        let mut b = ReorderBuffer::new(8);
        for s in 10..15 {
            assert!(b.push(s, s));
            assert_eq!(b.pop(), Some((s, 0)));
            assert_eq!(b.pop(), None);
        }
        assert!(!b.has_gap());
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let mut b = ReorderBuffer::new(8);
        b.push(1, 1);
        b.push(3, 3);
        b.push(4, 4);
        assert_eq!(drain(&mut b), [(1, 0)]);
        assert!(b.has_gap());
        b.push(2, 2);
        assert!(!b.has_gap());
        assert_eq!(drain(&mut b), [(2, 0), (3, 0), (4, 0)]);
    }

    #[test]
    fn duplicates_and_late_packets_are_dropped() {
        let mut b = ReorderBuffer::new(8);
        assert!(b.push(5, 5));
        assert!(b.push(7, 7));
        assert!(!b.push(7, 70), "duplicate of a held packet");
        assert_eq!(drain(&mut b), [(5, 0)]);
        assert!(!b.push(5, 50), "duplicate of a released packet");
        assert!(!b.push(2, 2), "older than what was released");
        b.push(6, 6);
        assert_eq!(drain(&mut b), [(6, 0), (7, 0)]);
    }

    #[test]
    fn a_gap_is_given_up_when_the_window_is_full() {
        let mut b = ReorderBuffer::new(4);
        b.push(0, 0);
        assert_eq!(drain(&mut b), [(0, 0)]);
        // 1 is lost; 2..=4 wait for it.
        for s in 2..=4 {
            b.push(s, s);
        }
        assert_eq!(b.pop(), None);
        assert!(b.has_gap());
        // 5 does not fit a window starting at 1: 1 is given up.
        b.push(5, 5);
        assert_eq!(drain(&mut b), [(2, 1), (3, 0), (4, 0), (5, 0)]);
        // The lost packet arriving now is late.
        assert!(!b.push(1, 1));
    }

    #[test]
    fn skip_gap_releases_what_waits_behind_a_loss() {
        let mut b = ReorderBuffer::new(64);
        b.push(100, 100);
        b.pop();
        b.push(103, 103);
        b.push(105, 105);
        assert_eq!(b.pop(), None);
        b.skip_gap();
        assert_eq!(b.pop(), Some((103, 2)));
        assert!(b.has_gap());
        b.skip_gap();
        assert_eq!(drain(&mut b), [(105, 1)]);
        b.skip_gap(); // nothing held: no effect
        b.push(106, 106);
        assert_eq!(drain(&mut b), [(106, 0)]);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut b = ReorderBuffer::new(16);
        for s in [65533u16, 0, 65535, 1, 65534, 3] {
            b.push(s, s);
        }
        assert_eq!(
            drain(&mut b),
            [(65533, 0), (65534, 0), (65535, 0), (0, 0), (1, 0)]
        );
        b.skip_gap();
        assert_eq!(drain(&mut b), [(3, 1)]);
    }

    #[test]
    fn a_jump_forward_releases_everything_at_once() {
        let mut b = ReorderBuffer::new(64);
        b.push(1000, 1000);
        b.pop();
        b.push(1002, 1002); // waiting for 1001
        b.push(30000, 30000); // encoder restarted with a new random start
        assert_eq!(drain(&mut b), [(1002, 1), (30000, 30000 - 1003)]);
        b.push(30001, 30001);
        assert_eq!(drain(&mut b), [(30001, 0)]);
    }

    #[test]
    fn a_jump_backward_is_a_restart_once_confirmed() {
        let mut b = ReorderBuffer::new(64);
        b.push(40000, 40000);
        b.pop();
        b.push(40002, 40002); // waiting for 40001
                              // One stray packet far behind changes nothing...
        assert!(b.push(30000, 30000));
        assert_eq!(b.pop(), None);
        b.push(40001, 40001);
        assert_eq!(drain(&mut b), [(40001, 0), (40002, 0)]);
        // ...two consecutive ones are a restarted sender.
        b.push(40004, 40004); // waiting for 40003
        b.push(20000, 20000);
        b.push(20001, 20001);
        assert_eq!(
            drain(&mut b),
            [
                (40004, 1),
                (20000, 20000u16.wrapping_sub(40005)),
                (20001, 0)
            ]
        );
        b.push(20002, 20002);
        assert_eq!(drain(&mut b), [(20002, 0)]);
    }

    #[test]
    fn released_sequence_numbers_account_for_every_loss() {
        for capacity in [1, 2, 5, 64] {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ capacity as u64;
            let mut b = ReorderBuffer::new(capacity);
            let mut seq = 65000u16;
            let mut last: Option<u16> = None;
            for _ in 0..20_000 {
                let r = xorshift(&mut rng);
                // Mostly forward, sometimes reordered, duplicated, lost or jumping.
                let kind = r % 16;
                let s = match kind {
                    0 => seq.wrapping_sub((r >> 8) as u16 % 8),
                    1 => seq.wrapping_add((r >> 8) as u16),
                    2 => seq.wrapping_add(2 + (r >> 8) as u16 % 6),
                    _ => seq.wrapping_add(1),
                };
                if kind != 0 {
                    seq = s;
                }
                b.push(s, s);
                if r & (1 << 40) != 0 {
                    b.skip_gap();
                }
                while let Some((s, lost)) = b.pop() {
                    if let Some(prev) = last {
                        assert_eq!(s, prev.wrapping_add(1).wrapping_add(lost));
                    }
                    last = Some(s);
                }
                assert!(b.held <= capacity && b.ready.len() <= capacity + 1);
            }
        }
    }
}
