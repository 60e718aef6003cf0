//! The HLS client: [`hls_load`] runs many HLS players of one playlist, LL-HLS (blocking
//! playlist reloads and preload-hinted parts, RFC 8216bis) when the playlist has
//! `EXT-X-PART-INF`, plain playlist polling otherwise. Media is counted, never parsed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::http::{Answer, HttpConn, HttpTarget, Sink};
use super::media_meter::{Fmp4Video, TsVideo};
use super::probe::{FrameMeter, FreezeRule, SessionProbe};
use super::report::{SessionStats, MODE_LL_HLS, MODE_PLAIN_HLS};
use super::session::Never;

/// Longest playlist accepted.
const MAX_PLAYLIST: usize = 1024 * 1024;
/// A session gives up after this many failed requests in a row (non-2xx answers, bad playlists).
const MAX_CONSECUTIVE_ERRORS: u32 = 10;
/// Pause before retrying after a failed request.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Shortest pause between two playlist polls of a plain HLS client.
const MIN_POLL: Duration = Duration::from_millis(100);

/// What a client needs from a media playlist.
#[derive(Debug, Default, Clone, PartialEq)]
struct Playlist {
    /// `EXT-X-TARGETDURATION`, seconds.
    target_duration: f64,
    /// `EXT-X-PART-INF:PART-TARGET`, seconds: the playlist is LL-HLS.
    part_target: Option<f64>,
    /// `EXT-X-MAP` URI.
    map: Option<String>,
    /// Complete segments: (media sequence number, URI).
    segments: Vec<(u64, String)>,
    /// Listed parts, in order.
    parts: Vec<PartRef>,
    /// The part after the last listed one: (msn, index), what a blocking reload asks for.
    next_part: (u64, u32),
    /// `EXT-X-PRELOAD-HINT:TYPE=PART` URI: the part at `next_part`.
    preload_hint: Option<String>,
    end_list: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartRef {
    msn: u64,
    index: u32,
    uri: String,
}

impl Playlist {
    fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some("#EXTM3U") {
            bail!("not a playlist: no #EXTM3U");
        }
        let mut playlist = Playlist::default();
        let mut msn = 0u64;
        let mut index = 0u32;
        let mut target_duration = None;
        for line in lines {
            let Some(tag) = line.strip_prefix('#') else {
                // A URI line ends a segment (EXTINF is required before it).
                playlist.segments.push((msn, line.to_string()));
                msn += 1;
                index = 0;
                continue;
            };
            let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
            match name {
                "EXT-X-TARGETDURATION" => {
                    target_duration = Some(
                        value
                            .parse::<f64>()
                            .with_context(|| format!("bad EXT-X-TARGETDURATION {value:?}"))?,
                    );
                }
                "EXT-X-MEDIA-SEQUENCE" => {
                    msn = value
                        .parse()
                        .with_context(|| format!("bad EXT-X-MEDIA-SEQUENCE {value:?}"))?;
                }
                "EXT-X-SKIP" => {
                    let skipped: u64 = attribute(value, "SKIPPED-SEGMENTS")
                        .and_then(|v| v.parse().ok())
                        .context("bad EXT-X-SKIP")?;
                    msn += skipped;
                }
                "EXT-X-PART-INF" => {
                    playlist.part_target = Some(
                        attribute(value, "PART-TARGET")
                            .and_then(|v| v.parse().ok())
                            .context("bad EXT-X-PART-INF")?,
                    );
                }
                "EXT-X-MAP" if playlist.map.is_none() => {
                    playlist.map = Some(attribute(value, "URI").context("EXT-X-MAP without URI")?);
                }
                "EXT-X-PART" => {
                    let uri = attribute(value, "URI").context("EXT-X-PART without URI")?;
                    playlist.parts.push(PartRef { msn, index, uri });
                    index += 1;
                }
                "EXT-X-PRELOAD-HINT" if attribute(value, "TYPE").as_deref() == Some("PART") => {
                    playlist.preload_hint = attribute(value, "URI");
                }
                "EXT-X-ENDLIST" => playlist.end_list = true,
                _ => {}
            }
        }
        playlist.target_duration = target_duration.context("no EXT-X-TARGETDURATION")?;
        playlist.next_part = (msn, index);
        Ok(playlist)
    }

    fn lists_part(&self, part: (u64, u32)) -> bool {
        self.parts.iter().any(|p| (p.msn, p.index) == part)
    }
}

/// The value of attribute `name` in an attribute list (`A=1,B="x,y"`), unquoted.
fn attribute(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let next = quoted[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&quoted[end + 1..]);
            (&quoted[..end], next)
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

/// `path` with a blocking-reload query for `(msn, part)` appended.
fn blocking_reload_path(path: &str, (msn, part): (u64, u32)) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}_HLS_msn={msn}&_HLS_part={part}")
}

/// One HLS player until an unrecoverable error (or until the run drops it).
///
/// It first GETs the playlist. With `EXT-X-PART-INF` (LL-HLS), like hls.js in low-latency
/// mode, it GETs the init section and the last listed part, then loops: a blocking playlist
/// reload (`_HLS_msn` / `_HLS_part` of the part after the last listed one) on one keep-alive
/// connection, and at the same time a GET of the `EXT-X-PRELOAD-HINT` part on a second one
/// (the server holds both until that part exists); then GETs every listed part it has not
/// fetched yet. Without `EXT-X-PART-INF` (or with a `#plain` fragment on the URL), it GETs the
/// init section if any and the last listed segment, then polls the playlist every half target
/// duration and GETs each new segment once. Request failures (non-2xx answers, bad playlists)
/// are counted and retried; a session fails on a TCP or HTTP framing error or on
/// [`MAX_CONSECUTIVE_ERRORS`] failed requests in a row. The session is connected once it has a
/// playlist; the media it fetches is metered frame by frame (`media_received`).
pub(super) async fn hls_session(
    target: Arc<HttpTarget>,
    probe: Arc<SessionProbe>,
    stats: Arc<SessionStats>,
) -> Result<Never> {
    let target = &target;
    let mut client = HlsClient {
        target: target.clone(),
        meter: FrameMeter::new(probe.clone(), "hls", FreezeRule::Playout, false),
        probe,
        body: Vec::new(),
        stats: stats.clone(),
        playlist_conn: HttpConn::new(target.clone(), stats.clone()),
        media_conn: HttpConn::new(target.clone(), stats.clone()),
        consecutive_errors: 0,
        init_uri: None,
        video: Fmp4Video::default(),
        ts: TsVideo::default(),
    };
    loop {
        let Some(playlist) = client.playlist(&target.path).await? else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        if playlist.part_target.is_some() && !target.force_plain {
            stats.mode.store(MODE_LL_HLS, Ordering::Relaxed);
            client.low_latency(playlist).await?;
        } else {
            stats.mode.store(MODE_PLAIN_HLS, Ordering::Relaxed);
            client.poll(playlist).await?;
        }
        // Back here after a failed request: start again from a plain playlist.
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

struct HlsClient {
    target: Arc<HttpTarget>,
    probe: Arc<SessionProbe>,
    meter: FrameMeter,
    /// The body of the media request in flight.
    body: Vec<u8>,
    stats: Arc<SessionStats>,
    playlist_conn: HttpConn,
    media_conn: HttpConn,
    consecutive_errors: u32,
    /// The init section fetched last (`EXT-X-MAP` changes with the stream's configuration).
    init_uri: Option<String>,
    video: Fmp4Video,
    ts: TsVideo,
}

impl HlsClient {
    /// Counts a failed request; an error once there were too many in a row.
    fn failed(&mut self, message: String) -> Result<()> {
        self.consecutive_errors += 1;
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
            bail!("{MAX_CONSECUTIVE_ERRORS} failed requests in a row, the last: {message}");
        }
        self.stats.note_request_error(message);
        Ok(())
    }

    /// Counts the answer to a media request; false if it failed.
    fn media_answer(&mut self, path: &str, answer: &Answer) -> Result<bool> {
        if answer.ok() {
            self.consecutive_errors = 0;
            Ok(true)
        } else {
            self.failed(answer.describe(path))?;
            Ok(false)
        }
    }

    /// Meters the frames of a media answer (an init section, a segment or a part); unreadable
    /// media counts as a request error.
    fn media_received(&mut self, body: &[u8]) {
        let now = Instant::now();
        let read = if TsVideo::is_ts(body) {
            self.ts.received(body, &mut self.meter, now)
        } else {
            self.video.received(body, &mut self.meter, now)
        };
        if let Err(e) = read {
            self.stats.note_request_error(e);
        }
    }

    /// GETs the playlist at `path`; `None` after a counted failure.
    async fn playlist(&mut self, path: &str) -> Result<Option<Playlist>> {
        let mut body = Vec::new();
        SessionStats::add(&self.stats.playlist_requests, 1);
        let answer = self
            .playlist_conn
            .get(path, Sink::Keep(&mut body, MAX_PLAYLIST))
            .await?;
        self.probe.add_bytes(body.len() as u64);
        self.parse_playlist(path, &answer, &body)
    }

    fn parse_playlist(
        &mut self,
        path: &str,
        answer: &Answer,
        body: &[u8],
    ) -> Result<Option<Playlist>> {
        if !answer.ok() {
            self.failed(answer.describe(path))?;
            return Ok(None);
        }
        let parsed = std::str::from_utf8(body)
            .context("not UTF-8")
            .and_then(Playlist::parse);
        match parsed {
            Ok(playlist) => {
                self.probe.connected();
                Ok(Some(playlist))
            }
            Err(e) => {
                self.failed(format!("GET {path}: {e:#}"))?;
                Ok(None)
            }
        }
    }

    /// GETs a media URI of the playlist on the media connection; false after a counted failure.
    async fn media(&mut self, uri: &str) -> Result<bool> {
        let path = self.target.resolve(&self.target.path, uri)?;
        SessionStats::add(&self.stats.media_requests, 1);
        self.body.clear();
        let answer = self
            .media_conn
            .get(&path, Sink::Media(&self.probe, &mut self.body))
            .await?;
        let ok = self.media_answer(&path, &answer)?;
        if ok {
            let body = std::mem::take(&mut self.body);
            self.media_received(&body);
            self.body = body;
        }
        Ok(ok)
    }

    /// GETs the init section, once per `EXT-X-MAP` URI.
    async fn init(&mut self, playlist: &Playlist) -> Result<bool> {
        match &playlist.map {
            Some(map) if self.init_uri.as_ref() != Some(map) => {
                let fetched = self.media(map).await?;
                if fetched {
                    self.init_uri = Some(map.clone());
                }
                Ok(fetched)
            }
            _ => Ok(true),
        }
    }

    /// Plain HLS: poll every half target duration, GET each new segment once. Returns after a
    /// failed playlist request.
    async fn poll(&mut self, mut playlist: Playlist) -> Result<()> {
        if !self.init(&playlist).await? {
            return Ok(());
        }
        // Start at the live edge: the last complete segment.
        let mut next = playlist.segments.last().map_or(0, |(msn, _)| *msn);
        loop {
            let polled = tokio::time::Instant::now();
            if !self.init(&playlist).await? {
                return Ok(());
            }
            for (msn, uri) in &playlist.segments {
                if *msn >= next {
                    self.media(uri).await?;
                    next = msn + 1;
                }
            }
            let interval = Duration::from_secs_f64(playlist.target_duration / 2.0).max(MIN_POLL);
            tokio::time::sleep_until(polled + interval).await;
            let path = self.target.path.clone();
            match self.playlist(&path).await? {
                Some(p) => playlist = p,
                None => return Ok(()),
            }
        }
    }

    /// LL-HLS: blocking playlist reloads, the preload-hinted part fetched alongside, and any
    /// listed part not fetched yet. Returns after a failed playlist request.
    async fn low_latency(&mut self, mut playlist: Playlist) -> Result<()> {
        if !self.init(&playlist).await? {
            return Ok(());
        }
        // Start at the live edge: the last listed part.
        let mut last: Option<(u64, u32)> = None;
        if let Some(part) = playlist.parts.last().cloned() {
            if self.media(&part.uri).await? {
                last = Some((part.msn, part.index));
            }
        }
        loop {
            let hinted = playlist.next_part;
            let reload = blocking_reload_path(&self.target.path, hinted);
            let hint_path = match &playlist.preload_hint {
                Some(uri) => Some(self.target.resolve(&self.target.path, uri)?),
                None => None,
            };
            SessionStats::add(&self.stats.playlist_requests, 1);
            let (reloaded, hint_answer, new_playlist) = {
                let playlist_conn = &mut self.playlist_conn;
                let reload_fut = async {
                    let mut body = Vec::new();
                    let answer = playlist_conn
                        .get(&reload, Sink::Keep(&mut body, MAX_PLAYLIST))
                        .await?;
                    anyhow::Ok((answer, body))
                };
                let media_conn = &mut self.media_conn;
                let stats = &self.stats;
                let probe = &self.probe;
                let body = &mut self.body;
                body.clear();
                let hint_fut = async {
                    match &hint_path {
                        Some(path) => {
                            SessionStats::add(&stats.media_requests, 1);
                            Some(media_conn.get(path, Sink::Media(probe, body)).await)
                        }
                        None => None,
                    }
                };
                tokio::pin!(reload_fut, hint_fut);
                let mut hint_answer = None;
                let reloaded = loop {
                    tokio::select! {
                        reloaded = &mut reload_fut => break reloaded?,
                        answer = &mut hint_fut, if hint_answer.is_none() => {
                            hint_answer = Some(answer);
                        }
                    }
                };
                self.probe.add_bytes(reloaded.1.len() as u64);
                let new_playlist = if reloaded.0.ok() {
                    std::str::from_utf8(&reloaded.1)
                        .context("not UTF-8")
                        .and_then(Playlist::parse)
                        .ok()
                } else {
                    None
                };
                if hint_answer.is_none() {
                    // The hinted part is listed: its answer is under way. Not listed: the
                    // server cut a segment there and the part comes under another name.
                    if new_playlist.as_ref().is_some_and(|p| p.lists_part(hinted)) {
                        hint_answer = Some(hint_fut.await);
                    }
                }
                (reloaded, hint_answer, new_playlist)
            };
            let hint_listed = new_playlist.as_ref().is_some_and(|p| p.lists_part(hinted));
            match (&hint_path, hint_answer) {
                // The server answered at once that the hinted part is not coming (a segment
                // was cut there, RFC 8216bis 6.2.6): an abandoned hint, as players take it.
                (Some(_), Some(Some(Ok(answer)))) if answer.not_found() && !hint_listed => {
                    SessionStats::add(&self.stats.abandoned_hints, 1);
                }
                (Some(path), Some(Some(answer))) => {
                    if self.media_answer(path, &answer?)? {
                        last = Some(hinted);
                        let body = std::mem::take(&mut self.body);
                        self.media_received(&body);
                        self.body = body;
                    }
                }
                (Some(_), _) => {
                    self.media_conn.close();
                    SessionStats::add(&self.stats.abandoned_hints, 1);
                }
                (None, _) => {}
            }
            let Some(new_playlist) = new_playlist else {
                // Counts the failure (a non-2xx answer or an unparsable playlist).
                self.parse_playlist(&reload, &reloaded.0, &reloaded.1)?;
                return Ok(());
            };
            playlist = new_playlist;
            self.consecutive_errors = 0;
            if !self.init(&playlist).await? {
                return Ok(());
            }
            // Catch up on listed parts not fetched yet (none, usually).
            let first_listed = playlist.parts.first().map(|p| (p.msn, p.index));
            if last.is_none() || last < first_listed {
                // Fell out of the window: jump to the live edge.
                last = playlist
                    .parts
                    .len()
                    .checked_sub(2)
                    .map(|i| (playlist.parts[i].msn, playlist.parts[i].index));
            }
            let missing: Vec<PartRef> = playlist
                .parts
                .iter()
                .filter(|p| Some((p.msn, p.index)) > last)
                .cloned()
                .collect();
            for part in missing {
                if self.media(&part.uri).await? {
                    last = Some((part.msn, part.index));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL_PLAYLIST: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,HOLD-BACK=6.000
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-MEDIA-SEQUENCE:40
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:00.000Z
#EXTINF:2.00000,
seg40.m4s
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part41.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part41.1.m4s\"
#EXTINF:0.40000,
seg41.m4s
#EXT-X-PROGRAM-DATE-TIME:2025-01-01T00:00:02.400Z
#EXT-X-PART:DURATION=0.20000,URI=\"part42.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part42.1.m4s\"
";

    #[test]
    fn parses_ll_hls_playlist() {
        let p = Playlist::parse(LL_PLAYLIST).unwrap();
        assert_eq!(p.target_duration, 2.0);
        assert_eq!(p.part_target, Some(0.2));
        assert_eq!(p.map.as_deref(), Some("init.mp4"));
        assert_eq!(
            p.segments,
            vec![(40, "seg40.m4s".to_string()), (41, "seg41.m4s".to_string())]
        );
        let parts: Vec<(u64, u32, &str)> = p
            .parts
            .iter()
            .map(|x| (x.msn, x.index, x.uri.as_str()))
            .collect();
        assert_eq!(
            parts,
            vec![
                (41, 0, "part41.0.m4s"),
                (41, 1, "part41.1.m4s"),
                (42, 0, "part42.0.m4s")
            ]
        );
        // The part after the last listed one, which the preload hint names.
        assert_eq!(p.next_part, (42, 1));
        assert_eq!(p.preload_hint.as_deref(), Some("part42.1.m4s"));
        assert!(p.lists_part((41, 1)) && !p.lists_part((42, 1)));
        assert!(!p.end_list);
        assert_eq!(
            blocking_reload_path("/hls/live/x/index.m3u8", p.next_part),
            "/hls/live/x/index.m3u8?_HLS_msn=42&_HLS_part=1"
        );
        assert_eq!(
            blocking_reload_path("/i.m3u8?token=a", (7, 0)),
            "/i.m3u8?token=a&_HLS_msn=7&_HLS_part=0"
        );
    }

    #[test]
    fn next_part_after_a_segment_boundary_and_a_skip() {
        // The segment just completed: no part of the next one yet.
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART-INF:PART-TARGET=0.2\n\
                    #EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n\
                    #EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXTINF:0.2,\ns8\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.segments, vec![(8, "s8".to_string())]);
        assert_eq!(p.parts[0].msn, 8);
        assert_eq!(p.next_part, (9, 0));
        assert_eq!(p.preload_hint, None);
    }

    #[test]
    fn parses_plain_hls_playlist() {
        // As nginx-rtmp writes it.
        let text = "#EXTM3U\r\n#EXT-X-VERSION:3\r\n#EXT-X-MEDIA-SEQUENCE:12\r\n\
                    #EXT-X-TARGETDURATION:2\r\n#EXT-X-DISCONTINUITY\r\n#EXTINF:2.000,\r\n\
                    bench-12.ts\r\n#EXTINF:2.000,\r\nbench-13.ts\r\n";
        let p = Playlist::parse(text).unwrap();
        assert_eq!(p.part_target, None);
        assert_eq!(p.map, None);
        assert_eq!(
            p.segments,
            vec![(12, "bench-12.ts".into()), (13, "bench-13.ts".into())]
        );
        assert_eq!(p.next_part, (14, 0));
        assert!(Playlist::parse("#EXT-X-TARGETDURATION:2\n").is_err());
        assert!(Playlist::parse("#EXTM3U\nseg.ts\n").is_err()); // no target duration
        assert!(
            Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:x\n").is_err()
        );
        let ended = Playlist::parse("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-ENDLIST\n").unwrap();
        assert!(ended.end_list && ended.segments.is_empty());
    }

    #[test]
    fn reads_attributes() {
        let list = "TYPE=PART,URI=\"a,b=c.m4s\",BYTERANGE-START=3";
        assert_eq!(attribute(list, "TYPE").as_deref(), Some("PART"));
        assert_eq!(attribute(list, "URI").as_deref(), Some("a,b=c.m4s"));
        assert_eq!(attribute(list, "BYTERANGE-START").as_deref(), Some("3"));
        assert_eq!(attribute(list, "START"), None);
        assert_eq!(attribute("URI=\"unclosed", "URI"), None);
    }
}
