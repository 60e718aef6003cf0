//! `switchyard`: serve (the default), print the effective config, or generate load.

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
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the effective configuration, every key with its value.
    Config,
    /// Play many sessions from a server and report what they received.
    Loadtest {
        /// What to play: rtmp://127.0.0.1:1935/live/test (RTMP),
        /// http://127.0.0.1:8080/hls/live/test/index.m3u8 (HLS: LL-HLS if the playlist has parts;
        /// append #plain to poll it like a plain HLS player), ws://127.0.0.1:8080/mse/live/test (MSE)
        url: String,
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
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
        config.validate()?;
        Ok(config)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    switchyard::logging::init();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => cli.settings.effective_config().and_then(|config| {
            tokio::runtime::Runtime::new()?.block_on(switchyard::server::run(config))
        }),
        Command::Config => cli
            .settings
            .effective_config()
            .map(|config| print!("{}", config.to_toml())),
        Command::Loadtest {
            url,
            sessions,
            seconds,
        } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(switchyard::loadtest::run(
                    &url,
                    sessions,
                    Duration::from_secs(seconds),
                ))
            })
            .map(|report| {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serializes")
                )
            }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
