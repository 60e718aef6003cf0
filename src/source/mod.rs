//! `switchyard source`: a live source for latency probes. It publishes a file in a loop, in
//! real time, over RTMP or WHIP (RFC 9725), and stamps every video frame with its send time
//! in an SEI `user_data_unregistered` message (H.264 D.1.7; see
//! `switchyard_media::probe_stamp`).
//!
//! Files: `file` (the FLV file, read and checked), `pace` (the looped timeline), `sink` (what
//! a target connection does), `rtmp` and `whip` (the two targets), `run` (the command: pacing,
//! reconnecting, stopping).

mod file;
mod pace;
mod rtmp;
mod run;
mod sink;
mod whip;

pub use file::{FileError, FileFrame, SourceFile};
pub use run::{run, run_until_signal, Target};
