//! What a load run is asked to do ([`LoadSpec`], with its checks), where a run is
//! ([`RunState`]), and the other load nodes it may enlist ([`LoadNode`]).

use std::time::Duration;

use anyhow::{bail, Result};

use super::session::ramp_step;

/// The most sessions one run may ask for (on one node or split among several).
pub const MAX_SESSIONS: usize = 20_000;
/// The longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// What to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LoadSpec {
    /// What to play: `rtmp://`, `http://.../index.m3u8` (HLS), `ws://.../mse/NAME` (MSE),
    /// `http(s)://.../whep/NAME` (WebRTC).
    #[schema(example = "rtmp://127.0.0.1:1935/live/cam1")]
    pub target: String,
    /// Sessions in all (across every load node).
    #[schema(example = 2)]
    pub sessions: usize,
    /// Sessions started per second; `None`: all within a second (at most 500 per second).
    #[serde(default)]
    pub ramp: Option<f64>,
    /// How long the run lasts, from its start; every session ends then.
    #[serde(rename = "duration_secs", with = "duration_secs")]
    #[schema(value_type = f64, example = 2.0)]
    pub duration: Duration,
    /// Other Switchyard nodes that run a share of the sessions.
    #[serde(default)]
    pub nodes: Vec<LoadNode>,
    /// Whether this node runs a share itself when `nodes` are given (default: yes).
    #[serde(default = "yes")]
    pub local: bool,
}

fn yes() -> bool {
    true
}

mod duration_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs: f64 = serde::Deserialize::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl LoadSpec {
    pub fn new(target: &str, sessions: usize, duration: Duration) -> Self {
        LoadSpec {
            target: target.to_string(),
            sessions,
            ramp: None,
            duration,
            nodes: Vec::new(),
            local: true,
        }
    }

    /// Checks the numbers; the target is checked by [`Target::parse`].
    pub(super) fn check(&self) -> Result<()> {
        if self.sessions == 0 {
            bail!("sessions must be at least 1");
        }
        if self.sessions > MAX_SESSIONS {
            bail!(
                "{} sessions is more than one run may open ({MAX_SESSIONS}); split the load over \
                 several runs or nodes",
                self.sessions
            );
        }
        if self.duration.is_zero() {
            bail!("duration must be more than 0 seconds");
        }
        if self.duration > MAX_DURATION {
            bail!("duration is over 24 hours");
        }
        if let Some(ramp) = self.ramp {
            if !(ramp.is_finite() && ramp > 0.0) {
                bail!("ramp must be a positive number of sessions per second");
            }
            let ramp_time = self.sessions as f64 / ramp;
            if ramp_time >= self.duration.as_secs_f64() {
                bail!(
                    "the ramp takes {ramp_time:.1} s ({} sessions at {ramp}/s), not shorter than \
                     the duration ({} s): raise the ramp or the duration",
                    self.sessions,
                    self.duration.as_secs_f64()
                );
            }
        }
        if !self.local && self.nodes.is_empty() {
            bail!("local is false and no other load node is given: nobody would run the sessions");
        }
        Ok(())
    }

    /// Gap between two session starts on this node for `sessions` of them.
    pub(super) fn step(&self, sessions: usize) -> Duration {
        match self.ramp {
            // This node's share keeps the run's overall rate: the shares start side by side.
            Some(ramp) => {
                Duration::from_secs_f64(self.sessions.max(1) as f64 / ramp / sessions.max(1) as f64)
            }
            None => ramp_step(sessions),
        }
    }
}

/// Another Switchyard node that generates a share of the load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LoadNode {
    /// Its base URL, `http(s)://HOST:PORT`.
    pub url: String,
    /// Its API token, sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where a run is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    /// Ran to its duration.
    Finished,
    /// Stopped before its duration.
    Stopped,
}
