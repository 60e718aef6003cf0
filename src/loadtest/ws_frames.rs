//! WebSocket frames, client side (RFC 6455 5): [`FrameReader`] turns the bytes a server sends,
//! in whatever chunks they come off the socket, into whole messages; [`client_frame`],
//! [`pong_frame`] and [`close_frame`] write the masked frames a client sends.
//!
//! The reader joins a fragmented message's frames (5.4), passes control frames through as
//! they come, also between the fragments of a message (5.5), and fails the connection (7.1.7)
//! on what a server must not send: a masked frame (5.1), reserved bits without an extension
//! (5.2; we negotiate none), a reserved opcode, a fragmented or over-long control frame, a
//! continuation without a message or a new message inside one, a 64-bit length with its top
//! bit set. Lengths need not be minimal. Text is not checked for UTF-8 here
//! ([`Message::text`] does). A message over the size cap is refused as soon as the frame
//! header that makes it too long arrives, before its payload is buffered.
//!
//! Copies: a frame that lies whole inside one chunk is handed out as a slice of that chunk.
//! Only the end of a chunk that holds part of a frame is kept (in a buffer reused from frame
//! to frame), and only the frames of a fragmented message are joined (in another).

// The MSE client (mse.rs) reads its messages with this once it parses frames.

/// The default cap on one message: an MSE fragment is one frame (or one GOP at most).
pub const MAX_MESSAGE: usize = 16 << 20;

/// The longest frame header: 2 bytes, a 64-bit length, a masking key.
const MAX_HEADER: usize = 14;
/// The longest control frame payload (5.5).
const MAX_CONTROL: u64 = 125;

/// A message's (and a client frame's) opcode (RFC 6455 5.2, 11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    /// None for a continuation (0) and for reserved opcodes.
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        self as u8 >= 8
    }
}

/// One whole message: a data message (its frames joined) or a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub opcode: Opcode,
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// The payload as text, if it is UTF-8.
    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.payload).ok()
    }

    /// A close frame's status code (5.5.1, 7.4), if it has one.
    pub fn close_code(&self) -> Option<u16> {
        match (self.opcode, self.payload) {
            (Opcode::Close, [a, b, ..]) => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A close frame's reason (after the code; empty if none).
    pub fn close_reason(&self) -> &'a [u8] {
        match self.opcode {
            Opcode::Close => self.payload.get(2..).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// Why the server's bytes are not a WebSocket stream we accept: the connection should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("masked frame from the server (RFC 6455 5.1)")]
    Masked,
    #[error("reserved bits {0:#x} set with no extension negotiated")]
    ReservedBits(u8),
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame (opcode {opcode:#x}) fragmented or of {len} bytes (at most 125)")]
    BadControl { opcode: u8, len: u64 },
    #[error("continuation frame with no message begun")]
    UnexpectedContinuation,
    #[error("new message (opcode {0:#x}) inside a fragmented message")]
    Interleaved(u8),
    #[error("64-bit payload length with its most significant bit set")]
    BadLength,
    #[error("close frame of 1 byte (a status code takes 2)")]
    BadClose,
    #[error("message of {len} bytes or more, over the {max}-byte cap")]
    TooLarge { len: u64, max: usize },
}

/// A frame's header, checked.
struct Header {
    fin: bool,
    /// 0 for a continuation.
    opcode: u8,
    len: u64,
    header_len: usize,
}

/// The client side's reader of server frames. Feed it chunks as they are read; it calls back
/// with each whole message.
#[derive(Debug)]
pub struct FrameReader {
    max_message: usize,
    /// The start of a frame that the last chunk ended inside.
    partial: Vec<u8>,
    /// The frames so far of a fragmented message.
    message: Vec<u8>,
    /// The opcode of the fragmented message under way.
    fragmented: Option<Opcode>,
    closed: bool,
    failed: Option<WsError>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new(MAX_MESSAGE)
    }
}

impl FrameReader {
    /// A reader that refuses messages of more than `max_message` bytes.
    pub fn new(max_message: usize) -> FrameReader {
        FrameReader {
            max_message,
            partial: Vec::new(),
            message: Vec::new(),
            fragmented: None,
            closed: false,
            failed: None,
        }
    }

    /// Reads `chunk` (the next bytes from the server) and calls `on_message` with each
    /// message it completes, in order; returns how many.
    ///
    /// After a close frame the connection is closing (7.1.2): what follows is ignored and
    /// [`is_closed`](Self::is_closed) is true.
    ///
    /// # Errors
    ///
    /// The stream breaks RFC 6455 ([`WsError`]) or a message is over the cap. Messages before
    /// the error were delivered; the reader stays failed and returns the same error again.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut on_message: impl FnMut(Message<'_>),
    ) -> Result<usize, WsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut count = 0;
        let result = self.feed_inner(chunk, &mut |m| {
            count += 1;
            on_message(m);
        });
        if let Err(e) = result {
            self.failed = Some(e);
            self.partial = Vec::new();
            self.message = Vec::new();
            return Err(e);
        }
        Ok(count)
    }

    /// A close frame has been read.
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes held: of a frame not yet whole and of a fragmented message not yet finished.
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.partial.len() + self.message.len()
    }

    fn feed_inner(
        &mut self,
        mut input: &[u8],
        on_message: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        if self.closed {
            return Ok(());
        }
        // Finish the frame the last chunk ended inside.
        if !self.partial.is_empty() {
            let header = loop {
                if let Some(h) = self.header(&self.partial)? {
                    break h;
                }
                let need = match self.partial.get(1) {
                    Some(&b1) => header_len(b1),
                    None => 2,
                };
                let take = need.saturating_sub(self.partial.len()).min(input.len());
                if take == 0 {
                    // The chunk is used up (the header, once all there, always parses).
                    return Ok(());
                }
                self.partial.extend_from_slice(&input[..take]);
                input = &input[take..];
            };
            // Within the cap (checked with the header), so it fits a usize.
            let total = header.header_len.saturating_add(header.len as usize);
            let take = total.saturating_sub(self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() < total {
                return Ok(());
            }
            let partial = std::mem::take(&mut self.partial);
            let result = self.frame(&header, &partial[header.header_len..], on_message);
            self.partial = partial;
            self.partial.clear();
            result?;
        }
        // Whole frames in the chunk, handed out in place.
        while !self.closed {
            let Some(header) = self.header(input)? else {
                break;
            };
            let total = header.header_len.saturating_add(header.len as usize);
            if input.len() < total {
                break;
            }
            self.frame(&header, &input[header.header_len..total], on_message)?;
            input = &input[total..];
        }
        if !self.closed {
            self.partial.extend_from_slice(input);
        }
        Ok(())
    }

    /// The header at the start of `buf`, checked (with the cap, against the message under
    /// way), or None if `buf` does not hold all of it yet.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let header_len = header_len(b1);
        if buf.len() < header_len {
            return Ok(None);
        }
        if b1 & 0x80 != 0 {
            return Err(WsError::Masked);
        }
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits(b0 & 0x70));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(b);
                if len >> 63 != 0 {
                    return Err(WsError::BadLength);
                }
                len
            }
            n => u64::from(n),
        };
        match (opcode, Opcode::from_bits(opcode)) {
            (0, _) => {
                if self.fragmented.is_none() {
                    return Err(WsError::UnexpectedContinuation);
                }
            }
            (_, None) => return Err(WsError::ReservedOpcode(opcode)),
            (_, Some(op)) if op.is_control() => {
                if !fin || len > MAX_CONTROL {
                    return Err(WsError::BadControl { opcode, len });
                }
            }
            (_, Some(_)) => {
                if self.fragmented.is_some() {
                    return Err(WsError::Interleaved(opcode));
                }
            }
        }
        let so_far = if opcode == 0 { self.message.len() } else { 0 };
        let message_len = len.saturating_add(so_far as u64);
        if message_len > self.max_message as u64 {
            return Err(WsError::TooLarge {
                len: message_len,
                max: self.max_message,
            });
        }
        Ok(Some(Header {
            fin,
            opcode,
            len,
            header_len,
        }))
    }

    /// One whole frame, its header checked.
    fn frame(
        &mut self,
        header: &Header,
        payload: &[u8],
        on_message: &mut dyn FnMut(Message<'_>),
    ) -> Result<(), WsError> {
        let Some(opcode) = Opcode::from_bits(header.opcode) else {
            // A continuation (checked: a message is under way).
            self.message.extend_from_slice(payload);
            if header.fin {
                if let Some(opcode) = self.fragmented.take() {
                    on_message(Message {
                        opcode,
                        payload: &self.message,
                    });
                }
                self.message.clear();
            }
            return Ok(());
        };
        if opcode == Opcode::Close {
            if payload.len() == 1 {
                return Err(WsError::BadClose);
            }
            self.closed = true;
        }
        if header.fin {
            on_message(Message { opcode, payload });
        } else {
            self.fragmented = Some(opcode);
            self.message.clear();
            self.message.extend_from_slice(payload);
        }
        Ok(())
    }
}

/// The header length that the second byte implies.
fn header_len(b1: u8) -> usize {
    let len = match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    len + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// Appends one client frame (FIN set, masked with `mask`, RFC 6455 5.3) to `out`. The caller
/// picks the masking key afresh per frame (`rand::random()`).
pub fn client_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(MAX_HEADER + payload.len());
    out.push(0x80 | opcode as u8);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// Appends the pong that answers a ping (its payload echoed, 5.5.3) to `out`.
pub fn pong_frame(ping_payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let len = ping_payload.len().min(MAX_CONTROL as usize);
    client_frame(Opcode::Pong, &ping_payload[..len], mask, out);
}

/// Appends a close frame to `out`: with a status code (7.4; 1000 = normal closure) and a
/// reason cut to what a control frame holds (123 bytes, at a character boundary), or empty.
pub fn close_frame(code: Option<u16>, reason: &str, mask: [u8; 4], out: &mut Vec<u8>) {
    let mut payload = [0u8; MAX_CONTROL as usize];
    let len = match code {
        None => 0,
        Some(code) => {
            payload[..2].copy_from_slice(&code.to_be_bytes());
            let mut cut = reason.len().min(payload.len() - 2);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
            2 + cut
        }
    };
    client_frame(Opcode::Close, &payload[..len], mask, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked), written by hand, any length encoding.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// The same written by tungstenite, an independent implementation.
    fn tungstenite_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
        let op = match opcode {
            0 => OpCode::Data(Data::Continue),
            1 => OpCode::Data(Data::Text),
            2 => OpCode::Data(Data::Binary),
            8 => OpCode::Control(Control::Close),
            9 => OpCode::Control(Control::Ping),
            _ => OpCode::Control(Control::Pong),
        };
        let mut out = Vec::new();
        tungstenite::protocol::frame::Frame::message(payload.to_vec(), op, fin)
            .format(&mut out)
            .unwrap();
        out
    }

    type Owned = (Opcode, Vec<u8>);

    /// Feeds `chunks` one after another, collecting the messages.
    fn read(reader: &mut FrameReader, chunks: &[&[u8]]) -> Result<Vec<Owned>, WsError> {
        let mut out = Vec::new();
        for c in chunks {
            reader.feed(c, |m| out.push((m.opcode, m.payload.to_vec())))?;
        }
        Ok(out)
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Every length encoding, at its edges.
    const LENGTHS: &[usize] = &[0, 1, 125, 126, 127, 0xffff, 0x10000, 70_000];

    #[test]
    fn every_length_encoding_reads_whole_and_in_place() {
        for &len in LENGTHS {
            let data = payload(len);
            let frame = server_frame(true, 2, &data);
            assert_eq!(frame, tungstenite_frame(true, 2, &data), "len {len}");
            let mut reader = FrameReader::default();
            let range = frame.as_ptr_range();
            let mut seen = 0;
            reader
                .feed(&frame, |m| {
                    assert_eq!((m.opcode, m.payload), (Opcode::Binary, &data[..]));
                    // One whole frame in the chunk: no copy.
                    let r = m.payload.as_ptr_range();
                    assert!(range.start <= r.start && r.end <= range.end);
                    seen += 1;
                })
                .unwrap();
            assert_eq!((seen, reader.buffered()), (1, 0));
        }
    }

    #[test]
    fn frames_split_at_every_byte_read_the_same() {
        // Several frames back to back, of every length encoding (the long ones short enough
        // to split everywhere), with a text and a control frame among them.
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, &len) in [0, 3, 125, 126, 300, 0x10000 + 5].iter().enumerate() {
            let data = payload(len);
            let opcode = [Opcode::Binary, Opcode::Text][i % 2];
            stream.extend(server_frame(true, opcode as u8, &data));
            expected.push((opcode, data));
            if i == 2 {
                stream.extend(server_frame(true, 9, b"ping!"));
                expected.push((Opcode::Ping, b"ping!".to_vec()));
            }
        }
        let whole = read(&mut FrameReader::default(), &[&stream]).unwrap();
        assert_eq!(whole, expected);
        // Two chunks, cut at every byte of the first frames and at every 97th of the rest
        // (also every byte of the last frame's 10-byte header).
        let last_header = stream.len() - (0x10000 + 5) - 10;
        for cut in (0..stream.len())
            .filter(|&c| c < 1000 || c % 97 == 0 || (last_header..last_header + 12).contains(&c))
        {
            let mut reader = FrameReader::default();
            let got = read(&mut reader, &[&stream[..cut], &stream[cut..]]).unwrap();
            assert_eq!(got, expected, "cut at {cut}");
            assert_eq!(reader.buffered(), 0);
        }
        // Three chunks of every size up to 40, and one byte at a time.
        for size in 1..=40 {
            let mut reader = FrameReader::default();
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            assert_eq!(read(&mut reader, &chunks).unwrap(), expected, "size {size}");
        }
    }

    #[test]
    fn fragmented_messages_join_with_control_frames_between() {
        let mut stream = Vec::new();
        stream.extend(server_frame(false, 1, b"hel"));
        stream.extend(server_frame(true, 9, b"p1"));
        stream.extend(server_frame(false, 0, b""));
        stream.extend(server_frame(false, 0, b"lo "));
        stream.extend(server_frame(true, 10, b""));
        stream.extend(server_frame(true, 0, &payload(300)));
        stream.extend(server_frame(true, 2, b"after"));
        stream.extend(tungstenite_frame(false, 2, b"b1"));
        stream.extend(tungstenite_frame(true, 0, b"b2"));
        let mut text = b"hello ".to_vec();
        text.extend(payload(300));
        let expected = vec![
            (Opcode::Ping, b"p1".to_vec()),
            (Opcode::Pong, vec![]),
            (Opcode::Text, text),
            (Opcode::Binary, b"after".to_vec()),
            (Opcode::Binary, b"b1b2".to_vec()),
        ];
        for cut in 0..=stream.len() {
            let mut reader = FrameReader::default();
            let got = read(&mut reader, &[&stream[..cut], &stream[cut..]]).unwrap();
            assert_eq!(got, expected, "cut at {cut}");
        }
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            read(&mut FrameReader::default(), &chunks).unwrap(),
            expected
        );
    }

    #[test]
    fn close_ends_the_stream() {
        let mut stream = server_frame(true, 2, b"x");
        // tungstenite's close frame, as axum's server sends it.
        let mut close = Vec::new();
        tungstenite::protocol::frame::Frame::close(Some(
            tungstenite::protocol::frame::CloseFrame {
                code: 4004.into(),
                reason: "no such stream".into(),
            },
        ))
        .format(&mut close)
        .unwrap();
        stream.extend(&close);
        stream.extend(server_frame(true, 2, b"ignored"));
        stream.extend([0xff; 3]);
        let mut reader = FrameReader::default();
        let mut seen = Vec::new();
        reader
            .feed(&stream, |m| {
                seen.push((m.opcode, m.close_code(), m.close_reason().to_vec()))
            })
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (Opcode::Binary, None, vec![]),
                (Opcode::Close, Some(4004), b"no such stream".to_vec())
            ]
        );
        assert!(reader.is_closed());
        assert_eq!(reader.feed(b"\x82\x01y", |_| panic!()), Ok(0));
        // An empty close has no code; a 1-byte one is an error.
        let m = Message {
            opcode: Opcode::Close,
            payload: &[],
        };
        assert_eq!((m.close_code(), m.close_reason()), (None, &[][..]));
        // Text is read as UTF-8 on asking (the MSE output's first message is JSON).
        let m = Message {
            opcode: Opcode::Text,
            payload: b"{\"mime\": \"video/mp4\"}",
        };
        assert_eq!(m.text(), Some("{\"mime\": \"video/mp4\"}"));
        let m = Message {
            opcode: Opcode::Text,
            payload: &[0xff],
        };
        assert_eq!((m.text(), m.close_code()), (None, None));
        assert_eq!(
            read(&mut FrameReader::default(), &[&server_frame(true, 8, &[3])]),
            Err(WsError::BadClose)
        );
    }

    #[test]
    fn protocol_errors_fail_the_reader() {
        let mut masked = server_frame(true, 2, b"abcd");
        masked[1] |= 0x80;
        masked.splice(2..2, [1, 2, 3, 4]);
        let mut rsv = server_frame(true, 2, b"a");
        rsv[0] |= 0x40;
        let mut long64 = vec![0x82, 127];
        long64.extend_from_slice(&(1u64 << 63).to_be_bytes());
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (masked, WsError::Masked),
            (rsv, WsError::ReservedBits(0x40)),
            (server_frame(true, 3, b""), WsError::ReservedOpcode(3)),
            (server_frame(true, 0xb, b""), WsError::ReservedOpcode(0xb)),
            (
                server_frame(false, 9, b""),
                WsError::BadControl { opcode: 9, len: 0 },
            ),
            (
                server_frame(true, 10, &payload(126)),
                WsError::BadControl {
                    opcode: 10,
                    len: 126,
                },
            ),
            (server_frame(true, 0, b"x"), WsError::UnexpectedContinuation),
            (
                [server_frame(false, 1, b"a"), server_frame(true, 2, b"b")].concat(),
                WsError::Interleaved(2),
            ),
            (long64, WsError::BadLength),
        ];
        for (bytes, error) in cases {
            for cut in 0..=bytes.len() {
                let mut reader = FrameReader::default();
                let result = read(&mut reader, &[&bytes[..cut], &bytes[cut..]]);
                assert_eq!(result, Err(error), "{bytes:02x?} cut at {cut}");
                // Failed for good.
                assert_eq!(
                    reader.feed(&server_frame(true, 2, b"ok"), |_| {}),
                    Err(error)
                );
            }
        }
    }

    #[test]
    fn oversize_messages_are_refused_at_their_header() {
        let mut reader = FrameReader::new(1000);
        let frame = server_frame(true, 2, &payload(1000));
        assert_eq!(read(&mut reader, &[&frame]).unwrap().len(), 1);
        // 1001 bytes: refused with only the header read, nothing buffered.
        let frame = server_frame(true, 2, &payload(1001));
        let too_large = Err(WsError::TooLarge {
            len: 1001,
            max: 1000,
        });
        assert_eq!(read(&mut reader, &[&frame[..4]]), too_large);
        assert_eq!(reader.buffered(), 0);
        // The 16 MiB default, with a 64-bit length.
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(MAX_MESSAGE as u64 + 1).to_be_bytes());
        assert!(matches!(
            read(&mut FrameReader::default(), &[&header]),
            Err(WsError::TooLarge { .. })
        ));
        // Fragments that add up to more.
        let frames = [
            server_frame(false, 2, &payload(600)),
            server_frame(true, 9, b""),
            server_frame(true, 0, &payload(401)),
        ]
        .concat();
        assert_eq!(
            read(&mut FrameReader::new(1000), &[&frames]),
            Err(WsError::TooLarge {
                len: 1001,
                max: 1000
            })
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut reader = FrameReader::new(4096);
            for _ in 0..8 {
                let len = (next() % 64) as usize;
                let chunk: Vec<u8> = (0..len)
                    .map(|_| match next() % 4 {
                        // Bytes that make headers parse often.
                        0 => 0x82,
                        1 => 0x00,
                        _ => next() as u8,
                    })
                    .collect();
                if reader
                    .feed(&chunk, |m| assert!(m.payload.len() <= 4096))
                    .is_err()
                {
                    break;
                }
            }
        }
    }

    #[test]
    fn client_frames_are_masked_and_parse_in_tungstenite() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader;
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for &len in LENGTHS {
            let data = payload(len);
            let mut out = Vec::new();
            client_frame(Opcode::Binary, &data, mask, &mut out);
            let mut cursor = Cursor::new(&out);
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert_eq!((header.mask, length), (Some(mask), len as u64));
            let body = &out[cursor.position() as usize..];
            let unmasked: Vec<u8> = body
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(unmasked, data);
        }
        // RFC 6455 5.7: a masked "Hello".
        let mut out = Vec::new();
        client_frame(Opcode::Text, b"Hello", mask, &mut out);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // A pong echoes the ping; a close carries the code and a reason cut to 123 bytes
        // at a character boundary.
        let mut out = Vec::new();
        pong_frame(b"p1", mask, &mut out);
        assert_eq!(&out[..2], [0x8a, 0x82]);
        assert_eq!(out[6] ^ mask[0], b'p');
        let reason = "é".repeat(100);
        for (code, reason, expected_len) in [
            (None, "", 0),
            (Some(1000), "bye", 5),
            (Some(1001), reason.as_str(), 124),
        ] {
            let mut out = Vec::new();
            close_frame(code, reason, mask, &mut out);
            assert_eq!((out[0], out[1]), (0x88, 0x80 | expected_len as u8));
            let body: Vec<u8> = out[6..]
                .iter()
                .zip(mask.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            let m = Message {
                opcode: Opcode::Close,
                payload: &body,
            };
            assert_eq!(m.close_code(), code);
            assert!(reason.as_bytes().starts_with(m.close_reason()));
            assert!(std::str::from_utf8(m.close_reason()).is_ok());
        }
    }
}
