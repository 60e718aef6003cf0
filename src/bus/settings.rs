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
    /// Streams on the bus at once; 0: no limit (`limits.max_streams`).
    pub max_streams: usize,
    /// Session readers per stream ([`crate::bus::Registry::admit_reader`]); 0: no limit.
    pub max_readers_per_stream: usize,
    /// A publisher above this bitrate, measured over `bitrate_window`, is kicked; 0: no limit.
    pub max_publisher_bitrate_kbps: u64,
    pub bitrate_window: std::time::Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            reader_queue_frames: 512,
            gop_cache_max_bytes: 16 << 20,
            publisher_takeover: false,
            max_streams: 0,
            max_readers_per_stream: 0,
            max_publisher_bitrate_kbps: 0,
            bitrate_window: std::time::Duration::from_secs(4),
        }
    }
}
