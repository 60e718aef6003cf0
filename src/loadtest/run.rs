//! A load test as a running thing: [`LoadSpec`] says what to run, [`LoadTest::start`] checks it
//! and starts the sessions over the ramp, [`LoadTest::report`] reads the live figures at any
//! moment (the CLI's table, `GET /api/v1/loadtests/{id}`), and the run ends at its duration or
//! when [`LoadTest::stop`] is called. A spec with other load nodes splits its sessions among
//! them (`super::nodes`) and merges their figures into its report.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use tokio_util::sync::CancellationToken;

use super::hls::hls_session;
use super::http::HttpTarget;
use super::mse::mse_session;
use super::nodes::RemoteShares;
use super::probe::{SessionProbe, SessionState};
use super::report::{LoadTestReport, SessionStats};
use super::rtmp::{rtmp_session, RtmpTarget};
use super::session::Never;
use super::spec::{LoadSpec, RunState};
use super::webrtc::{whep_session, WhepTarget};

/// What a target URL selects.
pub(super) enum Target {
    Rtmp(Arc<RtmpTarget>),
    Hls(Arc<HttpTarget>),
    Mse(Arc<HttpTarget>),
    Whep(Arc<WhepTarget>),
}

type SessionFuture = Pin<Box<dyn Future<Output = Result<Never>> + Send>>;

impl Target {
    /// Parses a target URL:
    ///
    /// - `rtmp://HOST[:PORT]/app/key`: RTMP play;
    /// - `http(s)://HOST[:PORT]/whep/NAME` (any path containing `/whep/`): WebRTC (WHEP);
    /// - `http://HOST[:PORT]/.../index.m3u8`: HLS; LL-HLS when the playlist has
    ///   `EXT-X-PART-INF`, plain HLS otherwise, or always plain with a `#plain` fragment;
    /// - `ws://HOST[:PORT]/mse/NAME`: WebSocket MSE.
    pub(super) fn parse(url: &str) -> Result<Target> {
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        Ok(match scheme.as_deref() {
            Some("rtmp") => Target::Rtmp(Arc::new(RtmpTarget::parse(url)?)),
            Some("http" | "https") if url.contains("/whep/") => {
                Target::Whep(Arc::new(WhepTarget::parse(url)?))
            }
            Some("http") => Target::Hls(Arc::new(HttpTarget::parse(url, "http")?)),
            Some("ws") => Target::Mse(Arc::new(HttpTarget::parse(url, "ws")?)),
            Some(scheme @ ("https" | "wss" | "rtmps")) => bail!(
                "{scheme}:// is not supported for this protocol: the load generator's RTMP, HLS \
                 and MSE clients speak plain TCP (WHEP over https:// is supported)"
            ),
            Some(scheme) => bail!(
                "unsupported scheme {scheme}:// in {url}: expected rtmp://, http(s)://.../whep/NAME, \
                 http://.../index.m3u8 or ws://.../mse/NAME"
            ),
            None => bail!(
                "not a URL: {url:?}: expected rtmp://, http(s)://.../whep/NAME, \
                 http://.../index.m3u8 or ws://.../mse/NAME"
            ),
        })
    }

    pub(super) fn protocol(&self) -> &'static str {
        match self {
            Target::Rtmp(_) => "rtmp",
            Target::Hls(_) => "hls",
            Target::Mse(_) => "mse",
            Target::Whep(_) => "whep",
        }
    }

    fn session(&self, probe: Arc<SessionProbe>, stats: Arc<SessionStats>) -> SessionFuture {
        match self {
            Target::Rtmp(target) => Box::pin(rtmp_session(target.clone(), probe)),
            Target::Hls(target) => Box::pin(hls_session(target.clone(), probe, stats)),
            Target::Mse(target) => Box::pin(mse_session(target.clone(), probe, stats)),
            Target::Whep(target) => Box::pin(whep_session(target.clone(), probe)),
        }
    }
}

/// A load test: its spec, its sessions' probes, and its state.
pub struct LoadTest {
    pub id: String,
    spec: LoadSpec,
    protocol: &'static str,
    started: Instant,
    started_unix_ms: u64,
    /// This node's share of the sessions.
    local_sessions: usize,
    probes: Mutex<Vec<(Arc<SessionProbe>, Arc<SessionStats>)>>,
    remotes: RemoteShares,
    state: Mutex<RunState>,
    stop: CancellationToken,
    done: CancellationToken,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl LoadTest {
    /// Checks `spec` and starts the run (inside a tokio runtime); returns at once.
    ///
    /// # Errors
    ///
    /// A spec that cannot run: bad target URL or scheme, zero or too many sessions, a zero or
    /// over-long duration, a ramp longer than the run, a bad load node URL.
    pub fn start(spec: LoadSpec) -> Result<Arc<LoadTest>> {
        spec.check()?;
        let target = Target::parse(&spec.target)?;
        let remotes = RemoteShares::plan(&spec)?;
        let local_sessions = spec.sessions - remotes.sessions();
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let test = Arc::new(LoadTest {
            id: format!(
                "lt{}-{:x}",
                NEXT_ID.fetch_add(1, Ordering::Relaxed),
                started_unix_ms & 0xffff
            ),
            protocol: target.protocol(),
            spec,
            started: Instant::now(),
            started_unix_ms,
            local_sessions,
            probes: Mutex::new(Vec::with_capacity(local_sessions)),
            remotes,
            state: Mutex::new(RunState::Running),
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
        });
        tokio::spawn(test.clone().run(target));
        Ok(test)
    }

    pub fn spec(&self) -> &LoadSpec {
        &self.spec
    }

    pub fn state(&self) -> RunState {
        *self.state.lock().unwrap()
    }

    /// Ends every session now; the report keeps what they measured.
    pub fn stop(&self) {
        let mut state = self.state.lock().unwrap();
        if *state == RunState::Running {
            *state = RunState::Stopped;
        }
        drop(state);
        self.stop.cancel();
    }

    /// Waits for the end of the run (its duration, or [`LoadTest::stop`]).
    pub async fn finished(&self) {
        self.done.cancelled().await;
    }

    pub fn is_finished(&self) -> bool {
        self.done.is_cancelled()
    }

    async fn run(self: Arc<Self>, target: Target) {
        let deadline = tokio::time::Instant::now() + self.spec.duration;
        let remotes = self.remotes.run(&self.spec, self.stop.clone(), deadline);
        let step = self.spec.step(self.local_sessions);
        let mut tasks = Vec::with_capacity(self.local_sessions);
        let mut at = tokio::time::Instant::now();
        for index in 0..self.local_sessions {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = self.stop.cancelled() => break,
            }
            at += step;
            let probe = Arc::new(SessionProbe::new(index));
            let stats = Arc::new(SessionStats::default());
            self.probes
                .lock()
                .unwrap()
                .push((probe.clone(), stats.clone()));
            let session = target.session(probe.clone(), stats);
            let stop = self.stop.clone();
            tasks.push(tokio::spawn(async move {
                let outcome = tokio::select! {
                    outcome = session => Some(outcome),
                    _ = tokio::time::sleep_until(deadline) => None,
                    _ = stop.cancelled() => None,
                };
                match outcome {
                    Some(Err(e)) => probe.fail(format!("{e:#}")),
                    Some(Ok(never)) => match never {},
                    None => match probe.state() {
                        SessionState::Connecting => {
                            probe.fail("did not connect before the end of the run")
                        }
                        SessionState::Connected => {
                            probe.fail("no video keyframe before the end of the run")
                        }
                        _ => probe.finish(),
                    },
                }
            }));
        }
        for task in tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "load session task failed");
            }
        }
        remotes.await;
        {
            let mut state = self.state.lock().unwrap();
            if *state == RunState::Running {
                *state = RunState::Finished;
            }
        }
        self.done.cancel();
    }

    /// The live figures (or the final ones once the run ended); with `per_session`, one entry
    /// per session.
    pub fn report(&self, per_session: bool) -> LoadTestReport {
        let local: Vec<_> = self
            .probes
            .lock()
            .unwrap()
            .iter()
            .map(|(probe, stats)| (probe.snapshot(), stats.clone()))
            .collect();
        let mut report = LoadTestReport::build(
            &self.spec,
            self.protocol,
            local,
            self.remotes.latest(),
            per_session,
        );
        report.id = self.id.clone();
        report.state = self.state();
        report.started_unix_ms = self.started_unix_ms;
        report.seconds = self.started.elapsed().as_secs_f64();
        report
    }
}

/// The load tests this node runs or ran (the newest [`KEPT`] finished ones are kept).
#[derive(Clone, Default)]
pub struct LoadTests {
    tests: Arc<Mutex<Vec<Arc<LoadTest>>>>,
}

/// Finished load tests kept for `GET /api/v1/loadtests`.
pub const KEPT: usize = 20;

impl LoadTests {
    /// Starts a run and keeps it.
    pub fn start(&self, spec: LoadSpec) -> Result<Arc<LoadTest>> {
        let test = LoadTest::start(spec)?;
        let mut tests = self.tests.lock().unwrap();
        tests.push(test.clone());
        let finished = tests.iter().filter(|t| t.is_finished()).count();
        if finished > KEPT {
            let mut drop = finished - KEPT;
            tests.retain(|t| {
                let gone = drop > 0 && t.is_finished();
                if gone {
                    drop -= 1;
                }
                !gone
            });
        }
        Ok(test)
    }

    pub fn list(&self) -> Vec<Arc<LoadTest>> {
        self.tests.lock().unwrap().clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<LoadTest>> {
        self.tests
            .lock()
            .unwrap()
            .iter()
            .find(|t| t.id == id)
            .cloned()
    }

    /// Stops every run (server shutdown).
    pub fn stop_all(&self) {
        for test in self.list() {
            test.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(target: &str, sessions: usize, secs: f64) -> LoadSpec {
        LoadSpec::new(target, sessions, Duration::from_secs_f64(secs))
    }

    #[tokio::test]
    async fn bad_specs_are_refused_with_a_reason() {
        let refused = |spec: LoadSpec| LoadTest::start(spec).err().expect("refused").to_string();
        assert!(refused(spec("ftp://h/x", 1, 1.0)).contains("unsupported scheme ftp://"));
        assert!(refused(spec("nothing", 1, 1.0)).contains("not a URL"));
        assert!(refused(spec("wss://h/mse/x", 1, 1.0)).contains("wss:// is not supported"));
        assert!(refused(spec("rtmp://h/live/x", 0, 1.0)).contains("at least 1"));
        assert!(refused(spec("rtmp://h/live/x", 1_000_000, 1.0)).contains("more than one run"));
        assert!(refused(spec("rtmp://h/live/x", 1, 0.0)).contains("more than 0 seconds"));
        let mut slow = spec("rtmp://h/live/x", 100, 10.0);
        slow.ramp = Some(5.0);
        assert!(refused(slow).contains("the ramp takes 20.0 s"));
        let mut negative = spec("rtmp://h/live/x", 1, 10.0);
        negative.ramp = Some(-1.0);
        assert!(refused(negative).contains("positive"));
    }

    #[tokio::test]
    async fn unreachable_targets_fail_every_session_with_the_reason() {
        // Nothing listens on port 1.
        for url in [
            "rtmp://127.0.0.1:1/live/x",
            "http://127.0.0.1:1/hls/x/index.m3u8",
            "ws://127.0.0.1:1/mse/x",
        ] {
            let test = LoadTest::start(spec(url, 2, 0.5)).unwrap();
            test.finished().await;
            let report = test.report(true);
            assert_eq!(
                (report.sessions, report.connected, report.failed),
                (2, 0, 2),
                "{url}"
            );
            assert_eq!(report.state, RunState::Finished);
            let (reason, count) = report.failures.iter().next().unwrap();
            assert!(reason.contains("connect"), "{url}: {reason}");
            assert_eq!(*count, 2);
            assert_eq!(report.per_session.unwrap().len(), 2);
        }
    }

    #[tokio::test]
    async fn a_stopped_run_ends_at_once() {
        let test = LoadTest::start(spec("rtmp://127.0.0.1:1/live/x", 3, 60.0)).unwrap();
        test.stop();
        tokio::time::timeout(Duration::from_secs(5), test.finished())
            .await
            .expect("ends");
        assert_eq!(test.state(), RunState::Stopped);
    }
}
