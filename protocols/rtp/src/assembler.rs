//! Frame assembly shared by the VP8 and VP9 depacketizers, whose payload descriptors say
//! where a frame starts; the marker bit (or a new timestamp) says where it ends.
//!
//! Policy on loss: the frame a lost packet may belong to is dropped, and so is every frame
//! after it until a keyframe, so a decoder never sees a broken reference chain. (VP8 and VP9
//! could resume earlier on frames that only use intact references; telling which needs the
//! reference structure of every frame, and a keyframe request costs one round trip.)

use crate::error::RtpError;
use crate::h264::MAX_ACCESS_UNIT_BYTES;
use crate::packet::{CodedFrame, PacketRef};
use bytes::BytesMut;

pub(crate) struct Assembler {
    data: BytesMut,
    /// RTP timestamp of the frame in progress; `None` between frames.
    timestamp: Option<u32>,
    keyframe: bool,
    /// Part of the frame in progress is missing or unusable.
    damaged: bool,
    waiting_for_keyframe: bool,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler {
            data: BytesMut::new(),
            timestamp: None,
            keyframe: false,
            damaged: false,
            // Frames before the first keyframe cannot be decoded.
            waiting_for_keyframe: true,
        }
    }
}

impl Assembler {
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Packets were lost just before the next one.
    pub fn lost(&mut self) {
        self.damage();
    }

    /// Whatever happened, the frame in progress cannot be trusted.
    pub fn damage(&mut self) {
        if self.timestamp.is_some() {
            self.damaged = true;
        }
        self.waiting_for_keyframe = true;
    }

    /// A packet that starts a frame. A frame still in progress with another timestamp is
    /// finished first (a sender that forgot the marker bit); with the same timestamp it lost
    /// its end.
    pub fn start(&mut self, timestamp: u32, keyframe: bool, out: &mut Vec<CodedFrame>) {
        match self.timestamp {
            Some(t) if t != timestamp => self.finish(out),
            Some(_) => {
                self.damage();
                self.drop_frame();
            }
            None => {}
        }
        self.timestamp = Some(timestamp);
        self.keyframe = keyframe;
        self.damaged = false;
    }

    /// Appends a packet's part of the frame. A packet without a frame in progress (its start
    /// was lost or unusable) or with another timestamp than the frame's is dropped.
    pub fn append(&mut self, packet: &PacketRef<'_>, part: &[u8]) -> Result<(), RtpError> {
        if self.timestamp != Some(packet.timestamp) {
            if self.timestamp.is_some() {
                self.damage();
                self.drop_frame();
            }
            self.waiting_for_keyframe = true;
            return Ok(());
        }
        if self.damaged {
            return Ok(());
        }
        if self.data.len() + part.len() > MAX_ACCESS_UNIT_BYTES {
            let size = self.data.len() + part.len();
            self.damage();
            self.data.clear();
            return Err(RtpError::TooLarge {
                sequence: packet.sequence,
                timestamp: packet.timestamp,
                size,
                max: MAX_ACCESS_UNIT_BYTES,
            });
        }
        self.data.extend_from_slice(part);
        Ok(())
    }

    /// The frame in progress is complete: hands it out unless it is damaged, empty or needs a
    /// reference that was lost.
    pub fn finish(&mut self, out: &mut Vec<CodedFrame>) {
        let Some(timestamp) = self.timestamp else {
            return;
        };
        let usable =
            !self.damaged && !self.data.is_empty() && (self.keyframe || !self.waiting_for_keyframe);
        if usable {
            if self.keyframe {
                self.waiting_for_keyframe = false;
            }
            out.push(CodedFrame {
                timestamp,
                data: self.data.split().freeze(),
                keyframe: self.keyframe,
            });
        } else if !self.damaged && !self.data.is_empty() {
            // A complete frame whose references are gone: still waiting for a keyframe.
            self.waiting_for_keyframe = true;
        }
        self.drop_frame();
    }

    fn drop_frame(&mut self) {
        self.data.clear();
        self.timestamp = None;
        self.damaged = false;
        self.keyframe = false;
    }

    pub fn in_frame(&self) -> bool {
        self.timestamp.is_some()
    }

    /// The RTP timestamp of the frame in progress.
    pub fn timestamp(&self) -> Option<u32> {
        self.timestamp
    }

    /// Bytes of the frame in progress so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the frame in progress can still be handed out (nothing of it was lost).
    pub fn intact(&self) -> bool {
        self.timestamp.is_some() && !self.damaged
    }
}
