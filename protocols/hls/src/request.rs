//! Delivery directives of a playlist request (spec 6.2.5: `_HLS_msn`, `_HLS_part`,
//! `_HLS_skip`) and the names of the resources a playlist points to.

use crate::error::HlsError;

/// The URI of the first init segment (`EXT-X-MAP`), relative to the playlist; those after a
/// change of configuration are `init{n}.mp4` ([`Resource::Init`]).
pub const INIT_URI: &str = "init.mp4";

/// What a playlist request asks for (spec 6.2.5). Validation against the live state (e.g.
/// `_HLS_part` without `_HLS_msn`) happens in [`crate::LivePlaylist::playlist`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaylistRequest {
    /// `_HLS_msn`: block until this Media Sequence Number is in the playlist.
    pub msn: Option<u64>,
    /// `_HLS_part`: block until this part of segment `msn` is in the playlist.
    pub part: Option<u32>,
    /// `_HLS_skip`: ask for a playlist delta update.
    pub skip: Skip,
}

/// `_HLS_skip` (spec 6.2.5.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Skip {
    /// A full playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: skip old media segments.
    Yes,
    /// `_HLS_skip=v2`: also skip old `EXT-X-DATERANGE` tags (we write none).
    V2,
}

/// Parses the query string of a playlist request (`_HLS_msn=5&_HLS_part=2&_HLS_skip=YES`,
/// with or without the leading `?`). Unknown parameters are ignored; a directive given twice,
/// without a value, or with a value that is not a number (or `YES`/`v2` for `_HLS_skip`) is an
/// error, since guessing would answer a different request than the one asked.
pub fn parse_request(query: &str) -> Result<PlaylistRequest, HlsError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut request = PlaylistRequest::default();
    let mut seen_skip = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        if !matches!(name, "_HLS_msn" | "_HLS_part" | "_HLS_skip") {
            continue;
        }
        let bad = |reason: &str| HlsError::BadQuery {
            param: name.to_string(),
            value: value.unwrap_or_default().to_string(),
            reason: reason.to_string(),
        };
        let value = match value {
            Some(v) if !v.is_empty() => v,
            _ => return Err(bad("missing value")),
        };
        match name {
            "_HLS_msn" => {
                if request.msn.is_some() {
                    return Err(bad("given twice"));
                }
                request.msn = Some(parse_number(value).map_err(|r| bad(&r))?);
            }
            "_HLS_part" => {
                if request.part.is_some() {
                    return Err(bad("given twice"));
                }
                request.part = Some(parse_number(value).map_err(|r| bad(&r))?);
            }
            _ => {
                if seen_skip {
                    return Err(bad("given twice"));
                }
                seen_skip = true;
                request.skip = match value {
                    "YES" => Skip::Yes,
                    "v2" => Skip::V2,
                    _ => return Err(bad("expected YES or v2")),
                };
            }
        }
    }
    Ok(request)
}

/// A decimal-integer as the spec defines it (4.2): digits only, no sign, no spaces.
fn parse_number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a decimal integer".to_string());
    }
    value.parse().map_err(|_| "number out of range".to_string())
}

/// A resource a playlist links to, by its relative URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `init.mp4` for init segment 0, `init{n}.mp4` for init segment n (one per configuration
    /// of the stream, see [`crate::LivePlaylist::set_init`]).
    Init(u32),
    /// `seg{msn}.m4s`
    Segment(u64),
    /// `part{msn}.{index}.m4s`
    Part(u64, u32),
}

impl Resource {
    /// The relative URI written in the playlist.
    pub fn uri(&self) -> String {
        match self {
            Resource::Init(0) => INIT_URI.to_string(),
            Resource::Init(n) => format!("init{n}.mp4"),
            Resource::Segment(msn) => format!("seg{msn}.m4s"),
            Resource::Part(msn, index) => format!("part{msn}.{index}.m4s"),
        }
    }
}

/// `playlist` with `query` (already percent-encoded, e.g. `token=abc`) added to every URI it
/// lists: segment lines and the `URI="..."` attributes of `EXT-X-MAP`, `EXT-X-PART`,
/// `EXT-X-PRELOAD-HINT` and `EXT-X-RENDITION-REPORT`. Players resolve relative URIs against the
/// playlist's URL and drop its query (RFC 3986 5.2), so a credential given on the playlist
/// request has to be written into each child URI to come back with it.
pub fn with_query(playlist: &[u8], query: &str) -> bytes::Bytes {
    let text = String::from_utf8_lossy(playlist);
    let mut out = String::with_capacity(text.len() + text.lines().count() * (query.len() + 1));
    let append = |out: &mut String, uri: &str| {
        out.push_str(uri);
        out.push(if uri.contains('?') { '&' } else { '?' });
        out.push_str(query);
    };
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if !body.starts_with('#') {
            if !body.is_empty() {
                append(&mut out, body);
            }
        } else {
            let mut rest = body;
            while let Some(at) = rest.find("URI=\"") {
                let value_start = at + "URI=\"".len();
                let Some(len) = rest[value_start..].find('"') else {
                    break;
                };
                out.push_str(&rest[..value_start]);
                append(&mut out, &rest[value_start..value_start + len]);
                rest = &rest[value_start + len..];
            }
            out.push_str(rest);
        }
        out.push_str(end);
    }
    bytes::Bytes::from(out)
}

/// The file an HLS request path names: the media playlist or a resource it links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsFile {
    /// `index.m3u8`
    Playlist,
    /// An init segment, segment or part.
    Resource(Resource),
}

/// The name of the media playlist under a stream's path.
pub const PLAYLIST_NAME: &str = "index.m3u8";

/// Splits the path of an HLS request (what follows `/hls/`: `{stream name}/{file}`) into
/// the stream name and the file; `None` (answer 404) when there is no `/` or the file is none
/// of ours. The stream name is not checked here: the caller validates it like every other.
pub fn parse_path(path: &str) -> Option<(&str, HlsFile)> {
    let (name, file) = path.rsplit_once('/')?;
    let file = if file == PLAYLIST_NAME {
        HlsFile::Playlist
    } else {
        HlsFile::Resource(parse_resource_name(file)?)
    };
    Some((name, file))
}

/// Maps the last path element of a request back to the resource, the inverse of
/// [`Resource::uri`]; `None` for anything else (answer 404).
pub fn parse_resource_name(name: &str) -> Option<Resource> {
    if name == INIT_URI {
        return Some(Resource::Init(0));
    }
    if let Some(n) = name
        .strip_prefix("init")
        .and_then(|n| n.strip_suffix(".mp4"))
    {
        // Init segment 0 is `init.mp4`, never `init0.mp4`.
        return match uri_number(n)? {
            0 => None,
            n => Some(Resource::Init(n)),
        };
    }
    let stem = name.strip_suffix(".m4s")?;
    if let Some(msn) = stem.strip_prefix("seg") {
        return Some(Resource::Segment(uri_number(msn)?));
    }
    let (msn, index) = stem.strip_prefix("part")?.split_once('.')?;
    Some(Resource::Part(uri_number(msn)?, uri_number(index)?))
}

/// A number in a resource URI, as [`Resource::uri`] writes it: no leading zeros, so each
/// resource has one URI (`seg007.m4s` would be a second name for `seg7.m4s`, cached apart by
/// every CDN; found by the `hls_request` fuzz target).
fn uri_number<T: std::str::FromStr>(digits: &str) -> Option<T> {
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    parse_number(digits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_query_adds_the_query_to_every_uri() {
        let playlist = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-PART:DURATION=0.2,URI=\"part1.0.m4s\",INDEPENDENT=YES\n#EXTINF:2.0,\nseg1.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.1.m4s\"\n#EXT-X-RENDITION-REPORT:URI=\"../b/index.m3u8?x=1\",LAST-MSN=2\n";
        let out = with_query(playlist.as_bytes(), "token=a%2Bb");
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=a%2Bb\"\n#EXT-X-PART:DURATION=0.2,URI=\"part1.0.m4s?token=a%2Bb\",INDEPENDENT=YES\n#EXTINF:2.0,\nseg1.m4s?token=a%2Bb\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.1.m4s?token=a%2Bb\"\n#EXT-X-RENDITION-REPORT:URI=\"../b/index.m3u8?x=1&token=a%2Bb\",LAST-MSN=2\n"
        );
    }

    #[test]
    fn parses_all_directives_in_any_order() {
        let r = parse_request("_HLS_skip=YES&_HLS_part=2&_HLS_msn=5").unwrap();
        assert_eq!(
            r,
            PlaylistRequest {
                msn: Some(5),
                part: Some(2),
                skip: Skip::Yes
            }
        );
        assert_eq!(parse_request("?_HLS_skip=v2").unwrap().skip, Skip::V2);
        assert_eq!(parse_request("").unwrap(), PlaylistRequest::default());
    }

    #[test]
    fn ignores_unknown_parameters() {
        let r = parse_request("token=abc&_HLS_msn=7&x&&cb=1").unwrap();
        assert_eq!(r.msn, Some(7));
        assert_eq!(r.part, None);
    }

    #[test]
    fn rejects_bad_numbers_with_the_parameter_named() {
        for q in [
            "_HLS_msn=abc",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn= 1",
            "_HLS_msn=",
            "_HLS_msn",
            "_HLS_msn=99999999999999999999999",
            "_HLS_msn=1&_HLS_part=4294967296",
            "_HLS_msn=1&_HLS_part=1.5",
        ] {
            let err = parse_request(q).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("_HLS_"), "{q}: {text}");
        }
    }

    #[test]
    fn rejects_unknown_skip_values_and_repeats() {
        assert!(parse_request("_HLS_skip=yes").is_err());
        assert!(parse_request("_HLS_skip=NO").is_err());
        assert!(parse_request("_HLS_skip=YES&_HLS_skip=v2").is_err());
        assert!(parse_request("_HLS_msn=1&_HLS_msn=2").is_err());
        assert!(parse_request("_HLS_msn=1&_HLS_part=1&_HLS_part=1").is_err());
    }

    #[test]
    fn paths_split_into_stream_name_and_file() {
        assert_eq!(
            parse_path("live/cam1/index.m3u8"),
            Some(("live/cam1", HlsFile::Playlist))
        );
        assert_eq!(
            parse_path("cam/part3.1.m4s"),
            Some(("cam", HlsFile::Resource(Resource::Part(3, 1))))
        );
        assert_eq!(parse_path("index.m3u8"), None);
        assert_eq!(parse_path("cam/other.txt"), None);
        assert_eq!(parse_path("/index.m3u8"), Some(("", HlsFile::Playlist)));
    }

    #[test]
    fn resource_names_round_trip() {
        for r in [
            Resource::Init(0),
            Resource::Init(1),
            Resource::Init(u32::MAX),
            Resource::Segment(0),
            Resource::Segment(u64::MAX),
            Resource::Part(12, 0),
            Resource::Part(12, 9),
        ] {
            assert_eq!(parse_resource_name(&r.uri()), Some(r));
        }
        for bad in [
            "seg.m4s",
            "seg1.mp4",
            "part1.m4s",
            "part1.x.m4s",
            "segx.m4s",
            "index.m3u8",
            "part-1.0.m4s",
            "init0.mp4",
            "init01.mp4",
            "init.m4s",
            "init-1.mp4",
            "init4294967296.mp4",
            "seg07.m4s",
            "part00000000000005405827022895418936.1.m4s",
            "part5.01.m4s",
        ] {
            assert_eq!(parse_resource_name(bad), None, "{bad}");
        }
    }
}
