//! Pulls: streams this server fetches from elsewhere and publishes on its bus (being written).

use crate::bus::Registry;
use crate::config::Config;
use tokio_util::sync::CancellationToken;

pub struct PullManager {}

impl PullManager {
    pub fn new(_registry: Registry, _config: &Config, _shutdown: CancellationToken) -> Self {
        PullManager {}
    }
}
