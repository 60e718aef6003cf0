//! Tunables of the bus (`[bus]` in the configuration).

/// Tunables of the bus; see `config.rs` for their defaults and meaning.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Frames a reader may fall behind before it loses frames and skips to a keyframe.
    pub reader_queue_frames: usize,
    /// Upper bound on the bytes kept in one stream's GOP cache.
    pub gop_cache_max_bytes: usize,
    /// Whether a new publisher on a busy name kicks the old one instead of being refused.
    pub publisher_takeover: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            reader_queue_frames: 512,
            gop_cache_max_bytes: 16 << 20,
            publisher_takeover: false,
        }
    }
}
