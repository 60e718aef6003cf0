//! Reading fMP4 back without decoding: what a player (the load generator's HLS and MSE
//! clients) needs to count frames, find keyframes and time them.
//!
//! [`InitInfo::parse`] reads an init segment (`ftyp` + `moov`): per `trak` its `track_ID`
//! (`tkhd`), handler (`mdia/hdlr`), timescale (`mdia/mdhd`), and the `mvex/trex` defaults.
//! [`for_each_sample`] (or [`read_fragments`], which collects) walks a buffer of one or more
//! `moof` + `mdat` pairs (an HLS segment or part, an MSE message; `styp`, `sidx`, `prft`, `emsg`
//! and any other top-level box may come between them) and yields, for one track, each
//! sample's decode time, composition offset, duration, sync flag and bytes, the bytes being a
//! slice of the input.
//!
//! ISO/IEC 14496-12: box headers 4.2 (`size` 1 = 64-bit `largesize`, 0 = to the end of the
//! enclosing box, `uuid` boxes' 16-byte user type), `tkhd` 8.3.2, `mdhd` 8.4.2, `hdlr` 8.4.3,
//! `trex` 8.8.3 (sample flags 8.8.3.1), `tfhd` 8.8.7, `trun` 8.8.8, `tfdt` 8.8.12. How a
//! sample's values are found, most specific first:
//!
//! - flags: the `trun`'s per-sample flags, its `first_sample_flags` (first sample only),
//!   `tfhd` `default_sample_flags`, the `trex` default; duration and size likewise without the
//!   second step. A sample is a sync sample when `sample_is_non_sync_sample` (bit 16) is clear.
//! - data: the base data offset is the `tfhd`'s `base_data_offset` (counted from the start of
//!   the buffer given, which is right for a whole file or segment), else the `moof`'s first
//!   byte when `default-base-is-moof` is set or for the first `traf` of a `moof`, else the end
//!   of the previous `traf`'s data (8.8.7.1); a `trun`'s `data_offset` counts from it, and a
//!   `trun` without one starts where the previous `trun`'s data ended (8.8.8.3).
//! - decode time: the `traf`'s `tfdt` plus the durations of the samples before; a `traf`
//!   without `tfdt` (never in CMAF) continues from the end of the previous fragment of the
//!   track in the same buffer, or from 0.
//!
//! Every `traf` is walked (another track's data sizes place the next `traf`'s data when no
//! base offset is given; its damaged boxes are errors too), but only the asked track's samples
//! are reported. Input is trusted
//! in nothing: every length is checked against its box and every sample against the buffer,
//! and errors are values ([`ReadError`]), never panics. Nothing is allocated per sample.

use std::fmt;

/// `sample_is_non_sync_sample` in sample flags (ISO/IEC 14496-12 8.8.3.1).
pub const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// Why an init segment or fragment could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A box or field runs past the end of its box or of the buffer.
    #[error("{what} at byte {at}: needs {needed} bytes, has {had}")]
    Truncated {
        what: &'static str,
        at: usize,
        needed: u64,
        had: usize,
    },
    /// A value that the format does not allow.
    #[error("{what} at byte {at}: {reason}")]
    Invalid {
        what: &'static str,
        at: usize,
        reason: &'static str,
    },
    /// A box that must be there is not (`moov`, `tkhd`, `tfhd`, ...).
    #[error("no {0} box")]
    Missing(&'static str),
    /// No `trun`, `tfhd` or `trex` gives a sample's duration or size.
    #[error("track {track}: no default sample {what} (trun, tfhd and trex give none)")]
    NoDefault { track: u32, what: &'static str },
    /// The track asked for is not in the init segment.
    #[error("track {0}: not in the init segment")]
    UnknownTrack(u32),
    /// A sample's bytes lie outside the buffer.
    #[error(
        "track {track}: sample at byte {offset} of {size} bytes is outside the {len}-byte buffer"
    )]
    SampleOutside {
        track: u32,
        offset: i128,
        size: u32,
        len: usize,
    },
}

/// A track's `trex` defaults (ISO/IEC 14496-12 8.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrexDefaults {
    pub sample_description_index: u32,
    pub sample_duration: u32,
    pub sample_size: u32,
    pub sample_flags: u32,
}

/// One track of an init segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackInfo {
    /// `tkhd` `track_ID` (Switchyard writes its `TrackId` here).
    pub track_id: u32,
    /// `hdlr` `handler_type`: `vide`, `soun`, ...
    pub handler: [u8; 4],
    /// `mdhd` timescale: the units of every time in this track's fragments.
    pub timescale: u32,
    /// The `mvex/trex` of this track, if the init segment has one (a fragmented one must).
    pub trex: Option<TrexDefaults>,
}

impl TrackInfo {
    pub fn is_video(&self) -> bool {
        &self.handler == b"vide"
    }

    pub fn is_audio(&self) -> bool {
        &self.handler == b"soun"
    }
}

/// What an init segment says about its tracks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitInfo {
    /// In `trak` order.
    pub tracks: Vec<TrackInfo>,
}

impl InitInfo {
    /// Reads the `moov` among `init`'s top-level boxes (`ftyp` and others are skipped).
    ///
    /// # Errors
    ///
    /// No `moov`, a `trak` without `tkhd`, `mdhd` or `hdlr`, a box that does not fit, or two
    /// tracks with one id.
    pub fn parse(init: &[u8]) -> Result<InitInfo, ReadError> {
        let mut moov = None;
        for b in Boxes::new(init, 0) {
            let b = b?;
            if &b.kind == b"moov" {
                moov = Some(b);
                break;
            }
        }
        let moov = moov.ok_or(ReadError::Missing("moov"))?;
        let mut tracks: Vec<TrackInfo> = Vec::new();
        let mut trexes: Vec<(u32, TrexDefaults)> = Vec::new();
        for b in moov.children() {
            let b = b?;
            match &b.kind {
                b"trak" => {
                    let t = trak(&b)?;
                    if tracks.iter().any(|o| o.track_id == t.track_id) {
                        return Err(b.invalid("trak", "two tracks with one track_ID"));
                    }
                    tracks.push(t);
                }
                b"mvex" => {
                    for c in b.children() {
                        let c = c?;
                        if &c.kind == b"trex" {
                            let mut r = c.full_reader("trex")?.1;
                            let id = r.u32()?;
                            let defaults = TrexDefaults {
                                sample_description_index: r.u32()?,
                                sample_duration: r.u32()?,
                                sample_size: r.u32()?,
                                sample_flags: r.u32()?,
                            };
                            trexes.push((id, defaults));
                        }
                    }
                }
                _ => {}
            }
        }
        for t in &mut tracks {
            t.trex = trexes
                .iter()
                .find(|(id, _)| *id == t.track_id)
                .map(|(_, d)| *d);
        }
        Ok(InitInfo { tracks })
    }

    /// The first video (`vide`) track.
    pub fn video(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.is_video())
    }

    /// The first audio (`soun`) track.
    pub fn audio(&self) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.is_audio())
    }

    /// The track with this `track_ID`.
    pub fn track(&self, track_id: u32) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track_id == track_id)
    }
}

fn trak(b: &BoxRef<'_>) -> Result<TrackInfo, ReadError> {
    let mut track_id = None;
    let mut handler = None;
    let mut timescale = None;
    for c in b.children() {
        let c = c?;
        match &c.kind {
            b"tkhd" => {
                let (version, mut r) = c.full_reader("tkhd")?;
                // creation_time, modification_time
                r.skip(if version == 1 { 16 } else { 8 })?;
                track_id = Some(r.u32()?);
            }
            b"mdia" => {
                for m in c.children() {
                    let m = m?;
                    match &m.kind {
                        b"mdhd" => {
                            let (version, mut r) = m.full_reader("mdhd")?;
                            r.skip(if version == 1 { 16 } else { 8 })?;
                            timescale = Some(r.u32()?);
                        }
                        b"hdlr" => {
                            let mut r = m.full_reader("hdlr")?.1;
                            r.skip(4)?; // pre_defined
                            handler = Some(r.fourcc()?);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(TrackInfo {
        track_id: track_id.ok_or(ReadError::Missing("tkhd"))?,
        handler: handler.ok_or(ReadError::Missing("hdlr"))?,
        timescale: timescale.ok_or(ReadError::Missing("mdhd"))?,
        trex: None,
    })
}

/// One sample of a fragment, as [`for_each_sample`] reports it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SampleInfo<'a> {
    /// Decode time in the track's timescale: `tfdt` plus the durations before this sample.
    pub decode_time: u64,
    /// Presentation time minus decode time (`trun` `sample_composition_time_offset`; 0 when
    /// absent).
    pub composition_offset: i64,
    /// In the track's timescale.
    pub duration: u32,
    /// `sample_is_non_sync_sample` is clear: a keyframe for video.
    pub is_sync: bool,
    /// The sample flags that applied (ISO/IEC 14496-12 8.8.3.1).
    pub flags: u32,
    /// The sample's bytes (for H.264/H.265, 4-byte length-prefixed NAL units), a slice of the
    /// buffer given.
    pub data: &'a [u8],
}

impl SampleInfo<'_> {
    /// Decode time plus composition offset.
    pub fn presentation_time(&self) -> i128 {
        i128::from(self.decode_time) + i128::from(self.composition_offset)
    }
}

impl fmt::Debug for SampleInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleInfo")
            .field("decode_time", &self.decode_time)
            .field("composition_offset", &self.composition_offset)
            .field("duration", &self.duration)
            .field("is_sync", &self.is_sync)
            .field("flags", &format_args!("{:#010x}", self.flags))
            .field("len", &self.data.len())
            .finish()
    }
}

/// The samples of track `track_id` in `data` (one or more `moof` + `mdat`), collected.
///
/// # Errors
///
/// As [`for_each_sample`].
pub fn read_fragments<'a>(
    data: &'a [u8],
    init: &InitInfo,
    track_id: u32,
) -> Result<Vec<SampleInfo<'a>>, ReadError> {
    let mut out = Vec::new();
    for_each_sample(data, init, track_id, |s| out.push(s))?;
    Ok(out)
}

/// Calls `on_sample` for each sample of track `track_id` in `data` (one or more `moof` +
/// `mdat`, other top-level boxes skipped), in decode order; returns how many there were.
///
/// A `moof` is read whole before its samples are reported, so a damaged `moof` reports none of
/// its samples; samples of earlier `moof`s in `data` have been reported when an error returns.
///
/// # Errors
///
/// The track is not in `init`; a box does not fit its parent or the buffer; a `trun` claims
/// more samples than it holds; no `trun`, `tfhd` or `trex` gives a sample's duration or size;
/// a sample's bytes lie outside `data` (a truncated `mdat`).
pub fn for_each_sample<'a>(
    data: &'a [u8],
    init: &InitInfo,
    track_id: u32,
    mut on_sample: impl FnMut(SampleInfo<'a>),
) -> Result<usize, ReadError> {
    let track = init
        .track(track_id)
        .ok_or(ReadError::UnknownTrack(track_id))?;
    let mut count = 0;
    let mut next_decode_time = 0u64;
    for b in Boxes::new(data, 0) {
        let b = b?;
        if &b.kind != b"moof" {
            continue;
        }
        // First pass: check everything and count, so a damaged moof reports nothing.
        moof(
            data,
            &b,
            init,
            track,
            &mut next_decode_time.clone(),
            &mut |_| {},
        )?;
        moof(data, &b, init, track, &mut next_decode_time, &mut |s| {
            count += 1;
            on_sample(s);
        })?;
    }
    Ok(count)
}

/// `tfhd` fields (ISO/IEC 14496-12 8.8.7), flags spelled out.
const TFHD_BASE_DATA_OFFSET: u32 = 0x01;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const TFHD_DEFAULT_DURATION: u32 = 0x08;
const TFHD_DEFAULT_SIZE: u32 = 0x10;
const TFHD_DEFAULT_FLAGS: u32 = 0x20;
const TFHD_DURATION_IS_EMPTY: u32 = 0x01_0000;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;
/// `trun` fields (8.8.8).
const TRUN_DATA_OFFSET: u32 = 0x01;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x04;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x800;

/// The `tfhd` of a `traf`.
struct Tfhd {
    track_id: u32,
    flags: u32,
    base_data_offset: Option<u64>,
    duration: Option<u32>,
    size: Option<u32>,
    sample_flags: Option<u32>,
}

fn tfhd(b: &BoxRef<'_>) -> Result<Tfhd, ReadError> {
    let (_, flags, mut r) = b.full_reader_flags("tfhd")?;
    let track_id = r.u32()?;
    let base_data_offset = (flags & TFHD_BASE_DATA_OFFSET != 0)
        .then(|| r.u64())
        .transpose()?;
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
        r.skip(4)?;
    }
    let mut opt = |bit: u32| (flags & bit != 0).then(|| r.u32()).transpose();
    Ok(Tfhd {
        track_id,
        flags,
        base_data_offset,
        duration: opt(TFHD_DEFAULT_DURATION)?,
        size: opt(TFHD_DEFAULT_SIZE)?,
        sample_flags: opt(TFHD_DEFAULT_FLAGS)?,
    })
}

/// Walks one `moof`'s `traf`s, reporting `track`'s samples.
fn moof<'a>(
    data: &'a [u8],
    moof: &BoxRef<'a>,
    init: &InitInfo,
    track: &TrackInfo,
    next_decode_time: &mut u64,
    on_sample: &mut dyn FnMut(SampleInfo<'a>),
) -> Result<(), ReadError> {
    // Where the previous traf's data ended (8.8.7.1), for a traf with neither base offset
    // (the moof's start for the first); an error if another track's sizes were not known.
    let mut previous_end: Result<u64, ReadError> = Ok(moof.start as u64);
    for t in moof.children() {
        let t = t?;
        if &t.kind != b"traf" {
            continue;
        }
        let mut header = None;
        let mut tfdt = None;
        for c in t.children() {
            let c = c?;
            match &c.kind {
                b"tfhd" if header.is_none() => header = Some(tfhd(&c)?),
                b"tfdt" if tfdt.is_none() => {
                    let (version, mut r) = c.full_reader("tfdt")?;
                    tfdt = Some(if version == 1 {
                        r.u64()?
                    } else {
                        u64::from(r.u32()?)
                    });
                }
                _ => {}
            }
        }
        let header = header.ok_or(ReadError::Missing("tfhd"))?;
        let base = match header.base_data_offset {
            Some(offset) => offset,
            None if header.flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 => moof.start as u64,
            None => previous_end?,
        };
        if header.flags & TFHD_DURATION_IS_EMPTY != 0 {
            previous_end = Ok(base);
            continue;
        }
        let ours = header.track_id == track.track_id;
        let trex = init.track(header.track_id).and_then(|t| t.trex);
        let defaults = Defaults {
            track_id: header.track_id,
            duration: header.duration.or(trex.map(|d| d.sample_duration)),
            size: header.size.or(trex.map(|d| d.sample_size)),
            flags: header
                .sample_flags
                .or(trex.map(|d| d.sample_flags))
                .unwrap_or(0),
        };
        let mut decode_time = match tfdt {
            Some(t) => t,
            None => *next_decode_time,
        };
        let end = truns(
            data,
            &t,
            base,
            &defaults,
            ours.then_some(&mut decode_time),
            on_sample,
        );
        if ours {
            *next_decode_time = decode_time;
            previous_end = Ok(end?);
        } else {
            // Another track whose sizes we cannot know (a track the init segment does not
            // list) matters only if a later traf's data follows its data; damage is an error.
            previous_end = match end {
                Err(e) if !matches!(e, ReadError::NoDefault { .. }) => return Err(e),
                end => end,
            };
        }
    }
    Ok(())
}

/// The defaults a `traf`'s samples fall back on (`tfhd`, then `trex`).
struct Defaults {
    track_id: u32,
    duration: Option<u32>,
    size: Option<u32>,
    flags: u32,
}

/// Reads the `trun`s of one `traf` whose data starts at `base`; when `decode_time` is given
/// (the asked track), reports each sample and advances it. Returns where the data ended.
fn truns<'a>(
    data: &'a [u8],
    traf: &BoxRef<'a>,
    base: u64,
    defaults: &Defaults,
    mut decode_time: Option<&mut u64>,
    on_sample: &mut dyn FnMut(SampleInfo<'a>),
) -> Result<u64, ReadError> {
    let no_default = |what| ReadError::NoDefault {
        track: defaults.track_id,
        what,
    };
    // Where the next trun without a data offset starts (8.8.8.3).
    let mut run_end = i128::from(base);
    for c in traf.children() {
        let c = c?;
        if &c.kind != b"trun" {
            continue;
        }
        let (version, flags, mut r) = c.full_reader_flags("trun")?;
        let count = r.u32()?;
        let mut pos = if flags & TRUN_DATA_OFFSET != 0 {
            i128::from(base) + i128::from(r.i32()?)
        } else {
            run_end
        };
        let first_flags = (flags & TRUN_FIRST_SAMPLE_FLAGS != 0)
            .then(|| r.u32())
            .transpose()?;
        let entry_len = 4 * [
            TRUN_DURATION,
            TRUN_SIZE,
            TRUN_FLAGS,
            TRUN_COMPOSITION_OFFSET,
        ]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count() as u64;
        let needed = u64::from(count) * entry_len;
        if needed > r.remaining() as u64 {
            return Err(ReadError::Truncated {
                what: "trun samples",
                at: r.at(),
                needed,
                had: r.remaining(),
            });
        }
        // Without per-sample fields nothing above bounds the count: a sample takes at least
        // a byte (of the trun or of media data) in anything real.
        if entry_len == 0 && count as usize > data.len() {
            return Err(ReadError::Invalid {
                what: "trun",
                at: c.start,
                reason: "more samples than the buffer has bytes",
            });
        }
        let reporting = decode_time.is_some();
        let duration_default = match defaults.duration {
            Some(d) => Some(d),
            // Only the asked track's durations are used.
            None if !reporting => Some(0),
            None => None,
        };
        for i in 0..count {
            let duration = if flags & TRUN_DURATION != 0 {
                r.u32()?
            } else {
                duration_default.ok_or_else(|| no_default("duration"))?
            };
            let size = if flags & TRUN_SIZE != 0 {
                r.u32()?
            } else {
                defaults.size.ok_or_else(|| no_default("size"))?
            };
            let sample_flags = if flags & TRUN_FLAGS != 0 {
                r.u32()?
            } else {
                match first_flags {
                    Some(f) if i == 0 => f,
                    _ => defaults.flags,
                }
            };
            let composition_offset = if flags & TRUN_COMPOSITION_OFFSET != 0 {
                let raw = r.u32()?;
                if version == 0 {
                    i64::from(raw)
                } else {
                    i64::from(raw as i32)
                }
            } else {
                0
            };
            let end = pos + i128::from(size);
            if let Some(time) = decode_time.as_deref_mut() {
                if pos < 0 || end > data.len() as i128 {
                    return Err(ReadError::SampleOutside {
                        track: defaults.track_id,
                        offset: pos,
                        size,
                        len: data.len(),
                    });
                }
                on_sample(SampleInfo {
                    decode_time: *time,
                    composition_offset,
                    duration,
                    is_sync: sample_flags & SAMPLE_IS_NON_SYNC == 0,
                    flags: sample_flags,
                    data: &data[pos as usize..end as usize],
                });
                *time = time.wrapping_add(u64::from(duration));
            }
            pos = end;
        }
        run_end = pos;
    }
    u64::try_from(run_end).map_err(|_| ReadError::Invalid {
        what: "trun",
        at: traf.start,
        reason: "data offset before the start of the buffer",
    })
}

/// One box: its type, where it starts in the whole buffer, and its payload.
struct BoxRef<'a> {
    kind: [u8; 4],
    /// Offset of the box's first byte in the buffer the walk started from.
    start: usize,
    /// Offset of the payload's first byte in that buffer.
    payload_start: usize,
    payload: &'a [u8],
}

impl<'a> BoxRef<'a> {
    fn children(&self) -> Boxes<'a> {
        Boxes::new(self.payload, self.payload_start)
    }

    fn invalid(&self, what: &'static str, reason: &'static str) -> ReadError {
        ReadError::Invalid {
            what,
            at: self.start,
            reason,
        }
    }

    /// A reader of a FullBox's payload after version and flags, and its version.
    fn full_reader(&self, what: &'static str) -> Result<(u8, Reader<'a>), ReadError> {
        let (version, _, r) = self.full_reader_flags(what)?;
        Ok((version, r))
    }

    fn full_reader_flags(&self, what: &'static str) -> Result<(u8, u32, Reader<'a>), ReadError> {
        let mut r = Reader {
            what,
            data: self.payload,
            pos: 0,
            base: self.payload_start,
        };
        let vf = r.u32()?;
        Ok(((vf >> 24) as u8, vf & 0x00ff_ffff, r))
    }
}

/// The boxes one after another in `data` (ISO/IEC 14496-12 4.2).
struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of `data` in the whole buffer.
    base: usize,
    failed: bool,
}

impl<'a> Boxes<'a> {
    fn new(data: &'a [u8], base: usize) -> Boxes<'a> {
        Boxes {
            data,
            pos: 0,
            base,
            failed: false,
        }
    }

    fn next_box(&mut self) -> Result<BoxRef<'a>, ReadError> {
        let rest = &self.data[self.pos..];
        let at = self.base + self.pos;
        let truncated = |needed: u64| ReadError::Truncated {
            what: "box header",
            at,
            needed,
            had: rest.len(),
        };
        if rest.len() < 8 {
            return Err(truncated(8));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let mut header = 8usize;
        let size = match size32 {
            0 => rest.len() as u64,
            1 => {
                if rest.len() < 16 {
                    return Err(truncated(16));
                }
                header = 16;
                u64::from_be_bytes(rest[8..16].try_into().unwrap_or([0; 8]))
            }
            s => u64::from(s),
        };
        if &kind == b"uuid" {
            header += 16;
        }
        if size < header as u64 {
            return Err(ReadError::Invalid {
                what: "box header",
                at,
                reason: "box size smaller than its header",
            });
        }
        if size > rest.len() as u64 {
            return Err(ReadError::Truncated {
                what: "box",
                at,
                needed: size,
                had: rest.len(),
            });
        }
        let size = size as usize;
        self.pos += size;
        Ok(BoxRef {
            kind,
            start: at,
            payload_start: at + header,
            payload: &rest[header..size],
        })
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<BoxRef<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let b = self.next_box();
        self.failed = b.is_err();
        Some(b)
    }
}

/// Big-endian fields of one box's payload, bounds-checked.
struct Reader<'a> {
    what: &'static str,
    data: &'a [u8],
    pos: usize,
    /// Offset of `data` in the whole buffer, for errors.
    base: usize,
}

impl Reader<'_> {
    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        match self.data.get(self.pos..self.pos + N) {
            Some(b) => {
                self.pos += N;
                let mut out = [0; N];
                out.copy_from_slice(b);
                Ok(out)
            }
            None => Err(ReadError::Truncated {
                what: self.what,
                at: self.at(),
                needed: N as u64,
                had: self.remaining(),
            }),
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), ReadError> {
        if self.remaining() < n {
            return Err(ReadError::Truncated {
                what: self.what,
                at: self.at(),
                needed: n as u64,
                had: self.remaining(),
            });
        }
        self.pos += n;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, ReadError> {
        self.take().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, ReadError> {
        self.take().map(i32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, ReadError> {
        self.take().map(u64::from_be_bytes)
    }

    fn fourcc(&mut self) -> Result<[u8; 4], ReadError> {
        self.take()
    }
}

#[cfg(test)]
mod tests;
