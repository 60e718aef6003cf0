//! Turning a WHIP/WHEP offer into a peer connection and its answer.
//!
//! The offer is checked first so a client hears exactly what is wrong with it (no ICE
//! credentials, no fingerprint, no video codec or Opus in the direction it needs), then `rtc`
//! builds the connection: our chosen ICE ufrag (it routes the first STUN request to this
//! connection), ICE lite, DTLS server role, the process certificate, one video codec and Opus
//! (RFC 7587), NACK (RFC 4585) and RTCP reports, and an interceptor that lets the RTCP the
//! engine acts on (PLI, FIR, NACK, sender reports) reach it. On connections that send, the
//! engine protects and sends the media itself ([`super::srtp`]), so NACK retransmission and
//! sender reports are its own too.
//!
//! Video codecs (see [`VideoCodec`]): a publisher (WHIP) may send H.264 (packetization-mode 1,
//! RFC 6184), VP8 (RFC 7741), VP9 (RFC 9628, profiles 0 and 2) or AV1 (AV1 RTP spec v1.0);
//! H.264 is taken when the offer has it, else the first of the others in that order. Only
//! that codec is put in the answer, so the publisher cannot switch to another mid-stream. A
//! viewer (WHEP) is offered the codec the stream has: there is no transcoding. That may also
//! be H.265 (RFC 7798, from RTSP cameras and Enhanced RTMP) for a viewer whose offer has it.

use super::handle::SessionError;
use super::srtp::KeyCapture;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_receiver_only;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_HEVC, MIME_TYPE_OPUS, MIME_TYPE_VP8,
    MIME_TYPE_VP9,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::RTCPFeedback;
use rtc::rtp_transceiver::rtp_sender::TYPE_RTCP_FB_NACK;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, SSRC};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// H.264 variants we register, in order of preference; all packetization-mode 1. Browsers
/// decode any profile whatever was negotiated, so the list only has to meet the offer.
const H264_PROFILES: [&str; 4] = ["42e01f", "42001f", "4d001f", "64001f"];
const H264_FIRST_PT: u8 = 102;
const OPUS_PT: u8 = 111;
/// Our payload types of the other video codecs (the answer uses the offer's anyway).
const VP8_PT: u8 = 96;
const VP9_PT: u8 = 98; // profile-id=0; 100 for profile-id=2
const AV1_PT: u8 = 45;
const H265_PT: u8 = 49;

/// A video codec WebRTC peers can send us or receive from us (passed through, never
/// transcoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Vp8,
    /// With the VP9 profile of the stream (0: 8-bit 4:2:0, 2: 10/12-bit 4:2:0).
    Vp9 {
        profile: u8,
    },
    Av1,
    /// Sent to viewers only (RFC 7798); publishers are not offered it.
    H265,
}

impl VideoCodec {
    /// Preference when a publisher offers several: H.264 first, since every output carries it.
    const PUBLISH_ORDER: [VideoCodec; 5] = [
        VideoCodec::H264,
        VideoCodec::Vp8,
        VideoCodec::Vp9 { profile: 0 },
        VideoCodec::Vp9 { profile: 2 },
        VideoCodec::Av1,
    ];

    /// The codec of a bus track, when WebRTC can carry it.
    pub fn of(config: &switchyard_media::CodecConfig) -> Option<Self> {
        use switchyard_media::CodecConfig;
        match config {
            CodecConfig::H264(_) => Some(VideoCodec::H264),
            CodecConfig::Vp8 => Some(VideoCodec::Vp8),
            // vpcC: version and flags, then the profile.
            CodecConfig::Vp9 { vpcc } => Some(VideoCodec::Vp9 {
                profile: vpcc.get(4).copied().unwrap_or(0),
            }),
            CodecConfig::Av1 { .. } => Some(VideoCodec::Av1),
            CodecConfig::H265(_) => Some(VideoCodec::H265),
            _ => None,
        }
    }

    /// The codec of a stream's video track, when it has one WebRTC can carry.
    pub fn of_stream(stream: &crate::bus::Stream) -> Option<Self> {
        stream
            .tracks()
            .borrow()
            .video()
            .and_then(|t| Self::of(&t.codec))
    }

    /// As people name it ("this stream is VP8").
    pub fn label(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 { .. } => "VP9",
            VideoCodec::Av1 => "AV1",
            VideoCodec::H265 => "H.265",
        }
    }

    /// Whether an offer's media section can carry it.
    fn offered_in(self, s: &MediaSection) -> bool {
        match self {
            // RFC 6184 8.1: packetization-mode defaults to 0, which we do not send.
            VideoCodec::H264 => s.h264_payload_types.iter().any(|pt| s.mode1.contains(pt)),
            VideoCodec::Vp8 => s.codecs.iter().any(|c| c == "vp8"),
            VideoCodec::Vp9 { profile } => s.vp9_profiles.contains(&profile),
            VideoCodec::Av1 => s.codecs.iter().any(|c| c == "av1"),
            VideoCodec::H265 => s.codecs.iter().any(|c| c == "h265"),
        }
    }

    /// What to register: (codec, our payload type) in order of preference.
    fn registrations(self) -> Vec<(RTCRtpCodec, u8)> {
        match self {
            VideoCodec::H264 => H264_PROFILES
                .iter()
                .enumerate()
                .map(|(i, profile)| (h264_codec(profile), H264_FIRST_PT + i as u8))
                .collect(),
            VideoCodec::Vp8 => vec![(video_codec(MIME_TYPE_VP8, ""), VP8_PT)],
            VideoCodec::Vp9 { profile } => vec![(
                video_codec(MIME_TYPE_VP9, &format!("profile-id={profile}")),
                VP9_PT + profile,
            )],
            VideoCodec::Av1 => vec![(video_codec(MIME_TYPE_AV1, ""), AV1_PT)],
            // No fmtp: profile, tier and level default to Main, Main tier, 3.1 (RFC 7798 7.1),
            // and receivers decode what comes; `rtc` matches the offer's line to an empty one.
            VideoCodec::H265 => vec![(video_codec(MIME_TYPE_HEVC, ""), H265_PT)],
        }
    }
}

/// Which way media flows for this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// WHIP: the peer sends, we receive.
    Receive,
    /// WHEP: we send, the peer receives.
    Send,
}

/// A sending track of a WHEP connection.
#[derive(Debug, Clone, Copy)]
pub struct SendTrack {
    pub sender: RTCRtpSenderId,
    pub ssrc: SSRC,
    pub payload_type: u8,
}

pub struct Built {
    pub pc: RTCPeerConnection,
    /// The sending side's SRTP keys, once DTLS completes (`Send` connections).
    pub keys: Option<Arc<KeyCapture>>,
    pub ufrag: String,
    /// Our description: the answer, or for a client connection the offer.
    pub sdp: String,
    pub video: Option<SendTrack>,
    pub audio: Option<SendTrack>,
    /// The video codec of the connection: what a publisher sends, or a viewer receives.
    pub video_codec: Option<VideoCodec>,
}

/// What the engine shares with every new connection.
pub struct Local {
    pub certificate: RTCCertificate,
    /// Host candidates: the socket's port on each advertised address.
    pub candidates: Vec<SocketAddr>,
}

/// A connection with our codecs and interceptors; `lite` for the answering (server) side. A
/// `Send` or measuring (`capture_keys`) connection gets the capture of its SRTP keys: the engine
/// protects and decrypts its media itself ([`super::srtp`]), with the two profiles it has.
fn new_connection(
    local: &Local,
    ufrag: &str,
    direction: Direction,
    videos: &[VideoCodec],
    lite: bool,
    capture_keys: bool,
    now: Instant,
) -> Result<(RTCPeerConnection, Option<Arc<KeyCapture>>), SessionError> {
    let mut setting_engine = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.to_string(), random_token(24))
        .with_lite(lite)
        .with_answering_dtls_role(RTCDtlsRole::Server);
    let keys = if direction == Direction::Send || capture_keys {
        let keys = KeyCapture::new().map_err(|e| SessionError::Internal(e.to_string()))?;
        setting_engine = setting_engine
            .with_crypto_provider(keys.clone())
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ]);
        Some(keys)
    } else {
        None
    };
    let setting_engine = setting_engine.build();
    let mut media_engine = MediaEngine::default();
    for (rtp_codec, payload_type) in videos.iter().flat_map(|v| v.registrations()) {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec,
                    payload_type,
                },
                RtpCodecKind::Video,
            )
            .map_err(internal)?;
    }
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(internal)?;
    // Only the interceptors of our direction: every one is a hop (and a queue) for each
    // packet. NACK and PLI feedback are offered either way (RFC 4585 4.2).
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_NACK.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new().with(Slot::from(14_000), DeliverControl::default());
    let registry = match direction {
        // NACKs, PLIs and reports are the engine's when it sends or measures the media.
        Direction::Send => registry,
        Direction::Receive if capture_keys => registry,
        // Transport-wide congestion feedback lets a browser publisher raise its bitrate.
        Direction::Receive => configure_twcc_receiver_only(
            registry
                .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
                .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
            &mut media_engine,
        )
        .map_err(internal)?,
    };
    let config = RTCConfigurationBuilder::new()
        .with_certificates(vec![local.certificate.clone()])
        .build();
    let pc = RTCPeerConnectionBuilder::new()
        .with_configuration(config)
        .with_setting_engine(setting_engine)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(internal)?;
    Ok((pc, keys))
}

fn add_host_candidates(pc: &mut RTCPeerConnection, local: &Local) -> Result<(), SessionError> {
    for addr in &local.candidates {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(internal)?;
        let init = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(internal)?;
        pc.add_local_candidate(init).map_err(internal)?;
    }
    Ok(())
}

/// Adds our sending video (H.264) and/or audio (Opus) track; returns (sender, SSRC) of each.
pub type Senders = (
    Option<(RTCRtpSenderId, SSRC)>,
    Option<(RTCRtpSenderId, SSRC)>,
);

fn add_sending_tracks(
    pc: &mut RTCPeerConnection,
    video: Option<VideoCodec>,
    audio: bool,
) -> Result<Senders, SessionError> {
    let mut add = |kind_name: &str, kind, codec| -> Result<_, SessionError> {
        let ssrc = rand::random::<u32>();
        let sender = pc
            .add_track(sending_track(kind_name, kind, ssrc, codec))
            .map_err(internal)?;
        Ok((sender, ssrc))
    };
    let video = match video {
        Some(codec) => Some(add(
            "video",
            RtpCodecKind::Video,
            codec.registrations().swap_remove(0).0,
        )?),
        None => None,
    };
    let audio = if audio {
        Some(add("audio", RtpCodecKind::Audio, opus_codec())?)
    } else {
        None
    };
    Ok((video, audio))
}

/// A client connection and its offer. `Receive` (a WHEP player): receive-only H.264 video and
/// Opus audio. `Send` (a WHIP publisher): our video (`video`, the stream's codec; H.264 when
/// not known) and audio tracks, send-only; their payload types are known once the answer is
/// applied ([`negotiated_tracks`]). `measure`: a measuring client's (`super::receive`).
pub fn build_offer(
    local: &Local,
    direction: Direction,
    video: Option<VideoCodec>,
    measure: bool,
    now: Instant,
) -> Result<(Built, Senders), SessionError> {
    let ufrag = random_token(8);
    let video = video.unwrap_or(VideoCodec::H264);
    let videos = match direction {
        Direction::Send => vec![video],
        // A pull takes whichever the stream has; the answer says which ([`answered_video`]).
        Direction::Receive => VideoCodec::PUBLISH_ORDER.to_vec(),
    };
    let (mut pc, keys) = new_connection(local, &ufrag, direction, &videos, false, measure, now)?;
    let senders = match direction {
        Direction::Receive => {
            pc.add_transceiver_from_kind(RtpCodecKind::Video, None)
                .map_err(internal)?;
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, None)
                .map_err(internal)?;
            (None, None)
        }
        Direction::Send => add_sending_tracks(&mut pc, Some(video), true)?,
    };
    add_host_candidates(&mut pc, local)?;
    let offer = pc.create_offer(None).map_err(internal)?;
    pc.set_local_description(now, offer).map_err(internal)?;
    let offer = pc
        .local_description()
        .ok_or_else(|| SessionError::Internal("no local description after offering".into()))?
        .sdp;
    let built = Built {
        pc,
        keys,
        ufrag,
        sdp: offer,
        video_codec: (direction == Direction::Send).then_some(video),
        video: None,
        audio: None,
    };
    Ok((built, senders))
}

/// The sending tracks the remote description settled on (payload type of the one video codec
/// the connection has, and of Opus).
pub fn negotiated_tracks(
    pc: &mut RTCPeerConnection,
    (video, audio): Senders,
) -> (Option<SendTrack>, Option<SendTrack>) {
    (
        video.and_then(|(sender, ssrc)| negotiated(pc, sender, ssrc, RtpCodecKind::Video)),
        audio.and_then(|(sender, ssrc)| negotiated(pc, sender, ssrc, RtpCodecKind::Audio)),
    )
}

/// The video codec a WHEP endpoint's answer settled on, if it sends video.
pub fn answered_video(answer: &str) -> Option<VideoCodec> {
    // An answer that sends is read like a WHIP publisher's offer.
    check_offer_for(answer, Direction::Receive, None)
        .ok()?
        .video
}

/// Applies a WHEP endpoint's answer to a connection from [`build_offer`].
pub fn apply_answer(
    pc: &mut RTCPeerConnection,
    answer: &str,
    now: Instant,
) -> Result<(), SessionError> {
    let description = RTCSessionDescription::answer(answer.to_string())
        .map_err(|e| SessionError::BadRequest(format!("the answer is not valid SDP: {e}")))?;
    pc.set_remote_description(now, description)
        .map_err(|e| SessionError::BadRequest(format!("the answer was refused: {e}")))
}

/// Answers an offer. `stream_video`: for a viewer (`Send`), the video codec of the stream
/// (H.264 when it is not known yet); the offer must be able to receive it.
pub fn build(
    local: &Local,
    offer: &str,
    direction: Direction,
    stream_video: Option<VideoCodec>,
    now: Instant,
) -> Result<Built, SessionError> {
    let summary = check_offer_for(offer, direction, stream_video)?;
    super::bundle::check_bundle(offer)?;
    let stream_video = stream_video.unwrap_or(VideoCodec::H264);
    let ufrag = random_token(8);
    let codec = summary.video.unwrap_or(stream_video);
    let (mut pc, keys) = new_connection(local, &ufrag, direction, &[codec], true, false, now)?;

    let senders = if direction == Direction::Send {
        add_sending_tracks(&mut pc, summary.video, summary.audio)?
    } else {
        (None, None)
    };
    let description = RTCSessionDescription::offer(offer.to_string())
        .map_err(|e| SessionError::BadRequest(format!("the offer is not valid SDP: {e}")))?;
    pc.set_remote_description(now, description)
        .map_err(|e| SessionError::BadRequest(format!("the offer was refused: {e}")))?;
    add_host_candidates(&mut pc, local)?;
    let answer = pc.create_answer(None).map_err(internal)?;
    pc.set_local_description(now, answer).map_err(internal)?;
    let answer = pc
        .local_description()
        .ok_or_else(|| SessionError::Internal("no local description after answering".into()))?
        .sdp;
    // RFC 3264 6: an answer has the offer's m-lines. `rtc` leaves out a section none of whose
    // codecs it matched, or keeps it without ICE credentials (port 0 is no sign: it writes 0
    // on accepted ones too); an answer without ours would connect to nothing.
    if !answer.contains(&format!("a=ice-ufrag:{ufrag}")) {
        return Err(SessionError::Unsupported(format!(
            "no media section of this offer could be answered with {}",
            codec.label()
        )));
    }
    let (video, audio) = negotiated_tracks(&mut pc, senders);
    if direction == Direction::Send && video.is_none() && audio.is_none() {
        return Err(SessionError::Unsupported(format!(
            "no {} or Opus could be negotiated with this offer",
            codec.label()
        )));
    }
    Ok(Built {
        pc,
        keys,
        ufrag,
        sdp: answer,
        video,
        audio,
        video_codec: summary.video,
    })
}

/// The payload type the answer settled on for `sender`, if it settled on a codec of ours of
/// `kind` (a connection registers one video codec, so there is no choice to make).
fn negotiated(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: SSRC,
    kind: RtpCodecKind,
) -> Option<SendTrack> {
    let mut sender_handle = pc.rtp_sender(sender)?;
    let payload_type = sender_handle
        .get_parameters()
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| {
            let is = |mime: &str| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime);
            match kind {
                RtpCodecKind::Audio => is(MIME_TYPE_OPUS),
                _ => {
                    (is(MIME_TYPE_H264)
                        && c.rtp_codec.sdp_fmtp_line.contains("packetization-mode=1"))
                        || is(MIME_TYPE_VP8)
                        || is(MIME_TYPE_VP9)
                        || is(MIME_TYPE_AV1)
                        || is(MIME_TYPE_HEVC)
                }
            }
        })?
        .payload_type;
    Some(SendTrack {
        sender,
        ssrc,
        payload_type,
    })
}

fn sending_track(
    kind_name: &str,
    kind: RtpCodecKind,
    ssrc: u32,
    codec: RTCRtpCodec,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "switchyard".to_string(),
        format!("switchyard-{kind_name}"),
        kind_name.to_string(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            active: true,
            ..Default::default()
        }],
    )
}

fn h264_codec(profile: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"
        ),
        rtcp_feedback: vec![],
    }
}

fn video_codec(mime: &str, fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn internal(e: rtc::shared::error::Error) -> SessionError {
    SessionError::Internal(e.to_string())
}

/// What an offer asks for, as far as we care.
#[derive(Debug, Default)]
pub struct OfferSummary {
    /// The video codec the connection will carry, if any.
    pub video: Option<VideoCodec>,
    pub audio: bool,
}

/// Checks an offer before `rtc` sees it, so a client hears what is missing in plain words
/// (for a viewer, of an H.264 stream).
#[cfg(test)]
fn check_offer(offer: &str, direction: Direction) -> Result<OfferSummary, SessionError> {
    check_offer_for(offer, direction, None)
}

/// [`check_offer`] for a viewer of a stream whose video is `stream_video` (ignored for a
/// publisher, who may send any of [`VideoCodec`]). A viewer whose offer cannot receive the
/// stream's known video codec is refused; when the codec is not known yet (`None`), H.264
/// is negotiated if the offer has it, and the connection may go on with audio alone.
pub fn check_offer_for(
    offer: &str,
    direction: Direction,
    stream_video: Option<VideoCodec>,
) -> Result<OfferSummary, SessionError> {
    let known_video = stream_video;
    let stream_video = stream_video.unwrap_or(VideoCodec::H264);
    let bad = |m: &str| Err(SessionError::BadRequest(m.to_string()));
    if !offer.trim_start().starts_with("v=0") {
        return bad("the body is not an SDP offer (it must start with \"v=0\")");
    }
    let mut sections: Vec<MediaSection> = Vec::new();
    let mut session_ufrag = false;
    let mut session_pwd = false;
    let mut session_fingerprint = false;
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_string();
            // m=<media> <port> <proto> <fmt> ... (RFC 8866 5.14)
            let formats = parts.skip(2).map(str::to_string).collect();
            sections.push(MediaSection {
                kind,
                formats,
                ..Default::default()
            });
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (ufrag, pwd, fingerprint) = (
            attr.starts_with("ice-ufrag:"),
            attr.starts_with("ice-pwd:"),
            attr.starts_with("fingerprint:"),
        );
        match sections.last_mut() {
            None => {
                session_ufrag |= ufrag;
                session_pwd |= pwd;
                session_fingerprint |= fingerprint;
            }
            Some(s) => {
                s.ufrag |= ufrag;
                s.pwd |= pwd;
                s.fingerprint |= fingerprint;
                let pt = attr.split([':', ' ']).nth(1).unwrap_or_default();
                // A payload type the m-line does not list is not offered (RFC 8866 5.14).
                let listed = s.formats.iter().any(|f| f == pt);
                if let Some(rest) = attr.strip_prefix("rtpmap:").filter(|_| listed) {
                    let name = rest.split_whitespace().nth(1).unwrap_or_default();
                    let name = name
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    match name.as_str() {
                        "vp9" => s.vp9_payload_types.push(pt.to_string()),
                        "h264" => s.h264_payload_types.push(pt.to_string()),
                        _ => {}
                    }
                    s.codecs.push(name);
                }
                if let Some(rest) = attr.strip_prefix("fmtp:") {
                    if rest.contains("packetization-mode=1") {
                        s.mode1.push(pt.to_string());
                    }
                    if s.vp9_payload_types.iter().any(|p| p == pt) {
                        // RFC 9628 6: profile-id defaults to 0.
                        let profile = rest
                            .split(|c: char| c == ';' || c.is_whitespace())
                            .find_map(|p| p.trim().strip_prefix("profile-id="))
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(0);
                        s.vp9_fmtp.push((pt.to_string(), profile));
                    }
                }
                match attr {
                    "sendonly" => s.direction = Some("sendonly"),
                    "recvonly" => s.direction = Some("recvonly"),
                    "sendrecv" => s.direction = Some("sendrecv"),
                    "inactive" => s.direction = Some("inactive"),
                    _ => {}
                }
            }
        }
    }
    for s in sections.iter_mut() {
        // VP9 payload types without an fmtp line are profile 0 (RFC 9628 6).
        for pt in &s.vp9_payload_types {
            let profile = s
                .vp9_fmtp
                .iter()
                .find(|(p, _)| p == pt)
                .map_or(0, |(_, profile)| *profile);
            s.vp9_profiles.push(profile);
        }
    }
    let media: Vec<&MediaSection> = sections
        .iter()
        .filter(|s| s.kind == "audio" || s.kind == "video")
        .collect();
    if media.is_empty() {
        return bad("the offer has no audio or video media section (m=audio / m=video)");
    }
    if !media.iter().all(|s| s.ufrag || session_ufrag)
        || !media.iter().all(|s| s.pwd || session_pwd)
    {
        return bad("the offer has no ICE credentials (a=ice-ufrag and a=ice-pwd)");
    }
    if !session_fingerprint && !media.iter().all(|s| s.fingerprint) {
        return bad("the offer has no DTLS fingerprint (a=fingerprint)");
    }
    let wanted = match direction {
        Direction::Receive => ["sendonly", "sendrecv"],
        Direction::Send => ["recvonly", "sendrecv"],
    };
    let mut summary = OfferSummary::default();
    let mut other_video: Option<&MediaSection> = None;
    for s in &media {
        if !wanted.contains(&s.direction.unwrap_or("sendrecv")) {
            continue;
        }
        if s.kind == "video" {
            summary.video = match direction {
                Direction::Receive => VideoCodec::PUBLISH_ORDER
                    .into_iter()
                    .find(|c| c.offered_in(s)),
                Direction::Send => Some(stream_video).filter(|c| c.offered_in(s)),
            };
            if summary.video.is_none() {
                other_video = Some(s);
            }
        }
        if s.kind == "audio" && s.codecs.iter().any(|c| c == "opus") {
            summary.audio = true;
        }
    }
    if let (Direction::Send, None, Some(s), Some(_)) =
        (direction, summary.video, other_video, known_video)
    {
        let known: Vec<&str> = VideoCodec::PUBLISH_ORDER
            .iter()
            .filter(|c| c.offered_in(s))
            .map(|c| c.label())
            .fold(Vec::new(), |mut v, l| {
                if !v.contains(&l) {
                    v.push(l);
                }
                v
            });
        let has = if known.is_empty() {
            format!("none we know ({})", s.codecs.join(", "))
        } else {
            format!("only {}", known.join(", "))
        };
        let wanted = match stream_video {
            VideoCodec::Vp9 { profile } if profile != 0 => format!("VP9 profile {profile}"),
            other => other.label().to_string(),
        };
        return Err(SessionError::Unsupported(format!(
            "this stream is {wanted}; your offer has {has} (there is no transcoding of video); it offers {}",
            describe(&media)
        )));
    }
    if summary.video.is_none() && !summary.audio {
        let verb = match direction {
            Direction::Receive => "send",
            Direction::Send => "receive",
        };
        let codecs = match direction {
            Direction::Receive => "H.264 (packetization-mode=1), VP8, VP9 or AV1".to_string(),
            Direction::Send => stream_video.label().to_string(),
        };
        return Err(SessionError::Unsupported(format!(
            "the offer does not {verb} {codecs} video or Opus audio; it offers {}",
            describe(&media)
        )));
    }
    Ok(summary)
}

/// "video [vp8, h264] recvonly; audio [opus] recvonly"
fn describe(media: &[&MediaSection]) -> String {
    media
        .iter()
        .map(|s| {
            format!(
                "{} [{}] {}",
                s.kind,
                s.codecs.join(", "),
                s.direction.unwrap_or("sendrecv")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, Default)]
struct MediaSection {
    kind: String,
    /// The payload types of the m-line.
    formats: Vec<String>,
    codecs: Vec<String>,
    h264_payload_types: Vec<String>,
    /// Payload types whose fmtp line says packetization-mode=1.
    mode1: Vec<String>,
    vp9_payload_types: Vec<String>,
    /// (payload type, profile-id) of the VP9 fmtp lines.
    vp9_fmtp: Vec<(String, u8)>,
    vp9_profiles: Vec<u8>,
    direction: Option<&'static str>,
    ufrag: bool,
    pwd: bool,
    fingerprint: bool,
}

/// Random `[a-z0-9]` string (ICE ufrag/pwd use ice-chars, RFC 8839 5.4).
pub fn random_token(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Marks the inbound RTCP the engine acts on (keyframe requests, sender reports) so `rtc`
/// delivers it from `poll_read` (by default its interceptor chain consumes all RTCP).
#[derive(Default)]
struct DeliverControl {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverControl {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<PictureLossIndication>()
                    || any.is::<FullIntraRequest>()
                    || any.is::<SenderReport>()
                    || any.is::<TransportLayerNack>()
            });
            if wanted {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for DeliverControl {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests;
