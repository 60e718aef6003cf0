//! What audio an output can carry ([`AudioNeed`]) and the codecs audio is converted to
//! ([`AudioCodec`]).

use serde::Serialize;
use switchyard_media::CodecConfig;

/// A codec audio is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    Aac,
    Opus,
}

impl AudioCodec {
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
        }
    }

    /// Whether `codec` is already this codec.
    pub fn is(self, codec: &CodecConfig) -> bool {
        matches!(
            (self, codec),
            (AudioCodec::Aac, CodecConfig::Aac(_)) | (AudioCodec::Opus, CodecConfig::Opus { .. })
        )
    }
}

/// What audio an output can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioNeed {
    /// AAC only: RTMP play and push (CDNs and players take AAC), HLS in its AAC mode.
    Aac,
    /// Opus only: WebRTC.
    Opus,
    /// AAC or Opus: fMP4 (HLS, MSE); G.711 becomes AAC.
    AacOrOpus,
}

impl AudioNeed {
    /// The codec `audio` must be converted to for this output, if any.
    pub fn target_for(self, audio: &CodecConfig) -> Option<AudioCodec> {
        match (self, audio) {
            (AudioNeed::Aac, CodecConfig::Opus { .. } | CodecConfig::G711 { .. }) => {
                Some(AudioCodec::Aac)
            }
            (AudioNeed::Opus, CodecConfig::Aac(_) | CodecConfig::G711 { .. }) => {
                Some(AudioCodec::Opus)
            }
            (AudioNeed::AacOrOpus, CodecConfig::G711 { .. }) => Some(AudioCodec::Aac),
            _ => None,
        }
    }
}
