//! `switchyard loadtest`: runs a [`LoadTest`] from the command line with a progress bar and a
//! live table on stderr, prints the summary as one JSON line on stdout at the end, writes the
//! full report (one entry per session) to `--json FILE`, and tells by its exit status whether
//! more sessions failed than allowed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use super::report::LoadTestReport;
use super::run::LoadTest;
use super::spec::LoadSpec;

/// What the command line asked for.
pub struct CliRun {
    pub spec: LoadSpec,
    /// Where to write the full report.
    pub json: Option<PathBuf>,
    /// The largest share of failed sessions that still counts as a pass (0.05: 5 %).
    pub max_failure_rate: f64,
    /// No live display.
    pub quiet: bool,
}

/// The outcome: the final report, and whether the run passed.
pub struct CliOutcome {
    pub report: LoadTestReport,
    pub passed: bool,
}

/// Runs the load test (inside a tokio runtime), showing its progress on stderr until it ends
/// or Ctrl-C stops it.
///
/// # Errors
///
/// A spec that cannot run, or a `--json` file that cannot be written.
pub async fn run(run: CliRun) -> Result<CliOutcome> {
    let test = LoadTest::start(run.spec)?;
    let live = !run.quiet;
    let tty = std::io::stderr().is_terminal();
    let mut drawn_lines = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_line = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = test.finished() => break,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopping: Ctrl-C");
                test.stop();
            }
            _ = tick.tick() => {
                if !live {
                    continue;
                }
                let report = test.report(false);
                if tty {
                    drawn_lines = redraw(&live_table(&report, test.spec().duration), drawn_lines);
                } else if last_line.elapsed() >= Duration::from_secs(5) {
                    eprintln!("{}", progress_line(&report, test.spec().duration));
                    last_line = tokio::time::Instant::now();
                }
            }
        }
    }
    let report = test.report(true);
    if live && tty {
        redraw(&live_table(&report, test.spec().duration), drawn_lines);
    }
    if let Some(path) = &run.json {
        let text = serde_json::to_string_pretty(&report).expect("a report serializes");
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    let rate = report.failure_rate();
    let passed = rate <= run.max_failure_rate;
    if !passed {
        eprintln!(
            "switchyard loadtest: {} of {} sessions failed ({:.0} %, more than the {:.0} % allowed){}",
            (rate * report.sessions as f64).round() as usize,
            report.sessions,
            rate * 100.0,
            run.max_failure_rate * 100.0,
            report
                .failures
                .iter()
                .max_by_key(|(_, count)| **count)
                .map(|(reason, count)| format!("; most often ({count}x): {reason}"))
                .unwrap_or_default()
        );
    }
    Ok(CliOutcome { report, passed })
}

/// Rewrites the previous table in place (ANSI: cursor up, clear to the end of the screen).
fn redraw(lines: &[String], previous: usize) -> usize {
    let mut err = std::io::stderr().lock();
    if previous > 0 {
        let _ = write!(err, "\x1b[{previous}A\x1b[J");
    }
    for line in lines {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
    lines.len()
}

fn progress_bar(report: &LoadTestReport, duration: Duration) -> String {
    const WIDTH: usize = 30;
    let done = (report.seconds / duration.as_secs_f64()).clamp(0.0, 1.0);
    let filled = (done * WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>5.1}/{:.0} s",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        report.seconds.min(duration.as_secs_f64()),
        duration.as_secs_f64()
    )
}

fn mbps(bps: u64) -> String {
    format!("{:.2} Mbit/s", bps as f64 / 1e6)
}

/// Milliseconds, with a decimal below 10 (a loopback latency of 0.5 ms is not 0).
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

fn p50(p: Option<&super::Percentiles>) -> String {
    p.map_or("-".to_string(), |p| ms(p.p50))
}

/// One line for logs (stderr is not a terminal).
fn progress_line(report: &LoadTestReport, duration: Duration) -> String {
    format!(
        "{} sessions {}/{} connected {} playing {} failed {} bitrate {} fps {:.1} lost {} freezes {}",
        progress_bar(report, duration),
        report.started,
        report.sessions,
        report.connected,
        report.playing,
        report.failed,
        mbps(report.bitrate_bps),
        report.fps,
        report.packets_lost,
        report.freezes
    )
}

/// The live table.
fn live_table(report: &LoadTestReport, duration: Duration) -> Vec<String> {
    let mut lines = vec![
        format!("{} {} {}", report.protocol, report.target, progress_bar(report, duration)),
        format!(
            "  sessions {:>6}/{:<6} connected {:>6}  playing {:>6}  failed {:>6}",
            report.started, report.sessions, report.connected, report.playing, report.failed
        ),
        format!(
            "  bitrate {:>14} per session   fps {:>5.1}   first frame p50 {:>8}   connect p50 {:>8}",
            mbps(report.bitrate_bps),
            report.fps,
            p50(report.first_frame_ms.as_ref()),
            p50(report.connect_ms.as_ref())
        ),
        format!(
            "  lost {:>8}   jitter {:>6.1} ms   freezes {:>5}   NACKs {:>6}   PLIs {:>5}",
            report.packets_lost, report.jitter_ms, report.freezes, report.nacks_sent, report.plis_sent
        ),
    ];
    for (path, latency) in &report.latency_ms {
        lines.push(format!(
            "  latency {path}: p50 {}  p90 {}  p99 {}  ({} frames)",
            ms(latency.p50),
            ms(latency.p90),
            ms(latency.p99),
            latency.count
        ));
    }
    for (reason, count) in report.failures.iter().take(3) {
        lines.push(format!("  failed {count}x: {reason}"));
    }
    lines
}
