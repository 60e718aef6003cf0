//! Turning a WHIP/WHEP offer into a peer connection and its answer.
//!
//! The offer is checked first so a client hears exactly what is wrong with it (no ICE
//! credentials, no fingerprint, no H.264/Opus in the direction it needs), then `rtc` builds the
//! connection: our chosen ICE ufrag (it routes the first STUN request to this connection), ICE
//! lite, DTLS server role, the process certificate, H.264 (packetization-mode 1, RFC 6184) and
//! Opus (RFC 7587), NACK (RFC 4585) and RTCP reports, and an interceptor that lets the RTCP the
//! engine acts on (PLI, FIR, NACK, sender reports) reach it. On connections that send, the
//! engine protects and sends the media itself ([`super::srtp`]), so NACK retransmission and
//! sender reports are its own too.

use super::srtp::KeyCapture;
use super::SessionError;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, Slot, StreamInfo, TaggedPacket};
use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::interceptor_registry::configure_twcc_receiver_only;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS,
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
}

/// What the engine shares with every new connection.
pub struct Local {
    pub certificate: RTCCertificate,
    /// Host candidates: the socket's port on each advertised address.
    pub candidates: Vec<SocketAddr>,
}

/// A connection with our codecs and interceptors; `lite` for the answering (server) side.
/// A `Send` connection also gets the capture of its SRTP keys: the engine protects the media
/// it sends itself ([`super::srtp`]), with the two profiles it implements.
fn new_connection(
    local: &Local,
    ufrag: &str,
    direction: Direction,
    lite: bool,
    now: Instant,
) -> Result<(RTCPeerConnection, Option<Arc<KeyCapture>>), SessionError> {
    let mut setting_engine = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.to_string(), random_token(24))
        .with_lite(lite)
        .with_answering_dtls_role(RTCDtlsRole::Server);
    let keys = if direction == Direction::Send {
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
    for (i, profile) in H264_PROFILES.iter().enumerate() {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: h264_codec(profile),
                    payload_type: H264_FIRST_PT + i as u8,
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
        // NACK retransmission and sender reports are the engine's: it sends the media.
        Direction::Send => registry,
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
    video: bool,
    audio: bool,
) -> Result<Senders, SessionError> {
    let mut add = |kind_name: &str, kind, codec| -> Result<_, SessionError> {
        let ssrc = rand::random::<u32>();
        let sender = pc
            .add_track(sending_track(kind_name, kind, ssrc, codec))
            .map_err(internal)?;
        Ok((sender, ssrc))
    };
    let video = if video {
        Some(add(
            "video",
            RtpCodecKind::Video,
            h264_codec(H264_PROFILES[0]),
        )?)
    } else {
        None
    };
    let audio = if audio {
        Some(add("audio", RtpCodecKind::Audio, opus_codec())?)
    } else {
        None
    };
    Ok((video, audio))
}

/// A client connection and its offer. `Receive` (a WHEP player): receive-only H.264 video and
/// Opus audio. `Send` (a WHIP publisher): our video and audio tracks, send-only; their payload
/// types are known once the answer is applied ([`negotiated_tracks`]).
pub fn build_offer(
    local: &Local,
    direction: Direction,
    now: Instant,
) -> Result<(Built, Senders), SessionError> {
    let ufrag = random_token(8);
    let (mut pc, keys) = new_connection(local, &ufrag, direction, false, now)?;
    let senders = match direction {
        Direction::Receive => {
            pc.add_transceiver_from_kind(RtpCodecKind::Video, None)
                .map_err(internal)?;
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, None)
                .map_err(internal)?;
            (None, None)
        }
        Direction::Send => add_sending_tracks(&mut pc, true, true)?,
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
        video: None,
        audio: None,
    };
    Ok((built, senders))
}

/// The sending tracks the remote description settled on (codec and payload type).
pub fn negotiated_tracks(
    pc: &mut RTCPeerConnection,
    (video, audio): Senders,
) -> (Option<SendTrack>, Option<SendTrack>) {
    (
        video.and_then(|(sender, ssrc)| negotiated(pc, sender, ssrc, MIME_TYPE_H264)),
        audio.and_then(|(sender, ssrc)| negotiated(pc, sender, ssrc, MIME_TYPE_OPUS)),
    )
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

pub fn build(
    local: &Local,
    offer: &str,
    direction: Direction,
    now: Instant,
) -> Result<Built, SessionError> {
    let summary = check_offer(offer, direction)?;
    let ufrag = random_token(8);
    let (mut pc, keys) = new_connection(local, &ufrag, direction, true, now)?;

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
    let (video, audio) = negotiated_tracks(&mut pc, senders);
    if direction == Direction::Send && video.is_none() && audio.is_none() {
        return Err(SessionError::Unsupported(
            "no H.264 (packetization-mode=1) or Opus could be negotiated with this offer".into(),
        ));
    }
    Ok(Built {
        pc,
        keys,
        ufrag,
        sdp: answer,
        video,
        audio,
    })
}

/// The payload type the answer settled on for `sender`, if it settled on one of `mime`.
fn negotiated(
    pc: &mut RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: SSRC,
    mime: &str,
) -> Option<SendTrack> {
    let mut sender_handle = pc.rtp_sender(sender)?;
    let payload_type = sender_handle
        .get_parameters()
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case(mime)
                && (mime != MIME_TYPE_H264
                    || c.rtp_codec.sdp_fmtp_line.contains("packetization-mode=1"))
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
    pub video: bool,
    pub audio: bool,
}

/// Checks an offer before `rtc` sees it, so a client hears what is missing in plain words.
pub fn check_offer(offer: &str, direction: Direction) -> Result<OfferSummary, SessionError> {
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
            let formats: Vec<String> = parts.skip(2).map(str::to_string).collect();
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
                if let Some(rest) = attr.strip_prefix("rtpmap:") {
                    let name = rest.split_whitespace().nth(1).unwrap_or_default();
                    s.codecs.push(
                        name.split('/')
                            .next()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                    );
                }
                if let Some(rest) = attr.strip_prefix("fmtp:") {
                    if rest.contains("packetization-mode=1") {
                        s.h264_mode1 = true;
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
    for s in &media {
        if !wanted.contains(&s.direction.unwrap_or("sendrecv")) {
            continue;
        }
        if s.kind == "video" && s.codecs.iter().any(|c| c == "h264") && s.h264_mode1 {
            summary.video = true;
        }
        if s.kind == "audio" && s.codecs.iter().any(|c| c == "opus") {
            summary.audio = true;
        }
    }
    if !summary.video && !summary.audio {
        let verb = match direction {
            Direction::Receive => "send",
            Direction::Send => "receive",
        };
        return Err(SessionError::Unsupported(format!(
            "the offer does not {verb} H.264 (packetization-mode=1) video or Opus audio; it offers {}",
            media
                .iter()
                .map(|s| format!("{} [{}] {}", s.kind, s.codecs.join(", "), s.direction.unwrap_or("sendrecv")))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(summary)
}

#[derive(Debug, Default)]
struct MediaSection {
    kind: String,
    #[allow(dead_code)]
    formats: Vec<String>,
    codecs: Vec<String>,
    h264_mode1: bool,
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

/// Refreshes a pull's loss and round-trip time from the connection's statistics (W3C
/// webrtc-stats: `inbound-rtp.packetsLost`, the candidate pair's `currentRoundTripTime`, which
/// a full-ICE client measures with its own connectivity checks, RFC 8445 7.2.5).
pub(super) fn client_stats(
    pc: &mut RTCPeerConnection,
    counters: &super::ClientCounters,
    now: Instant,
) {
    use std::sync::atomic::Ordering;
    let report = pc.get_stats(now, rtc::statistics::StatsSelector::None);
    let lost: i64 = report
        .inbound_rtp_streams()
        .map(|s| s.received_rtp_stream_stats.packets_lost.max(0))
        .sum();
    counters.lost.store(lost as u64, Ordering::Relaxed);
    let rtt = report
        .candidate_pairs()
        .filter(|p| p.current_round_trip_time > 0.0)
        .max_by_key(|p| p.bytes_received)
        .map(|p| p.current_round_trip_time);
    if let Some(rtt) = rtt {
        counters
            .rtt_us
            .store((rtt * 1e6).round().max(1.0) as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_RECVONLY: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=fingerprint:sha-256 AA:BB\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn offers_are_checked_with_plain_reasons() {
        let ok = check_offer(CHROME_RECVONLY, Direction::Send).unwrap();
        assert!(ok.video && ok.audio);
        let err = |sdp: &str, d| check_offer(sdp, d).unwrap_err().to_string();
        assert!(err("hello", Direction::Send).contains("not an SDP offer"));
        assert!(err("v=0\r\ns=-\r\n", Direction::Send).contains("no audio or video"));
        assert!(err(
            &CHROME_RECVONLY.replace("a=ice-pwd", "a=x-pwd"),
            Direction::Send
        )
        .contains("ICE credentials"));
        assert!(err(
            &CHROME_RECVONLY.replace("a=fingerprint", "a=x"),
            Direction::Send
        )
        .contains("fingerprint"));
        // A receive-only offer cannot publish.
        assert!(err(CHROME_RECVONLY, Direction::Receive).contains("does not send H.264"));
        let vp8_only = CHROME_RECVONLY
            .replace("a=rtpmap:102 H264/90000\r\n", "")
            .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
        assert!(err(&vp8_only, Direction::Send).contains("video [vp8]"));
    }
}
