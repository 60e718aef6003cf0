//! Live HLS and Low-Latency HLS media playlists over fMP4, per the HLS 2nd edition draft
//! (draft-pantos-hls-rfc8216bis, "the spec" below).
//!
//! [`LivePlaylist`] is a pure state machine: the caller pushes finished CMAF chunks ([`Part`]s,
//! built by `switchyard-fmp4`) with the wall-clock time of their first frame, and asks for
//! playlists, segments and parts. Inside, the model goes one way: the live window of segments
//! and parts (`live.rs`) knows nothing of playlist text; the renderer (`render.rs`) reads it;
//! [`LivePlaylist`] (`playlist.rs`) holds the window, renders on change and caches what it
//! rendered. Nothing here reads a clock, sleeps or touches a socket; the
//! HTTP layer in `src/` turns [`PlaylistAnswer::NotYet`] into "wait for the next push, ask
//! again" with its own timeout (spec 6.2.5.2 suggests answering 503 after about three target
//! durations).
//!
//! What a playlist carries, and where it comes from in the spec:
//! - `EXT-X-TARGETDURATION` (4.4.3.1): every `EXTINF` rounded to the nearest integer is at most
//!   the target; never lowered, because a live playlist must not change it (6.2.1).
//! - `EXT-X-PART-INF` / `EXT-X-PART` (4.4.3.7, 4.4.4.9): parts, `INDEPENDENT=YES` on those that
//!   start with a keyframe; parts are listed only for segments within three target durations
//!   of the live edge (6.2.2), the segments themselves stay.
//! - `EXT-X-SERVER-CONTROL` (4.4.3.8): `CAN-BLOCK-RELOAD=YES`, `PART-HOLD-BACK` = 3 part
//!   targets, `HOLD-BACK` = 3 target durations, and `CAN-SKIP-UNTIL` = 6 target durations when
//!   the window is long enough for delta updates to save anything.
//! - `EXT-X-PRELOAD-HINT` (4.4.5.3) for the next part, `EXT-X-MAP` (4.4.4.5) for `init.mp4`,
//!   `EXT-X-PROGRAM-DATE-TIME` (4.4.4.6) on every segment, `EXT-X-INDEPENDENT-SEGMENTS`
//!   (4.4.2.1): every segment starts with an independent part, which [`LivePlaylist::push_part`]
//!   enforces.
//! - Changes of configuration ([`LivePlaylist::set_init`], [`LivePlaylist::discontinuity`]):
//!   `EXT-X-DISCONTINUITY` (4.4.4.3) before the first segment of the new one, with an
//!   `EXT-X-MAP` naming its own init segment (`init{n}.mp4`); the media sequence keeps growing
//!   and `EXT-X-DISCONTINUITY-SEQUENCE` (4.4.3.3) counts the tags that left the window (6.2.2)
//!   or that a delta update skipped.
//! - Blocking playlist reload `_HLS_msn` / `_HLS_part` (6.2.5.2) and playlist delta updates
//!   `_HLS_skip=YES|v2` with `EXT-X-SKIP` (6.2.5.1, 4.4.5.2).
//!
//! The complete segments alone form a valid plain live playlist, so players without LL-HLS
//! (ffmpeg, older hls.js) play the same URL with ordinary latency.
//!
//! Hot path (ARCHITECTURE.md): segments, parts and each playlist variant are built once per
//! change as [`bytes::Bytes`] and every request is answered with a reference count.

mod config;
mod error;
mod live;
mod playlist;
mod render;
mod request;

pub use config::{HlsConfig, MAX_PARTS_PER_SEGMENT, MAX_SEGMENT_DURATION};
pub use error::HlsError;
pub use live::Part;
pub use playlist::{LivePlaylist, PlaylistAnswer};
pub use request::{
    parse_path, parse_request, parse_resource_name, with_query, HlsFile, PlaylistRequest, Resource,
    Skip, INIT_URI, PLAYLIST_NAME,
};
