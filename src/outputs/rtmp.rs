//! RTMP play output: bus frames -> FLV bodies -> RTMP chunks, shared by every player.
//!
//! Fan-out cost is what matters here (ARCHITECTURE.md, "Hot paths"). Every player gets the
//! same chunk size (`rtmp.chunk_size`, announced in the session's Set Chunk Size) and, in
//! practice, the same message stream id (1, from its first `createStream`), so each frame is
//! chunked once, by the first player that needs it, into one [`Bytes`] kept on the bus frame
//! ([`EncodedSlot::RtmpChunks`]). Per player, a frame costs a reference count; a player that
//! wakes for a frame sleeps for `rtmp.coalesce_ms` (one frame interval at 30 fps) and then
//! sends everything pending in one vectored write, so it wakes and writes about once per video
//! frame instead of once per audio and video message.
//!
//! Chunking follows the RTMP spec (Adobe, 2012) section 5.3.1: the first chunk of a message
//! has a type 0 header (absolute timestamp, so no state carries over between messages and the
//! bytes are valid for any player), continuation chunks have type 3 headers, and timestamps
//! of 0xFFFFFF or more use the extended timestamp field in every chunk of the message. Media
//! goes on chunk streams that rml_rtmp's own serializer (which sends the session's control
//! and command messages on chunk streams 2 to 6) never uses.

use crate::bus::{BusFrame, EncodedSlot, Reader, ReaderEvent, TrackSet, TryRecv};
use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_flv::{
    audio_frame_header, audio_sequence_header, carries_video, video_frame_header,
    video_sequence_header, vp8_sequence_header,
};
use switchyard_media::{rescale, CodecConfig, MediaKind};

pub const VIDEO_CSID: u8 = 7;
pub const AUDIO_CSID: u8 = 8;
pub const DATA_CSID: u8 = 9;
pub const MSG_AUDIO: u8 = 8;
pub const MSG_VIDEO: u8 = 9;
pub const MSG_DATA_AMF0: u8 = 18;
/// The message stream id every common player gets from its first `createStream`; frames are
/// chunked once for it and shared.
const SHARED_STREAM_ID: u32 = 1;

/// Serializes one RTMP message whose payload is the concatenation of `parts`.
pub fn chunk_message(
    csid: u8,
    msg_type: u8,
    stream_id: u32,
    timestamp: u32,
    parts: &[&[u8]],
    chunk_size: usize,
) -> Bytes {
    debug_assert!((2..64).contains(&csid) && chunk_size >= 1);
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let extended = timestamp >= 0xff_ffff;
    let chunks = len.div_ceil(chunk_size).max(1);
    let mut out =
        BytesMut::with_capacity(len + 12 + if extended { 4 * chunks } else { 0 } + (chunks - 1));
    out.put_u8(csid);
    out.put_uint(
        if extended {
            0xff_ffff
        } else {
            timestamp as u64
        },
        3,
    );
    out.put_uint(len as u64, 3);
    out.put_u8(msg_type);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(timestamp);
    }
    let mut in_chunk = 0;
    for part in parts {
        let mut part = *part;
        while !part.is_empty() {
            if in_chunk == chunk_size {
                out.put_u8(0xc0 | csid);
                if extended {
                    out.put_u32(timestamp);
                }
                in_chunk = 0;
            }
            let n = part.len().min(chunk_size - in_chunk);
            out.put_slice(&part[..n]);
            part = &part[n..];
            in_chunk += n;
        }
    }
    out.freeze()
}

/// An FLV message for the RTMP wire: what both players and pushes send.
#[derive(Debug, Clone, PartialEq)]
pub enum FlvMessage {
    /// `onMetaData` (FLV spec E.5) describing the tracks.
    Metadata(HashMap<String, Amf0Value>),
    /// A video message body (a sequence header here; frames go through [`FlvMapper::frame`]).
    Video {
        timestamp: u32,
        body: Bytes,
    },
    Audio {
        timestamp: u32,
        body: Bytes,
    },
}

/// A frame as an FLV message: its kind, timestamp and tag header; the body is the header
/// followed by the frame's data.
pub struct FlvFrame {
    pub kind: MediaKind,
    pub timestamp: u32,
    pub header: switchyard_flv::TagHeader,
    /// A video sequence header body to send first, at the same timestamp: VP8's (`vp08` with
    /// the `vpcC` of this keyframe), which cannot be built before its first keyframe.
    pub sequence_header: Option<Bytes>,
}

/// Maps a reader's events onto FLV messages: sequence headers and metadata when tracks
/// change, frames from the first keyframe on, in milliseconds on the stream's clock.
pub struct FlvMapper {
    tracks: Arc<TrackSet>,
    /// Video frames are held back until the first keyframe, so a decoder never starts on a
    /// frame it cannot decode.
    waiting_for_keyframe: bool,
    /// A VP8 track's sequence header is still to be sent, with its first keyframe.
    vp8_header_pending: bool,
    last_timestamp: u32,
    /// Whether Opus goes out (Enhanced RTMP). Many RTMP servers and CDNs cannot take it.
    pub carry_opus: bool,
}

impl Default for FlvMapper {
    fn default() -> Self {
        FlvMapper {
            tracks: Arc::default(),
            waiting_for_keyframe: true,
            vp8_header_pending: false,
            last_timestamp: 0,
            carry_opus: true,
        }
    }
}

impl FlvMapper {
    pub fn tracks(&self) -> &Arc<TrackSet> {
        &self.tracks
    }

    fn carries(&self, codec: &CodecConfig) -> bool {
        self.carry_opus || !matches!(codec, CodecConfig::Opus { .. })
    }

    /// The messages a track change calls for (nothing if no carried codec changed).
    pub fn on_tracks(&mut self, tracks: Arc<TrackSet>) -> Vec<FlvMessage> {
        let old = std::mem::replace(&mut self.tracks, tracks);
        let new = &self.tracks;
        let video_changed = new.video().map(|t| &t.codec) != old.video().map(|t| &t.codec);
        let audio_changed = new.audio().map(|t| &t.codec) != old.audio().map(|t| &t.codec);
        if !(video_changed || audio_changed) {
            return Vec::new();
        }
        let mut out = vec![FlvMessage::Metadata(self.metadata())];
        let timestamp = self.last_timestamp;
        if video_changed {
            self.vp8_header_pending =
                matches!(new.video().map(|t| &t.codec), Some(CodecConfig::Vp8));
            if self.vp8_header_pending {
                self.waiting_for_keyframe = true;
            }
        }
        if let Some(body) = new.video().and_then(|t| video_sequence_header(&t.codec)) {
            out.push(FlvMessage::Video { timestamp, body });
            if video_changed {
                self.waiting_for_keyframe = true;
            }
        }
        if let Some(body) = new
            .audio()
            .filter(|t| self.carries(&t.codec))
            .and_then(|t| audio_sequence_header(&t.codec))
        {
            out.push(FlvMessage::Audio { timestamp, body });
        }
        out
    }

    /// The frame as an FLV message, or `None` if it is not sent (before the first keyframe, a
    /// codec FLV cannot carry, an unknown track).
    pub fn frame(&mut self, frame: &BusFrame) -> Option<FlvFrame> {
        let track = self.tracks.get(frame.frame.track)?;
        let kind = track.kind();
        let mut sequence_header = None;
        if kind == MediaKind::Video {
            if self.waiting_for_keyframe && !frame.starts_gop {
                return None;
            }
            if self.vp8_header_pending {
                // Wait for a keyframe whose header reads (a damaged one would say nothing).
                sequence_header = Some(vp8_sequence_header(&frame.frame.data)?);
                self.vp8_header_pending = false;
            }
            self.waiting_for_keyframe = false;
        }
        if !self.carries(&track.codec) {
            return None;
        }
        let f = &frame.frame;
        let clock = track.clock_rate;
        let header = match kind {
            MediaKind::Video => {
                let cts = rescale(f.pts - f.dts, clock, 1000).clamp(0, 0x7f_ffff) as i32;
                video_frame_header(&track.codec, f.keyframe, cts)?
            }
            MediaKind::Audio => audio_frame_header(&track.codec)?,
        };
        let timestamp = rescale(f.dts, clock, 1000) as u32;
        self.last_timestamp = timestamp;
        Some(FlvFrame {
            kind,
            timestamp,
            header,
            sequence_header,
        })
    }

    fn metadata(&self) -> HashMap<String, Amf0Value> {
        let mut props = HashMap::new();
        if let Some(v) = self.tracks.video() {
            if let Some((w, h)) = v.codec.resolution() {
                props.insert("width".to_string(), Amf0Value::Number(w as f64));
                props.insert("height".to_string(), Amf0Value::Number(h as f64));
            }
            let id = match v.codec {
                CodecConfig::H264(_) => Amf0Value::Number(7.0),
                _ => Amf0Value::Utf8String(v.codec.rfc6381_codec()),
            };
            props.insert("videocodecid".to_string(), id);
        }
        if let Some(a) = self.tracks.audio().filter(|a| self.carries(&a.codec)) {
            let id = match a.codec {
                CodecConfig::Aac(_) => 10.0,
                CodecConfig::G711 {
                    law: switchyard_media::G711Law::ALaw,
                    ..
                } => 7.0,
                CodecConfig::G711 { .. } => 8.0,
                _ => 9.0,
            };
            props.insert("audiocodecid".to_string(), Amf0Value::Number(id));
            props.insert(
                "audiosamplerate".to_string(),
                Amf0Value::Number(a.clock_rate as f64),
            );
        }
        props.insert(
            "encoder".to_string(),
            Amf0Value::Utf8String(concat!("switchyard ", env!("CARGO_PKG_VERSION")).to_string()),
        );
        props
    }
}

/// One RTMP player: turns its reader's events into chunk bytes.
pub struct RtmpPlayer {
    reader: Reader,
    stream_id: u32,
    chunk_size: usize,
    mapper: FlvMapper,
    last_loss_log: Option<Instant>,
    lost_since_log: u64,
}

/// Whether the stream still has more to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Pending {
    More,
    Ended,
}

impl RtmpPlayer {
    pub fn new(reader: Reader, stream_id: u32, chunk_size: u32) -> Self {
        RtmpPlayer {
            reader,
            stream_id,
            chunk_size: chunk_size as usize,
            mapper: FlvMapper::default(),
            last_loss_log: None,
            lost_since_log: 0,
        }
    }

    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Waits for the next event. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<ReaderEvent> {
        self.reader.recv().await
    }

    /// Appends the bytes for `event` and for every event already pending to `out`.
    pub fn encode_pending(&mut self, first: ReaderEvent, out: &mut Vec<Bytes>) -> Pending {
        self.encode(first, out);
        self.drain_pending(out)
    }

    /// Appends the bytes for every event already pending to `out`.
    pub fn drain_pending(&mut self, out: &mut Vec<Bytes>) -> Pending {
        loop {
            match self.reader.try_recv() {
                TryRecv::Event(e) => self.encode(e, out),
                TryRecv::Empty => return Pending::More,
                TryRecv::Ended => return Pending::Ended,
            }
        }
    }

    fn encode(&mut self, event: ReaderEvent, out: &mut Vec<Bytes>) {
        match event {
            ReaderEvent::Tracks(tracks) => {
                if let Some(t) = tracks.video().filter(|t| !carries_video(&t.codec)) {
                    tracing::warn!(stream = %self.reader.stream().name(), "{} video is not carried over RTMP", t.codec.name());
                }
                for message in self.mapper.on_tracks(tracks) {
                    out.push(self.chunk(message));
                }
            }
            ReaderEvent::Frame(frame) => self.on_frame(&frame, out),
            ReaderEvent::Lost { frames } => {
                self.lost_since_log += frames;
                if self
                    .last_loss_log
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                {
                    tracing::warn!(stream = %self.reader.stream().name(), frames = self.lost_since_log, "RTMP player too slow; skipping to the next keyframe");
                    self.last_loss_log = Some(Instant::now());
                    self.lost_since_log = 0;
                }
            }
        }
    }

    fn chunk(&self, message: FlvMessage) -> Bytes {
        let (csid, msg_type, timestamp, body) = match message {
            FlvMessage::Metadata(props) => {
                let values = vec![
                    Amf0Value::Utf8String("onMetaData".to_string()),
                    Amf0Value::Object(props),
                ];
                let body = Bytes::from(rml_amf0::serialize(&values).unwrap_or_default());
                // Timestamp 0: ffmpeg's FLV reader takes `onMetaData` at any other time for a data stream.
                (DATA_CSID, MSG_DATA_AMF0, 0, body)
            }
            FlvMessage::Video { timestamp, body } => (VIDEO_CSID, MSG_VIDEO, timestamp, body),
            FlvMessage::Audio { timestamp, body } => (AUDIO_CSID, MSG_AUDIO, timestamp, body),
        };
        chunk_message(
            csid,
            msg_type,
            self.stream_id,
            timestamp,
            &[&body],
            self.chunk_size,
        )
    }

    fn on_frame(&mut self, frame: &Arc<BusFrame>, out: &mut Vec<Bytes>) {
        let Some(FlvFrame {
            kind,
            timestamp,
            header: (header, n),
            sequence_header,
        }) = self.mapper.frame(frame)
        else {
            return;
        };
        if let Some(body) = sequence_header {
            out.push(self.chunk(FlvMessage::Video { timestamp, body }));
        }
        let (csid, msg_type) = match kind {
            MediaKind::Video => (VIDEO_CSID, MSG_VIDEO),
            MediaKind::Audio => (AUDIO_CSID, MSG_AUDIO),
        };
        let (stream_id, chunk_size) = (self.stream_id, self.chunk_size);
        let encode = |f: &switchyard_media::Frame| {
            chunk_message(
                csid,
                msg_type,
                stream_id,
                timestamp,
                &[&header[..n], &f.data],
                chunk_size,
            )
        };
        let bytes = if stream_id == SHARED_STREAM_ID {
            frame.encoded(EncodedSlot::RtmpChunks, encode).clone()
        } else {
            encode(&frame.frame)
        };
        out.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    /// rml_rtmp's deserializer (an independent implementation) reads our chunks back.
    #[test]
    fn chunks_parse_back_with_rml_rtmp() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for &timestamp in &[0u32, 40, 0xff_fffe, 0xff_ffff, 0x1234_5678] {
            let mut de = ChunkDeserializer::new();
            de.set_max_chunk_size(4096).unwrap();
            let bytes = chunk_message(
                VIDEO_CSID,
                MSG_VIDEO,
                1,
                timestamp,
                &[&payload[..5], &payload[5..]],
                4096,
            );
            let msg = de
                .get_next_message(&bytes)
                .unwrap()
                .expect("one whole message");
            assert_eq!(msg.data.len(), payload.len());
            assert_eq!(&msg.data[..], &payload[..]);
            assert_eq!(msg.timestamp.value, timestamp);
            assert_eq!((msg.type_id, msg.message_stream_id), (MSG_VIDEO, 1));
        }
    }

    /// VP8 has no configuration record on the bus: its `vp08` sequence start (with the `vpcC`
    /// of the keyframe) goes out with the first keyframe, never before it and only once.
    #[test]
    fn vp8_sequence_start_goes_with_the_first_keyframe() {
        use switchyard_media::{Frame, Track, TrackId};
        const KEYFRAME: &[u8] = &[0x10, 0x02, 0, 0x9d, 0x01, 0x2a, 0xaa, 0x01, 0xf0, 0, 0];
        let mut mapper = FlvMapper::default();
        let tracks = TrackSet {
            generation: 1,
            tracks: vec![Track {
                id: TrackId(1),
                codec: CodecConfig::Vp8,
                clock_rate: 90_000,
            }],
        };
        let messages = mapper.on_tracks(Arc::new(tracks));
        assert!(
            matches!(&messages[..], [FlvMessage::Metadata(_)]),
            "{messages:?}"
        );
        let frame = |data: &'static [u8], keyframe, n: i64| {
            let f = Frame {
                track: TrackId(1),
                pts: n * 3000,
                dts: n * 3000,
                keyframe,
                data: Bytes::from_static(data),
            };
            BusFrame::new(f, keyframe, n as u64)
        };
        assert!(mapper.frame(&frame(&[0x31, 0, 0], false, 0)).is_none());
        // A "keyframe" whose header does not read is not a start either.
        assert!(mapper.frame(&frame(&[0x10, 0, 0], true, 1)).is_none());
        let first = mapper.frame(&frame(KEYFRAME, true, 2)).unwrap();
        assert_eq!(
            (first.timestamp, &first.header.0[..5]),
            (67, &b"\x91vp08"[..])
        );
        let header = first.sequence_header.expect("the vp08 sequence start");
        // 426x240, profile 0: level 2.0, 8-bit 4:2:0.
        assert_eq!(
            &header[..],
            &[0x90, b'v', b'p', b'0', b'8', 1, 0, 0, 0, 0, 20, 0x82, 2, 2, 6, 0, 0]
        );
        let next = mapper.frame(&frame(&[0x31, 0, 0], false, 3)).unwrap();
        assert!(next.sequence_header.is_none());
    }

    #[test]
    fn small_message_is_one_chunk_with_a_type_0_header() {
        let bytes = chunk_message(
            AUDIO_CSID,
            MSG_AUDIO,
            1,
            0x010203,
            &[&[0xaf, 1], &[9, 9]],
            4096,
        );
        assert_eq!(
            &bytes[..],
            &[AUDIO_CSID, 1, 2, 3, 0, 0, 4, MSG_AUDIO, 1, 0, 0, 0, 0xaf, 1, 9, 9][..]
        );
    }
}
