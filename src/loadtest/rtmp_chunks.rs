//! A light walker of a received RTMP chunk stream (RTMP 1.0, 5.3.1): it follows chunk
//! headers across reads of any size and reports each complete message with its type,
//! timestamp, length and first [`HEAD_KEPT`] bytes, copying nothing else. It applies Set
//! Chunk Size itself. The load generator's RTMP players use it to meter video without the
//! cost of reassembling every message.

use std::collections::HashMap;

use anyhow::{bail, Result};

/// Bytes of each message's start kept for the caller: an FLV video tag header and the first
/// NAL units (an AUD and a probe stamp SEI fit).
pub(super) const HEAD_KEPT: usize = 256;
/// RTMP message type of a Set Chunk Size.
const MSG_SET_CHUNK_SIZE: u8 = 1;
/// Longest message accepted (the message length field allows 16 MiB; a video frame that
/// large is not what a server sends).
const MAX_MESSAGE: u32 = 8 * 1024 * 1024;
/// Most chunk streams one connection may use.
const MAX_CHUNK_STREAMS: usize = 64;

/// A complete message, as the walker saw it.
pub(super) struct ChunkMessage<'a> {
    pub(super) type_id: u8,
    /// Absolute timestamp, ms.
    pub(super) timestamp: u32,
    /// The message's first bytes (all of it if shorter than [`HEAD_KEPT`]).
    pub(super) head: &'a [u8],
}

impl ChunkMessage<'_> {
    /// The first four bytes as a big-endian number (control messages).
    pub(super) fn head_u32(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.head.get(..4)?.try_into().ok()?))
    }
}

/// What the walker knows of one chunk stream (RTMP 1.0, 5.3.1.2: later chunks inherit fields).
#[derive(Default)]
struct ChunkStream {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    /// The last header had an extended timestamp, so type-3 chunks repeat it (5.3.1.3).
    extended: bool,
    /// Bytes of the current message received so far.
    received: u32,
    head: Vec<u8>,
}

#[derive(Default)]
pub(super) struct ChunkReader {
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    /// A chunk header split across reads.
    partial: Vec<u8>,
    /// In a chunk's payload: its chunk stream and the bytes of it still to come.
    payload: Option<(u32, u32)>,
}

impl ChunkReader {
    /// Walks `data`, calling `on_message` for each message it completes.
    ///
    /// # Errors
    ///
    /// A malformed chunk stream (over-long messages, too many chunk streams, a chunk that
    /// continues a message never started, a zero chunk size).
    pub(super) fn feed(
        &mut self,
        mut data: &[u8],
        mut on_message: impl FnMut(&ChunkMessage<'_>),
    ) -> Result<()> {
        if self.chunk_size == 0 {
            self.chunk_size = 128;
        }
        while !data.is_empty() {
            if let Some((csid, left)) = self.payload {
                let take = (left as usize).min(data.len());
                let (now, rest) = data.split_at(take);
                data = rest;
                let stream = self
                    .streams
                    .get_mut(&csid)
                    .expect("payload of a known stream");
                let room = HEAD_KEPT.saturating_sub(stream.head.len());
                stream.head.extend_from_slice(&now[..room.min(now.len())]);
                stream.received += take as u32;
                let left = left - take as u32;
                self.payload = (left > 0).then_some((csid, left));
                if left == 0 && stream.received >= stream.length {
                    let message = ChunkMessage {
                        type_id: stream.type_id,
                        timestamp: stream.timestamp,
                        head: &stream.head,
                    };
                    on_message(&message);
                    if message.type_id == MSG_SET_CHUNK_SIZE {
                        let size = message.head_u32().unwrap_or(0) & 0x7fff_ffff;
                        if size == 0 {
                            bail!("Set Chunk Size of 0");
                        }
                        self.chunk_size = size;
                    }
                    stream.received = 0;
                    stream.head.clear();
                }
                continue;
            }
            // A chunk header: gather it whole first (at most 18 bytes).
            let used_before = self.partial.len();
            let take = (18 - used_before).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            match self.header()? {
                Some(header_len) => {
                    self.partial.clear();
                    data = &data[header_len - used_before..];
                }
                None => {
                    data = &data[take..];
                }
            }
        }
        Ok(())
    }

    /// Parses the chunk header in `self.partial`; `None` if it is not complete yet, else its
    /// length (and the payload that follows is set up).
    fn header(&mut self) -> Result<Option<usize>> {
        let bytes = &self.partial;
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let format = first >> 6;
        let (csid, mut at) = match first & 0x3f {
            0 => match bytes.get(1) {
                Some(&b) => (u32::from(b) + 64, 2),
                None => return Ok(None),
            },
            1 => match bytes.get(1..3) {
                Some(b) => (u32::from(b[0]) + u32::from(b[1]) * 256 + 64, 3),
                None => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let field_len = [11, 7, 3, 0][usize::from(format)];
        let Some(fields) = bytes.get(at..at + field_len) else {
            return Ok(None);
        };
        at += field_len;
        let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let time_field = (field_len > 0).then(|| u24(&fields[..3]));
        let known = self.streams.len();
        let stream = match self.streams.get_mut(&csid) {
            Some(stream) => stream,
            None if format == 0 && known < MAX_CHUNK_STREAMS => {
                self.streams.entry(csid).or_default()
            }
            None if format == 0 => bail!("more than {MAX_CHUNK_STREAMS} chunk streams"),
            None => bail!("chunk of format {format} on chunk stream {csid} that never began"),
        };
        let extended = match time_field {
            Some(field) => field == 0xff_ffff,
            None => stream.extended,
        };
        let extended_time = if extended {
            let Some(b) = bytes.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        } else {
            None
        };
        // Complete: apply it.
        let starts_message = stream.received == 0;
        if format <= 1 {
            stream.length = u24(&fields[3..6]);
            stream.type_id = fields[6];
            if stream.length > MAX_MESSAGE {
                bail!("message of {} bytes", stream.length);
            }
        }
        if let Some(field) = time_field {
            stream.extended = extended;
            let value = extended_time.unwrap_or(field);
            if format == 0 {
                stream.timestamp = value;
                stream.delta = 0;
            } else {
                stream.delta = value;
                stream.timestamp = stream.timestamp.wrapping_add(value);
            }
        } else if starts_message && format == 3 {
            // A type-3 chunk that starts a new message repeats the last delta.
            stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
        }
        let left = stream.length - stream.received;
        let chunk = left.min(self.chunk_size);
        if chunk == 0 {
            // An empty message completes at once; nothing to carry.
            stream.received = 0;
            stream.head.clear();
        } else {
            self.payload = Some((csid, chunk));
        }
        Ok(Some(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::time::RtmpTimestamp;

    /// Messages as rml_rtmp's serializer chunks them (another implementation than ours).
    fn chunked(messages: &[(u32, RtmpMessage)], chunk_size: Option<u32>) -> Vec<u8> {
        let mut serializer = ChunkSerializer::new();
        let mut out = Vec::new();
        if let Some(size) = chunk_size {
            let packet = serializer
                .set_max_chunk_size(size, RtmpTimestamp::new(0))
                .unwrap();
            out.extend_from_slice(&packet.bytes);
        }
        for (time, message) in messages {
            let payload =
                MessagePayload::from_rtmp_message(message.clone(), RtmpTimestamp::new(*time), 1)
                    .unwrap();
            out.extend_from_slice(&serializer.serialize(&payload, false, false).unwrap().bytes);
        }
        out
    }

    fn video(len: usize, key: bool) -> RtmpMessage {
        let mut data = vec![0xab; len];
        data[0] = if key { 0x17 } else { 0x27 };
        data[1] = 1;
        RtmpMessage::VideoData { data: data.into() }
    }

    fn walk(bytes: &[u8], split: usize) -> Vec<(u8, u32, usize, Vec<u8>)> {
        let mut reader = ChunkReader::default();
        let mut seen = Vec::new();
        for piece in bytes.chunks(split.max(1)) {
            reader
                .feed(piece, |m| {
                    seen.push((m.type_id, m.timestamp, m.head.len(), m.head.to_vec()))
                })
                .unwrap();
        }
        seen
    }

    #[test]
    fn follows_messages_across_chunks_and_reads() {
        let messages = [
            (0, video(5000, true)),
            (33, video(700, false)),
            (66, video(40, false)),
            (
                70,
                RtmpMessage::AudioData {
                    data: vec![0xaf, 1, 2, 3].into(),
                },
            ),
            (100, video(300, false)),
            (0x0100_0000, video(20, false)), // extended timestamp
            (0x0100_0021, video(9000, true)),
        ];
        for chunk_size in [None, Some(4096)] {
            let bytes = chunked(&messages, chunk_size);
            for split in [1, 7, 128, 1000, bytes.len()] {
                let seen: Vec<_> = walk(&bytes, split)
                    .into_iter()
                    .filter(|m| m.0 != MSG_SET_CHUNK_SIZE)
                    .collect();
                // (type, timestamp, bytes of the head kept)
                let expected: Vec<(u8, u32, usize)> = vec![
                    (9, 0, HEAD_KEPT),
                    (9, 33, HEAD_KEPT),
                    (9, 66, 40),
                    (8, 70, 4),
                    (9, 100, HEAD_KEPT),
                    (9, 0x0100_0000, 20),
                    (9, 0x0100_0021, HEAD_KEPT),
                ];
                assert_eq!(
                    seen.iter().map(|m| (m.0, m.1, m.2)).collect::<Vec<_>>(),
                    expected,
                    "chunk size {chunk_size:?}, split {split}"
                );
                assert_eq!(seen[0].3.len(), HEAD_KEPT);
                assert_eq!(&seen[0].3[..2], &[0x17, 1]);
                assert_eq!(seen[2].3.len(), 40);
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut reader = ChunkReader::default();
        // A type-3 chunk on a stream that never began.
        assert!(reader.feed(&[0xc5, 1, 2, 3], |_| {}).is_err());
        let mut reader = ChunkReader::default();
        // A 16 MiB message.
        assert!(reader
            .feed(&[0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0], |_| {})
            .is_err());
        // Random bytes never panic.
        let mut state = 12345u32;
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..300)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (state >> 16) as u8
                })
                .collect();
            let _ = ChunkReader::default().feed(&bytes, |_| {});
        }
    }
}
