//! State of the registry that its publishers reach back into: a publisher that leaves removes
//! its stream and adds its counters to the totals of ended streams.

use super::settings::BusConfig;
use super::stream::Stream;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Counters of streams that have ended, so process totals never go backwards.
#[derive(Debug, Default)]
pub(crate) struct EndedTotals {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_dropped: AtomicU64,
}

pub(crate) struct RegistryInner {
    pub config: BusConfig,
    pub streams: Mutex<HashMap<String, Arc<Stream>>>,
    pub ended: EndedTotals,
    pub demand: std::sync::OnceLock<(DemandHook, std::time::Duration)>,
    pub claim: std::sync::OnceLock<ClaimHook>,
}

/// Asked when a reader wants a stream that is not on the bus: returns true if a source for it
/// is being started (an on-demand pull), so the reader should wait for it. Asked again while
/// the reader waits: false then means the source gave up (no origin has the stream), so the
/// reader need not wait out the whole time.
pub type DemandHook = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Asked before a publisher takes a name ([`super::registry::Registry::publish_claimed`]):
/// `Err(reason)` refuses it. Cluster mode claims the name in its directory here, so that of
/// two nodes getting a publisher for one name at once exactly one wins.
pub type ClaimHook = Arc<
    dyn Fn(
            String,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;
