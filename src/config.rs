//! Configuration: a TOML file where every key has a default, so no file is needed.
//!
//! Precedence, highest first: command-line flag, environment variable (`SWITCHYARD_*`),
//! config file, built-in default. `switchyard config` prints the effective configuration.

pub use crate::rtmp::RtmpConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub rtmp: RtmpConfig,
    pub webrtc: WebrtcConfig,
    pub hls: HlsSection,
    pub mse: MseSection,
    pub audio: AudioSection,
    pub bus: BusSection,
    pub pull: PullSection,
    /// Pulls started at boot (`[[pulls]]` tables): `source` URL and local `name`.
    pub pulls: Vec<PullEntry>,
    /// Base URLs of other nodes (`http://origin1:8080`) asked, in order, for a stream a reader
    /// wants and nobody here publishes: the first whose `/whep/{name}` answers is pulled from,
    /// until the stream has had no reader for `pull.on_demand_idle_secs`.
    pub origins: Vec<String>,
    /// This node's id in the `Switchyard-Via` chain of origin pulls (origin loops are refused
    /// at once with it): letters, digits, `.`, `_`, `-`, at most 64. Empty: a random id per
    /// process.
    pub node_id: String,
    /// Push rules (`[[pushes]]` tables): every stream whose name matches `stream` (`*` matches
    /// within a path segment, e.g. `live/*`) is pushed to `url` (`{name}` is replaced by the
    /// stream name).
    pub pushes: Vec<PushRule>,
    /// Limits on streams, readers, sessions per IP, request bodies and publisher bitrate
    /// (`[limits]`; see `src/limits.rs`).
    pub limits: crate::limits::LimitsConfig,
    /// The certificate of `http.https_listen` and `rtmp.rtmps_listen`.
    pub tls: crate::tls::TlsConfig,
    /// API tokens and publish/play authorization (`[auth]`, `[auth.jwt]`, `[[auth.rules]]`).
    pub auth: crate::auth::AuthConfig,
    /// Cluster mode: a stream directory shared by every node on Redis (`[cluster]`; see
    /// `src/cluster`).
    pub cluster: ClusterSection,
}

/// `[cluster]`: off until `directory` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// The Redis server holding the directory, `redis://HOST:6379/0` (`rediss://` for TLS,
    /// `redis://:password@HOST/0` with a password). Empty: cluster mode is off.
    pub directory: String,
    /// The base URL other nodes and viewers reach this node at (`http://10.0.0.5:8080`).
    /// Empty: `http://` and the HTTP listener's address, which only suits nodes on one host.
    pub advertise_url: String,
    /// How long a registration lives in the directory without being refreshed; it is
    /// refreshed every third of it. A node that dies leaves the directory within this time.
    pub lease_ttl_secs: u64,
    /// Viewers (readers of any output but pushes) this node takes before WHEP offers and HLS
    /// playlist requests are redirected (`307`) to a node with room; 0: no limit.
    pub max_viewers: u64,
    /// Like `max_viewers`, for the bitrate this node sends, in kbit/s; 0: no limit.
    pub max_bitrate_out_kbps: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            directory: String::new(),
            advertise_url: String::new(),
            lease_ttl_secs: 10,
            max_viewers: 0,
            max_bitrate_out_kbps: 0,
        }
    }
}

impl ClusterSection {
    fn validate(&self) -> anyhow::Result<()> {
        if self.directory.is_empty() {
            return Ok(());
        }
        let url = reqwest::Url::parse(&self.directory).map_err(|e| {
            anyhow::anyhow!("cluster.directory: {:?} is not a URL: {e}", self.directory)
        })?;
        anyhow::ensure!(
            matches!(url.scheme(), "redis" | "rediss") && url.host_str().is_some(),
            "cluster.directory must be a redis:// or rediss:// URL with a host (e.g. \"redis://127.0.0.1:6379/0\")"
        );
        if !self.advertise_url.is_empty() {
            let advertised = reqwest::Url::parse(&self.advertise_url).map_err(|e| {
                anyhow::anyhow!(
                    "cluster.advertise_url: {:?} is not a URL: {e}",
                    self.advertise_url
                )
            })?;
            anyhow::ensure!(
                matches!(advertised.scheme(), "http" | "https") && advertised.path() == "/",
                "cluster.advertise_url must be an http(s) base URL without a path (e.g. \"http://10.0.0.5:8080\")"
            );
        }
        anyhow::ensure!(
            (3..=3600).contains(&self.lease_ttl_secs),
            "cluster.lease_ttl_secs must be within 3..=3600"
        );
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Console, REST API, WHIP/WHEP, HLS, MSE and metrics. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// A keep-alive connection with no request in progress for this long is closed (a
    /// request in progress, such as an LL-HLS blocking playlist request, and a WebSocket never
    /// count as idle).
    pub idle_timeout_secs: u64,
    /// A request head must be complete within this time of the accept (first request) or of
    /// its first byte (later requests): slow-headers clients are cut off.
    pub header_timeout_secs: u64,
    /// HTTPS (and WSS) for the same console, API, WHIP/WHEP, HLS, MSE and metrics, with
    /// HTTP/2 by ALPN, e.g. "0.0.0.0:8443"; the certificate is `[tls]`'s. Empty: off.
    #[serde(with = "optional_addr")]
    pub https_listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([0, 0, 0, 0], 8080).into(),
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
            https_listen: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// The one UDP socket for all WebRTC peers.
    pub udp: SocketAddr,
    /// Addresses advertised as host candidates; empty: every IPv4 interface address when
    /// `udp` is bound to 0.0.0.0, else `udp`'s address.
    pub candidate_ips: Vec<std::net::IpAddr>,
    /// Public addresses of a 1:1 NAT in front of this host (advertised as extra candidates).
    pub public_ips: Vec<std::net::IpAddr>,
    /// STUN/TURN servers handed to WHIP/WHEP clients in `Link` headers.
    pub ice_servers: Vec<crate::webrtc::IceServer>,
    /// Testing aid: drop one in this many media packets to viewers on their first send
    /// (retransmissions on NACK still go), to see loss recovery work. 0: off.
    pub simulate_loss_one_in: u32,
    /// A WHIP/WHEP session whose ICE and DTLS have not completed this long after the POST is
    /// removed (a client that POSTs offers and never connects cannot pile sessions up).
    pub connect_timeout_secs: u64,
    /// Engine loops, each a thread with a UDP socket of its own: `udp`'s port and the ones
    /// after it (all OS-chosen when `udp`'s port is 0). New sessions go to the loops in turn,
    /// so viewers are served on that many cores. 0: one per core.
    pub threads: usize,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            udp: ([0, 0, 0, 0], 8189).into(),
            candidate_ips: Vec::new(),
            public_ips: Vec::new(),
            ice_servers: Vec::new(),
            simulate_loss_one_in: 0,
            connect_timeout_secs: 30,
            threads: 1,
        }
    }
}

impl WebrtcConfig {
    /// The UDP addresses of the engine's loops (`threads` of them, from `udp`'s port on).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        (0..threads)
            .map(|i| match self.udp.port() {
                0 => self.udp,
                port => SocketAddr::new(self.udp.ip(), port.saturating_add(i as u16)),
            })
            .collect()
    }

    pub fn to_settings(&self) -> crate::webrtc::WebRtcSettings {
        crate::webrtc::WebRtcSettings {
            udp: self.udp,
            candidate_ips: self.candidate_ips.clone(),
            public_ips: self.public_ips.clone(),
            ice_servers: self.ice_servers.clone(),
            own_thread: true,
            simulate_loss_one_in: self.simulate_loss_one_in,
            connect_timeout: std::time::Duration::from_secs(self.connect_timeout_secs),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSection {
    /// Segments are cut at the first keyframe after this much media.
    pub segment_target_ms: u64,
    /// LL-HLS parts hold about this much media.
    pub part_target_ms: u64,
    /// Complete segments kept in memory and listed in the playlist.
    pub window_segments: usize,
    /// A stream's HLS muxer stops after this long without requests.
    pub idle_timeout_secs: u64,
    /// Run a muxer for every stream from its start, requested or not.
    pub always_on: bool,
    /// `source` keeps AAC or Opus as published; `aac` converts Opus to AAC for players that
    /// cannot play Opus (older Safari). Needs the `transcode` feature.
    pub audio_codec: crate::outputs::hls::HlsAudio,
}

impl Default for HlsSection {
    fn default() -> Self {
        HlsSection {
            segment_target_ms: 2000,
            part_target_ms: 200,
            window_segments: 6,
            idle_timeout_secs: 30,
            always_on: false,
            audio_codec: Default::default(),
        }
    }
}

impl HlsSection {
    pub fn to_settings(&self) -> crate::outputs::hls::HlsSettings {
        crate::outputs::hls::HlsSettings {
            playlist: switchyard_hls::HlsConfig {
                segment_target: std::time::Duration::from_millis(self.segment_target_ms),
                part_target: std::time::Duration::from_millis(self.part_target_ms),
                window_segments: self.window_segments,
            },
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            always_on: self.always_on,
            audio_codec: self.audio_codec,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MseSection {
    /// A client this far behind live (its socket backed up) skips to the next keyframe.
    pub max_lag_ms: u64,
    /// A client whose socket accepts nothing for this long is closed.
    pub write_timeout_secs: u64,
    /// A client's messages are gathered for up to this long and sent with one write (at most
    /// one frame of added delay at 30 fps). 0 sends each fragment as it comes.
    pub coalesce_ms: u64,
}

impl Default for MseSection {
    fn default() -> Self {
        MseSection {
            max_lag_ms: 1500,
            write_timeout_secs: 10,
            coalesce_ms: 30,
        }
    }
}

impl MseSection {
    pub fn to_settings(&self) -> crate::outputs::mse::MseSettings {
        crate::outputs::mse::MseSettings {
            max_lag: std::time::Duration::from_millis(self.max_lag_ms),
            write_timeout: std::time::Duration::from_secs(self.write_timeout_secs),
            coalesce: std::time::Duration::from_millis(self.coalesce_ms),
        }
    }
}

/// Retry policy of pulls and pushes: exponential backoff with jitter, bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PullSection {
    /// First retry delay after a failure.
    pub retry_min_ms: u64,
    /// Upper bound of the retry delay.
    pub retry_max_ms: u64,
    /// Connecting (and the protocol's setup) must succeed within this time; a running pull
    /// that receives no media for this long reconnects.
    pub connect_timeout_secs: u64,
    /// How RTSP pulls receive RTP: `tcp` (interleaved on the RTSP connection, works through
    /// NAT and firewalls) or `udp`. A source URL's `?transport=udp|tcp` overrides it.
    pub rtsp_transport: String,
    /// An on-demand pull stops after its stream has had no reader for this long.
    pub on_demand_idle_secs: u64,
    /// A WHEP pull whose source drops keeps its local stream (and its readers) on the bus for
    /// up to this long while it reconnects; 0 ends the stream at once.
    pub hold_secs: u64,
    /// PEM file of extra CA certificates trusted for `rtmps://` targets, besides the public web
    /// PKI roots (empty: none).
    pub tls_ca_file: String,
    /// Bearer token sent with the WHEP POSTs of origin pulls (`origins`), for origins whose
    /// `[[auth.rules]]` protect play (empty: none).
    pub origin_token: String,
}

impl Default for PullSection {
    fn default() -> Self {
        PullSection {
            retry_min_ms: 500,
            retry_max_ms: 30_000,
            connect_timeout_secs: 10,
            rtsp_transport: "tcp".to_string(),
            tls_ca_file: String::new(),
            on_demand_idle_secs: 30,
            hold_secs: 10,
            origin_token: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullEntry {
    pub source: String,
    pub name: String,
    /// Start only when a reader asks for `name` (and stop when the last one leaves).
    #[serde(default)]
    pub on_demand: bool,
    /// Bearer token for a WHEP (`http(s)://`) source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRule {
    pub stream: String,
    pub url: String,
}

/// Audio conversion (needs the `transcode` feature): encoder bitrates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioSection {
    /// AAC-LC bitrate, in bits per second, for RTMP and HLS readers of Opus/G.711 streams.
    pub aac_bitrate: u32,
    /// Opus bitrate, in bits per second, for WebRTC readers of AAC/G.711 streams.
    pub opus_bitrate: u32,
}

impl Default for AudioSection {
    fn default() -> Self {
        let d = crate::audio::AudioSettings::default();
        AudioSection {
            aac_bitrate: d.aac_bitrate,
            opus_bitrate: d.opus_bitrate,
        }
    }
}

impl AudioSection {
    pub fn to_settings(&self) -> crate::audio::AudioSettings {
        crate::audio::AudioSettings {
            aac_bitrate: self.aac_bitrate,
            opus_bitrate: self.opus_bitrate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSection {
    /// Frames a reader may fall behind before it loses frames and skips to the next keyframe.
    pub reader_queue_frames: usize,
    /// Upper bound on one stream's GOP cache, in bytes.
    pub gop_cache_max_bytes: usize,
    /// A second publisher on a busy name kicks the first instead of being refused.
    pub publisher_takeover: bool,
}

impl Default for BusSection {
    fn default() -> Self {
        let d = crate::bus::BusConfig::default();
        BusSection {
            reader_queue_frames: d.reader_queue_frames,
            gop_cache_max_bytes: d.gop_cache_max_bytes,
            publisher_takeover: d.publisher_takeover,
        }
    }
}

impl BusSection {
    pub fn to_bus_config(&self) -> crate::bus::BusConfig {
        crate::bus::BusConfig {
            reader_queue_frames: self.reader_queue_frames,
            gop_cache_max_bytes: self.gop_cache_max_bytes,
            publisher_takeover: self.publisher_takeover,
            ..Default::default()
        }
    }
}

impl Config {
    /// The bus's settings: `[bus]` and the limits the bus enforces.
    pub fn bus_config(&self) -> crate::bus::BusConfig {
        crate::bus::BusConfig {
            max_streams: self.limits.max_streams,
            max_readers_per_stream: self.limits.max_readers_per_stream,
            max_publisher_bitrate_kbps: self.limits.max_publisher_bitrate_kbps,
            bitrate_window: std::time::Duration::from_secs(self.limits.bitrate_window_secs),
            ..self.bus.to_bus_config()
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=3600).contains(&self.http.idle_timeout_secs),
            "http.idle_timeout_secs must be within 1..=3600, not {}",
            self.http.idle_timeout_secs
        );
        anyhow::ensure!(
            (1..=600).contains(&self.http.header_timeout_secs),
            "http.header_timeout_secs must be within 1..=600, not {}",
            self.http.header_timeout_secs
        );
        anyhow::ensure!(
            (1..=600).contains(&self.webrtc.connect_timeout_secs),
            "webrtc.connect_timeout_secs must be within 1..=600, not {}",
            self.webrtc.connect_timeout_secs
        );
        anyhow::ensure!(
            (1..=3600).contains(&self.rtmp.media_timeout_secs),
            "rtmp.media_timeout_secs must be within 1..=3600, not {}",
            self.rtmp.media_timeout_secs
        );
        anyhow::ensure!(
            (128..=65536).contains(&self.rtmp.chunk_size),
            "rtmp.chunk_size must be within 128..=65536, not {}",
            self.rtmp.chunk_size
        );
        anyhow::ensure!(
            self.webrtc.threads <= 64
                && (self.webrtc.udp.port() == 0
                    || self.webrtc.udp.port() as usize + self.webrtc.threads.max(1) <= 65536),
            "webrtc.threads must be at most 64, and udp's port plus threads within 65535"
        );
        anyhow::ensure!(
            self.rtmp.coalesce_ms <= 1000,
            "rtmp.coalesce_ms (write_batch_ms) must be at most 1000"
        );
        anyhow::ensure!(
            self.mse.coalesce_ms <= 1000,
            "mse.coalesce_ms must be at most 1000"
        );
        anyhow::ensure!(
            self.hls.part_target_ms >= 50 && self.hls.part_target_ms <= self.hls.segment_target_ms,
            "hls.part_target_ms must be at least 50 and at most hls.segment_target_ms"
        );
        anyhow::ensure!(
            self.hls.window_segments >= 3,
            "hls.window_segments must be at least 3"
        );
        anyhow::ensure!(
            (16_000..=512_000).contains(&self.audio.aac_bitrate),
            "audio.aac_bitrate must be within 16000..=512000 bits per second, not {}",
            self.audio.aac_bitrate
        );
        anyhow::ensure!(
            (6_000..=510_000).contains(&self.audio.opus_bitrate),
            "audio.opus_bitrate must be within 6000..=510000 bits per second (RFC 6716 2.1.1), not {}",
            self.audio.opus_bitrate
        );
        anyhow::ensure!(
            self.bus.reader_queue_frames >= 16,
            "bus.reader_queue_frames must be at least 16"
        );
        anyhow::ensure!(
            self.pull.retry_min_ms >= 1 && self.pull.retry_min_ms <= self.pull.retry_max_ms,
            "pull.retry_min_ms must be at least 1 and at most pull.retry_max_ms"
        );
        anyhow::ensure!(
            self.pull.connect_timeout_secs >= 1,
            "pull.connect_timeout_secs must be at least 1"
        );
        anyhow::ensure!(
            matches!(self.pull.rtsp_transport.as_str(), "tcp" | "udp"),
            "pull.rtsp_transport must be \"tcp\" or \"udp\", not {:?}",
            self.pull.rtsp_transport
        );
        anyhow::ensure!(
            self.pull.on_demand_idle_secs >= 1,
            "pull.on_demand_idle_secs must be at least 1"
        );
        anyhow::ensure!(
            self.node_id.len() <= 64
                && self
                    .node_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "node_id must be at most 64 letters, digits, '.', '_' or '-', not {:?}",
            self.node_id
        );
        self.limits.validate()?;
        self.cluster.validate()?;
        self.tls.validate(&[
            ("http.https_listen", self.http.https_listen.is_some()),
            ("rtmp.rtmps_listen", self.rtmp.rtmps_listen.is_some()),
        ])?;
        for origin in &self.origins {
            let url = reqwest::Url::parse(origin)
                .map_err(|e| anyhow::anyhow!("origins: {origin:?} is not a URL: {e}"))?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https") && url.host_str().is_some(),
                "origins: {origin:?} is not an http(s) base URL (e.g. \"http://origin1:8080\")"
            );
        }
        Ok(())
    }

    /// The configuration as TOML, every key with its value; empty `[[pulls]]` and `[[pushes]]`
    /// lists (which TOML cannot show) are shown as commented examples.
    pub fn to_toml(&self) -> String {
        let mut text = toml::to_string_pretty(self).expect("config serializes");
        if self.pulls.is_empty() {
            text.push_str("\n# [[pulls]]                      # streams pulled at boot (none)\n# source = \"rtsp://user:pass@camera:554/path\"   # or rtmp://, rtmps://, http(s)://HOST/whep/NAME\n# name = \"cam/door\"\n# token = \"...\"                   # bearer token of a WHEP source (optional)\n");
        }
        if self.auth.rules.is_empty() {
            text.push_str("\n# [[auth.rules]]                 # publish/play rules (none: everything is allowed)\n# streams = \"live/*\"              # first rule whose pattern and action match decides\n# action = \"publish\"             # publish | play | any\n# tokens = [\"secret\"]             # static tokens\n# jwt = true                      # JWTs verified with [auth.jwt]\n# webhook = \"http://127.0.0.1:9000/auth\"\n");
        }
        if self.pushes.is_empty() {
            text.push_str("\n# [[pushes]]                     # push rules (none)\n# stream = \"live/*\"               # `*` matches within a path segment\n# url = \"rtmp://cdn.example/app/{name}\"\n");
        }
        text
    }
}

/// An optional listen address, written `""` when off (TOML has no null).
pub mod optional_addr {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an IP:port address (e.g. \"0.0.0.0:8443\"; \"\" for off)"
            ))
        })
    }
}

/// Parses a WebRTC UDP setting: a port (`8189`, bound on all interfaces) or an address.
pub fn parse_udp_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(([0, 0, 0, 0], port).into());
    }
    s.parse()
        .map_err(|_| format!("{s:?} is neither a port nor an IP:port address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_rules_print_and_parse_back() {
        let text = "[auth]\napi_tokens = [\"a\"]\n[auth.jwt]\nhs256_secret = \"s\"\n[[auth.rules]]\nstreams = \"live/*\"\naction = \"play\"\ntokens = [\"t\"]\njwt = true\nwebhook = \"http://127.0.0.1:9/auth\"\n";
        let config = Config::parse(text).unwrap();
        assert_eq!(config.auth.rules[0].action, crate::auth::RuleAction::Play);
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
        assert!(crate::auth::Auth::from_config(&config.auth).is_ok());
    }

    #[test]
    fn empty_file_gives_defaults_and_printed_config_parses_back() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
        assert!(config.to_toml().contains("chunk_size = 4096"));
        let edge = Config::parse(
            "origins = [\"http://a:8080\"]\n[[pulls]]\nsource = \"http://b/whep/x\"\nname = \"x\"\ntoken = \"t\"\n",
        )
        .unwrap();
        assert_eq!(Config::parse(&edge.to_toml()).unwrap(), edge);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::parse("[rtmp]\nlisten_addr = \"1.2.3.4:5\"").is_err());
        assert!(Config::parse("[rtmp]\nchunk_size = 12").is_err());
        assert!(Config::parse("origins = [\"ftp://a\"]").is_err());
        assert!(Config::parse("[audio]\naac_bitrate = 128").is_err());
        assert!(Config::parse("[audio]\nopus_bitrate = 1000000").is_err());
        assert!(Config::parse("[hls]\naudio_codec = \"mp3\"").is_err());
        assert!(Config::parse("[http]\nidle_timeout_secs = 0").is_err());
        assert!(Config::parse("[http]\nheader_timeout_secs = 0").is_err());
        assert!(Config::parse("node_id = \"a, b\"").is_err());
        assert!(Config::parse("[limits]\nmax_request_body_bytes = 10").is_err());
        assert!(Config::parse("[limits]\nmax_stream = 1").is_err());
        let c =
            Config::parse("[limits]\nmax_streams = 2\nmax_publisher_bitrate_kbps = 500").unwrap();
        assert_eq!(
            (
                c.bus_config().max_streams,
                c.bus_config().max_publisher_bitrate_kbps
            ),
            (2, 500)
        );
        let c = Config::parse("node_id = \"edge-1.eu\"\n[http]\nidle_timeout_secs = 5").unwrap();
        assert_eq!(
            (c.node_id.as_str(), c.http.idle_timeout_secs),
            ("edge-1.eu", 5)
        );
        let c = Config::parse("[http]\nlisten = \"127.0.0.1:0\"").unwrap();
        assert_eq!(c.http.listen.port(), 0);
        let c =
            Config::parse("[hls]\naudio_codec = \"aac\"\n[audio]\nopus_bitrate = 32000").unwrap();
        assert_eq!(c.hls.audio_codec, crate::outputs::hls::HlsAudio::Aac);
        assert_eq!(c.audio.to_settings().opus_bitrate, 32_000);
    }

    #[test]
    fn rtmp_write_batching_is_also_read_as_write_batch_ms() {
        let c = Config::parse("[rtmp]\nwrite_batch_ms = 350").unwrap();
        assert_eq!(c.rtmp.coalesce_ms, 350);
        assert_eq!(Config::parse("[rtmp]\ncoalesce_ms = 350").unwrap(), c);
        assert!(Config::parse("[rtmp]\nwrite_batch_ms = 5000").is_err());
    }

    #[test]
    fn webrtc_threads_take_consecutive_ports() {
        let c = Config::parse("[webrtc]\nudp = \"127.0.0.1:9000\"\nthreads = 3").unwrap();
        let ports: Vec<u16> = c.webrtc.udp_addrs().iter().map(|a| a.port()).collect();
        assert_eq!(ports, [9000, 9001, 9002]);
        let c = Config::parse("[webrtc]\nudp = \"127.0.0.1:0\"\nthreads = 2").unwrap();
        assert_eq!(c.webrtc.udp_addrs().len(), 2);
        assert!(c.webrtc.udp_addrs().iter().all(|a| a.port() == 0));
        assert_eq!(Config::default().webrtc.udp_addrs().len(), 1);
        let all = Config::parse("[webrtc]\nthreads = 0").unwrap();
        assert!(!all.webrtc.udp_addrs().is_empty());
        assert!(Config::parse("[webrtc]\nthreads = 65").is_err());
        assert!(Config::parse("[webrtc]\nudp = \"0.0.0.0:65535\"\nthreads = 2").is_err());
    }

    #[test]
    fn udp_setting_takes_port_or_address() {
        assert_eq!(
            parse_udp_listen("8189").unwrap(),
            "0.0.0.0:8189".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_udp_listen("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_udp_listen("x").is_err());
    }
}
