//! The load generator: one node stress-tests another by playing many sessions of one stream
//! and measuring what each gets, with no decoding: it depacketizes and counts. Used by
//! `switchyard loadtest`, `/api/v1/loadtests` (the console's load tests) and `scripts/bench`.
//!
//! A [`LoadSpec`] names a target URL, whose scheme selects the client: RTMP play
//! (`rtmp://`), WebRTC (`http(s)://.../whep/NAME`), HLS and LL-HLS (`http://.../index.m3u8`),
//! WebSocket MSE (`ws://.../mse/NAME`). [`LoadTest::start`] ramps the sessions up at the
//! spec's rate, runs them to its duration, and [`LoadTest::report`] reads the live figures at
//! any time: per session ([`SessionReport`]: connect time, time to first keyframe, bitrate,
//! frames, packets lost, jitter, freezes, NACKs and PLIs sent, end-to-end latency from probe
//! stamps, failure reason) and summed ([`LoadTestReport`]: percentiles, failures by reason).
//! A session that fails is counted and never aborts the others. A spec may enlist other
//! Switchyard nodes ([`LoadNode`]) that run shares of the sessions.
//!
//! Files:
//!
//! - `spec.rs`: [`LoadSpec`] and its checks, [`LoadNode`], [`RunState`];
//! - `run.rs`: [`LoadTest`] (ramp, deadline, stop), [`LoadTests`] (the API's registry);
//! - `probe.rs`: what one session measures ([`SessionProbe`], [`FrameMeter`]);
//! - `report.rs`: [`LoadTestReport`], summed from the sessions;
//! - `nodes.rs`: runs split among several load nodes;
//! - `cli.rs`: the command line's live display, JSON report and exit status;
//! - `session.rs`: what the clients share; `media_meter.rs`: the frames of fMP4 (HLS, MSE) and
//!   MPEG-TS (HLS) media, read by `switchyard_fmp4::reader` and `mpegts.rs`;
//! - one file per client: `rtmp.rs` (with the chunk walker `rtmp_chunks.rs`), `http.rs` (the
//!   HTTP/1.1 client HLS and MSE share), `hls.rs`, `mse.rs`, `webrtc.rs`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use switchyard::loadtest::{LoadSpec, LoadTest};
//! let test = LoadTest::start(LoadSpec::new(
//!     "rtmp://127.0.0.1:1935/live/cam1",
//!     100,
//!     Duration::from_secs(15),
//! ))?;
//! test.finished().await;
//! println!("{}", serde_json::to_string(&test.report(true))?);
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod hls;
mod http;
mod media_meter;
mod mpegts;
mod mse;
mod nodes;
mod probe;
mod report;
mod rtmp;
mod rtmp_chunks;
mod run;
mod session;
mod spec;
mod webrtc;
mod ws_frames;

pub use probe::{
    FrameMeter, FreezeRule, Percentiles, SeenFrame, SessionProbe, SessionReport, SessionState,
    FREEZE_GAP, LATENCY_BUCKETS,
};
pub use report::{HttpCounters, LoadTestReport, NodeShare};
pub use run::{LoadTest, LoadTests, KEPT};
pub use session::{RAMP_MAX, RAMP_STEP};
pub use spec::{LoadNode, LoadSpec, RunState, MAX_DURATION, MAX_SESSIONS};
