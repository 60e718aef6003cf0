//! Pushes: streams republished to other RTMP servers (CDNs such as YouTube and Twitch, or
//! another server), kept there through failures.
//!
//! A push waits for its stream, connects and publishes, then relays from the next keyframe with
//! the sequence headers first. Timestamps start at 0 for each connection to the target and stay
//! continuous when the stream's publisher goes away and comes back (the connection to the
//! target is kept meanwhile). When the target drops the connection, the push reconnects with
//! exponential backoff and jitter (`pull.retry_min_ms` .. `pull.retry_max_ms`). Audio the target
//! cannot take (Opus, until audio bridging exists) is left out with a note in the push state.
//!
//! Pushes come from the API (`/api/v1/pushes`, `/rest-api/push/*`) or from `[[pushes]]` rules
//! in the config, which push every stream whose name matches a pattern.

pub use crate::bus::matches_pattern;

use crate::audio::AudioNeed;
use crate::bus::{Peer, Reader, ReaderEvent, Registry};
use crate::config::{Config, PushRule};
use crate::outputs::rtmp::{FlvMapper, FlvMessage};
use crate::rtmp::client::{ClientError, RtmpClient, RtmpUrl, TlsTrust};
use bytes::Bytes;
use rml_rtmp::sessions::StreamMetadata;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use switchyard_media::{CodecConfig, MediaKind};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushState {
    /// The stream is not on the bus (yet, or its publisher went away).
    Waiting,
    Connecting,
    Running,
    /// The target failed; waiting before the next attempt.
    Retrying,
    Stopped,
}

/// Where a push came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushOrigin {
    Api,
    Rule,
}

#[derive(Debug, Clone)]
pub struct PushStatus {
    pub state: PushState,
    pub since: SystemTime,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// What the push leaves out or assumes about the target, in plain words.
    pub notes: Vec<String>,
}

/// One push, as the API sees it.
pub struct Push {
    pub id: u64,
    pub stream: String,
    pub url: String,
    pub origin: PushOrigin,
    status: Mutex<PushStatus>,
    bytes_sent: AtomicU64,
    rate: Mutex<(Instant, u64, u64)>,
    cancel: CancellationToken,
}

impl Push {
    pub fn status(&self) -> PushStatus {
        self.status.lock().unwrap().clone()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Bits per second sent since the previous call (at least one second apart).
    pub fn bitrate_bps(&self) -> u64 {
        let mut r = self.rate.lock().unwrap();
        let now = Instant::now();
        let bytes = self.bytes_sent();
        let elapsed = now.duration_since(r.0);
        if elapsed >= Duration::from_secs(1) {
            r.2 = ((bytes - r.1) as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            *r = (now, bytes, r.2);
        }
        r.2
    }

    fn set_state(&self, state: PushState, error: Option<String>) {
        let mut s = self.status.lock().unwrap();
        if s.state != state {
            s.state = state;
            s.since = SystemTime::now();
        }
        if state == PushState::Retrying {
            s.reconnects += 1;
        }
        if error.is_some() {
            s.last_error = error;
        }
    }

    fn set_notes(&self, notes: Vec<String>) {
        self.status.lock().unwrap().notes = notes;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Url(#[from] ClientError),
    #[error(transparent)]
    Name(#[from] crate::bus::BusError),
}

pub struct PushManager {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    pushes: Mutex<BTreeMap<u64, Arc<Push>>>,
    next_id: AtomicU64,
    retry_min: Duration,
    retry_max: Duration,
    connect_timeout: Duration,
    /// Trust for `rtmps://` targets; an unreadable CA file is reported by every such push.
    tls: Result<TlsTrust, String>,
    shutdown: CancellationToken,
}

impl PushManager {
    pub fn new(registry: Registry, config: &Config, shutdown: CancellationToken) -> Self {
        let inner = Arc::new(Inner {
            registry,
            pushes: Mutex::default(),
            next_id: AtomicU64::new(1),
            retry_min: Duration::from_millis(config.pull.retry_min_ms),
            retry_max: Duration::from_millis(config.pull.retry_max_ms),
            connect_timeout: Duration::from_secs(config.pull.connect_timeout_secs),
            tls: TlsTrust::new(&config.pull.tls_ca_file).map_err(|e| e.to_string()),
            shutdown,
        });
        if !config.pushes.is_empty() {
            let (inner, rules) = (inner.clone(), config.pushes.clone());
            tokio::spawn(async move { apply_rules(inner, rules).await });
        }
        PushManager { inner }
    }

    /// Starts pushing `stream` to `url`.
    pub fn start(&self, stream: &str, url: &str) -> Result<Arc<Push>, PushError> {
        self.inner.start(stream, url, PushOrigin::Api)
    }

    pub fn list(&self) -> Vec<Arc<Push>> {
        self.inner
            .pushes
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Push>> {
        self.inner.pushes.lock().unwrap().get(&id).cloned()
    }

    /// Stops and forgets a push; false if there is none with that id.
    pub fn stop(&self, id: u64) -> bool {
        self.inner.stop(id)
    }
}

impl Inner {
    fn start(
        self: &Arc<Self>,
        stream: &str,
        url: &str,
        origin: PushOrigin,
    ) -> Result<Arc<Push>, PushError> {
        crate::bus::validate_name(stream)?;
        let target = RtmpUrl::parse(url)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let push = Arc::new(Push {
            id,
            stream: stream.to_string(),
            url: url.to_string(),
            origin,
            status: Mutex::new(PushStatus {
                state: PushState::Waiting,
                since: SystemTime::now(),
                reconnects: 0,
                last_error: None,
                notes: Vec::new(),
            }),
            bytes_sent: AtomicU64::new(0),
            rate: Mutex::new((Instant::now(), 0, 0)),
            cancel: self.shutdown.child_token(),
        });
        self.pushes.lock().unwrap().insert(id, push.clone());
        tracing::info!(push = id, stream, target = %target.redacted(), "push started");
        let (inner, p) = (self.clone(), push.clone());
        tokio::spawn(async move {
            run(&inner, &p, &target).await;
            p.set_state(PushState::Stopped, None);
            tracing::info!(push = p.id, stream = %p.stream, "push stopped");
        });
        Ok(push)
    }

    fn stop(&self, id: u64) -> bool {
        match self.pushes.lock().unwrap().remove(&id) {
            Some(p) => {
                p.cancel.cancel();
                true
            }
            None => false,
        }
    }
}

/// Why a relay ended.
enum RelayEnd {
    StreamEnded,
    /// The stream's audio changed to one the target needs converted, after the relay had
    /// subscribed without a conversion: subscribe again, on the same connection.
    AudioNeedsConversion,
    Target(ClientError),
    Cancelled,
}

async fn run(inner: &Inner, push: &Push, target: &RtmpUrl) {
    let mut client: Option<RtmpClient> = None;
    let mut attempt = 0u32;
    // Output timestamp to continue from, when the stream comes back on the same connection.
    let mut continue_from: Option<u32> = None;
    loop {
        let reader = match wait_for_stream(inner, push, &mut client).await {
            Some(r) => r,
            None => return,
        };
        if client.is_none() {
            push.set_state(PushState::Connecting, None);
            let connect = async {
                let trust = inner
                    .tls
                    .as_ref()
                    .map_err(|e| ClientError::Url(e.clone()))?;
                let mut c = RtmpClient::connect(target, trust).await?;
                c.publish(&target.key).await?;
                Ok::<_, ClientError>(c)
            };
            let result = tokio::select! {
                _ = push.cancel.cancelled() => return,
                r = tokio::time::timeout(inner.connect_timeout, connect) => r.unwrap_or(Err(ClientError::Timeout(inner.connect_timeout))),
            };
            match result {
                Ok(c) => {
                    client = Some(c);
                    continue_from = None;
                    attempt = 0;
                }
                Err(e) => {
                    if retry(
                        push,
                        e,
                        crate::pulls::backoff(attempt + 1, inner.retry_min, inner.retry_max),
                    )
                    .await
                    {
                        return;
                    }
                    attempt += 1;
                    continue;
                }
            }
        }
        push.set_state(PushState::Running, None);
        let c = client.as_mut().expect("connected above");
        match relay(c, reader, push, &mut continue_from).await {
            RelayEnd::Cancelled => return,
            RelayEnd::StreamEnded => {
                tracing::info!(push = push.id, stream = %push.stream, "stream gone; push waits for it")
            }
            RelayEnd::AudioNeedsConversion => {
                tracing::info!(push = push.id, stream = %push.stream, "the stream's audio now needs converting to AAC; push re-attaches")
            }
            RelayEnd::Target(e) => {
                client = None;
                if retry(
                    push,
                    e,
                    crate::pulls::backoff(1, inner.retry_min, inner.retry_max),
                )
                .await
                {
                    return;
                }
            }
        }
    }
}

/// Records a failure and sleeps; true if cancelled meanwhile.
async fn retry(push: &Push, error: ClientError, delay: Duration) -> bool {
    tracing::warn!(push = push.id, stream = %push.stream, error = %error, retry_in = ?delay, "push target failed");
    push.set_state(PushState::Retrying, Some(error.to_string()));
    tokio::select! {
        _ = push.cancel.cancelled() => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Waits until the stream is on the bus, keeping an open target connection serviced.
async fn wait_for_stream(
    inner: &Inner,
    push: &Push,
    client: &mut Option<RtmpClient>,
) -> Option<Reader> {
    loop {
        if inner.registry.get(&push.stream).is_some() {
            // RTMP targets take AAC: other audio is converted.
            let peer = Peer::new("rtmp-push", None);
            let subscribed = tokio::select! {
                _ = push.cancel.cancelled() => return None,
                r = crate::audio::subscribe(&inner.registry, &push.stream, peer, AudioNeed::Aac) => r,
            };
            if let Ok(reader) = subscribed {
                return Some(reader);
            }
        }
        push.set_state(PushState::Waiting, None);
        let tick = tokio::time::sleep(Duration::from_millis(250));
        tokio::select! {
            _ = push.cancel.cancelled() => return None,
            _ = tick => {}
            r = async { client.as_mut().expect("guarded").read_events().await }, if client.is_some() => {
                if let Err(e) = r {
                    tracing::info!(push = push.id, error = %e, "push target closed while the stream was away");
                    *client = None;
                }
            }
        }
    }
}

async fn relay(
    client: &mut RtmpClient,
    mut reader: Reader,
    push: &Push,
    continue_from: &mut Option<u32>,
) -> RelayEnd {
    let mut mapper = FlvMapper::default();
    mapper.carry_opus = false;
    // Output timestamp = input - first input + start (wrapping, as RTMP timestamps do).
    let start = continue_from.map_or(0, |t| t.wrapping_add(1));
    let mut first_input: Option<u32> = None;
    let mut last_output = start;
    loop {
        let event = tokio::select! {
            _ = push.cancel.cancelled() => return RelayEnd::Cancelled,
            e = reader.recv() => e,
            r = client.read_events() => match r {
                Ok(_) => continue,
                Err(e) => return RelayEnd::Target(e),
            },
        };
        let Some(event) = event else {
            *continue_from = Some(last_output);
            return RelayEnd::StreamEnded;
        };
        let mut queued = Ok(());
        match event {
            ReaderEvent::Tracks(tracks) => {
                // A reader of a conversion has AAC; this one subscribed before the audio came.
                let unconverted = tracks
                    .audio()
                    .is_some_and(|a| AudioNeed::Aac.target_for(&a.codec).is_some());
                if crate::audio::AVAILABLE && unconverted {
                    *continue_from = Some(last_output);
                    return RelayEnd::AudioNeedsConversion;
                }
                push.set_notes(notes_for(&tracks));
                for message in mapper.on_tracks(tracks) {
                    queued = queued.and_then(|()| match message {
                        FlvMessage::Metadata(_) => client.queue_metadata(&stream_metadata(&mapper)),
                        FlvMessage::Video { body, .. } => client.queue_video(body, last_output),
                        FlvMessage::Audio { body, .. } => client.queue_audio(body, last_output),
                    });
                }
            }
            ReaderEvent::Frame(frame) => {
                if let Some(f) = mapper.frame(&frame) {
                    let (header, n) = f.header;
                    let body: Bytes = [&header[..n], &frame.frame.data[..]].concat().into();
                    let base = *first_input.get_or_insert(f.timestamp);
                    last_output = start.wrapping_add(f.timestamp.wrapping_sub(base));
                    let ts = last_output;
                    if let Some(header) = f.sequence_header {
                        // VP8's `vp08` sequence start, built from its first keyframe.
                        queued = client.queue_video(header, ts);
                    }
                    queued = queued.and_then(|()| match f.kind {
                        MediaKind::Video => client.queue_video(body, ts),
                        MediaKind::Audio => client.queue_audio(body, ts),
                    });
                }
            }
            ReaderEvent::Lost { frames } => {
                tracing::warn!(
                    push = push.id,
                    frames,
                    "push target too slow; skipping to the next keyframe"
                );
            }
        }
        if let Err(e) = queued {
            return RelayEnd::Target(e);
        }
        match client.flush().await {
            Ok(n) => {
                push.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                reader.add_bytes_out(n);
            }
            Err(e) => return RelayEnd::Target(e),
        }
    }
}

/// `@setDataFrame onMetaData` for the target, from the tracks being pushed.
fn stream_metadata(mapper: &FlvMapper) -> StreamMetadata {
    let tracks = mapper.tracks();
    let mut m = StreamMetadata::new();
    if let Some(v) = tracks.video() {
        if let Some((w, h)) = v.codec.resolution() {
            m.video_width = Some(w);
            m.video_height = Some(h);
        }
        if matches!(v.codec, CodecConfig::H264(_)) {
            m.video_codec_id = Some(7);
        }
    }
    if let Some(a) = tracks
        .audio()
        .filter(|a| matches!(a.codec, CodecConfig::Aac(_)))
    {
        m.audio_codec_id = Some(10);
        m.audio_sample_rate = Some(a.clock_rate);
        if let CodecConfig::Aac(c) = &a.codec {
            m.audio_channels = Some(c.channels as u32);
            m.audio_is_stereo = Some(c.channels == 2);
        }
    }
    m.encoder = Some(concat!("switchyard ", env!("CARGO_PKG_VERSION")).to_string());
    m
}

/// Plain-words notes on what a push of these tracks leaves out or assumes.
fn notes_for(tracks: &crate::bus::TrackSet) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(a) = tracks.audio() {
        if matches!(a.codec, CodecConfig::Opus { .. }) {
            notes.push("audio left out: the stream's audio is Opus, which RTMP targets expect as AAC, and this build has no audio conversion (build with --features transcode)".to_string());
        }
    }
    if let Some(v) = tracks.video() {
        if !matches!(v.codec, CodecConfig::H264(_)) {
            notes.push(format!(
                "video sent as Enhanced RTMP ({}): the target must support it",
                v.codec.name()
            ));
        }
    }
    notes
}

/// Starts a rule push for every new stream that matches a rule; rule pushes of streams gone
/// for a while are stopped.
async fn apply_rules(inner: Arc<Inner>, rules: Vec<PushRule>) {
    const GONE_FOR: Duration = Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let names: Vec<String> = inner
            .registry
            .list()
            .iter()
            .map(|s| s.name().to_string())
            .collect();
        for rule in &rules {
            for name in names.iter().filter(|n| matches_pattern(&rule.stream, n)) {
                let url = rule.url.replace("{name}", name);
                let exists = inner
                    .pushes
                    .lock()
                    .unwrap()
                    .values()
                    .any(|p| p.origin == PushOrigin::Rule && &p.stream == name && p.url == url);
                if !exists {
                    if let Err(e) = inner.start(name, &url, PushOrigin::Rule) {
                        tracing::warn!(stream = %name, rule = %rule.stream, error = %e, "push rule cannot start");
                    }
                }
            }
        }
        let stale: Vec<u64> = inner
            .pushes
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.origin == PushOrigin::Rule)
            .filter(|p| {
                let s = p.status();
                s.state == PushState::Waiting && s.since.elapsed().unwrap_or_default() > GONE_FOR
            })
            .map(|p| p.id)
            .collect();
        for id in stale {
            inner.stop(id);
        }
    }
}
