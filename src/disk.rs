//! The data disk's budget: how much of the data directory's filesystem Shoal may still
//! write, and who has claimed part of it.
//!
//! Everything durable (the database with its async events, queue messages and logs, the
//! code store) and every disk-backed `/tmp` image lives on one filesystem. Without a
//! budget, a function filling its `/tmp` or printing without end fills that disk, and
//! then every write fails: async invokes of every function answer a 500 from SQLite and
//! writes to other functions' `/tmp` are lost. So:
//! - [`DiskBudget::check`] answers, before an async event, a queue message or a code
//!   package is accepted, whether the disk has room beyond the reserve (`--disk-reserve`)
//!   and the `/tmp` space promised to live environments. The figure is measured
//!   (`statvfs`) at most every [`CACHE_FOR`], so the hot path does not call the kernel on
//!   each request.
//! - [`DiskBudget::reserve_tmp`] promises an environment the whole size of its sparse
//!   `/tmp` image at creation (the promise ends when its [`TmpReservation`] is dropped, as
//!   the environment goes). The images' sizes, less what they already hold, must fit in
//!   the free space minus the reserve, so one function's `/tmp` can never take another's.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a measured figure is used before the filesystem is asked again.
pub const CACHE_FOR: Duration = Duration::from_millis(500);
const MB: u64 = 1 << 20;

/// How much of the filesystem is kept free (`--disk-reserve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// 1 GB or 5% of the filesystem, whichever is smaller.
    Auto,
    Bytes(u64),
    /// A percentage of the filesystem's size.
    Percent(u8),
}

impl Reserve {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "auto" {
            return Ok(Self::Auto);
        }
        if let Some(percent) = raw.strip_suffix('%') {
            return match percent.trim().parse::<u8>() {
                Ok(p) if p <= 90 => Ok(Self::Percent(p)),
                _ => Err(format!("'{raw}' is not a percentage from 0% to 90%")),
            };
        }
        parse_bytes(raw).map(Self::Bytes)
    }

    /// The reserve in bytes on a filesystem of `total` bytes.
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            Self::Auto => (1024 * MB).min(total / 20),
            Self::Bytes(bytes) => bytes,
            Self::Percent(p) => total / 100 * u64::from(p),
        }
    }
}

/// A size in bytes: a number, optionally followed by KB, MB, GB or TB (powers of 1024).
pub fn parse_bytes(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let upper = raw.to_ascii_uppercase();
    let (number, unit) = [
        ("TB", MB << 20),
        ("GB", MB << 10),
        ("MB", MB),
        ("KB", 1 << 10),
    ]
    .into_iter()
    .find_map(|(suffix, unit)| upper.strip_suffix(suffix).map(|n| (n.to_string(), unit)))
    .unwrap_or_else(|| (upper.trim_end_matches('B').to_string(), 1));
    number
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("'{raw}' is not a size like 1048576, 512KB, 64MB or 1GB"))
}

/// The disk has no room for what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "Shoal's data disk is full: {wanted}, but {} MB are free on {} with {} MB kept in reserve (--disk-reserve){}; try again once space is freed",
    .free / MB,
    .path.display(),
    .reserve / MB,
    promised_words(*.promised)
)]
pub struct DiskFull {
    /// What could not be had, in words ("an async event needs room", ...).
    pub wanted: String,
    pub path: PathBuf,
    pub free: u64,
    pub reserve: u64,
    /// `/tmp` space promised to live environments and not yet used by them.
    pub promised: u64,
}

fn promised_words(bytes: u64) -> String {
    if bytes == 0 {
        String::new()
    } else {
        format!(
            " and {} MB promised to the /tmp of live environments",
            bytes / MB
        )
    }
}

/// One measurement: free bytes (for unprivileged writers) and what is promised.
#[derive(Debug, Clone, Copy)]
struct Figures {
    at: Instant,
    free: u64,
    promised: u64,
}

impl Figures {
    /// Bytes that may still be written.
    fn headroom(&self, reserve: u64) -> u64 {
        self.free
            .saturating_sub(reserve)
            .saturating_sub(self.promised)
    }
}

struct Promise {
    image: PathBuf,
    bytes: u64,
}

pub struct DiskBudget {
    path: PathBuf,
    reserve: u64,
    cached: Mutex<Option<Figures>>,
    promises: Mutex<HashMap<u64, Promise>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Free and total bytes of the filesystem holding `path`.
fn measure(path: &Path) -> std::io::Result<(u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = stat.fragment_size() as u64;
    Ok((
        stat.blocks_available() as u64 * unit,
        stat.blocks() as u64 * unit,
    ))
}

impl DiskBudget {
    /// The budget of the filesystem holding `data_dir`.
    pub fn new(data_dir: &Path, reserve: Reserve) -> std::io::Result<Arc<Self>> {
        let (_, total) = measure(data_dir)?;
        let reserve = reserve.resolve(total);
        tracing::info!(
            data_dir = %data_dir.display(),
            size_mb = total / MB,
            reserve_mb = reserve / MB,
            "data disk budget"
        );
        Ok(Arc::new(Self {
            path: data_dir.to_path_buf(),
            reserve,
            cached: Mutex::new(None),
            promises: Mutex::new(HashMap::new()),
            next_id: Default::default(),
        }))
    }

    fn promises(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Promise>> {
        self.promises.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Measures now: free space, and the promised `/tmp` space not yet in use (an image
    /// already holding data has taken that much of its promise from the free space).
    fn measure(&self, promises: &HashMap<u64, Promise>) -> Figures {
        let free = match measure(&self.path) {
            Ok((free, _)) => free,
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot measure the data disk");
                u64::MAX
            }
        };
        let promised = promises
            .values()
            .map(|p| {
                let used = std::fs::metadata(&p.image)
                    .map(|m| m.blocks() * 512)
                    .unwrap_or(0);
                p.bytes.saturating_sub(used)
            })
            .sum();
        Figures {
            at: Instant::now(),
            free,
            promised,
        }
    }

    fn figures(&self) -> Figures {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match *cached {
            Some(figures) if figures.at.elapsed() < CACHE_FOR => figures,
            _ => {
                let figures = self.measure(&self.promises());
                *cached = Some(figures);
                figures
            }
        }
    }

    fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn full(&self, wanted: String, figures: Figures) -> DiskFull {
        DiskFull {
            wanted,
            path: self.path.clone(),
            free: figures.free,
            reserve: self.reserve,
            promised: figures.promised,
        }
    }

    /// Whether `bytes` more may be written (by a figure at most [`CACHE_FOR`] old);
    /// `what` names the write in the error.
    pub fn check(&self, bytes: u64, what: &str) -> Result<(), DiskFull> {
        let figures = self.figures();
        if figures.headroom(self.reserve) > bytes {
            Ok(())
        } else {
            Err(self.full(format!("{what} needs room"), figures))
        }
    }

    /// Promises `bytes` to the `/tmp` image at `image` (made after this call) until the
    /// returned reservation is dropped. Measured now, not from the cache.
    pub fn reserve_tmp(
        self: &Arc<Self>,
        image: PathBuf,
        bytes: u64,
        size_mb: u32,
    ) -> Result<TmpReservation, DiskFull> {
        let mut promises = self.promises();
        let figures = self.measure(&promises);
        if figures.headroom(self.reserve) < bytes {
            return Err(self.full(
                format!(
                    "a /tmp of {size_mb} MB (EphemeralStorage) needs {} MB",
                    bytes / MB
                ),
                figures,
            ));
        }
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        promises.insert(id, Promise { image, bytes });
        drop(promises);
        self.invalidate();
        Ok(TmpReservation {
            budget: self.clone(),
            id,
        })
    }

    /// Bytes promised to `/tmp` images, in all (for tests and diagnostics).
    #[cfg(test)]
    fn promised_total(&self) -> u64 {
        self.promises().values().map(|p| p.bytes).sum()
    }
}

impl std::fmt::Debug for DiskBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBudget")
            .field("path", &self.path)
            .field("reserve", &self.reserve)
            .finish()
    }
}

/// Space promised to one environment's `/tmp` image; released when dropped.
pub struct TmpReservation {
    budget: Arc<DiskBudget>,
    id: u64,
}

impl std::fmt::Debug for TmpReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmpReservation")
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for TmpReservation {
    fn drop(&mut self) {
        self.budget.promises().remove(&self.id);
        self.budget.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_reserves_parse() {
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1 GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(Reserve::parse("auto").unwrap(), Reserve::Auto);
        assert_eq!(Reserve::parse("5%").unwrap(), Reserve::Percent(5));
        assert!(Reserve::parse("95%").is_err());
        // Auto: 5% of a small disk, 1 GB of a large one.
        assert_eq!(Reserve::Auto.resolve(1000 * MB), 50 * MB);
        assert_eq!(Reserve::Auto.resolve(100 * 1024 * MB), 1024 * MB);
    }

    #[test]
    fn promises_count_until_released_and_block_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let (free, _) = measure(dir.path()).unwrap();
        // A reserve that leaves 100 MB of headroom.
        let budget = DiskBudget::new(dir.path(), Reserve::Bytes(free - 100 * MB)).unwrap();
        let first = budget
            .reserve_tmp(dir.path().join("a.img"), 70 * MB, 70)
            .unwrap();
        let refused = budget
            .reserve_tmp(dir.path().join("b.img"), 70 * MB, 70)
            .unwrap_err();
        assert!(refused.to_string().contains("a /tmp of 70 MB"), "{refused}");
        assert!(refused.to_string().contains("promised"), "{refused}");
        assert!(budget.check(50 * MB, "an async event").is_err());
        assert!(budget.check(1 << 10, "an async event").is_ok());
        assert_eq!(budget.promised_total(), 70 * MB);
        drop(first);
        assert_eq!(budget.promised_total(), 0);
        let second = budget
            .reserve_tmp(dir.path().join("b.img"), 70 * MB, 70)
            .unwrap();
        drop(second);
    }

    #[test]
    fn data_already_in_an_image_is_not_promised_twice() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.img");
        let budget = DiskBudget::new(dir.path(), Reserve::Bytes(0)).unwrap();
        let _promise = budget.reserve_tmp(image.clone(), 8 * MB, 8).unwrap();
        let before = budget.measure(&budget.promises()).promised;
        assert_eq!(before, 8 * MB);
        std::fs::write(&image, vec![1u8; 4 << 20]).unwrap();
        let after = budget.measure(&budget.promises()).promised;
        assert!(after <= 4 * MB + (64 << 10), "{after}");
    }
}
