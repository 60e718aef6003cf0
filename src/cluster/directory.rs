//! The stream directory on Redis: what is stored, under which keys, and the commands that
//! change it. Every write is one command or one Lua script, so two nodes never interleave
//! inside a change (Redis runs a script atomically, <https://redis.io/docs/latest/develop/interact/programmability/eval-intro/>).
//!
//! Keys (`switchyard:` prefix; one Redis database per cluster):
//! - `switchyard:stream:{name}`: a [`StreamEntry`] (JSON), set with `SET NX PX` by the node
//!   that got the publisher: of two nodes racing for a name exactly one creates the key. The
//!   owner refreshes it every third of the lease; without refresh it expires.
//! - `switchyard:node:{id}`: a [`NodeLoad`] (JSON) under the same kind of lease.
//!
//! Changes are announced on the channel `switchyard:events` ([`Event`]), so the other nodes
//! follow them without polling; a node reads the whole directory only when its subscription
//! (re)connects.

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const STREAM_PREFIX: &str = "switchyard:stream:";
const NODE_PREFIX: &str = "switchyard:node:";
/// The pub/sub channel of [`Event`]s.
pub const EVENTS: &str = "switchyard:events";

/// Who publishes a stream, as the directory has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamEntry {
    pub node_id: String,
    /// The owner's base URL: edges pull `{advertise_url}/whep/{name}`.
    pub advertise_url: String,
    /// The codec of each track (`H.264`, `AAC`, ...), once known.
    pub tracks: Vec<String>,
    /// When the owner got its publisher, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
}

/// A node's load, as it last published it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeLoad {
    pub node_id: String,
    pub advertise_url: String,
    /// Readers of every output but pushes (an HLS muxer counts once per stream).
    pub viewers: u64,
    pub streams: u64,
    pub bitrate_out_bps: u64,
    /// Process CPU time over the last interval, in % of one core.
    pub cpu_percent: f64,
    /// `cluster.max_viewers` (0: no limit).
    pub max_viewers: u64,
    /// `cluster.max_bitrate_out_kbps` in bit/s (0: no limit).
    pub max_bitrate_out_bps: u64,
    pub updated_unix_ms: u64,
}

impl NodeLoad {
    /// Whether the node takes one more viewer within its limits.
    pub fn has_room(&self) -> bool {
        (self.max_viewers == 0 || self.viewers < self.max_viewers)
            && (self.max_bitrate_out_bps == 0 || self.bitrate_out_bps < self.max_bitrate_out_bps)
    }

    /// How full the node is, 0.0 (idle or unlimited) to 1.0 and more: the larger of its
    /// viewer and bitrate shares.
    pub fn fullness(&self) -> f64 {
        let share = |used: u64, max: u64| {
            if max == 0 {
                0.0
            } else {
                used as f64 / max as f64
            }
        };
        share(self.viewers, self.max_viewers)
            .max(share(self.bitrate_out_bps, self.max_bitrate_out_bps))
    }
}

/// A change announced on [`EVENTS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// `name` is (now) published by `entry.node_id`.
    Stream { name: String, entry: StreamEntry },
    /// `node_id` no longer publishes `name`.
    Gone { name: String, node_id: String },
    /// A node's load.
    Node { load: NodeLoad },
}

/// The outcome of [`Directory::claim`].
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The name is ours now.
    Won,
    /// Another node holds the name.
    Owned(StreamEntry),
}

/// The outcome of [`Directory::refresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// Our entry, lease renewed.
    Renewed,
    /// The key had expired (Redis restarted or was unreachable past the lease): set again.
    Restored,
    /// Another node's entry is there now.
    Lost,
}

/// Renews the lease of our entry (`ARGV[1]` the value we set, `ARGV[2]` the value to set now),
/// sets it again if the key is gone, and leaves another node's entry alone.
const REFRESH: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or current == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
elseif not current then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 2
end
return 0
";

/// Deletes the key if it still holds our value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The Redis side of the cluster.
#[derive(Clone)]
pub struct Directory {
    client: redis::Client,
    conn: ConnectionManager,
    lease: Duration,
}

impl Directory {
    /// A directory client for `url`; connects on first use and reconnects by itself, so a
    /// node boots while Redis is down. Commands fail after `timeout` instead of waiting.
    pub fn new(url: &str, lease: Duration, timeout: Duration) -> redis::RedisResult<Directory> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Directory {
            client,
            conn,
            lease,
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    /// Claims `name` with our `value` (a serialized [`StreamEntry`]) unless another node
    /// holds it. An entry that is not a [`StreamEntry`] (written by hand) or that is our own
    /// (left from before a reconnection) is replaced.
    pub async fn claim(&self, name: &str, value: &str, node_id: &str) -> redis::RedisResult<Claim> {
        let key = stream_key(name);
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(self.lease_ms())
            .query_async(&mut conn)
            .await?;
        if set.is_some() {
            return Ok(Claim::Won);
        }
        let current: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        match current.as_deref().map(parse_entry) {
            Some(Ok(entry)) if entry.node_id != node_id => return Ok(Claim::Owned(entry)),
            Some(Err(e)) => {
                tracing::warn!(key, error = %e, "ignored a malformed cluster directory entry; replacing it");
            }
            _ => {}
        }
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("PX")
            .arg(self.lease_ms())
            .query_async(&mut conn)
            .await?;
        Ok(Claim::Won)
    }

    /// Renews our entries in one round trip: `(name, value we set, value to set now)`.
    pub async fn refresh(
        &self,
        entries: &[(&str, &str, &str)],
    ) -> redis::RedisResult<Vec<Refresh>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // EVAL with the script's text: nothing to load first, and a restarted Redis (which
        // forgets loaded scripts) needs nothing either.
        let mut pipe = redis::pipe();
        for (name, old, new) in entries {
            pipe.cmd("EVAL")
                .arg(REFRESH)
                .arg(1)
                .arg(stream_key(name))
                .arg(*old)
                .arg(*new)
                .arg(self.lease_ms());
        }
        let mut conn = self.conn.clone();
        let codes: Vec<i64> = pipe.query_async(&mut conn).await?;
        Ok(codes
            .into_iter()
            .map(|c| match c {
                1 => Refresh::Renewed,
                2 => Refresh::Restored,
                _ => Refresh::Lost,
            })
            .collect())
    }

    /// Removes our entry for `name` (if it is still ours).
    pub async fn release(&self, name: &str, value: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let deleted: i64 = redis::Script::new(RELEASE)
            .key(stream_key(name))
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    /// The entry of `name`; `None` if no node publishes it (or its entry is malformed, which
    /// is logged).
    pub async fn lookup(&self, name: &str) -> redis::RedisResult<Option<StreamEntry>> {
        let key = stream_key(name);
        let mut conn = self.conn.clone();
        let value: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
        Ok(value.and_then(|v| match parse_entry(&v) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::warn!(key, error = %e, "ignored a malformed cluster directory entry");
                None
            }
        }))
    }

    /// Publishes our load under our lease.
    pub async fn put_load(&self, load: &NodeLoad) -> redis::RedisResult<()> {
        let value = serde_json::to_string(load).expect("serializable");
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("SET")
            .arg(node_key(&load.node_id))
            .arg(&value)
            .arg("PX")
            .arg(self.lease_ms())
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// Announces `event` to the other nodes.
    pub async fn announce(&self, event: &Event) -> redis::RedisResult<()> {
        let message = serde_json::to_string(event).expect("serializable");
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(EVENTS)
            .arg(message)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    }

    /// Every stream entry and node load in the directory (malformed ones skipped and
    /// logged): read when a subscription (re)connects.
    pub async fn read_all(
        &self,
    ) -> redis::RedisResult<(Vec<(String, StreamEntry)>, Vec<NodeLoad>)> {
        let mut streams = Vec::new();
        for (key, value) in self.scan(&format!("{STREAM_PREFIX}*")).await? {
            let name = key[STREAM_PREFIX.len()..].to_string();
            match parse_entry(&value) {
                Ok(entry) => streams.push((name, entry)),
                Err(e) => {
                    tracing::warn!(key, error = %e, "ignored a malformed cluster directory entry")
                }
            }
        }
        let mut nodes = Vec::new();
        for (key, value) in self.scan(&format!("{NODE_PREFIX}*")).await? {
            match serde_json::from_str::<NodeLoad>(&value) {
                Ok(load) => nodes.push(load),
                Err(e) => {
                    tracing::warn!(key, error = %e, "ignored a malformed cluster node entry")
                }
            }
        }
        Ok((streams, nodes))
    }

    /// `(key, value)` of every string key matching `pattern` (SCAN, then MGET per batch).
    async fn scan(&self, pattern: &str) -> redis::RedisResult<Vec<(String, String)>> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                // A key of another type (written by hand) reads as nil through MGET.
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
                out.extend(
                    keys.into_iter()
                        .zip(values)
                        .filter_map(|(k, v)| v.map(|v| (k, v))),
                );
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

fn stream_key(name: &str) -> String {
    format!("{STREAM_PREFIX}{name}")
}

fn node_key(id: &str) -> String {
    format!("{NODE_PREFIX}{id}")
}

/// A [`StreamEntry`] from its JSON, with a reason when it is not one.
pub fn parse_entry(value: &str) -> Result<StreamEntry, String> {
    let entry: StreamEntry = serde_json::from_str(value).map_err(|e| e.to_string())?;
    if entry.node_id.is_empty() || !entry.advertise_url.starts_with("http") {
        return Err("no node id or no http(s) advertise_url".to_string());
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_written_by_hand_are_refused_with_a_reason() {
        assert!(parse_entry("not json").is_err());
        assert!(parse_entry("{\"node_id\":\"a\"}").is_err());
        let no_url = r#"{"node_id":"a","advertise_url":"","tracks":[],"since_unix_ms":1}"#;
        assert!(parse_entry(no_url).is_err());
        let good = r#"{"node_id":"a","advertise_url":"http://h:8080","tracks":["H.264"],"since_unix_ms":1}"#;
        assert_eq!(parse_entry(good).unwrap().node_id, "a");
    }

    #[test]
    fn events_are_tagged_json() {
        let event = Event::Gone {
            name: "live/a".into(),
            node_id: "n1".into(),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(text, r#"{"event":"gone","name":"live/a","node_id":"n1"}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        assert!(serde_json::from_str::<Event>(r#"{"event":"other"}"#).is_err());
    }

    #[test]
    fn room_and_fullness_follow_the_limits() {
        let mut load = NodeLoad {
            node_id: "a".into(),
            advertise_url: "http://a".into(),
            viewers: 2,
            streams: 1,
            bitrate_out_bps: 1_000,
            cpu_percent: 0.0,
            max_viewers: 2,
            max_bitrate_out_bps: 0,
            updated_unix_ms: 0,
        };
        assert!(!load.has_room());
        assert_eq!(load.fullness(), 1.0);
        load.max_viewers = 0;
        assert!(load.has_room());
        assert_eq!(load.fullness(), 0.0);
        load.max_bitrate_out_bps = 4_000;
        assert_eq!(load.fullness(), 0.25);
    }
}
