//! Binds every listener and runs the server until Ctrl-C / SIGTERM.

use crate::bus::Registry;
use crate::config::Config;
use crate::http::{router, AppState, ConnTimeouts, MakeConnService, TimedListener, TlsListener};
use crate::tls::ServerTls;
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
    /// The WebRTC engine's sockets, one per loop (`webrtc.threads`).
    webrtc: Vec<std::net::UdpSocket>,
    /// `http.https_listen`, `rtmp.rtmps_listen` and their certificate, when configured.
    https: Option<TcpListener>,
    rtmps: Option<TcpListener>,
    tls: Option<ServerTls>,
    auth: std::sync::Arc<crate::auth::Auth>,
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let auth = std::sync::Arc::new(crate::auth::Auth::from_config(&config.auth)?);
        let http = bind("http", config.http.listen).await?;
        let rtmp = bind("rtmp", config.rtmp.listen).await?;
        let webrtc = config
            .webrtc
            .udp_addrs()
            .into_iter()
            .map(crate::webrtc::bind)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tls = ServerTls::load(&config.tls)?;
        if let Some(tls) = &tls {
            crate::tls::log_certificate(tls);
        }
        let https = match config.http.https_listen {
            Some(addr) => Some(bind("https", addr).await?),
            None => None,
        };
        let rtmps = match config.rtmp.rtmps_listen {
            Some(addr) => Some(bind("rtmps", addr).await?),
            None => None,
        };
        if let Some(https) = &https {
            for url in crate::tls::urls("https", https.local_addr()?) {
                tracing::info!(%url, "console over HTTPS");
            }
        }
        let registry = Registry::new(config.bus_config());
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
            https,
            rtmps,
            tls,
            auth,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound socket has an address")
    }

    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp.local_addr().expect("bound socket has an address")
    }

    /// The HTTPS listener's address, when there is one.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The RTMPS listener's address, when there is one.
    pub fn rtmps_addr(&self) -> Option<SocketAddr> {
        self.rtmps.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Serves until `shutdown` is cancelled, then closes every session and returns.
    pub async fn serve(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let mut state = AppState::new(self.registry.clone(), &self.config, shutdown.clone());
        let ip_sessions = state.ip_sessions.clone();
        let rtmp_shared = crate::rtmp::RtmpShared {
            registry: self.registry.clone(),
            config: self.config.rtmp.clone(),
            ip_sessions: ip_sessions.clone(),
            auth: self.auth.clone(),
        };
        tracker.spawn(crate::rtmp::serve(
            self.rtmp,
            None,
            rtmp_shared.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
        // Both listeners exist only with a certificate (checked by Config::validate).
        if let (Some(rtmps), Some(tls)) = (self.rtmps, &self.tls) {
            tracker.spawn(crate::rtmp::serve(
                rtmps,
                Some(tls.acceptor(&[])),
                rtmp_shared,
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        let webrtc = crate::webrtc::start_threads(
            self.webrtc,
            self.config.webrtc.to_settings(),
            shutdown.clone(),
        )?;
        state.webrtc = Some(webrtc);
        state.cluster = crate::cluster::Cluster::start(
            &self.config,
            self.registry.clone(),
            state.pulls.clone(),
            self.http.local_addr()?,
            shutdown.clone(),
        )?;
        state.auth = self.auth.clone();
        let loadtests = state.loadtests.clone();
        let app = router(state);
        let http_shutdown = shutdown.clone();
        let timeouts = ConnTimeouts::from_config(&self.config.http);
        let https = match (self.https, &self.tls) {
            (Some(https), Some(tls)) => {
                let listener = TlsListener::new(
                    TimedListener::new(https, timeouts).limit_tls_sessions(ip_sessions.clone()),
                    tls.acceptor(crate::tls::HTTP_ALPN),
                );
                let (app, shutdown) = (app.clone(), shutdown.clone());
                Some(tokio::spawn(async move {
                    axum::serve(listener, MakeConnService(app))
                        .with_graceful_shutdown(shutdown.cancelled_owned())
                        .await
                }))
            }
            _ => None,
        };
        let listener = TimedListener::new(self.http, timeouts).limit_sessions(ip_sessions);
        let http = tokio::spawn(async move {
            axum::serve(listener, MakeConnService(app))
                .with_graceful_shutdown(http_shutdown.cancelled_owned())
                .await
        });
        shutdown.cancelled().await;
        tracing::info!("shutting down");
        loadtests.stop_all();
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
        if let Some(https) = https {
            match tokio::time::timeout(Duration::from_secs(5), https).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTPS server error"),
                Err(_) => tracing::warn!("HTTPS connections still open after 5 s; exiting anyway"),
                _ => {}
            }
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
