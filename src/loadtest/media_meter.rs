//! Meters the video of the media HLS and MSE players receive, as frames for the session's
//! [`FrameMeter`] (decode time, keyframe, probe stamp), without decoding or copying:
//!
//! - fMP4 (CMAF, [`Fmp4Video`]): init segments give the video track and its timescale
//!   (ISO/IEC 14496-12 `moov`), fragments (`moof` + `mdat`) its samples
//!   (`switchyard_fmp4::reader`); a sample's sync flag marks a keyframe;
//! - MPEG-TS ([`TsVideo`], HLS from nginx-rtmp and most servers): the video PES packets of each
//!   segment (`mpegts.rs`), their DTS kept on one timeline across segments.

use std::time::{Duration, Instant};

use switchyard_fmp4::reader::{for_each_sample, InitInfo};
use switchyard_media::probe_stamp;

use super::mpegts::{read_segment, unwrap_pts};
use super::probe::{FrameMeter, SeenFrame};

/// The video track of the last init segment.
#[derive(Default)]
pub(super) struct Fmp4Video {
    init: Option<(InitInfo, u32, u32)>,
}

impl Fmp4Video {
    /// Reads one received body or message: an init segment (it replaces the previous one) or
    /// fragments whose video samples go to `meter`, all arrived `now`.
    ///
    /// # Errors
    ///
    /// Unreadable media, in words (the caller counts it; the session goes on).
    pub(super) fn received(
        &mut self,
        data: &[u8],
        meter: &mut FrameMeter,
        now: Instant,
    ) -> Result<(), String> {
        if is_init(data) {
            let init = InitInfo::parse(data).map_err(|e| format!("init segment: {e}"))?;
            let video = init.video().map(|t| (t.track_id, t.timescale.max(1)));
            self.init = video.map(|(id, timescale)| (init, id, timescale));
            return Ok(());
        }
        let Some((init, track_id, timescale)) = &self.init else {
            return Err("media before an init segment with a video track".to_string());
        };
        for_each_sample(data, init, *track_id, |sample| {
            meter.frame(SeenFrame {
                arrived: now,
                media_time: Some(Duration::from_secs_f64(
                    sample.decode_time as f64 / f64::from(*timescale),
                )),
                keyframe: sample.is_sync,
                stamp: probe_stamp::read_access_unit(sample.data),
            });
        })
        .map(|_| ())
        .map_err(|e| format!("fragment: {e}"))
    }
}

/// An init segment starts with `ftyp` (or `moov`).
fn is_init(data: &[u8]) -> bool {
    matches!(data.get(4..8), Some(b"ftyp" | b"moov"))
}

/// The 90 kHz timeline of the MPEG-TS segments read so far.
#[derive(Default)]
pub(super) struct TsVideo {
    last_dts: Option<u64>,
}

impl TsVideo {
    /// Whether `data` looks like MPEG-TS (a sync byte first).
    pub(super) fn is_ts(data: &[u8]) -> bool {
        data.first() == Some(&0x47)
    }

    /// Reads the video access units of one segment into `meter`, all arrived `now`.
    ///
    /// # Errors
    ///
    /// An unreadable segment, in words (the caller counts it; the session goes on).
    pub(super) fn received(
        &mut self,
        data: &[u8],
        meter: &mut FrameMeter,
        now: Instant,
    ) -> Result<(), String> {
        let last_dts = &mut self.last_dts;
        read_segment(data, |frame| {
            let media_time = frame.dts_90k.map(|dts| {
                let dts = unwrap_pts(dts, last_dts.unwrap_or(dts));
                *last_dts = Some(dts);
                Duration::from_micros(dts * 100 / 9)
            });
            meter.frame(SeenFrame {
                arrived: now,
                media_time,
                keyframe: frame.keyframe,
                stamp: frame.stamp,
            });
        })
        .map(|_| ())
        .map_err(|e| format!("MPEG-TS segment: {e}"))
    }
}
