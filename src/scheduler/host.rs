//! The host's memory as the kernel reports it: what admission's memory floor is checked
//! against. Environments are admitted by their *declared* memory size, which the capacity
//! lets exceed the host's memory; this is what keeps the host itself from running out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A figure of `/proc/meminfo` (`MemTotal:`, `MemAvailable:`) in MB.
pub fn meminfo_mb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// How long a reading of the host's available memory is used before it is read again.
const FRESH: Duration = Duration::from_millis(200);

/// The host's available memory against a floor, read at most every [`FRESH`].
pub struct HostMemory {
    floor_mb: u64,
    last: Mutex<Option<(Instant, bool)>>,
}

impl HostMemory {
    /// A floor of `floor_mb` (0: never low).
    pub fn new(floor_mb: u64) -> Self {
        Self {
            floor_mb,
            last: Mutex::new(None),
        }
    }

    /// Whether the host has less memory available than the floor. Where the kernel does
    /// not say, it never is.
    pub fn is_low(&self) -> bool {
        if self.floor_mb == 0 {
            return false;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, low)) = *last
            && at.elapsed() < FRESH
        {
            return low;
        }
        let low = meminfo_mb("MemAvailable:").is_some_and(|mb| mb < self.floor_mb);
        if low {
            tracing::warn!(
                floor_mb = self.floor_mb,
                "the host is low on memory: cold starts evict idle environments or are throttled"
            );
        }
        *last = Some((Instant::now(), low));
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_hosts_memory_is_low_and_none_never_is() {
        assert!(!HostMemory::new(0).is_low());
        if let Some(total) = meminfo_mb("MemTotal:") {
            assert!(HostMemory::new(total * 2).is_low());
            assert!(!HostMemory::new(1).is_low());
        }
    }
}
