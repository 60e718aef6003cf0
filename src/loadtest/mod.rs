//! Load generators, used by `switchyard loadtest` and `scripts/bench`: many light players of one
//! stream, to measure a *server's* cost of fan-out.
//!
//! [`run()`] picks the generator by the URL's scheme (and returns a [`LoadReport`]):
//! [`rtmp_play_load`] for RTMP play, [`hls_load`] for HLS and LL-HLS, [`mse_load`] for WebSocket
//! MSE, [`whep_load`] for WebRTC (WHEP). Each keeps its clients as cheap as it can: they count the
//! bytes they receive and decode no media. Connects are spread over a short ramp (at most
//! [`RAMP_STEP`] apart and at most [`RAMP_MAX`] in total); all sessions of a run end at one
//! deadline; a session that fails is counted in the report and never aborts the others.
//!
//! Files, split as the outputs are (`crate::outputs`):
//!
//! - `run.rs`: [`run()`] and [`LoadReport`], the API that `switchyard loadtest` calls;
//! - `report.rs`: the reports ([`RtmpLoadReport`], [`HttpLoadReport`], [`WebRtcLoadReport`]) and
//!   the per-session counters and tally they are summed from;
//! - `session.rs`: the ramp, the deadline and what every client shares (the HLS/MSE runner);
//! - `rtmp.rs`: the RTMP play client (handshake, `connect`/`play`, light reader);
//! - `http.rs`: the small HTTP/1.1 client that the HLS and MSE clients share;
//! - `hls.rs`: the HLS / LL-HLS poller;
//! - `mse.rs`: the WebSocket MSE client;
//! - `webrtc.rs`: the WHEP client.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let report =
//!     switchyard::loadtest::rtmp_play_load("rtmp://127.0.0.1:1935/live/cam1", 100, Duration::from_secs(15))
//!         .await?;
//! println!("{}", serde_json::to_string(&report)?);
//! # Ok(())
//! # }
//! ```

mod hls;
mod http;
mod mse;
mod report;
mod rtmp;
mod run;
mod session;
mod webrtc;

pub use hls::hls_load;
pub use mse::mse_load;
pub use report::{HttpLoadReport, RtmpLoadReport, WebRtcLoadReport};
pub use rtmp::rtmp_play_load;
pub use run::{run, LoadReport};
pub use session::{RAMP_MAX, RAMP_STEP};
pub use webrtc::whep_load;
