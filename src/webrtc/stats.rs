//! The engine's counters and its recent send delays, shared with the HTTP layer.

/// Engine counters, shared with the HTTP layer.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub datagrams_sent: std::sync::atomic::AtomicU64,
    pub datagrams_dropped: std::sync::atomic::AtomicU64,
    /// Media packets sent again because a viewer asked (NACK).
    pub retransmitted: std::sync::atomic::AtomicU64,
    /// Media packets left out on purpose (`simulate_loss_one_in`).
    pub simulated_losses: std::sync::atomic::AtomicU64,
    /// Recent send batches of media: (delay in microseconds from the frame entering the bus
    /// to the batch leaving the socket, datagrams in the batch).
    send_delays: std::sync::Mutex<std::collections::VecDeque<(u32, u32)>>,
}

/// Send batches kept for the delay percentiles.
const DELAY_SAMPLES: usize = 4096;

impl EngineStats {
    pub(crate) fn record_delay(&self, delay: std::time::Duration, datagrams: usize) {
        let mut delays = self.send_delays.lock().unwrap();
        if delays.len() == DELAY_SAMPLES {
            delays.pop_front();
        }
        delays.push_back((
            delay.as_micros().min(u32::MAX as u128) as u32,
            datagrams.min(u32::MAX as usize) as u32,
        ));
    }

    /// Percentiles (0..=100) of the recent per-datagram send delay (a frame entering the bus
    /// to one viewer's datagram leaving the socket), in milliseconds.
    pub fn delay_percentiles_ms(&self, percentiles: &[u32]) -> Vec<Option<f64>> {
        let mut delays: Vec<(u32, u32)> =
            self.send_delays.lock().unwrap().iter().copied().collect();
        delays.sort_unstable();
        let total: u64 = delays.iter().map(|(_, n)| *n as u64).sum();
        percentiles
            .iter()
            .map(|p| {
                let rank = (total.saturating_sub(1) * *p as u64) / 100;
                let mut seen = 0u64;
                for (delay, n) in &delays {
                    seen += *n as u64;
                    if seen > rank {
                        return Some(*delay as f64 / 1000.0);
                    }
                }
                None
            })
            .collect()
    }
}
