//! Encoder settings of the audio conversions (`[audio]` in the configuration), set once per
//! process.

use std::sync::OnceLock;

/// Encoder settings (`[audio]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSettings {
    pub aac_bitrate: u32,
    pub opus_bitrate: u32,
}

impl Default for AudioSettings {
    fn default() -> Self {
        AudioSettings {
            aac_bitrate: 128_000,
            opus_bitrate: 64_000,
        }
    }
}

static SETTINGS: OnceLock<AudioSettings> = OnceLock::new();

/// Sets the process's encoder settings (once, at start; later calls are ignored).
pub fn configure(settings: AudioSettings) {
    let _ = SETTINGS.set(settings);
}

#[cfg(feature = "transcode")]
pub(super) fn settings() -> AudioSettings {
    SETTINGS.get().cloned().unwrap_or_default()
}
