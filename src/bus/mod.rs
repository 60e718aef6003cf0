//! The media bus: a registry of named streams, each with one publisher and many readers.
//!
//! Guarantees (see ARCHITECTURE.md, "Bus"):
//! - one [`Publisher`] per name; a second one is refused with [`BusError::AlreadyPublishing`]
//!   unless takeover is configured, in which case the old publisher is kicked;
//! - fan-out never blocks the publisher and never copies a payload per reader: readers share
//!   `Arc<BusFrame>`s from a bounded ring (a tokio broadcast channel);
//! - a reader that falls more than the ring behind is told how many frames it lost and resumes
//!   at the next video keyframe ([`Reader`]);
//! - a new reader starts at once with the current tracks and the GOP cache (the frames since the
//!   latest video keyframe); the cache snapshot and the ring subscription are taken under the
//!   same lock as publishing, so nothing is lost or repeated in between;
//! - track changes travel in-band, in order with frames, and are also observable through a
//!   watch channel ([`Stream::tracks`]);
//! - when the publisher goes away the stream is removed and its readers end after draining.

mod name;
mod peer;
mod publisher;
mod reader;
mod registry;
mod settings;
mod shared;
mod stream;

pub use name::{matches_pattern, validate_name, BusError};
pub use peer::Peer;
pub use publisher::Publisher;
pub use reader::{Reader, ReaderEvent, TryRecv};
pub use registry::{Registry, Totals};
pub use settings::BusConfig;
pub use shared::DemandHook;
pub use stream::{BusFrame, BusItem, Counters, EncodedSlot, Stream, StreamSnapshot, TrackSet};

#[cfg(test)]
mod tests;
