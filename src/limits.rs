//! Resource limits (`[limits]` in the configuration) and the count of their hits.
//!
//! A gateway on the public internet must not let one client, or many, take every socket,
//! stream slot or reader slot. Each limit is enforced where its resource is handed out:
//!
//! - `max_streams`: the bus registry, when a publisher (RTMP, WHIP, a pull) claims a name;
//! - `max_readers_per_stream`: the bus, when a session reader (RTMP play, WHEP, MSE) attaches;
//!   HLS is left out on purpose: one muxer reads a stream on behalf of every HLS client, and an
//!   HLS request is a plain HTTP request, bounded by `max_sessions_per_ip` and the HTTP
//!   timeouts like any other;
//! - `max_sessions_per_ip`: one count per remote IP shared by its HTTP connections, RTMP
//!   connections and WebRTC sessions (a WebRTC session outlives the POST that opened it), taken
//!   at accept (a TCP connection) or at the WHIP/WHEP POST, and given back when the connection
//!   or session ends ([`IpSessions`]);
//! - `max_request_body_bytes`: the HTTP router, for REST JSON bodies and WHIP/WHEP SDP bodies
//!   (413 with a JSON reason; RFC 9110 15.5.14);
//! - `max_publisher_bitrate_kbps`: the bus's publisher, which measures what it is given.
//!
//! Timeouts live in their protocol's section (`http.header_timeout_secs`,
//! `rtmp.handshake_timeout_secs`, `rtmp.media_timeout_secs`, ...); their expiries are counted
//! here too, so `/metrics` shows `switchyard_limit_hits_total{limit="..."}` for every limit and
//! timeout that cut someone off.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The `[limits]` section of the configuration. 0 means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Streams on the bus at once (publishers of every protocol and pulls); a new name beyond
    /// it is refused (RTMP `NetStream.Publish.Rejected`, WHIP 503, a pull retries). 0: no limit.
    pub max_streams: usize,
    /// Session readers of one stream at once: RTMP players, WHEP viewers and MSE clients (HLS
    /// clients share one muxer and are not counted; pushes neither). Beyond it: RTMP
    /// `NetStream.Play.Failed`, WHEP 503, MSE close code 4503. 0: no limit.
    pub max_readers_per_stream: usize,
    /// Concurrent HTTP connections, RTMP connections and WebRTC sessions from one IP address,
    /// counted together. Beyond it: HTTP 429 and close, RTMP close, WHIP/WHEP 429. 0: no limit.
    pub max_sessions_per_ip: usize,
    /// Addresses `max_sessions_per_ip` does not apply to (a reverse proxy, a monitoring host).
    pub sessions_per_ip_exempt: Vec<IpAddr>,
    /// Largest HTTP request body accepted (REST JSON, WHIP/WHEP SDP); larger ones get 413.
    pub max_request_body_bytes: usize,
    /// A publisher whose bitrate, measured over `bitrate_window_secs`, exceeds this is cut
    /// off (with a log line saying so). 0: no limit.
    pub max_publisher_bitrate_kbps: u64,
    /// The window over which a publisher's bitrate is measured for
    /// `max_publisher_bitrate_kbps` (long enough that a keyframe is not a peak).
    pub bitrate_window_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_streams: 0,
            max_readers_per_stream: 0,
            max_sessions_per_ip: 0,
            sessions_per_ip_exempt: Vec::new(),
            // axum's own default, so a server without the key behaves as before.
            max_request_body_bytes: 2 << 20,
            max_publisher_bitrate_kbps: 0,
            bitrate_window_secs: 4,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_request_body_bytes >= 1024,
            "limits.max_request_body_bytes must be at least 1024 (an SDP offer is several KiB), not {}",
            self.max_request_body_bytes
        );
        anyhow::ensure!(
            (1..=60).contains(&self.bitrate_window_secs),
            "limits.bitrate_window_secs must be within 1..=60, not {}",
            self.bitrate_window_secs
        );
        Ok(())
    }
}

/// A limit or timeout that can cut a client off; its name is the `limit` label in
/// `/metrics` (the configuration key, without its section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxStreams,
    MaxReadersPerStream,
    MaxSessionsPerIp,
    MaxRequestBodyBytes,
    MaxPublisherBitrate,
    HttpHeaderTimeout,
    RtmpHandshakeTimeout,
    RtmpMediaTimeout,
    WebrtcConnectTimeout,
}

impl Limit {
    pub const ALL: [Limit; 9] = [
        Limit::MaxStreams,
        Limit::MaxReadersPerStream,
        Limit::MaxSessionsPerIp,
        Limit::MaxRequestBodyBytes,
        Limit::MaxPublisherBitrate,
        Limit::HttpHeaderTimeout,
        Limit::RtmpHandshakeTimeout,
        Limit::RtmpMediaTimeout,
        Limit::WebrtcConnectTimeout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxStreams => "max_streams",
            Limit::MaxReadersPerStream => "max_readers_per_stream",
            Limit::MaxSessionsPerIp => "max_sessions_per_ip",
            Limit::MaxRequestBodyBytes => "max_request_body_bytes",
            Limit::MaxPublisherBitrate => "max_publisher_bitrate_kbps",
            Limit::HttpHeaderTimeout => "http_header_timeout",
            Limit::RtmpHandshakeTimeout => "rtmp_handshake_timeout",
            Limit::RtmpMediaTimeout => "rtmp_media_timeout",
            Limit::WebrtcConnectTimeout => "webrtc_connect_timeout",
        }
    }
}

/// Hits per [`Limit`], process-wide (like the other counters `/metrics` reads at scrape time).
static HITS: [AtomicU64; Limit::ALL.len()] = [const { AtomicU64::new(0) }; Limit::ALL.len()];

/// Counts one hit of `limit`.
pub fn hit(limit: Limit) {
    HITS[limit as usize].fetch_add(1, Ordering::Relaxed);
}

/// Every limit with its hits so far.
pub fn hits() -> impl Iterator<Item = (Limit, u64)> {
    Limit::ALL
        .into_iter()
        .map(|l| (l, HITS[l as usize].load(Ordering::Relaxed)))
}

/// Open sessions per remote IP, for `max_sessions_per_ip`.
#[derive(Debug, Default)]
pub struct IpSessions {
    max: usize,
    exempt: Vec<IpAddr>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One session counted against its IP until dropped.
#[derive(Debug)]
pub struct SessionPermit {
    table: Arc<IpSessions>,
    ip: Option<IpAddr>,
}

impl IpSessions {
    pub fn new(config: &LimitsConfig) -> Arc<Self> {
        Arc::new(IpSessions {
            max: config.max_sessions_per_ip,
            exempt: config.sessions_per_ip_exempt.clone(),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new session from `ip`, or `None` (a hit, logged) if `ip` has the most it may.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, what: &'static str) -> Option<SessionPermit> {
        let ip = canonical(ip);
        if self.max == 0 || self.exempt.iter().any(|e| canonical(*e) == ip) {
            return Some(SessionPermit {
                table: self.clone(),
                ip: None,
            });
        }
        let mut open = self.open.lock().unwrap();
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            drop(open);
            hit(Limit::MaxSessionsPerIp);
            // A flood of refusals must not flood the log: one line a second at most, the rest
            // are in the metric.
            if once_a_second(&LAST_SESSION_REFUSAL_LOGGED) {
                tracing::warn!(%ip, max = self.max, refused = what, "session refused: limits.max_sessions_per_ip reached for this address (logged once a second at most; see switchyard_limit_hits_total)");
            }
            return None;
        }
        *n += 1;
        Some(SessionPermit {
            table: self.clone(),
            ip: Some(ip),
        })
    }

    /// The limit, for error messages.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sessions open from `ip` (counted ones; exempt addresses show 0).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let ip = canonical(ip);
        self.open.lock().unwrap().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self.table.open.lock().unwrap();
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

static LAST_SESSION_REFUSAL_LOGGED: AtomicU64 = AtomicU64::new(0);

/// True at most once per wall-clock second for `last` (the second it last said true).
fn once_a_second(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    last.swap(now, Ordering::Relaxed) != now
}

/// An IPv4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`; it is the same address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize, exempt: &[&str]) -> Arc<IpSessions> {
        IpSessions::new(&LimitsConfig {
            max_sessions_per_ip: max,
            sessions_per_ip_exempt: exempt.iter().map(|s| s.parse().unwrap()).collect(),
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn sessions_per_ip_are_counted_until_their_permits_drop() {
        let t = table(2, &[]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = t.admit(a, "test").unwrap();
        let _p2 = t
            .admit("::ffff:192.0.2.1".parse().unwrap(), "test")
            .unwrap();
        assert!(
            t.admit(a, "test").is_none(),
            "a third from the same address"
        );
        assert!(
            t.admit(b, "test").is_some(),
            "another address has its own count"
        );
        drop(p1);
        assert_eq!(t.open_from(a), 1);
        assert!(t.admit(a, "test").is_some());
    }

    #[test]
    fn exempt_addresses_and_zero_are_unlimited() {
        let t = table(1, &["127.0.0.1"]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let permits: Vec<_> = (0..5).map(|_| t.admit(local, "test").unwrap()).collect();
        assert_eq!((permits.len(), t.open_from(local)), (5, 0));
        let t = table(0, &[]);
        let _many: Vec<_> = (0..100)
            .map(|_| t.admit("192.0.2.9".parse().unwrap(), "test").unwrap())
            .collect();
    }
}
