//! What one load session measures while it runs, shared with whoever watches the run (the
//! CLI's live table, `GET /api/v1/loadtests/{id}`): [`SessionProbe`], a set of counters the
//! client updates and anyone may read at any moment, and [`FrameMeter`], the client-side
//! bookkeeping that turns received video frames into frame counts, time to first keyframe,
//! freezes, jitter and end-to-end latency.
//!
//! Definitions (the same for every protocol, so runs compare):
//!
//! - **connect time**: from the session's start to the moment media may flow: RTMP `play`
//!   accepted, WHEP ICE and DTLS connected, HLS first playlist read, MSE WebSocket upgraded;
//! - **first frame**: from the session's start to the arrival of the first complete video
//!   keyframe (what a player needs to show a picture);
//! - **freeze**: a gap of more than [`FREEZE_GAP`] in the video. For protocols that deliver
//!   frame by frame (RTMP, WebRTC, MSE) a gap between two frames' arrivals; for HLS, whose
//!   frames come a part or a segment at a time, the time a player's playout clock, started at
//!   the first keyframe, waits for media it has not got;
//! - **jitter**: the interarrival jitter of RFC 3550 6.4.1 (A.8), over RTP packets for WebRTC
//!   and over frames (their media timestamps against their arrival) for RTMP and MSE;
//! - **latency**: the wall clock at arrival minus the send time in the frame's probe stamp
//!   (`switchyard_media::probe_stamp`, written by `switchyard source`), per path
//!   (`"rtmp -> whep"`: the source's protocol, then the one played).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_media::probe_stamp::ProbeStamp;

/// A gap in the video longer than this is a freeze.
pub const FREEZE_GAP: Duration = Duration::from_millis(500);

/// A session's state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Started, not yet connected.
    Connecting,
    /// Connected (signalling done), no video frame yet.
    Connected,
    /// Receiving video.
    Playing,
    /// Ended with an error ([`SessionProbe::error`]).
    Failed,
    /// Ended at the end of the run or when the run was stopped.
    Ended,
}

const STATES: [SessionState; 5] = [
    SessionState::Connecting,
    SessionState::Connected,
    SessionState::Playing,
    SessionState::Failed,
    SessionState::Ended,
];

/// Latency histogram buckets: bucket 0 is under 1 ms, bucket `i` ends at `1.05^i` ms, so
/// percentiles are within 5 %; the last bucket (about 1.1 hours) takes anything longer.
pub const LATENCY_BUCKETS: usize = 256;
const LATENCY_STEP: f64 = 1.05;

/// A session's counters. The client that runs the session writes them; anyone may read them
/// while it runs. All times are from [`SessionProbe::started`].
pub struct SessionProbe {
    /// The session's number in its run (0-based).
    pub index: usize,
    started: Instant,
    state: AtomicU8,
    /// Microseconds after the start, plus one (0: not yet).
    connect_us: AtomicU64,
    first_frame_us: AtomicU64,
    ended_us: AtomicU64,
    bytes: AtomicU64,
    frames: AtomicU64,
    keyframes: AtomicU64,
    packets: AtomicU64,
    packets_lost: AtomicU64,
    jitter_us: AtomicU64,
    freezes: AtomicU64,
    freeze_us: AtomicU64,
    nacks_sent: AtomicU64,
    plis_sent: AtomicU64,
    latency: [AtomicU32; LATENCY_BUCKETS],
    /// Probe stamps sent later than they arrived (clocks of another machine out of step).
    stamps_ahead: AtomicU64,
    /// The latency path (`"rtmp -> whep"`), once a stamp came.
    latency_path: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
}

impl SessionProbe {
    pub fn new(index: usize) -> Self {
        SessionProbe {
            index,
            started: Instant::now(),
            state: AtomicU8::new(0),
            connect_us: AtomicU64::new(0),
            first_frame_us: AtomicU64::new(0),
            ended_us: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            keyframes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            packets_lost: AtomicU64::new(0),
            jitter_us: AtomicU64::new(0),
            freezes: AtomicU64::new(0),
            freeze_us: AtomicU64::new(0),
            nacks_sent: AtomicU64::new(0),
            plis_sent: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
            stamps_ahead: AtomicU64::new(0),
            latency_path: Mutex::new(None),
            error: Mutex::new(None),
        }
    }

    /// When the session started (its first connect attempt).
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn state(&self) -> SessionState {
        STATES[usize::from(self.state.load(Ordering::Relaxed)).min(STATES.len() - 1)]
    }

    fn set_state(&self, state: SessionState) {
        let index = STATES.iter().position(|s| *s == state).unwrap_or(0) as u8;
        self.state.store(index, Ordering::Relaxed);
    }

    fn since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64 + 1
    }

    /// Media may flow now (first call only).
    pub fn connected(&self) {
        if self
            .connect_us
            .compare_exchange(
                0,
                self.since_start(Instant::now()),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
            && self.state() == SessionState::Connecting
        {
            self.set_state(SessionState::Connected);
        }
    }

    /// Ends the session with an error; the first error is kept.
    pub fn fail(&self, reason: impl Into<String>) {
        let mut error = self.error.lock().unwrap();
        if error.is_none() {
            *error = Some(reason.into());
        }
        drop(error);
        self.end(SessionState::Failed);
    }

    /// Ends a session that did not fail (the run ended or was stopped).
    pub fn finish(&self) {
        self.end(SessionState::Ended);
    }

    fn end(&self, state: SessionState) {
        if matches!(self.state(), SessionState::Failed | SessionState::Ended) {
            return;
        }
        self.ended_us
            .store(self.since_start(Instant::now()), Ordering::Relaxed);
        self.set_state(state);
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_packets(&self, n: u64) {
        self.packets.fetch_add(n, Ordering::Relaxed);
    }

    /// Packets lost so far (a running total the client keeps, e.g. from sequence gaps).
    pub fn set_packets_lost(&self, lost: u64) {
        self.packets_lost.store(lost, Ordering::Relaxed);
    }

    /// The current interarrival jitter estimate.
    pub fn set_jitter(&self, jitter: Duration) {
        self.jitter_us
            .store(jitter.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn add_nacks_sent(&self, n: u64) {
        self.nacks_sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_plis_sent(&self, n: u64) {
        self.plis_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// The error that ended the session, if it failed.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }

    /// Bytes received so far (for the clients' own bookkeeping).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A reading of every counter, for reports.
    pub fn snapshot(&self) -> SessionReport {
        let ms = |us: u64| (us > 0).then(|| (us - 1) as f64 / 1000.0);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let connect_ms = ms(load(&self.connect_us));
        let ended_ms = ms(load(&self.ended_us));
        let now_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        // Bitrate over the time media could flow: from the connect to the end (or now).
        let bytes = load(&self.bytes);
        let bitrate_bps = match connect_ms {
            Some(connected) => {
                let seconds = (ended_ms.unwrap_or(now_ms) - connected) / 1000.0;
                if seconds > 0.05 {
                    (bytes as f64 * 8.0 / seconds).round() as u64
                } else {
                    0
                }
            }
            None => 0,
        };
        let latency: Vec<(u16, u32)> = self
            .latency
            .iter()
            .enumerate()
            .filter_map(|(i, count)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then_some((i as u16, count))
            })
            .collect();
        SessionReport {
            index: self.index,
            node: None,
            state: self.state(),
            connect_ms,
            first_frame_ms: ms(load(&self.first_frame_us)),
            seconds: ended_ms.unwrap_or(now_ms) / 1000.0,
            bytes,
            bitrate_bps,
            frames: load(&self.frames),
            keyframes: load(&self.keyframes),
            packets: load(&self.packets),
            packets_lost: load(&self.packets_lost),
            jitter_ms: load(&self.jitter_us) as f64 / 1000.0,
            freezes: load(&self.freezes),
            freeze_ms: load(&self.freeze_us) as f64 / 1000.0,
            nacks_sent: load(&self.nacks_sent),
            plis_sent: load(&self.plis_sent),
            latency_path: self.latency_path.lock().unwrap().clone(),
            latency_histogram: latency,
            stamps_ahead: load(&self.stamps_ahead),
            error: self.error(),
        }
    }
}

/// One session in a report (`per_session` of the JSON report). Times in milliseconds from the
/// session's start.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SessionReport {
    pub index: usize,
    /// The load node that ran it, when a run spans several nodes (its base URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub state: SessionState,
    pub connect_ms: Option<f64>,
    pub first_frame_ms: Option<f64>,
    /// How long the session has run (to its end, or to now).
    pub seconds: f64,
    pub bytes: u64,
    /// Bytes received over the time since the connect, in bits per second.
    pub bitrate_bps: u64,
    pub frames: u64,
    pub keyframes: u64,
    /// RTP packets (WebRTC; 0 for protocols over TCP).
    pub packets: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    pub freezes: u64,
    pub freeze_ms: f64,
    pub nacks_sent: u64,
    pub plis_sent: u64,
    /// `"rtmp -> whep"`: where the probe stamps came from and what carried them here.
    pub latency_path: Option<String>,
    /// Latency histogram: (bucket, count) for the non-empty buckets of [`LATENCY_BUCKETS`].
    #[serde(default)]
    pub latency_histogram: Vec<(u16, u32)>,
    /// Probe stamps whose send time is later than their arrival: the source's clock is ahead
    /// of this node's (sources on other machines need synchronised clocks, e.g. NTP).
    #[serde(default)]
    pub stamps_ahead: u64,
    pub error: Option<String>,
}

/// The histogram bucket of a latency.
fn latency_bucket(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        return 0;
    }
    ((ms.ln() / LATENCY_STEP.ln()).floor() as usize + 1).min(LATENCY_BUCKETS - 1)
}

/// A value that stands for a bucket in percentiles: its geometric middle, in ms.
fn latency_bucket_ms(bucket: usize) -> f64 {
    match bucket {
        0 => 0.5,
        b => LATENCY_STEP.powf(b as f64 - 0.5),
    }
}

/// How freezes are found (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeRule {
    /// Frames arrive one by one: a gap between two arrivals.
    Arrival,
    /// Frames arrive in batches (HLS parts and segments): the playout clock waiting for media.
    Playout,
}

/// A video frame as a client saw it arrive.
pub struct SeenFrame {
    pub arrived: Instant,
    /// The frame's media timestamp, if the protocol tells (RTMP, fMP4, RTP).
    pub media_time: Option<Duration>,
    pub keyframe: bool,
    /// The probe stamp the frame carried, if any.
    pub stamp: Option<ProbeStamp>,
}

/// The client-side bookkeeping of a session's video: one per session, owned by the client.
pub struct FrameMeter {
    probe: std::sync::Arc<SessionProbe>,
    rule: FreezeRule,
    /// The protocol played, for latency paths (`"whep"`, `"rtmp"`, `"hls"`, `"mse"`).
    protocol: &'static str,
    /// Whether the meter estimates jitter from frames (the client has no better source).
    frame_jitter: bool,
    last_arrival: Option<Instant>,
    /// Arrival and media time of the previous frame with a media time (jitter).
    last_transit: Option<f64>,
    jitter_s: f64,
    /// Playout: the first keyframe's arrival and media time, and time spent waiting.
    playout: Option<(Instant, Duration)>,
    stalled: Duration,
}

impl FrameMeter {
    pub fn new(
        probe: std::sync::Arc<SessionProbe>,
        protocol: &'static str,
        rule: FreezeRule,
        frame_jitter: bool,
    ) -> Self {
        FrameMeter {
            probe,
            rule,
            protocol,
            frame_jitter,
            last_arrival: None,
            last_transit: None,
            jitter_s: 0.0,
            playout: None,
            stalled: Duration::ZERO,
        }
    }

    pub fn probe(&self) -> &SessionProbe {
        &self.probe
    }

    /// Counts a received video frame.
    pub fn frame(&mut self, frame: SeenFrame) {
        let probe = self.probe.clone();
        probe.frames.fetch_add(1, Ordering::Relaxed);
        if frame.keyframe {
            probe.keyframes.fetch_add(1, Ordering::Relaxed);
            if probe.first_frame_us.load(Ordering::Relaxed) == 0 {
                probe
                    .first_frame_us
                    .store(probe.since_start(frame.arrived), Ordering::Relaxed);
                probe.connected();
                probe.set_state(SessionState::Playing);
                if let Some(media_time) = frame.media_time {
                    self.playout = Some((frame.arrived, media_time));
                }
            }
        }
        let started = probe.first_frame_us.load(Ordering::Relaxed) != 0;
        if started {
            self.freeze_check(&frame);
        }
        if self.frame_jitter {
            if let Some(media_time) = frame.media_time {
                // RFC 3550 A.8, in seconds: transit = arrival - timestamp.
                let arrival = frame.arrived.duration_since(probe.started).as_secs_f64();
                let transit = arrival - media_time.as_secs_f64();
                if let Some(last) = self.last_transit {
                    let d = (transit - last).abs();
                    self.jitter_s += (d - self.jitter_s) / 16.0;
                    probe.set_jitter(Duration::from_secs_f64(self.jitter_s));
                }
                self.last_transit = Some(transit);
            }
        }
        if let Some(stamp) = frame.stamp {
            self.latency(&stamp);
        }
        self.last_arrival = Some(frame.arrived);
    }

    fn freeze_check(&mut self, frame: &SeenFrame) {
        let gap = match self.rule {
            FreezeRule::Arrival => self
                .last_arrival
                .map(|last| frame.arrived.saturating_duration_since(last)),
            FreezeRule::Playout => {
                let (Some((start, first_media)), Some(media_time)) =
                    (self.playout, frame.media_time)
                else {
                    return;
                };
                // When the frame was due on the playout clock, with the waits so far.
                let due = start + media_time.saturating_sub(first_media) + self.stalled;
                let late = frame.arrived.saturating_duration_since(due);
                self.stalled += late;
                Some(late)
            }
        };
        if let Some(gap) = gap.filter(|gap| *gap > FREEZE_GAP) {
            self.probe.freezes.fetch_add(1, Ordering::Relaxed);
            self.probe
                .freeze_us
                .fetch_add(gap.as_micros() as u64, Ordering::Relaxed);
        }
    }

    fn latency(&self, stamp: &ProbeStamp) {
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        if stamp.sent_unix_us > now_us {
            // Sent in our future: the source's clock is ahead of ours. Counted, not timed.
            self.probe.stamps_ahead.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let latency = Duration::from_micros(now_us - stamp.sent_unix_us);
        self.probe.latency[latency_bucket(latency)].fetch_add(1, Ordering::Relaxed);
        let mut path = self.probe.latency_path.lock().unwrap();
        if path.is_none() {
            *path = Some(format!("{} -> {}", stamp.source_name(), self.protocol));
        }
    }
}

/// Percentiles of a set of values (ms).
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values`; `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            round_ms(values[i])
        };
        Some(Percentiles {
            count: values.len() as u64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: round_ms(values[values.len() - 1]),
        })
    }

    /// Percentiles of a merged latency histogram.
    pub fn of_histogram(buckets: &BTreeMap<u16, u64>) -> Option<Percentiles> {
        let total: u64 = buckets.values().sum();
        if total == 0 {
            return None;
        }
        let rank = |p: f64| {
            let wanted = ((p * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (bucket, count) in buckets {
                seen += count;
                if seen >= wanted {
                    return round_ms(latency_bucket_ms(usize::from(*bucket)));
                }
            }
            0.0
        };
        Some(Percentiles {
            count: total,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: rank(1.0),
        })
    }
}

fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(at: Instant, media_ms: u64, keyframe: bool) -> SeenFrame {
        SeenFrame {
            arrived: at,
            media_time: Some(Duration::from_millis(media_ms)),
            keyframe,
            stamp: None,
        }
    }

    #[test]
    fn counts_frames_first_keyframe_and_arrival_freezes() {
        let probe = Arc::new(SessionProbe::new(0));
        let mut meter = FrameMeter::new(probe.clone(), "rtmp", FreezeRule::Arrival, true);
        let t0 = probe.started();
        // A delta frame before the first keyframe does not start playback.
        meter.frame(frame(t0 + Duration::from_millis(10), 0, false));
        assert_eq!(probe.snapshot().first_frame_ms, None);
        meter.frame(frame(t0 + Duration::from_millis(100), 33, true));
        for i in 2..10 {
            meter.frame(frame(
                t0 + Duration::from_millis(100 + 33 * i),
                33 * i,
                false,
            ));
        }
        // 700 ms without a frame, then frames again: one freeze.
        meter.frame(frame(t0 + Duration::from_millis(1100), 1030, false));
        let report = probe.snapshot();
        assert_eq!(
            (report.frames, report.keyframes, report.freezes),
            (11, 1, 1)
        );
        assert!((report.first_frame_ms.unwrap() - 100.0).abs() < 0.01);
        assert_eq!(report.state, SessionState::Playing);
        assert!(report.connect_ms.is_some());
        assert!(report.freeze_ms > 600.0 && report.freeze_ms < 800.0);
    }

    #[test]
    fn playout_freezes_count_only_waits_for_media() {
        let probe = Arc::new(SessionProbe::new(0));
        let mut meter = FrameMeter::new(probe.clone(), "hls", FreezeRule::Playout, false);
        let t0 = probe.started();
        // A 2 s segment at once, the next one 1.9 s later: the player never waits.
        for i in 0..60 {
            meter.frame(frame(t0, i * 33, i == 0));
        }
        for i in 60..120 {
            meter.frame(frame(t0 + Duration::from_millis(1900), i * 33, i == 60));
        }
        assert_eq!(probe.snapshot().freezes, 0);
        // The third segment comes 3 s after the second: the player waits about 1.1 s.
        meter.frame(frame(t0 + Duration::from_millis(4900), 120 * 33, true));
        let report = probe.snapshot();
        assert_eq!(report.freezes, 1);
        assert!(
            (report.freeze_ms - 940.0).abs() < 20.0,
            "{}",
            report.freeze_ms
        );
    }

    #[test]
    fn latency_goes_to_buckets_and_percentiles() {
        for ms in [0.2, 1.0, 7.0, 50.0, 1234.0, 60_000.0] {
            let bucket = latency_bucket(Duration::from_secs_f64(ms / 1000.0));
            let back = latency_bucket_ms(bucket);
            assert!(
                (back - ms).abs() <= ms * 0.05 + 0.5,
                "{ms} -> bucket {bucket} -> {back}"
            );
        }
        let probe = Arc::new(SessionProbe::new(0));
        let meter = FrameMeter::new(probe.clone(), "whep", FreezeRule::Arrival, false);
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        meter.latency(&ProbeStamp {
            sent_unix_us: now_us - 80_000,
            source: *b"rtmp",
        });
        // A stamp from the future (another machine's clock ahead) is counted, not timed.
        meter.latency(&ProbeStamp {
            sent_unix_us: now_us + 10_000_000,
            source: *b"rtmp",
        });
        let report = probe.snapshot();
        assert_eq!(report.stamps_ahead, 1);
        assert_eq!(report.latency_histogram.len(), 1);
        assert_eq!(report.latency_path.as_deref(), Some("rtmp -> whep"));
        let merged: BTreeMap<u16, u64> = report
            .latency_histogram
            .iter()
            .map(|(b, c)| (*b, u64::from(*c)))
            .collect();
        let p = Percentiles::of_histogram(&merged).unwrap();
        assert!(p.p50 >= 78.0 && p.p50 < 90.0, "{p:?}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(Percentiles::of(Vec::new()), None);
    }

    #[test]
    fn failure_is_kept_and_ends_the_session() {
        let probe = SessionProbe::new(3);
        probe.fail("connect: refused");
        probe.fail("later");
        probe.finish();
        let report = probe.snapshot();
        assert_eq!(report.state, SessionState::Failed);
        assert_eq!(report.error.as_deref(), Some("connect: refused"));
    }
}
