//! Pushes: streams this server republishes to other RTMP servers (being written).

use crate::bus::Registry;
use crate::config::Config;
use tokio_util::sync::CancellationToken;

pub struct PushManager {}

impl PushManager {
    pub fn new(_registry: Registry, _config: &Config, _shutdown: CancellationToken) -> Self {
        PushManager {}
    }
}
