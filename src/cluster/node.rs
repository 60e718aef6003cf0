//! This node's part in the cluster: it registers the streams published here, keeps their
//! leases and its load in the directory, follows the other nodes' changes over pub/sub, answers
//! origin pulls' lookups, and picks where a viewer should go when this node is full.
//!
//! Redis may vanish at any time. Publishing and playing here go on without it: a publisher
//! is let in when the directory cannot be asked (and registered once it can), lookups fail
//! with a clear reason, and every registration is restored when Redis returns (its lease
//! refresh finds the key gone and sets it again).

use super::directory::{Claim, Directory, Event, NodeLoad, Refresh, StreamEntry};
use crate::bus::Registry;
use crate::config::Config;
use crate::pulls::{OriginDirectory, PullManager};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How often local streams are compared with the directory (new ones registered, ended ones
/// removed) and the load is looked at.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);
/// Redis commands that take longer fail (the node goes on without the directory).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Readers of these protocols are not viewers (they feed other servers or other views).
const NOT_VIEWERS: &[&str] = &["rtmp-push", "transcode"];

/// Where a viewer should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steering {
    /// Here.
    Stay,
    /// At this other node's base URL.
    Redirect(String),
    /// This node is full and so is every other.
    Full,
}

/// The cluster as `GET /api/v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// The directory's address, without its password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Whether the last exchange with the directory succeeded.
    pub directory_reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub lease_ttl_secs: u64,
    pub nodes: Vec<NodeView>,
    pub streams: Vec<StreamView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    #[serde(flatten)]
    pub load: NodeLoad,
    /// How long ago the node last refreshed its lease, in milliseconds.
    pub lease_age_ms: u64,
    /// This node.
    pub this_node: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    pub name: String,
    #[serde(flatten)]
    pub entry: StreamEntry,
}

/// This node in the cluster (cheap to clone).
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    advertise_url: String,
    lease: Duration,
    max_viewers: u64,
    max_bitrate_out_bps: u64,
    shown_directory: String,
    directory: Directory,
    registry: Registry,
    pulls: Arc<PullManager>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    reachable: bool,
    last_error: Option<String>,
    /// Names this node holds in the directory, with the value it last set.
    owned: BTreeMap<String, String>,
    /// The other nodes' loads, with when each was heard of.
    nodes: HashMap<String, (NodeLoad, Instant)>,
    /// Every stream of the cluster as announced, with when it was heard of.
    streams: BTreeMap<String, (StreamEntry, Instant)>,
    /// This node's load, as last measured.
    load: Option<NodeLoad>,
}

impl Cluster {
    /// Joins the cluster of `config.cluster` (None when it is off): hooks publishing and
    /// origin pulls to the directory and starts the tasks that keep it. `http` is the bound
    /// HTTP address, the advertised URL when none is configured.
    pub fn start(
        config: &Config,
        registry: Registry,
        pulls: Arc<PullManager>,
        http: SocketAddr,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Option<Cluster>> {
        let section = &config.cluster;
        if section.directory.is_empty() {
            return Ok(None);
        }
        let lease = Duration::from_secs(section.lease_ttl_secs);
        let directory = Directory::new(&section.directory, lease, COMMAND_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("cluster.directory: {e}"))?;
        let advertise_url = if section.advertise_url.is_empty() {
            let host = if http.ip().is_unspecified() {
                tracing::warn!("cluster.advertise_url is not set and HTTP listens on every address: advertising 127.0.0.1, which only nodes on this host can reach");
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                http.ip()
            };
            format!("http://{}", SocketAddr::new(host, http.port()))
        } else {
            section.advertise_url.trim_end_matches('/').to_string()
        };
        let cluster = Cluster {
            inner: Arc::new(Inner {
                node_id: pulls.node_id().to_string(),
                advertise_url,
                lease,
                max_viewers: section.max_viewers,
                max_bitrate_out_bps: section.max_bitrate_out_kbps * 1000,
                shown_directory: crate::inputs::pull::redact(&section.directory),
                directory,
                registry: registry.clone(),
                pulls: pulls.clone(),
                state: Mutex::default(),
            }),
        };
        tracing::info!(node_id = %cluster.inner.node_id, advertise_url = %cluster.inner.advertise_url, directory = %cluster.inner.shown_directory, "cluster mode");
        let claimer = cluster.clone();
        registry.set_claim_hook(Arc::new(move |name| {
            let cluster = claimer.clone();
            Box::pin(async move { cluster.claim(&name).await })
        }));
        pulls.set_directory(Arc::new(cluster.clone()));
        tokio::spawn(cluster.clone().keep(shutdown.clone()));
        tokio::spawn(cluster.clone().follow(shutdown));
        Ok(Some(cluster))
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Whether the last exchange with the directory succeeded.
    pub fn reachable(&self) -> bool {
        self.inner.state.lock().unwrap().reachable
    }

    /// The directory failed at the last exchange (not merely: not yet asked).
    fn known_unreachable(&self) -> bool {
        let state = self.inner.state.lock().unwrap();
        !state.reachable && state.last_error.is_some()
    }

    fn note(&self, result: Result<(), String>) {
        let mut state = self.inner.state.lock().unwrap();
        match result {
            Ok(()) => {
                if !state.reachable {
                    tracing::info!(directory = %self.inner.shown_directory, "cluster directory reachable");
                }
                state.reachable = true;
                state.last_error = None;
            }
            Err(e) => {
                if state.reachable || state.last_error.is_none() {
                    tracing::warn!(directory = %self.inner.shown_directory, error = %e, "cluster directory unreachable; publishing and playing here go on, registrations are restored when it returns");
                }
                state.reachable = false;
                state.last_error = Some(e);
            }
        }
    }

    fn entry(&self, name: &str) -> StreamEntry {
        let tracks = self
            .inner
            .registry
            .get(name)
            .map(|s| {
                s.tracks()
                    .borrow()
                    .tracks
                    .iter()
                    .map(|t| t.codec.name().to_string())
                    .collect()
            })
            .unwrap_or_default();
        StreamEntry {
            node_id: self.inner.node_id.clone(),
            advertise_url: self.inner.advertise_url.clone(),
            tracks,
            since_unix_ms: unix_ms(SystemTime::now()),
        }
    }

    /// Claims `name` for a publisher of this node: refused when another node holds it; let in
    /// when the directory cannot be asked (registered later).
    async fn claim(&self, name: &str) -> Result<(), String> {
        if self.known_unreachable() {
            // Not worth a timeout per publisher: registered once the directory answers.
            return Ok(());
        }
        let entry = self.entry(name);
        let value = serde_json::to_string(&entry).expect("serializable");
        match self
            .inner
            .directory
            .claim(name, &value, &self.inner.node_id)
            .await
        {
            Ok(Claim::Won) => {
                self.note(Ok(()));
                self.inner
                    .state
                    .lock()
                    .unwrap()
                    .owned
                    .insert(name.to_string(), value);
                self.announce(Event::Stream {
                    name: name.to_string(),
                    entry,
                })
                .await;
                tracing::info!(stream = name, "registered in the cluster directory");
                Ok(())
            }
            Ok(Claim::Owned(other)) => {
                self.note(Ok(()));
                Err(format!(
                    "node {} ({}) publishes it in the cluster",
                    other.node_id, other.advertise_url
                ))
            }
            Err(e) => {
                self.note(Err(e.to_string()));
                Ok(())
            }
        }
    }

    async fn announce(&self, event: Event) {
        if let Err(e) = self.inner.directory.announce(&event).await {
            self.note(Err(e.to_string()));
        }
        self.apply(event);
    }

    /// Keeps the directory in step with this node until shutdown, then leaves it.
    async fn keep(self, shutdown: CancellationToken) {
        let refresh_every = self.inner.lease / 3;
        let mut last_refresh: Option<Instant> = None;
        let mut load_sampler = LoadSampler::default();
        let mut last_published: Option<(u64, u64)> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
            self.register_and_release().await;
            let load = self.measure(&mut load_sampler);
            let due = last_refresh.is_none_or(|t| t.elapsed() >= refresh_every);
            let changed = last_published != Some((load.viewers, load.streams));
            if due {
                self.refresh().await;
            }
            if due || changed {
                match self.inner.directory.put_load(&load).await {
                    Ok(()) => {
                        self.note(Ok(()));
                        self.announce(Event::Node { load: load.clone() }).await;
                        last_published = Some((load.viewers, load.streams));
                    }
                    Err(e) => self.note(Err(e.to_string())),
                }
                if due {
                    last_refresh = Some(Instant::now());
                }
            }
            self.expire();
        }
        // Leaving: the streams of this node go from the directory at once.
        let owned = std::mem::take(&mut self.inner.state.lock().unwrap().owned);
        for (name, value) in owned {
            if let Ok(true) = self.inner.directory.release(&name, &value).await {
                let _ = self
                    .inner
                    .directory
                    .announce(&Event::Gone {
                        name,
                        node_id: self.inner.node_id.clone(),
                    })
                    .await;
            }
        }
    }

    /// Registers streams published here since the last look (a configured pull, or a
    /// publisher let in while the directory was away) and removes those that ended.
    async fn register_and_release(&self) {
        let copies = self.inner.pulls.origin_pull_names();
        let local: HashSet<String> = self
            .inner
            .registry
            .list()
            .iter()
            .map(|s| s.name().to_string())
            .filter(|name| !copies.contains(name))
            .collect();
        let (new, ended): (Vec<String>, Vec<(String, String)>) = {
            let state = self.inner.state.lock().unwrap();
            let new = local
                .iter()
                .filter(|n| !state.owned.contains_key(*n))
                .cloned()
                .collect();
            let ended = state
                .owned
                .iter()
                .filter(|(n, _)| !local.contains(*n))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            (new, ended)
        };
        for name in new {
            if self.known_unreachable() {
                // Registered by the next refresh once the directory answers again.
                let value = serde_json::to_string(&self.entry(&name)).expect("serializable");
                self.inner.state.lock().unwrap().owned.insert(name, value);
                continue;
            }
            if let Err(reason) = self.claim(&name).await {
                self.refuse_here(&name, &reason);
            }
        }
        for (name, value) in ended {
            match self.inner.directory.release(&name, &value).await {
                Ok(_) => {
                    self.note(Ok(()));
                    self.inner.state.lock().unwrap().owned.remove(&name);
                    tracing::info!(stream = %name, "removed from the cluster directory");
                    self.announce(Event::Gone {
                        name,
                        node_id: self.inner.node_id.clone(),
                    })
                    .await;
                }
                // Tried again next time; the lease ends it anyway.
                Err(e) => self.note(Err(e.to_string())),
            }
        }
    }

    /// Another node holds `name`: the publisher here goes.
    fn refuse_here(&self, name: &str, reason: &str) {
        tracing::warn!(
            stream = name,
            reason,
            "publisher disconnected: the name belongs to another node"
        );
        if let Some(stream) = self.inner.registry.get(name) {
            stream.kick_because(format!("cannot publish {name:?}: {reason}"));
        }
        self.inner.state.lock().unwrap().owned.remove(name);
    }

    /// Renews the leases of every owned stream (restoring entries lost with Redis), with
    /// their current tracks.
    async fn refresh(&self) {
        let owned: Vec<(String, String)> = {
            let state = self.inner.state.lock().unwrap();
            state
                .owned
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect()
        };
        let fresh: Vec<(String, String, String)> = owned
            .into_iter()
            .map(|(name, old)| {
                // Keep `since` from the registration; only the tracks change.
                let mut entry = self.entry(&name);
                if let Ok(previous) = serde_json::from_str::<StreamEntry>(&old) {
                    entry.since_unix_ms = previous.since_unix_ms;
                }
                let new = serde_json::to_string(&entry).expect("serializable");
                (name, old, new)
            })
            .collect();
        if fresh.is_empty() {
            return; // nothing asked of the directory: nothing learnt of it either
        }
        let batch: Vec<(&str, &str, &str)> = fresh
            .iter()
            .map(|(n, o, v)| (n.as_str(), o.as_str(), v.as_str()))
            .collect();
        let outcomes = match self.inner.directory.refresh(&batch).await {
            Ok(outcomes) => {
                self.note(Ok(()));
                outcomes
            }
            Err(e) => return self.note(Err(e.to_string())),
        };
        for ((name, old, new), outcome) in fresh.into_iter().zip(outcomes) {
            match outcome {
                Refresh::Lost => {
                    self.refuse_here(
                        &name,
                        "another node registered it while the directory was unreachable",
                    );
                }
                Refresh::Renewed | Refresh::Restored => {
                    if outcome == Refresh::Restored {
                        tracing::info!(stream = %name, "registration restored in the cluster directory");
                    }
                    self.inner
                        .state
                        .lock()
                        .unwrap()
                        .owned
                        .insert(name.clone(), new.clone());
                    if outcome == Refresh::Restored || old != new {
                        if let Ok(entry) = serde_json::from_str(&new) {
                            self.announce(Event::Stream { name, entry }).await;
                        }
                    }
                }
            }
        }
    }

    fn measure(&self, sampler: &mut LoadSampler) -> NodeLoad {
        let totals = self.inner.registry.totals();
        let viewers = viewers(&totals);
        let (bitrate_out_bps, cpu_percent) = sampler.sample(totals.bytes_out);
        let load = NodeLoad {
            node_id: self.inner.node_id.clone(),
            advertise_url: self.inner.advertise_url.clone(),
            viewers,
            streams: totals.streams as u64,
            bitrate_out_bps,
            cpu_percent,
            max_viewers: self.inner.max_viewers,
            max_bitrate_out_bps: self.inner.max_bitrate_out_bps,
            updated_unix_ms: unix_ms(SystemTime::now()),
        };
        self.inner.state.lock().unwrap().load = Some(load.clone());
        load
    }

    /// Follows the other nodes' changes: subscribes to the events channel, reads the whole
    /// directory after each (re)connection, and applies every event after that.
    async fn follow(self, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(250);
        loop {
            let session = async {
                let mut pubsub = tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    self.inner.directory.client().get_async_pubsub(),
                )
                .await
                .map_err(|_| "timed out connecting".to_string())?
                .map_err(|e| e.to_string())?;
                pubsub
                    .subscribe(super::directory::EVENTS)
                    .await
                    .map_err(|e| e.to_string())?;
                let (streams, nodes) = self
                    .inner
                    .directory
                    .read_all()
                    .await
                    .map_err(|e| e.to_string())?;
                self.replace_mirror(streams, nodes);
                self.note(Ok(()));
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                    match serde_json::from_slice::<Event>(&payload) {
                        Ok(event) => self.apply(event),
                        Err(e) => {
                            tracing::warn!(error = %e, message = %String::from_utf8_lossy(&payload[..payload.len().min(200)]), "ignored a malformed cluster event")
                        }
                    }
                }
                Err::<(), String>("the subscription ended".to_string())
            };
            let error = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = session => r.err().unwrap_or_default(),
            };
            self.note(Err(format!("subscription: {error}")));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    fn replace_mirror(&self, streams: Vec<(String, StreamEntry)>, nodes: Vec<NodeLoad>) {
        let now = Instant::now();
        let mut state = self.inner.state.lock().unwrap();
        state.streams = streams.into_iter().map(|(n, e)| (n, (e, now))).collect();
        state.nodes = nodes
            .into_iter()
            .map(|l| (l.node_id.clone(), (l, now)))
            .collect();
    }

    fn apply(&self, event: Event) {
        let now = Instant::now();
        let mut state = self.inner.state.lock().unwrap();
        match event {
            Event::Stream { name, entry } => {
                state.streams.insert(name, (entry, now));
            }
            Event::Gone { name, node_id } => {
                if state
                    .streams
                    .get(&name)
                    .is_some_and(|(e, _)| e.node_id == node_id)
                {
                    state.streams.remove(&name);
                }
            }
            Event::Node { load } => {
                state.nodes.insert(load.node_id.clone(), (load, now));
            }
        }
    }

    /// Forgets nodes not heard of for a lease, and the streams of nodes it no longer knows
    /// (their keys expire in Redis at the same time).
    fn expire(&self) {
        let lease = self.inner.lease;
        let own = self.inner.node_id.clone();
        let mut state = self.inner.state.lock().unwrap();
        state
            .nodes
            .retain(|id, (_, seen)| *id == own || seen.elapsed() < lease);
        let State { nodes, streams, .. } = &mut *state;
        streams.retain(|_, (entry, seen)| {
            entry.node_id == own || nodes.contains_key(&entry.node_id) || seen.elapsed() < lease
        });
    }

    /// Where a new viewer should go: here while this node has room (or sets no limit), else
    /// the least full other node with room.
    pub fn steer(&self) -> Steering {
        if self.inner.max_viewers == 0 && self.inner.max_bitrate_out_bps == 0 {
            return Steering::Stay;
        }
        let mut here = self.inner.state.lock().unwrap().load.clone();
        // The viewer count moves faster than the load is sampled: count it now.
        if let Some(load) = &mut here {
            load.viewers = viewers(&self.inner.registry.totals());
        }
        if here.as_ref().is_none_or(NodeLoad::has_room) {
            return Steering::Stay;
        }
        let state = self.inner.state.lock().unwrap();
        state
            .nodes
            .values()
            .map(|(load, _)| load)
            .filter(|l| l.node_id != self.inner.node_id && l.has_room())
            .min_by(|a, b| a.fullness().total_cmp(&b.fullness()))
            .map_or(Steering::Full, |l| {
                Steering::Redirect(l.advertise_url.clone())
            })
    }

    /// The cluster for the API and the console.
    pub fn view(&self) -> ClusterView {
        let state = self.inner.state.lock().unwrap();
        let mut nodes: Vec<NodeView> = state
            .nodes
            .values()
            .filter(|(l, _)| l.node_id != self.inner.node_id)
            .map(|(load, seen)| NodeView {
                load: load.clone(),
                lease_age_ms: seen.elapsed().as_millis() as u64,
                this_node: false,
            })
            .collect();
        if let Some(load) = &state.load {
            nodes.push(NodeView {
                load: load.clone(),
                lease_age_ms: unix_ms(SystemTime::now()).saturating_sub(load.updated_unix_ms),
                this_node: true,
            });
        }
        nodes.sort_by(|a, b| a.load.node_id.cmp(&b.load.node_id));
        ClusterView {
            enabled: true,
            node_id: Some(self.inner.node_id.clone()),
            advertise_url: Some(self.inner.advertise_url.clone()),
            directory: Some(self.inner.shown_directory.clone()),
            directory_reachable: state.reachable,
            last_error: state.last_error.clone(),
            lease_ttl_secs: self.inner.lease.as_secs(),
            nodes,
            streams: state
                .streams
                .iter()
                .map(|(name, (entry, _))| StreamView {
                    name: name.clone(),
                    entry: entry.clone(),
                })
                .collect(),
        }
    }
}

impl ClusterView {
    /// What the API shows on a node with cluster mode off.
    pub fn disabled() -> ClusterView {
        ClusterView {
            enabled: false,
            node_id: None,
            advertise_url: None,
            directory: None,
            directory_reachable: false,
            last_error: None,
            lease_ttl_secs: 0,
            nodes: Vec::new(),
            streams: Vec::new(),
        }
    }
}

impl OriginDirectory for Cluster {
    fn owner_url<'a>(
        &'a self,
        name: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, String>> + Send + 'a>,
    > {
        Box::pin(async move {
            match self.inner.directory.lookup(name).await {
                Ok(entry) => {
                    self.note(Ok(()));
                    // A node never pulls from itself (a stale entry of its own).
                    Ok(entry
                        .filter(|e| e.node_id != self.inner.node_id)
                        .map(|e| e.advertise_url))
                }
                Err(e) => {
                    let reason = format!("the cluster directory is unreachable: {e}");
                    self.note(Err(e.to_string()));
                    Err(reason)
                }
            }
        })
    }
}

/// Readers of every protocol but [`NOT_VIEWERS`].
fn viewers(totals: &crate::bus::Totals) -> u64 {
    totals
        .readers_by_protocol
        .iter()
        .filter(|(p, _)| !NOT_VIEWERS.contains(p))
        .map(|(_, n)| *n as u64)
        .sum()
}

/// Bitrate out and CPU share between two samples.
#[derive(Default)]
struct LoadSampler {
    last: Option<(Instant, u64, Option<u64>)>,
}

impl LoadSampler {
    fn sample(&mut self, bytes_out: u64) -> (u64, f64) {
        let now = Instant::now();
        let cpu = process_cpu_ticks();
        let result = match self.last {
            Some((at, bytes, ticks)) => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-3);
                let bitrate = (bytes_out.saturating_sub(bytes) as f64 * 8.0 / secs) as u64;
                let cpu_percent = match (cpu, ticks) {
                    (Some(c), Some(t)) => {
                        c.saturating_sub(t) as f64 / clock_ticks_per_sec() / secs * 100.0
                    }
                    _ => 0.0,
                };
                (bitrate, (cpu_percent * 10.0).round() / 10.0)
            }
            None => (0, 0.0),
        };
        self.last = Some((now, bytes_out, cpu));
        result
    }
}

/// utime + stime of this process, in clock ticks (proc(5), /proc/self/stat fields 14 and 15).
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time() {
        let ticks = process_cpu_ticks().expect("/proc/self/stat");
        let mut spin = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(60) {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        assert!(process_cpu_ticks().unwrap() >= ticks);
    }
}
