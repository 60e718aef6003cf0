//! Runs split among several load nodes: the coordinating node gives each other Switchyard
//! node a share of the sessions through that node's own `POST /api/v1/loadtests`, reads its
//! live figures every second (`GET /api/v1/loadtests/{id}?sessions=1`), stops it with `DELETE`
//! when the run is stopped, and merges its sessions into the run's report, so a test is not
//! limited by what one machine can generate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use super::report::{LoadTestReport, RemoteReading};
use super::spec::{LoadNode, LoadSpec, RunState};

/// How often the other nodes' figures are read.
const POLL: Duration = Duration::from_secs(1);
/// How long one request to another node may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Share {
    node: LoadNode,
    /// Base URL without a trailing slash.
    base: String,
    sessions: usize,
    latest: Mutex<(Option<String>, Option<LoadTestReport>, Option<String>)>,
}

/// The other nodes' shares of a run.
pub(super) struct RemoteShares {
    shares: Vec<Arc<Share>>,
}

impl RemoteShares {
    /// Splits `spec.sessions` evenly among this node (if `spec.local`) and `spec.nodes`, this
    /// node taking the remainder; checks the node URLs.
    pub(super) fn plan(spec: &LoadSpec) -> Result<RemoteShares> {
        let parts = spec.nodes.len() + usize::from(spec.local);
        let each = spec.sessions / parts.max(1);
        let mut left = spec.sessions - each * parts;
        if spec.local {
            left = 0; // this node takes the remainder
        }
        let mut shares = Vec::new();
        for node in &spec.nodes {
            let url = reqwest::Url::parse(&node.url)
                .with_context(|| format!("load node URL {:?}", node.url))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                bail!("load node URL {:?}: expected http(s)://HOST:PORT", node.url);
            }
            let mut sessions = each;
            if left > 0 {
                sessions += 1;
                left -= 1;
            }
            if sessions == 0 {
                continue;
            }
            shares.push(Arc::new(Share {
                node: node.clone(),
                base: node.url.trim_end_matches('/').to_string(),
                sessions,
                latest: Mutex::new((None, None, None)),
            }));
        }
        Ok(RemoteShares { shares })
    }

    /// Sessions the other nodes run.
    pub(super) fn sessions(&self) -> usize {
        self.shares.iter().map(|s| s.sessions).sum()
    }

    /// Starts every share and follows it until it ends (or `stop`, which stops it there).
    pub(super) fn run(
        &self,
        spec: &LoadSpec,
        stop: CancellationToken,
        deadline: tokio::time::Instant,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        let tasks: Vec<_> = self
            .shares
            .iter()
            .map(|share| {
                let mut their = spec.clone();
                their.sessions = share.sessions;
                their.ramp = spec
                    .ramp
                    .map(|ramp| ramp * share.sessions as f64 / spec.sessions as f64);
                their.nodes = Vec::new();
                their.local = true;
                tokio::spawn(follow(
                    share.clone(),
                    http.clone(),
                    their,
                    stop.clone(),
                    deadline,
                ))
            })
            .collect();
        async move {
            for task in tasks {
                let _ = task.await;
            }
        }
    }

    pub(super) fn latest(&self) -> Vec<RemoteReading> {
        self.shares
            .iter()
            .map(|share| {
                let (id, report, error) = share.latest.lock().unwrap().clone();
                RemoteReading {
                    node: share.node.url.clone(),
                    sessions: share.sessions,
                    id,
                    report,
                    error,
                }
            })
            .collect()
    }
}

fn request(
    http: &reqwest::Client,
    share: &Share,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let request = http.request(method, format!("{}{path}", share.base));
    match &share.node.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

/// Starts one node's share, reads its figures every [`POLL`] until it ends, stops it on `stop`.
async fn follow(
    share: Arc<Share>,
    http: reqwest::Client,
    mut spec: LoadSpec,
    stop: CancellationToken,
    deadline: tokio::time::Instant,
) {
    let note = |error: String| {
        tracing::warn!(node = %share.node.url, %error, "load node");
        share.latest.lock().unwrap().2 = Some(error);
    };
    spec.duration = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(Duration::from_secs(1));
    let started = request(&http, &share, reqwest::Method::POST, "/api/v1/loadtests")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&spec).expect("a spec serializes"))
        .send()
        .await;
    let id = match started {
        Ok(response) if response.status().as_u16() == 201 => {
            let report = match response.bytes().await {
                Ok(body) => {
                    serde_json::from_slice::<LoadTestReport>(&body).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match report {
                Ok(report) => report.id,
                Err(e) => return note(format!("its answer to POST /api/v1/loadtests: {e}")),
            }
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return note(format!(
                "POST /api/v1/loadtests answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        Err(e) => return note(format!("POST /api/v1/loadtests: {e}")),
    };
    share.latest.lock().unwrap().0 = Some(id.clone());
    let path = format!("/api/v1/loadtests/{id}");
    let mut stopped = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled(), if !stopped => {
                stopped = true;
                if let Err(e) = request(&http, &share, reqwest::Method::DELETE, &path).send().await {
                    note(format!("DELETE {path}: {e}"));
                }
            }
        }
        let reading = async {
            let body = request(
                &http,
                &share,
                reqwest::Method::GET,
                &format!("{path}?sessions=1"),
            )
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
            anyhow::Ok(serde_json::from_slice::<LoadTestReport>(&body)?)
        }
        .await;
        match reading {
            Ok(report) => {
                let over = report.state != RunState::Running;
                let mut latest = share.latest.lock().unwrap();
                latest.1 = Some(report);
                latest.2 = None;
                drop(latest);
                if over {
                    return;
                }
            }
            Err(e) => {
                note(format!("GET {path}: {e:#}"));
                // A node that stopped answering: give up some time after the run's end.
                if tokio::time::Instant::now() > deadline + 3 * REQUEST_TIMEOUT {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sessions: usize, nodes: usize, local: bool) -> LoadSpec {
        let mut spec = LoadSpec::new("rtmp://h/live/x", sessions, Duration::from_secs(10));
        spec.nodes = (0..nodes)
            .map(|i| LoadNode {
                url: format!("http://node{i}:8080"),
                token: None,
            })
            .collect();
        spec.local = local;
        spec
    }

    #[test]
    fn sessions_are_split_evenly() {
        let shares = |s: &LoadSpec| -> Vec<usize> {
            RemoteShares::plan(s)
                .unwrap()
                .shares
                .iter()
                .map(|s| s.sessions)
                .collect()
        };
        // 10 over this node and two others: 3 each there, 4 here.
        assert_eq!(shares(&spec(10, 2, true)), vec![3, 3]);
        // Without this node: 5 and 5; 11: 6 and 5.
        assert_eq!(shares(&spec(10, 2, false)), vec![5, 5]);
        assert_eq!(shares(&spec(11, 2, false)), vec![6, 5]);
        // Fewer sessions than nodes: nodes with none are left out.
        assert_eq!(shares(&spec(1, 2, false)), vec![1]);
        assert_eq!(
            RemoteShares::plan(&spec(10, 2, true)).unwrap().sessions(),
            6
        );
    }

    #[test]
    fn bad_node_urls_are_refused() {
        let mut bad = spec(10, 1, true);
        bad.nodes[0].url = "ftp://x".into();
        assert!(RemoteShares::plan(&bad).is_err());
        bad.nodes[0].url = "not a url".into();
        assert!(RemoteShares::plan(&bad).is_err());
    }
}
