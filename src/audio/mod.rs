//! Audio bridging: readers get the stream's audio in a codec their protocol carries.
//!
//! Browsers' WebRTC wants Opus (RFC 7874 3.1), RTMP CDNs want AAC, RTSP cameras often send
//! G.711. An output says what it needs ([`AudioNeed`]) when it subscribes; if the stream's audio
//! is not that, the reader is attached to a *converted view* of the stream instead: a stream
//! off the registry whose video frames are the source's own (shared, never copied or touched)
//! and whose audio track is re-encoded. There is one view per source stream and target codec,
//! shared by every reader that needs it, started by the first and stopped
//! [`IDLE_STOP`] after the last one leaves. Readers of a view count as readers of the source.
//!
//! Converting needs the `transcode` cargo feature (libavcodec through ffmpeg-next). Without it
//! readers get the source audio as it is, and the stream's `audio_conversions` (API) and the
//! log say that the conversion is unavailable and why.

#[cfg(feature = "transcode")]
mod convert;
mod need;
mod settings;
mod view;

#[cfg(feature = "transcode")]
pub use convert::{ConvertError, Converter, Pushed};
pub use need::{AudioCodec, AudioNeed};
pub use settings::{configure, AudioSettings};
pub use view::{
    conversions, settled_tracks, subscribe, subscribe_now, tracks_settled, Conversion,
    ConversionInfo, AVAILABLE, CONVERTED_TO_AAC, CONVERTED_TO_OPUS, CORRUPT_FRAMES, IDLE_STOP,
};
