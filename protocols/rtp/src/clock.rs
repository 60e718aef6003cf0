//! RTP timestamps of the tracks of one session onto one time origin.
//!
//! Every RTP stream starts its 32-bit timestamp at a random value (RFC 3550 5.1) and wraps
//! around, so timestamps of different tracks say nothing about each other. RTCP sender
//! reports do (RFC 3550 6.4.1): each pairs an RTP timestamp with the sender's wallclock (NTP
//! format), the same clock for every track of the sender, which is how receivers lip-sync.
//!
//! [`SessionClock`] first aligns tracks by the arrival time of their first packet, because
//! media must flow before any report comes (and some cameras never send one). Once a track
//! and the reference track (the first with a report, or the one the caller prefers) both have
//! reports, the track's offset is corrected once to what the reports say, so audio and video stay in sync even when one of them arrives late (a
//! camera that buffers audio, a browser's pacer). Clock drift between tracks over hours is not
//! corrected: every correction is a jump in the output.
//!
//! A track whose timestamps jump (more than 2 s back or 60 s forward: a restarted encoder or
//! server pipeline) starts again: aligned by arrival at the jump, then by its next reports
//! (see [`SessionClock::take_restart`]); the output goes on from where it was.
//!
//! The clock reads no time itself: the caller passes each packet's arrival time.

use switchyard_media::rescale;

/// A sender-report alignment further than this from the arrival-time alignment is not
/// believed: some cameras fill the NTP field of each track from a different clock.
const MAX_CORRECTION_SECS: i64 = 10;

/// A track's timestamps stepping back more than this (B-frames and reordering step back a
/// few frames) or forward more than [`MAX_STEP_FORWARD_SECS`] is a new RTP clock, not the
/// same one going on: an encoder restarted with a new random offset, a server that restarted
/// its pipeline (gst-rtsp-server does when another client PLAYs a shared stream).
const MAX_STEP_BACK_SECS: i64 = 2;
const MAX_STEP_FORWARD_SECS: i64 = 60;

/// Extends 32-bit RTP timestamps to `i64` across wrap-around. Small steps backwards
/// (reordered packets, B-frames) give smaller values; a step is taken as the shorter way
/// around the 32-bit circle.
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper {
    last: Option<(u32, i64)>,
}

impl TimestampUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `ts`; the first timestamp keeps its value.
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        let extended = self.extend(ts);
        self.last = Some((ts, extended));
        extended
    }

    /// The extended value `ts` would get, without taking it as the latest.
    fn extend(&self, ts: u32) -> i64 {
        match self.last {
            None => i64::from(ts),
            Some((last, extended)) => extended + i64::from(ts.wrapping_sub(last) as i32),
        }
    }
}

/// A correction of a track's timestamps to the sender-report alignment, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync {
    /// The track, as numbered by [`SessionClock::add_track`].
    pub track: usize,
    /// How far the track's output jumped, in its clock units (negative: backwards).
    pub step: i64,
    /// False when the step was larger than 10 s and therefore not applied: the sender's
    /// reports disagree with what arrives, and arrival alignment stays.
    pub applied: bool,
}

#[derive(Debug, Clone)]
struct Track {
    clock_rate: u32,
    unwrapper: TimestampUnwrapper,
    /// Output = extended RTP timestamp + offset; set at the track's first packet.
    offset: Option<i64>,
    /// The latest sender report: (NTP timestamp, RTP timestamp).
    report: Option<(u64, u32)>,
    /// The offset is final (corrected, or the reference's own).
    final_offset: bool,
}

/// Maps the RTP timestamps of all tracks of one incoming session onto their common origin.
#[derive(Debug, Clone, Default)]
pub struct SessionClock {
    tracks: Vec<Track>,
    /// Arrival time of the session's first packet: output time 0.
    origin_micros: Option<u64>,
    /// The track the others are aligned to: the preferred one, else the first with a sender
    /// report.
    reference: Option<usize>,
    preferred: Option<usize>,
    resyncs: Vec<Resync>,
    /// Tracks that started again since the last [`SessionClock::take_restart`], with the
    /// jump (in their clock units) that made them.
    restarts: Vec<(usize, i64)>,
}

impl SessionClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a track with its RTP clock rate (90000 for video, 48000 for Opus); returns its
    /// index. A rate of 0 (a broken SDP) is taken as 1.
    pub fn add_track(&mut self, clock_rate: u32) -> usize {
        self.tracks.push(Track {
            clock_rate: clock_rate.max(1),
            unwrapper: TimestampUnwrapper::new(),
            offset: None,
            report: None,
            final_offset: false,
        });
        self.tracks.len() - 1
    }

    /// Makes `track` the reference the others are aligned to, so that a correction moves
    /// them and never it (a video that jumps is seen; audio that drops a few frames is
    /// hardly heard). Without a preference the first track with a sender report is the
    /// reference. With one, nothing is corrected until that track has a report.
    ///
    /// # Panics
    ///
    /// If `track` was not returned by [`add_track`](Self::add_track).
    pub fn prefer_reference(&mut self, track: usize) {
        assert!(track < self.tracks.len(), "unknown track {track}");
        if self.reference.is_none() {
            self.preferred = Some(track);
        }
    }

    /// An RTCP sender report for `track`: its NTP timestamp (64-bit, RFC 3550 4) and the RTP
    /// timestamp of the same instant. Reports with an NTP timestamp of 0 (senders without a
    /// wallclock, RFC 3550 6.4.1) are ignored.
    ///
    /// # Panics
    ///
    /// If `track` was not returned by [`add_track`](Self::add_track).
    pub fn sender_report(&mut self, track: usize, ntp: u64, rtp: u32) {
        if ntp == 0 {
            return;
        }
        self.tracks[track].report = Some((ntp, rtp));
        if self.reference.is_none() && self.preferred.is_none_or(|p| p == track) {
            self.reference = Some(track);
        }
        for i in 0..self.tracks.len() {
            self.try_correct(i);
        }
    }

    /// Maps a packet's RTP timestamp to the track's clock units since the session origin.
    /// `arrival_micros` is the packet's arrival time in microseconds on any monotonic clock
    /// (the same for every call).
    ///
    /// Until sender reports are known, tracks are aligned by the arrival of their first packet:
    /// the session's first packet maps to 0 and a track whose first packet arrives 20 ms later
    /// starts 20 ms later. Once the track and the reference track have reports, the track's
    /// offset is corrected once (see [`take_resync`](Self::take_resync)). Output is never
    /// negative.
    ///
    /// # Panics
    ///
    /// If `track` was not returned by [`add_track`](Self::add_track).
    pub fn map(&mut self, track: usize, rtp: u32, arrival_micros: u64) -> i64 {
        let origin = *self.origin_micros.get_or_insert(arrival_micros);
        let t = &self.tracks[track];
        if let Some((_, last)) = t.unwrapper.last {
            let step = t.unwrapper.extend(rtp) - last;
            let rate = i64::from(t.clock_rate);
            if step < -MAX_STEP_BACK_SECS * rate || step > MAX_STEP_FORWARD_SECS * rate {
                self.restart(track, step);
            }
        }
        let t = &mut self.tracks[track];
        let extended = t.unwrapper.unwrap(rtp);
        if t.offset.is_none() {
            let since = arrival_micros.saturating_sub(origin).min(i64::MAX as u64) as i64;
            t.offset = Some(rescale(since, 1_000_000, t.clock_rate) - extended);
        }
        if !t.final_offset && t.report.is_some() {
            self.try_correct(track);
        }
        let offset = self.tracks[track].offset.unwrap_or_default();
        extended.saturating_add(offset).max(0)
    }

    /// The next track whose timestamps jumped since the last call, with the jump in its clock
    /// units: it was aligned again by arrival (and will be by its next sender report), to log.
    pub fn take_restart(&mut self) -> Option<(usize, i64)> {
        (!self.restarts.is_empty()).then(|| self.restarts.remove(0))
    }

    /// Forgets what `track`'s timestamps were: its next packet is aligned by arrival, its
    /// next report corrects it. When it is the reference, the others are corrected again
    /// against its new reports.
    fn restart(&mut self, track: usize, step: i64) {
        let t = &mut self.tracks[track];
        t.unwrapper = TimestampUnwrapper::new();
        t.offset = None;
        t.report = None;
        t.final_offset = false;
        if self.reference == Some(track) {
            for (i, other) in self.tracks.iter_mut().enumerate() {
                if i != track {
                    other.final_offset = false;
                }
            }
        }
        self.restarts.push((track, step));
    }

    /// The next correction made by sender reports, if any was made since the last call: one
    /// per track at most, to log.
    pub fn take_resync(&mut self) -> Option<Resync> {
        (!self.resyncs.is_empty()).then(|| self.resyncs.remove(0))
    }

    /// Aligns `track` to the reference by their sender reports, once both are known.
    fn try_correct(&mut self, track: usize) {
        let Some(reference) = self.reference else {
            return;
        };
        let t = &self.tracks[track];
        if t.final_offset {
            return;
        }
        let (Some(offset), Some((ntp, rtp))) = (t.offset, t.report) else {
            return;
        };
        if track == reference {
            // The reference keeps its arrival alignment; the others follow it.
            self.tracks[track].final_offset = true;
            return;
        }
        let r = &self.tracks[reference];
        let (Some(r_offset), Some((r_ntp, r_rtp))) = (r.offset, r.report) else {
            return;
        };
        // The reference's output at its report, then moved to the instant of this track's
        // report (NTP difference, 32.32 fixed point) and into this track's clock.
        let r_output = r.unwrapper.extend(r_rtp) + r_offset;
        let ntp_delta = i128::from(ntp.wrapping_sub(r_ntp) as i64);
        let rate = i128::from(t.clock_rate);
        let delta = ((ntp_delta * rate + (1 << 31)) >> 32) as i64;
        let target = rescale(r_output, r.clock_rate, t.clock_rate) + delta;
        let corrected = target - t.unwrapper.extend(rtp);
        let step = corrected - offset;
        let applied = step.unsigned_abs() <= (MAX_CORRECTION_SECS as u64) * u64::from(t.clock_rate);
        let t = &mut self.tracks[track];
        t.final_offset = true;
        if applied {
            t.offset = Some(corrected);
        }
        self.resyncs.push(Resync {
            track,
            step,
            applied,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_unwrap_across_the_32_bit_boundary() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(u32::MAX - 10), i64::from(u32::MAX) - 10);
        assert_eq!(u.unwrap(5), i64::from(u32::MAX) + 6);
        // A reordered packet from before the wrap.
        assert_eq!(u.unwrap(u32::MAX - 1), i64::from(u32::MAX) - 1);
        assert_eq!(u.unwrap(3000), i64::from(u32::MAX) + 3001);
        // Wrapping twice keeps counting.
        let mut u = TimestampUnwrapper::new();
        let mut ts = 0u32;
        let mut last = u.unwrap(ts);
        for _ in 0..3 * 2048 {
            ts = ts.wrapping_add(1 << 22);
            let next = u.unwrap(ts);
            assert_eq!(next - last, 1 << 22);
            last = next;
        }
        assert_eq!(last, 3 << 33);
    }

    #[test]
    fn tracks_are_aligned_by_first_arrival() {
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        let t0 = 5_000_000;
        assert_eq!(clock.map(video, 1_000_000, t0), 0);
        // Audio's first packet 20 ms later starts at 20 ms.
        assert_eq!(clock.map(audio, u32::MAX - 480, t0 + 20_000), 960);
        // Then each follows its own RTP clock, across wrap-around, whatever the arrival jitter.
        assert_eq!(clock.map(audio, 479, t0 + 90_000), 960 + 960);
        assert_eq!(clock.map(video, 1_000_000 + 3000, t0 + 70_000), 3000);
        assert_eq!(clock.take_resync(), None);
    }

    #[test]
    fn the_earliest_first_packet_is_the_origin() {
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        assert_eq!(clock.map(audio, 77, 1_000), 0);
        assert_eq!(clock.map(video, 123_456, 11_000), 900);
        // A packet slightly before a track's first (reordered) never maps below 0.
        assert_eq!(clock.map(audio, 77u32.wrapping_sub(960), 12_000), 0);
    }

    /// A sender whose audio reaches us 140 ms later than video sampled at the same instant.
    struct Sender {
        ntp0: u64,
        video0: u32,
        audio0: u32,
    }

    impl Sender {
        fn ntp(&self, secs: f64) -> u64 {
            self.ntp0 + (secs * 4_294_967_296.0) as u64
        }
        fn video(&self, secs: f64) -> u32 {
            self.video0.wrapping_add((secs * 90_000.0) as u32)
        }
        fn audio(&self, secs: f64) -> u32 {
            self.audio0.wrapping_add((secs * 48_000.0) as u32)
        }
    }

    fn arrival(secs: f64) -> u64 {
        (secs * 1e6) as u64
    }

    #[test]
    fn sender_reports_correct_the_alignment_once() {
        let s = Sender {
            ntp0: 0xe9a0_0000_0000_0000,
            video0: 4_000_000_000,
            audio0: 12_345,
        };
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        let skew = |clock: &mut SessionClock, at: f64| {
            let v = clock.map(video, s.video(at), arrival(at + 0.010));
            let a = clock.map(audio, s.audio(at), arrival(at + 0.150));
            a as f64 / 48_000.0 - v as f64 / 90_000.0
        };
        assert!((skew(&mut clock, 0.0) - 0.140).abs() < 0.001);
        assert!((skew(&mut clock, 1.0) - 0.140).abs() < 0.001);
        // One report is not enough.
        clock.sender_report(audio, s.ntp(1.02), s.audio(1.02));
        assert!((skew(&mut clock, 1.5) - 0.140).abs() < 0.001);
        assert_eq!(clock.take_resync(), None);
        // Audio is the reference (first report): with video's report, video moves 140 ms
        // forward, once.
        clock.sender_report(video, s.ntp(2.0), s.video(2.0));
        assert!(skew(&mut clock, 2.5).abs() < 0.001);
        let resync = clock.take_resync().unwrap();
        assert_eq!((resync.track, resync.applied), (video, true));
        assert!((resync.step - 12_600).abs() <= 2, "{resync:?}");
        assert_eq!(clock.take_resync(), None);
        // Later reports (here with 5 ms of drift) change nothing.
        clock.sender_report(video, s.ntp(5.0), s.video(5.005));
        clock.sender_report(audio, s.ntp(5.0), s.audio(5.0));
        assert!(skew(&mut clock, 6.0).abs() < 0.001);
        assert_eq!(clock.take_resync(), None);
    }

    #[test]
    fn a_preferred_reference_stays_and_the_others_move() {
        let s = Sender {
            ntp0: 0xe9a0_0000_0000_0000,
            video0: 4_000_000_000,
            audio0: 12_345,
        };
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        clock.prefer_reference(video);
        let v0 = clock.map(video, s.video(0.0), arrival(0.010));
        clock.map(audio, s.audio(0.0), arrival(0.150));
        // Audio reports first: it waits for the video's.
        clock.sender_report(audio, s.ntp(1.0), s.audio(1.0));
        assert_eq!(clock.take_resync(), None);
        clock.sender_report(video, s.ntp(1.0), s.video(1.0));
        let resync = clock.take_resync().unwrap();
        assert_eq!((resync.track, resync.applied), (audio, true));
        assert!((resync.step + 6720).abs() <= 2, "{resync:?}");
        // The video never moved.
        assert_eq!(clock.map(video, s.video(2.0), arrival(2.0)), v0 + 180_000);
        let a = clock.map(audio, s.audio(2.0), arrival(2.2));
        assert!((a as f64 / 48_000.0 - 2.0).abs() < 0.001);
    }

    #[test]
    fn reports_before_the_first_packets_apply_when_they_come() {
        let s = Sender {
            ntp0: 1 << 60,
            video0: 7,
            audio0: u32::MAX - 100,
        };
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        clock.sender_report(video, s.ntp(0.0), s.video(0.0));
        clock.sender_report(audio, s.ntp(0.0), s.audio(0.0));
        let v = clock.map(video, s.video(0.1), arrival(0.3));
        let a = clock.map(audio, s.audio(0.1), arrival(0.5));
        assert_eq!((v, a), (0, 0));
        assert_eq!(clock.take_resync().map(|r| r.track), Some(audio));
    }

    #[test]
    fn a_jump_of_the_rtp_clock_starts_the_track_again() {
        let s = Sender {
            ntp0: 0xe9a0_0000_0000_0000,
            video0: 4_000_000_000,
            audio0: 12_345,
        };
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        clock.prefer_reference(video);
        clock.map(video, s.video(0.0), arrival(0.0));
        clock.map(audio, s.audio(0.0), arrival(0.0));
        clock.sender_report(video, s.ntp(1.0), s.video(1.0));
        clock.sender_report(audio, s.ntp(1.0), s.audio(1.0));
        assert!(clock.take_resync().is_some());
        // Small steps back (B-frames) are not jumps.
        assert_eq!(clock.map(video, s.video(2.0), arrival(2.0)), 180_000);
        assert_eq!(clock.map(video, s.video(1.9), arrival(2.01)), 171_000);
        assert_eq!(clock.take_restart(), None);
        clock.map(video, s.video(4.5), arrival(4.5));
        clock.map(audio, s.audio(4.5), arrival(4.5));
        // The server restarts its pipeline at 5 s: both tracks' timestamps go back to 0.
        let v = clock.map(video, s.video(0.0), arrival(5.0));
        let a = clock.map(audio, s.audio(0.0), arrival(5.0));
        assert_eq!((v, a), (450_000, 240_000), "aligned by arrival at the jump");
        assert_eq!(clock.take_restart(), Some((video, -405_000)));
        assert_eq!(clock.take_restart().map(|r| r.0), Some(audio));
        // Then they follow their clocks, and the next reports align them again.
        assert_eq!(clock.map(video, s.video(1.0), arrival(6.05)), 540_000);
        clock.sender_report(video, s.ntp(6.0), s.video(1.0));
        clock.sender_report(audio, s.ntp(6.0), s.audio(1.0) + 480);
        let resync = clock.take_resync().unwrap();
        assert_eq!((resync.track, resync.step), (audio, -480));
        // A jump far forward (a new random offset) is one too.
        clock.map(audio, s.audio(1.0).wrapping_add(1 << 30), arrival(6.1));
        assert_eq!(clock.take_restart().map(|r| r.0), Some(audio));
    }

    #[test]
    fn unbelievable_reports_are_reported_not_applied() {
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        let audio = clock.add_track(48_000);
        clock.map(video, 0, 0);
        clock.map(audio, 0, 0);
        clock.sender_report(video, 1 << 40, 0);
        // Audio's wallclock is an hour off.
        clock.sender_report(audio, (1 << 40) + (3600 << 32), 0);
        let resync = clock.take_resync().unwrap();
        assert!(!resync.applied);
        assert_eq!(resync.step, 3600 * 48_000);
        assert_eq!(clock.map(audio, 48_000, 1_000_000), 48_000);
        // Reports without a wallclock are ignored.
        let mut clock = SessionClock::new();
        let video = clock.add_track(90_000);
        clock.sender_report(video, 0, 1234);
        assert!(clock.reference.is_none());
    }
}
