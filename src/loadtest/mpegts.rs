//! A pure MPEG-TS reader (ISO/IEC 13818-1) for the HLS client: it meters the video of a
//! whole segment without decoding it. [`read_segment`] follows PAT -> PMT -> the first H.264
//! (stream_type 0x1B) or H.265 (0x24) stream, joins that stream's PES packets across TS
//! packets and hands each access unit (one PES packet, as every HLS muxer writes them) to a
//! callback as a [`TsFrame`]: PTS and DTS (90 kHz, 33-bit, unwrapped within the segment), whether
//! it holds an IDR / IRAP picture, and the probe stamp it carries
//! (`switchyard_media::probe_stamp`). Damage is counted in [`TsStats`], never fatal: garbage
//! between packets is skipped until two sync bytes 188 bytes apart are found again, and a
//! continuity-counter gap drops the PES being joined. Only a segment without PAT, PMT or video
//! is an error ([`TsError`]).

use switchyard_media::annexb_nal_units;
use switchyard_media::probe_stamp::{self, ProbeStamp};

/// Size of a TS packet.
const PACKET: usize = 188;
/// First byte of every TS packet.
const SYNC: u8 = 0x47;
/// PID of the program association table.
const PAT_PID: u16 = 0;
/// table_id of a PAT section and of a PMT section.
const PAT_TABLE: u8 = 0x00;
const PMT_TABLE: u8 = 0x02;
/// stream_type of H.264 and of H.265 video (2.4.4.9, Table 2-34).
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_H265: u8 = 0x24;
/// PTS and DTS count modulo 2^33.
const WRAP: u64 = 1 << 33;

/// The video codec of the stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TsVideoCodec {
    H264,
    H265,
}

/// One video access unit found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TsFrame {
    /// Presentation time, 90 kHz, unwrapped within the segment; `None` if the PES had none.
    pub pts_90k: Option<u64>,
    /// Decoding time, 90 kHz: the PES's DTS, or its PTS when it has no DTS.
    pub dts_90k: Option<u64>,
    /// The access unit holds an IDR picture (H.264 nal_unit_type 5) or an IRAP picture
    /// (H.265 nal_unit_type 16..=21).
    pub keyframe: bool,
    /// The first probe stamp among its NAL units.
    pub stamp: Option<ProbeStamp>,
    /// Bytes of elementary stream (Annex B) in the access unit.
    pub size: usize,
}

/// What reading a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TsStats {
    pub codec: TsVideoCodec,
    /// PID of the video stream read.
    pub video_pid: u16,
    /// TS packets found (all PIDs).
    pub packets: u64,
    /// Bytes skipped between packets to find the sync byte again, and a truncated last packet.
    pub garbage_bytes: u64,
    /// Access units handed to the callback.
    pub frames: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Continuity-counter gaps on the video PID.
    pub continuity_errors: u64,
    /// Video PES packets without a PTS (handed on, untimed).
    pub pes_without_pts: u64,
    /// Video PES packets lost: cut by a continuity gap, malformed, or cut off by the end of
    /// the data.
    pub dropped_pes: u64,
}

/// Why a segment could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TsError {
    #[error("not MPEG-TS: no 188-byte packets starting with the sync byte 0x47")]
    NotTransportStream,
    #[error(
        "no PAT (program association table, PID 0) in the MPEG-TS segment: \
         every segment must carry its PAT and PMT"
    )]
    MissingPat,
    #[error(
        "no PMT (program map table) on PID {pid}, where the PAT puts it: \
         every segment must carry its PAT and PMT"
    )]
    MissingPmt { pid: u16 },
    #[error(
        "the PMT lists no H.264 (stream_type 0x1B) or H.265 (0x24) video; its stream types: \
         {stream_types:02x?}"
    )]
    NoVideo { stream_types: Vec<u8> },
}

/// Reads every complete video PES packet of `data`, a whole segment of 188-byte TS packets,
/// and calls `on_frame` for each, in stream (decoding) order. A PES packet whose
/// PES_packet_length is 0 ends at the next payload_unit_start_indicator or at the end of the
/// data; one cut off by a truncated last TS packet is dropped.
pub(super) fn read_segment(
    data: &[u8],
    mut on_frame: impl FnMut(TsFrame),
) -> Result<TsStats, TsError> {
    let video = find_video(data)?;
    let mut reader = VideoReader {
        stats: TsStats {
            codec: video.codec,
            video_pid: video.pid,
            packets: 0,
            garbage_bytes: 0,
            frames: 0,
            keyframes: 0,
            continuity_errors: 0,
            pes_without_pts: 0,
            dropped_pes: 0,
        },
        pes: Vec::new(),
        joining: None,
        last_cc: None,
        reference: None,
    };
    let mut packets = Packets::new(data);
    for packet in packets.by_ref() {
        reader.stats.packets += 1;
        if let Some(packet) = parse_packet(packet) {
            if packet.pid == video.pid {
                reader.packet(&packet, &mut on_frame);
            }
        }
    }
    reader.stats.garbage_bytes = packets.garbage;
    // The data ends the last PES packet, unless a truncated TS packet cut it.
    if packets.truncated {
        if reader.joining.take().is_some() {
            reader.stats.dropped_pes += 1;
        }
    } else {
        reader.finish(&mut on_frame);
    }
    Ok(reader.stats)
}

/// The 33-bit timestamp `raw` (taken modulo 2^33) unwrapped to the value nearest to
/// `reference`, an unwrapped timestamp: continues a timeline across wraps and segments.
pub(super) fn unwrap_pts(raw: u64, reference: u64) -> u64 {
    let raw = raw % WRAP;
    let value = (reference - reference % WRAP).saturating_add(raw);
    if value > reference && value - reference > WRAP / 2 && value >= WRAP {
        value - WRAP
    } else if value < reference && reference - value > WRAP / 2 {
        value.saturating_add(WRAP)
    } else {
        value
    }
}

/// The 188-byte packets of a buffer. Out of sync (at the start, and after a packet that
/// is not followed by a sync byte), a packet is accepted only where another sync byte
/// follows it (or the data ends with it).
struct Packets<'a> {
    data: &'a [u8],
    pos: usize,
    in_sync: bool,
    garbage: u64,
    /// The data ended with less than a packet.
    truncated: bool,
}

impl<'a> Packets<'a> {
    fn new(data: &'a [u8]) -> Self {
        Packets {
            data,
            pos: 0,
            in_sync: false,
            garbage: 0,
            truncated: false,
        }
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let rest = self.data.get(self.pos..)?;
            if rest.len() < PACKET {
                if !rest.is_empty() {
                    self.garbage += rest.len() as u64;
                    self.truncated = true;
                    self.pos = self.data.len();
                }
                return None;
            }
            if rest[0] == SYNC && (self.in_sync || rest.len() == PACKET || rest[PACKET] == SYNC) {
                self.in_sync = true;
                self.pos += PACKET;
                return Some(&rest[..PACKET]);
            }
            self.in_sync = false;
            let skip = rest[1..]
                .iter()
                .position(|&b| b == SYNC)
                .map_or(rest.len(), |at| at + 1);
            self.garbage += skip as u64;
            self.pos += skip;
        }
    }
}

/// The header fields of one TS packet that the reader uses.
struct Packet<'a> {
    pid: u16,
    payload_unit_start: bool,
    continuity_counter: u8,
    /// adaptation_field_control says the packet has a payload (the counter counts it).
    has_payload: bool,
    /// The adaptation field's discontinuity_indicator.
    discontinuity: bool,
    payload: &'a [u8],
}

/// `None` for packets to ignore: transport_error_indicator set, reserved
/// adaptation_field_control, an adaptation field longer than the packet.
fn parse_packet(packet: &[u8]) -> Option<Packet<'_>> {
    let header = packet.get(..4)?;
    if header[1] & 0x80 != 0 {
        return None;
    }
    let control = (header[3] >> 4) & 0x3;
    let has_payload = control & 0x1 != 0;
    let mut discontinuity = false;
    let mut start = 4;
    if control & 0x2 != 0 {
        let length = usize::from(*packet.get(4)?);
        if 5 + length > packet.len() || (!has_payload && 5 + length != packet.len()) {
            return None;
        }
        if length > 0 {
            discontinuity = packet[5] & 0x80 != 0;
        }
        start = 5 + length;
    } else if control == 0 {
        return None;
    }
    Some(Packet {
        pid: (u16::from(header[1] & 0x1f) << 8) | u16::from(header[2]),
        payload_unit_start: header[1] & 0x40 != 0,
        continuity_counter: header[3] & 0xf,
        has_payload,
        discontinuity,
        payload: if has_payload { &packet[start..] } else { &[] },
    })
}

/// The video stream the PMT names.
struct Video {
    pid: u16,
    codec: TsVideoCodec,
}

/// PAT -> PMT -> the first H.264 or H.265 stream.
fn find_video(data: &[u8]) -> Result<Video, TsError> {
    if Packets::new(data).next().is_none() {
        return Err(TsError::NotTransportStream);
    }
    let pat = find_section(data, PAT_PID, PAT_TABLE).ok_or(TsError::MissingPat)?;
    // Program entries (program_number, PID) up to the CRC; program 0 is the network PID.
    let pmt_pid = pat
        .get(8..pat.len() - 4)
        .unwrap_or_default()
        .chunks_exact(4)
        .find(|entry| entry[0] != 0 || entry[1] != 0)
        .map(|entry| (u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]))
        .ok_or(TsError::MissingPat)?;
    let pmt = find_section(data, pmt_pid, PMT_TABLE).ok_or(TsError::MissingPmt { pid: pmt_pid })?;
    let end = pmt.len() - 4;
    let program_info_length = usize::from(pmt.get(10).map_or(0, |b| b & 0xf)) << 8
        | usize::from(pmt.get(11).copied().unwrap_or(0));
    let mut at = 12 + program_info_length;
    let mut stream_types = Vec::new();
    while let Some(entry) = pmt.get(at..(at + 5).min(end)).filter(|e| e.len() == 5) {
        let pid = (u16::from(entry[1] & 0x1f) << 8) | u16::from(entry[2]);
        let codec = match entry[0] {
            STREAM_TYPE_H264 => Some(TsVideoCodec::H264),
            STREAM_TYPE_H265 => Some(TsVideoCodec::H265),
            _ => None,
        };
        if let Some(codec) = codec {
            return Ok(Video { pid, codec });
        }
        stream_types.push(entry[0]);
        at += 5 + (usize::from(entry[3] & 0xf) << 8 | usize::from(entry[4]));
    }
    Err(TsError::NoVideo { stream_types })
}

/// The first complete section of table `table_id` on `pid` whose CRC is right and which
/// applies now (current_next_indicator), joined across TS packets. The section is at least
/// 12 bytes long (a long-form header and its CRC).
fn find_section(data: &[u8], pid: u16, table_id: u8) -> Option<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut started = false;
    for packet in Packets::new(data).filter_map(parse_packet) {
        if packet.pid != pid || packet.payload.is_empty() {
            continue;
        }
        let mut payload = packet.payload;
        if packet.payload_unit_start {
            let pointer = usize::from(payload[0]);
            let Some(tail) = payload.get(1 + pointer..) else {
                started = false;
                buf.clear();
                continue;
            };
            // The pointer field's bytes end the section in progress.
            if started {
                buf.extend_from_slice(&payload[1..1 + pointer]);
                if let Some(section) = take_section(&mut buf, table_id) {
                    return Some(section);
                }
            }
            buf.clear();
            started = true;
            payload = tail;
        } else if !started {
            continue;
        }
        buf.extend_from_slice(payload);
        if let Some(section) = take_section(&mut buf, table_id) {
            return Some(section);
        }
    }
    None
}

/// Takes the complete sections off the front of `buf`, returning the first one wanted.
fn take_section(buf: &mut Vec<u8>, table_id: u8) -> Option<Vec<u8>> {
    while buf.len() >= 3 && buf[0] != 0xff {
        let total = 3 + (usize::from(buf[1] & 0xf) << 8 | usize::from(buf[2]));
        if buf.len() < total {
            return None;
        }
        let section = &buf[..total];
        let wanted = section[0] == table_id
            && section[1] & 0x80 != 0
            && total >= 12
            && section[5] & 0x1 != 0
            && crc32_mpeg2(section) == 0;
        if wanted {
            return Some(section.to_vec());
        }
        buf.drain(..total);
    }
    // 0xff: stuffing up to the end of the packet.
    if buf.first() == Some(&0xff) {
        buf.clear();
    }
    None
}

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, no reflection); 0 over a section with its CRC.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Joins the video PID's PES packets and reads them.
struct VideoReader {
    stats: TsStats,
    /// The PES packet being joined (reused).
    pes: Vec<u8>,
    /// A PES packet is being joined; `Some(true)` once a continuity gap broke it.
    joining: Option<bool>,
    last_cc: Option<u8>,
    /// The last DTS read, unwrapped: the reference of the next.
    reference: Option<u64>,
}

impl VideoReader {
    fn packet(&mut self, packet: &Packet<'_>, on_frame: &mut impl FnMut(TsFrame)) {
        if !packet.has_payload {
            if packet.discontinuity {
                self.last_cc = None;
            }
            return;
        }
        let cc = packet.continuity_counter;
        if let (Some(last), false) = (self.last_cc, packet.discontinuity) {
            if cc == last {
                return; // A duplicate packet (2.4.3.3): sent once more, read once.
            }
            if cc != (last + 1) & 0xf {
                self.stats.continuity_errors += 1;
                if let Some(broken) = self.joining.as_mut() {
                    *broken = true;
                }
            }
        }
        self.last_cc = Some(cc);
        if packet.payload_unit_start {
            self.finish(on_frame);
            self.pes.clear();
            self.joining = Some(false);
        }
        if self.joining != Some(false) {
            return; // No PES started in this segment yet, or a broken one.
        }
        self.pes.extend_from_slice(packet.payload);
        // A PES packet of known length ends as soon as it is complete.
        if let Some(length) = self.pes_length() {
            if self.pes.len() >= length {
                self.pes.truncate(length);
                self.finish(on_frame);
            }
        }
    }

    /// The PES packet's total length, when PES_packet_length gives it.
    fn pes_length(&self) -> Option<usize> {
        let length = usize::from(u16::from_be_bytes([*self.pes.get(4)?, *self.pes.get(5)?]));
        (length > 0).then_some(6 + length)
    }

    /// Ends the PES packet being joined: reads it, or counts it dropped.
    fn finish(&mut self, on_frame: &mut impl FnMut(TsFrame)) {
        let read = match self.joining.take() {
            None => return,
            Some(broken) => !broken && self.read_pes(on_frame),
        };
        if !read {
            self.stats.dropped_pes += 1;
        }
    }

    /// Reads one joined PES packet; false if it is malformed or incomplete.
    fn read_pes(&mut self, on_frame: &mut impl FnMut(TsFrame)) -> bool {
        let pes = &self.pes;
        if pes.len() < 9 || pes[..3] != [0, 0, 1] {
            return false;
        }
        if self.pes_length().is_some_and(|length| pes.len() < length) {
            return false;
        }
        // Every video stream_id (0xE0..=0xEF) has the optional PES header.
        let flags = pes[7] >> 6;
        let header_length = usize::from(pes[8]);
        let Some(es) = pes.get(9 + header_length..) else {
            return false;
        };
        let header = &pes[9..9 + header_length];
        let pts = (flags & 0x2 != 0).then(|| read_timestamp(header)).flatten();
        let dts = if flags == 0x3 {
            header.get(5..).and_then(read_timestamp)
        } else {
            pts
        };
        let (pts_90k, dts_90k) = match (pts, dts) {
            (Some(pts), Some(dts)) => {
                let dts = unwrap_pts(dts, self.reference.unwrap_or(dts));
                self.reference = Some(dts);
                (Some(unwrap_pts(pts, dts)), Some(dts))
            }
            _ => {
                self.stats.pes_without_pts += 1;
                (None, None)
            }
        };
        let mut frame = TsFrame {
            pts_90k,
            dts_90k,
            keyframe: false,
            stamp: None,
            size: es.len(),
        };
        for nal in annexb_nal_units(es) {
            let Some(&header) = nal.first() else { continue };
            frame.keyframe |= match self.stats.codec {
                TsVideoCodec::H264 => header & 0x1f == 5,
                TsVideoCodec::H265 => (16..=21).contains(&((header >> 1) & 0x3f)),
            };
            if frame.stamp.is_none() {
                frame.stamp = probe_stamp::read_nal(nal);
            }
        }
        self.stats.frames += 1;
        self.stats.keyframes += u64::from(frame.keyframe);
        on_frame(frame);
        true
    }
}

/// A 5-byte PTS or DTS field (2.4.3.7): 33 bits among marker bits.
fn read_timestamp(field: &[u8]) -> Option<u64> {
    let b = field.get(..5)?;
    Some(
        u64::from((b[0] >> 1) & 0x7) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// fixtures/nginx-rtmp-h264-stamped.ts: 25 frames, a stamp in each (see fixtures/README.md).
    fn fixture() -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/nginx-rtmp-h264-stamped.ts",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn read(data: &[u8]) -> Result<(TsStats, Vec<TsFrame>), TsError> {
        let mut frames = Vec::new();
        let stats = read_segment(data, |frame| frames.push(frame))?;
        assert_eq!(stats.frames, frames.len() as u64);
        assert_eq!(
            stats.keyframes,
            frames.iter().filter(|f| f.keyframe).count() as u64
        );
        Ok((stats, frames))
    }

    /// Each frame's DTS is the previous one's plus `step`.
    fn assert_dts_step(frames: &[TsFrame], step: u64) {
        for pair in frames.windows(2) {
            assert_eq!(pair[1].dts_90k.unwrap(), pair[0].dts_90k.unwrap() + step);
        }
    }

    /// Sorted PTS go up by `step`.
    fn assert_pts_step(frames: &[TsFrame], step: u64) {
        let mut pts: Vec<u64> = frames.iter().map(|f| f.pts_90k.unwrap()).collect();
        pts.sort_unstable();
        for pair in pts.windows(2) {
            assert_eq!(pair[1], pair[0] + step);
        }
    }

    #[test]
    fn nginx_rtmp_fragment_gives_frames_keyframe_and_stamps() {
        let (stats, frames) = read(&fixture()).unwrap();
        assert_eq!(stats.codec, TsVideoCodec::H264);
        assert_eq!(stats.video_pid, 0x100);
        assert_eq!(stats.frames, 25);
        assert_eq!(stats.keyframes, 1);
        assert!(frames[0].keyframe);
        assert_eq!(
            (
                stats.garbage_bytes,
                stats.continuity_errors,
                stats.pes_without_pts,
                stats.dropped_pes
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(frames[0].pts_90k, Some(153_000));
        assert_dts_step(&frames, 3600);
        assert_pts_step(&frames, 3600);
        // Frame n of the stamped stream says 1_700_000_000 s + n * 40 ms, from rtmp; this
        // fragment starts at frame 25.
        for (n, frame) in frames.iter().enumerate() {
            let stamp = frame.stamp.expect("every frame is stamped");
            assert_eq!(
                stamp.sent_unix_us,
                1_700_000_000_000_000 + (25 + n as u64) * 40_000
            );
            assert_eq!(stamp.source_name(), "rtmp");
        }
        // The stamps are the bytes ProbeStamp writes.
        let stamp = frames[0].stamp.unwrap();
        let nal = stamp.h264_nal();
        let file = fixture();
        assert!(file.windows(nal.len()).any(|w| w == nal.as_slice()));
    }

    /// Whether ffmpeg is here with `encoder`; says why a test is skipped when not.
    fn ffmpeg_with(encoder: &str) -> bool {
        let found = Command::new("ffmpeg")
            .args(["-hide_banner", "-encoders"])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(encoder));
        if !found {
            eprintln!("skipped: no ffmpeg with the {encoder} encoder on this machine");
        }
        found
    }

    /// 2 s of testsrc2 at 25 fps encoded with `codec` (arguments split at spaces) into an
    /// MPEG-TS file by ffmpeg.
    fn ffmpeg_segment(name: &str, codec: &str) -> Vec<u8> {
        let path = std::env::temp_dir().join(format!(
            "switchyard-mpegts-{}-{name}.ts",
            std::process::id()
        ));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x240:rate=25")
            .args(["-t", "2"])
            .args(codec.split(' '))
            .args(["-an", "-f", "mpegts"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg failed");
        let data = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        data
    }

    #[test]
    fn ffmpeg_h264_with_b_frames() {
        if !ffmpeg_with("libx264") {
            return;
        }
        let data = ffmpeg_segment(
            "h264",
            "-c:v libx264 -profile:v high -bf 2 -g 25 -keyint_min 25 -sc_threshold 0",
        );
        let (stats, frames) = read(&data).unwrap();
        assert_eq!(stats.codec, TsVideoCodec::H264);
        assert_eq!((stats.frames, stats.keyframes), (50, 2));
        assert!(frames[0].keyframe && frames[25].keyframe);
        assert_eq!(stats.continuity_errors + stats.dropped_pes, 0);
        assert_dts_step(&frames, 3600);
        assert_pts_step(&frames, 3600);
        // B-frames: presentation order differs from decoding order.
        assert!(frames.iter().any(|f| f.pts_90k != f.dts_90k));
        assert!(frames
            .iter()
            .all(|f| f.pts_90k >= f.dts_90k && f.stamp.is_none()));
    }

    #[test]
    fn ffmpeg_h265_cra_keyframes() {
        if !ffmpeg_with("libx265") {
            return;
        }
        let data = ffmpeg_segment(
            "h265",
            "-c:v libx265 -preset ultrafast -x265-params keyint=25:min-keyint=25:scenecut=0:log-level=error",
        );
        let (stats, frames) = read(&data).unwrap();
        assert_eq!(stats.codec, TsVideoCodec::H265);
        assert_eq!((stats.frames, stats.keyframes), (50, 2));
        assert!(frames[0].keyframe && frames[25].keyframe);
        assert_dts_step(&frames, 3600);
        assert_pts_step(&frames, 3600);
    }

    // A small muxer for hand-made streams.

    /// A PSI section's TS packet: `section` without its CRC, which is added.
    fn psi_packet(pid: u16, section: &[u8]) -> Vec<u8> {
        let mut packet = vec![SYNC, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
        packet.extend_from_slice(section);
        packet.extend_from_slice(&crc32_mpeg2(section).to_be_bytes());
        packet.resize(PACKET, 0xff);
        packet
    }

    /// A long-form section: table_id, section_length, id, version 0, current, section 0 of 0.
    fn section(table_id: u8, id: u16, body: &[u8]) -> Vec<u8> {
        let length = 5 + body.len() + 4;
        let mut section = vec![table_id, 0xb0 | (length >> 8) as u8, length as u8];
        section.extend_from_slice(&id.to_be_bytes());
        section.extend_from_slice(&[0xc1, 0, 0]);
        section.extend_from_slice(body);
        section
    }

    fn pat(pmt_pid: u16) -> Vec<u8> {
        psi_packet(
            0,
            &section(0, 1, &[0, 1, 0xe0 | (pmt_pid >> 8) as u8, pmt_pid as u8]),
        )
    }

    /// A PMT on PID 0x1000 listing `streams` (stream_type, PID).
    fn pmt(streams: &[(u8, u16)]) -> Vec<u8> {
        let mut body = vec![0xe1, 0x00, 0xf0, 0x00]; // PCR PID 0x100, no program info.
        for &(stream_type, pid) in streams {
            body.extend_from_slice(&[stream_type, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
        }
        psi_packet(0x1000, &section(2, 1, &body))
    }

    fn timestamp(prefix: u8, ts: u64) -> [u8; 5] {
        [
            prefix << 4 | ((ts >> 29) & 0xe) as u8 | 1,
            (ts >> 22) as u8,
            ((ts >> 14) & 0xfe) as u8 | 1,
            (ts >> 7) as u8,
            ((ts << 1) & 0xfe) as u8 | 1,
        ]
    }

    /// A video PES packet; PES_packet_length 0 unless `sized`.
    fn pes(pts: Option<u64>, dts: Option<u64>, es: &[u8], sized: bool) -> Vec<u8> {
        let mut header = Vec::new();
        let flags = match (pts, dts) {
            (Some(pts), Some(dts)) => {
                header.extend_from_slice(&timestamp(3, pts));
                header.extend_from_slice(&timestamp(1, dts));
                0xc0
            }
            (Some(pts), None) => {
                header.extend_from_slice(&timestamp(2, pts));
                0x80
            }
            _ => 0,
        };
        let length = if sized {
            3 + header.len() + es.len()
        } else {
            0
        };
        let mut pes = vec![
            0,
            0,
            1,
            0xe0,
            (length >> 8) as u8,
            length as u8,
            0x80,
            flags,
        ];
        pes.push(header.len() as u8);
        pes.extend_from_slice(&header);
        pes.extend_from_slice(es);
        pes
    }

    /// `pes` in TS packets on PID 0x100, stuffed with an adaptation field at the end.
    fn packetize(pes: &[u8], cc: &mut u8) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for (n, chunk) in pes.chunks(PACKET - 4).enumerate() {
            let start = if n == 0 { 0x40 } else { 0 };
            let mut packet = vec![SYNC, start | 0x01, 0x00, 0x10 | *cc];
            *cc = (*cc + 1) & 0xf;
            if chunk.len() < PACKET - 4 {
                packet[3] |= 0x20;
                let stuffing = PACKET - 4 - chunk.len() - 1;
                packet.push(stuffing as u8);
                if stuffing > 0 {
                    packet.push(0);
                    packet.resize(5 + stuffing, 0xff);
                }
            }
            packet.extend_from_slice(chunk);
            packets.push(packet);
        }
        packets
    }

    /// Annex B: an SPS, then an IDR or non-IDR slice of `len` bytes.
    fn h264_au(keyframe: bool, len: usize) -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1, 0x67, 0x42, 0, 0x1e, 0, 0, 1];
        au.push(if keyframe { 0x65 } else { 0x41 });
        au.resize(au.len() + len, 0x88);
        au
    }

    fn h264_stream(pes_packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut packets = vec![pat(0x1000), pmt(&[(0x0f, 0x101), (0x1b, 0x100)])];
        let mut cc = 0;
        for pes in pes_packets {
            packets.extend(packetize(pes, &mut cc));
        }
        packets
    }

    #[test]
    fn hand_made_stream_lengths_gaps_duplicates_garbage_and_wraps() {
        let big = h264_au(false, 1000);
        let pes_packets = vec![
            pes(
                Some(WRAP - 3600),
                Some(WRAP - 7200),
                &h264_au(true, 10),
                true,
            ),
            pes(Some(3600), None, &big, false), // wrapped: one frame later
            pes(None, None, &big, true),
            pes(Some(10_800), Some(7200), &big, false),
            pes(Some(14_400), Some(10_800), &big, true),
        ];
        let packets = h264_stream(&pes_packets);
        let (stats, frames) = read(&packets.concat()).unwrap();
        assert_eq!((stats.frames, stats.keyframes), (5, 1));
        assert_eq!(stats.pes_without_pts, 1);
        assert_eq!(frames[0].size, h264_au(true, 10).len());
        let times: Vec<_> = frames.iter().map(|f| (f.pts_90k, f.dts_90k)).collect();
        assert_eq!(
            times,
            [
                (Some(WRAP - 3600), Some(WRAP - 7200)),
                (Some(WRAP + 3600), Some(WRAP + 3600)),
                (None, None),
                (Some(WRAP + 10_800), Some(WRAP + 7200)),
                (Some(WRAP + 14_400), Some(WRAP + 10_800)),
            ]
        );

        // A lost packet in the second PES drops it; a duplicate is read once; garbage before
        // and inside the stream is skipped; the 5th PES, cut by truncation, is dropped.
        let mut damaged = Vec::new();
        damaged.extend_from_slice(&[SYNC, 1, 2, 3, 0x47, 0x47]);
        for (n, packet) in packets.iter().enumerate() {
            match n {
                4 => continue,
                6 => damaged.extend_from_slice(&[0x12; 50]),
                8 => damaged.extend_from_slice(packet),
                _ => {}
            }
            damaged.extend_from_slice(packet);
        }
        damaged.truncate(damaged.len() - 100);
        let (stats, frames) = read(&damaged).unwrap();
        assert_eq!(stats.continuity_errors, 1);
        assert_eq!(stats.dropped_pes, 2);
        assert_eq!(stats.garbage_bytes, 6 + 50 + (PACKET as u64 - 100));
        let dts: Vec<_> = frames.iter().map(|f| f.dts_90k).collect();
        assert_eq!(dts, [Some(WRAP - 7200), None, Some(WRAP + 7200)]);
    }

    #[test]
    fn h265_irap_pictures_are_keyframes() {
        let mut packets = vec![pat(0x1000), pmt(&[(0x24, 0x100)])];
        let mut cc = 0;
        // VPS, then a slice of each nal_unit_type 0..=31.
        for nal_type in 0..32u8 {
            let es = [0, 0, 1, 0x40, 1, 0xc, 0, 0, 1, nal_type << 1, 1, 0xaf];
            packets.extend(packetize(
                &pes(Some(u64::from(nal_type) * 3000), None, &es, false),
                &mut cc,
            ));
        }
        let (stats, frames) = read(&packets.concat()).unwrap();
        assert_eq!(stats.codec, TsVideoCodec::H265);
        let keyframes: Vec<_> = (0..32).filter(|&n| frames[n].keyframe).collect();
        assert_eq!(keyframes, (16..=21).collect::<Vec<_>>());
    }

    #[test]
    fn segments_without_pat_pmt_or_video_are_errors() {
        assert_eq!(read(&[]).unwrap_err(), TsError::NotTransportStream);
        assert_eq!(read(&[0x47; 100]).unwrap_err(), TsError::NotTransportStream);
        let data = fixture();
        // Every sync byte wrong.
        let mut wrong_sync = data.clone();
        for packet in wrong_sync.chunks_mut(PACKET) {
            packet[0] = 0x48;
        }
        assert_eq!(read(&wrong_sync).unwrap_err(), TsError::NotTransportStream);
        // The fixture without its PAT and PMT (its first two packets).
        assert_eq!(read(&data[2 * PACKET..]).unwrap_err(), TsError::MissingPat);
        assert_eq!(read(&data[PACKET..]).unwrap_err(), TsError::MissingPat);
        let no_pmt = [&data[..PACKET], &data[2 * PACKET..]].concat();
        assert_eq!(
            read(&no_pmt).unwrap_err(),
            TsError::MissingPmt { pid: 0x1001 }
        );
        // A PMT with audio only.
        let audio_only = [pat(0x1000), pmt(&[(0x0f, 0x101), (0x03, 0x102)])].concat();
        let err = read(&audio_only).unwrap_err();
        assert_eq!(
            err,
            TsError::NoVideo {
                stream_types: vec![0x0f, 0x03]
            }
        );
        assert!(err.to_string().contains("[0f, 03]"), "{err}");
        // A PAT with a wrong CRC is not one.
        let mut bad_crc = h264_stream(&[pes(Some(0), None, &h264_au(true, 10), false)]);
        bad_crc[0][10] ^= 1;
        assert_eq!(read(&bad_crc.concat()).unwrap_err(), TsError::MissingPat);
    }

    #[test]
    fn truncated_segments_give_their_complete_frames() {
        let data = fixture();
        let mut last = 0;
        for len in (0..=data.len()).step_by(61).chain([data.len()]) {
            let frames = match read(&data[..len]) {
                Ok((stats, _)) => stats.frames,
                Err(_) => 0,
            };
            assert!(frames >= last && frames <= 25, "{len}: {frames}");
            last = frames;
        }
        assert_eq!(last, 25);
    }

    #[test]
    fn random_damage_never_panics() {
        let original = fixture();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..3000 {
            let mut data = original.clone();
            for _ in 0..1 + random(8) {
                let at = random(data.len());
                match random(5) {
                    0 => data[at] = random(256) as u8,
                    1 => data[at] ^= 1 << random(8),
                    2 => {
                        let end = (at + random(400)).min(data.len());
                        data.drain(at..end);
                    }
                    3 => {
                        let garbage: Vec<u8> =
                            (0..random(300)).map(|_| random(256) as u8).collect();
                        data.splice(at..at, garbage);
                    }
                    _ => data[at] = SYNC,
                }
                if data.is_empty() {
                    break;
                }
            }
            if let Ok((stats, frames)) = read(&data) {
                assert!(stats.frames <= stats.packets);
                assert!(frames.iter().all(|f| f.size <= data.len()));
            }
        }
    }

    #[test]
    fn unwrapping_picks_the_nearest_value() {
        assert_eq!(unwrap_pts(100, 100), 100);
        assert_eq!(unwrap_pts(50, WRAP - 100), WRAP + 50);
        assert_eq!(unwrap_pts(WRAP - 100, WRAP + 50), WRAP - 100);
        assert_eq!(unwrap_pts(WRAP - 5, 10), WRAP - 5);
        assert_eq!(unwrap_pts(3 * WRAP + 7, 5 * WRAP + 1), 5 * WRAP + 7);
        assert_eq!(unwrap_pts(1, u64::MAX), u64::MAX);
    }
}
