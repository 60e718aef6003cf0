//! `switchyard`: serve (the default), print the effective config, generate load, or play a
//! file as a live source.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard::config::{parse_udp_listen, Config};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Live-media gateway: every protocol in, every protocol out"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Settings shared by `serve` and `config`; each also reads `SWITCHYARD_*` from the environment.
#[derive(Args)]
struct Settings {
    /// TOML configuration file (every key optional).
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP listen address (API, console, HLS, MSE, WHIP/WHEP, metrics).
    #[arg(long, global = true, env = "SWITCHYARD_HTTP")]
    http: Option<SocketAddr>,
    /// RTMP listen address.
    #[arg(long, global = true, env = "SWITCHYARD_RTMP")]
    rtmp: Option<SocketAddr>,
    /// WebRTC UDP port or address.
    #[arg(long = "webrtc-udp", global = true, env = "SWITCHYARD_WEBRTC_UDP", value_parser = parse_udp_listen)]
    webrtc_udp: Option<SocketAddr>,
    /// WebRTC engine loops, each a thread with its own UDP port (the --webrtc-udp port and
    /// the ones after it); 0: one per core.
    #[arg(
        long = "webrtc-threads",
        global = true,
        env = "SWITCHYARD_WEBRTC_THREADS"
    )]
    webrtc_threads: Option<usize>,
    /// HTTPS listen address (same services as --http, with TLS), e.g. 0.0.0.0:8443.
    #[arg(long, global = true, env = "SWITCHYARD_HTTPS")]
    https: Option<SocketAddr>,
    /// RTMPS listen address, e.g. 0.0.0.0:1936.
    #[arg(long, global = true, env = "SWITCHYARD_RTMPS")]
    rtmps: Option<SocketAddr>,
    /// Development: serve HTTPS on 0.0.0.0:8443 (unless --https says where) with a
    /// self-signed certificate made at boot, so browsers on other hosts can use the camera page.
    #[arg(
        long = "tls-self-signed",
        global = true,
        env = "SWITCHYARD_TLS_SELF_SIGNED"
    )]
    tls_self_signed: bool,
    /// Cluster mode: the Redis directory shared by the nodes, redis://HOST:6379/0.
    #[arg(
        long = "cluster-directory",
        global = true,
        env = "SWITCHYARD_CLUSTER_DIRECTORY"
    )]
    cluster_directory: Option<String>,
    /// Cluster mode: the base URL other nodes and viewers reach this node at.
    #[arg(
        long = "advertise-url",
        global = true,
        env = "SWITCHYARD_ADVERTISE_URL"
    )]
    advertise_url: Option<String>,
    /// This node's id (in the cluster directory and in origin pull chains).
    #[arg(long = "node-id", global = true, env = "SWITCHYARD_NODE_ID")]
    node_id: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the effective configuration, every key with its value.
    Config,
    /// Play many sessions of one stream from a server and measure what each receives.
    ///
    /// Prints a live table on stderr, the summary as one JSON line on stdout at the end, and
    /// exits with status 1 when more sessions failed than --max-failure-rate allows.
    Loadtest(LoadtestArgs),
    /// Publish an FLV file (H.264, optional AAC) in a loop, in real time, as a live source whose
    /// video frames carry their send time (latency probe stamps).
    Source {
        /// The FLV file, e.g. fixtures/probe-640x360.flv.
        file: PathBuf,
        /// Where to publish: rtmp://127.0.0.1:1935/live/probe (RTMP) or
        /// http://127.0.0.1:8080/whip/live/probe (WHIP; video only).
        #[arg(long)]
        to: String,
        /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
        #[arg(long)]
        duration: Option<f64>,
    },
}

/// `switchyard loadtest`'s arguments.
#[derive(Args)]
struct LoadtestArgs {
    /// What to play: rtmp://HOST:1935/live/test (RTMP), http://HOST:8080/whep/live/test
    /// (WebRTC), http://HOST:8080/hls/live/test/index.m3u8 (HLS: LL-HLS if the playlist has
    /// parts; append #plain to poll it like a plain HLS player), ws://HOST:8080/mse/live/test
    /// (MSE)
    url: String,
    /// Sessions to open (in all, across --node load nodes).
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Sessions started per second (default: all within one second, at most 500 per second).
    #[arg(long)]
    ramp: Option<f64>,
    /// How long the run lasts, seconds.
    #[arg(long, visible_alias = "seconds", default_value_t = 10.0)]
    duration: f64,
    /// Write the full report, one entry per session, to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Another Switchyard node that runs a share of the sessions: its base URL, with its
    /// API token after a comma (http://10.0.0.2:8080,TOKEN). Repeat for more nodes.
    #[arg(long = "node", value_name = "URL[,TOKEN]")]
    nodes: Vec<String>,
    /// With --node: this node runs no share itself.
    #[arg(long)]
    no_local: bool,
    /// The largest share of failed sessions that still exits with status 0.
    #[arg(long, default_value_t = 0.05)]
    max_failure_rate: f64,
    /// No live table.
    #[arg(long, short)]
    quiet: bool,
}

impl Settings {
    fn effective_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(a) = self.http {
            config.http.listen = a;
        }
        if let Some(a) = self.rtmp {
            config.rtmp.listen = a;
        }
        if let Some(a) = self.webrtc_udp {
            config.webrtc.udp = a;
        }
        if let Some(n) = self.webrtc_threads {
            config.webrtc.threads = n;
        }
        if let Some(a) = self.https {
            config.http.https_listen = Some(a);
        }
        if let Some(a) = self.rtmps {
            config.rtmp.rtmps_listen = Some(a);
        }
        if self.tls_self_signed {
            config.tls.self_signed = true;
            config
                .http
                .https_listen
                .get_or_insert(([0, 0, 0, 0], 8443).into());
        }
        if let Some(d) = &self.cluster_directory {
            config.cluster.directory = d.clone();
        }
        if let Some(u) = &self.advertise_url {
            config.cluster.advertise_url = u.clone();
        }
        if let Some(id) = &self.node_id {
            config.node_id = id.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// `switchyard loadtest`: Ok(false) when more sessions failed than allowed.
fn loadtest(args: LoadtestArgs) -> anyhow::Result<bool> {
    let LoadtestArgs {
        url,
        sessions,
        ramp,
        duration,
        json,
        nodes,
        no_local,
        max_failure_rate,
        quiet,
    } = args;
    use switchyard::loadtest::{cli, LoadNode, LoadSpec};
    let duration = Duration::try_from_secs_f64(duration)
        .map_err(|_| anyhow::anyhow!("--duration must be a positive number of seconds"))?;
    let mut spec = LoadSpec::new(&url, sessions, duration);
    spec.ramp = ramp;
    spec.local = !no_local;
    spec.nodes = nodes
        .iter()
        .map(|node| {
            let (url, token) = match node.split_once(',') {
                Some((url, token)) => (url, Some(token.to_string())),
                None => (node.as_str(), None),
            };
            LoadNode {
                url: url.to_string(),
                token,
            }
        })
        .collect();
    let outcome = tokio::runtime::Runtime::new()?.block_on(cli::run(cli::CliRun {
        spec,
        json,
        max_failure_rate,
        quiet,
    }))?;
    let mut summary = outcome.report;
    summary.per_session = None;
    println!(
        "{}",
        serde_json::to_string(&summary).expect("report serializes")
    );
    Ok(outcome.passed)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // The lines of the engine, bus and ingest the source runs inside would bury its own.
        Some(Command::Source { .. }) => switchyard::logging::init_with(
            "info,rtc=error,switchyard::webrtc=warn,switchyard::bus=warn,switchyard::inputs=warn",
        ),
        // Hundreds of sessions' engines would bury the live table.
        Some(Command::Loadtest(_)) => switchyard::logging::init_with("warn"),
        _ => switchyard::logging::init(),
    }
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => cli.settings.effective_config().and_then(|config| {
            tokio::runtime::Runtime::new()?.block_on(switchyard::server::run(config))?;
            Ok(true)
        }),
        Command::Config => cli.settings.effective_config().map(|config| {
            print!("{}", config.to_toml());
            true
        }),
        Command::Loadtest(args) => loadtest(args),
        Command::Source { file, to, duration } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                let duration = duration
                    .map(Duration::try_from_secs_f64)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
                rt.block_on(switchyard::source::run_until_signal(&file, &to, duration))?;
                Ok(true)
            }),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
