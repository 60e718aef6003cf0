//! The RTP packetizer of a stream's video codec, for WHEP viewers ([`super::whep`]): H.264
//! (RFC 6184, SPS/PPS before every IDR), H.265 (RFC 7798, VPS/SPS/PPS from the `hvcC` before
//! every IRAP), VP8 (RFC 7741), VP9 (RFC 9628) and AV1 (AV1 RTP spec, sequence header before
//! every keyframe). (A file of its own: `whep.rs` is at the size limit.)

use bytes::Bytes;
use switchyard_media::CodecConfig;
use switchyard_rtp::av1::{av1c_config_obus, Av1Packetizer};
use switchyard_rtp::h264::H264Packetizer;
use switchyard_rtp::h265::H265Packetizer;
use switchyard_rtp::vp8::Vp8Packetizer;
use switchyard_rtp::vp9::Vp9Packetizer;
use switchyard_rtp::{Payload, RtpError};

/// The packetizer of the stream's video codec.
pub enum VideoPacketizer {
    H264 {
        packetizer: H264Packetizer,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    },
    /// With the `hvcC`'s VPS, SPS and PPS.
    H265(H265Packetizer, Vec<Bytes>),
    Vp8(Vp8Packetizer),
    Vp9(Vp9Packetizer),
    Av1 {
        packetizer: Av1Packetizer,
        av1c: Bytes,
    },
}

impl VideoPacketizer {
    pub fn new(codec: &CodecConfig, max_payload: usize) -> Option<Self> {
        Some(match codec {
            CodecConfig::H264(config) => VideoPacketizer::H264 {
                packetizer: H264Packetizer::new(max_payload),
                sps: config.sps_nals.clone(),
                pps: config.pps_nals.clone(),
            },
            CodecConfig::H265(config) => {
                VideoPacketizer::H265(H265Packetizer::new(max_payload), config.parameter_sets())
            }
            CodecConfig::Vp8 => VideoPacketizer::Vp8(Vp8Packetizer::new(max_payload)),
            CodecConfig::Vp9 { .. } => VideoPacketizer::Vp9(Vp9Packetizer::new(max_payload)),
            CodecConfig::Av1 { av1c } => VideoPacketizer::Av1 {
                packetizer: Av1Packetizer::new(max_payload),
                av1c: av1c.clone(),
            },
            _ => return None,
        })
    }

    pub fn packetize(
        &mut self,
        data: &Bytes,
        keyframe: bool,
        out: &mut Vec<Payload>,
    ) -> Result<(), RtpError> {
        match self {
            VideoPacketizer::H264 {
                packetizer,
                sps,
                pps,
            } => packetizer.packetize(data, keyframe, sps, pps, out),
            VideoPacketizer::H265(p, sets) => p.packetize(data, keyframe, sets, out),
            VideoPacketizer::Vp8(p) => p.packetize(data, out),
            VideoPacketizer::Vp9(p) => p.packetize(data, keyframe, out),
            VideoPacketizer::Av1 { packetizer, av1c } => {
                packetizer.packetize(data, keyframe, av1c_config_obus(av1c), out)
            }
        }
    }
}
