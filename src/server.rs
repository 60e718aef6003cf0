//! Binds every listener and runs the server until Ctrl-C / SIGTERM.

use crate::bus::Registry;
use crate::config::Config;
use crate::http::{router, AppState, ConnTimeouts, MakeConnService, TimedListener};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A server with its listeners bound (so their ports are known) but not yet serving.
pub struct Server {
    config: Config,
    registry: Registry,
    http: TcpListener,
    rtmp: TcpListener,
    webrtc: std::net::UdpSocket,
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let http = bind("http", config.http.listen).await?;
        let rtmp = bind("rtmp", config.rtmp.listen).await?;
        let webrtc = crate::webrtc::bind(config.webrtc.udp)?;
        let registry = Registry::new(config.bus.to_bus_config());
        crate::audio::configure(config.audio.to_settings());
        if !crate::audio::AVAILABLE {
            tracing::info!("built without the transcode feature: audio is passed as published, never converted (Opus is not sent to RTMP targets, AAC/G.711 not to WebRTC viewers)");
        }
        Ok(Server {
            config,
            registry,
            http,
            rtmp,
            webrtc,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound socket has an address")
    }

    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp.local_addr().expect("bound socket has an address")
    }

    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every session and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        tracker.spawn(crate::rtmp::serve(
            self.rtmp,
            self.registry.clone(),
            self.config.rtmp.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        let webrtc = crate::webrtc::start(
            self.webrtc,
            self.config.webrtc.to_settings(),
            shutdown.clone(),
        )?;
        let mut state = AppState::new(self.registry.clone(), &self.config, shutdown.clone());
        state.webrtc = Some(webrtc);
        let app = router(state);
        let http_shutdown = shutdown.clone();
        let listener = TimedListener::new(self.http, ConnTimeouts::from_config(&self.config.http));
        let http = tokio::spawn(async move {
            axum::serve(listener, MakeConnService(app))
                .with_graceful_shutdown(http_shutdown.cancelled_owned())
                .await
        });
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("sessions still open after 5 s; exiting anyway");
        }
        match tokio::time::timeout(Duration::from_secs(5), http).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server error"),
            Err(_) => tracing::warn!("HTTP connections still open after 5 s; exiting anyway"),
            _ => {}
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn bind(service: &'static str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for {service} on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tracing::info!(service, addr = %local, "listening");
    Ok(listener)
}

/// Runs a server with `config` until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        on_signal.cancel();
    });
    server.serve(shutdown).await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
