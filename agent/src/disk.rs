//! Free space on the state directory's file system, and the decision to stop starting work
//! while it is low.
//!
//! A full disk must not take the agent down (it would exit again on every restart): while the
//! free space of the file system holding the state directory is below `min_free_disk`
//! (agent.toml; a size such as `256MiB`, or a share such as `2%`), the driver starts no attempt
//! (dispatched attempts are taken back, their tasks stay ready), records cron firings as missed
//! ("low disk space") instead of creating runs, and attempt logs drop output. It says so in
//! `outpost-agent status` and in the log, and resumes by itself once space is back.
//!
//! The free space is read through [`FreeSpace`] so that the decision ([`DiskGuard::is_low`]) is
//! tested without filling a disk.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Free and total bytes of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes available to the agent's user.
    pub free: u64,
    /// The file system's size.
    pub total: u64,
}

/// Where free space is read from.
pub trait FreeSpace: Send + Sync {
    /// The space of the file system holding `dir`.
    fn space(&self, dir: &Path) -> io::Result<Space>;
}

/// The real file system (`statvfs`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Statvfs;

impl FreeSpace for Statvfs {
    fn space(&self, dir: &Path) -> io::Result<Space> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(Space {
            free: st.f_bavail.saturating_mul(st.f_frsize),
            total: st.f_blocks.saturating_mul(st.f_frsize),
        })
    }
}

/// The minimum free space (`min_free_disk`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    /// A number of bytes.
    Bytes(u64),
    /// A share of the file system's size, in percent.
    Percent(f64),
}

/// The default `min_free_disk`.
pub const DEFAULT_MIN_FREE: MinFree = MinFree::Bytes(256 * 1024 * 1024);

impl MinFree {
    /// Parse `256MiB`, `1000000` or `2%`.
    pub fn parse(s: &str) -> Option<MinFree> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().ok()?;
            return (0.0..=100.0).contains(&p).then_some(MinFree::Percent(p));
        }
        outpost_common::size::parse_bytes(s).map(MinFree::Bytes)
    }

    /// The minimum in bytes on a file system of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match *self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// Is `space` below the minimum?
pub fn is_low(space: Space, min: MinFree) -> bool {
    space.free < min.bytes(space.total)
}

/// The driver's watch over the state directory's free space.
pub struct DiskGuard {
    /// The directory whose file system is watched (the state directory).
    pub dir: std::path::PathBuf,
    /// The minimum.
    pub min: MinFree,
    /// Where the space is read.
    pub source: Arc<dyn FreeSpace>,
    /// Set while space is low; attempt logs read it (and drop output meanwhile).
    pub low: Arc<AtomicBool>,
    /// The last reading, for `status` and the log.
    pub last: Option<Space>,
}

impl std::fmt::Debug for DiskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskGuard")
            .field("dir", &self.dir)
            .field("min", &self.min)
            .field("low", &self.is_low())
            .finish()
    }
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// As before.
    Same,
    /// Space fell below the minimum.
    BecameLow,
    /// Space is back.
    Recovered,
}

impl DiskGuard {
    /// A guard on the real file system.
    pub fn new(dir: &Path, min: MinFree) -> DiskGuard {
        DiskGuard {
            dir: dir.to_path_buf(),
            min,
            source: Arc::new(Statvfs),
            low: Arc::new(AtomicBool::new(false)),
            last: None,
        }
    }

    /// Whether space is low now (as of the last check).
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Read the space and decide. A failed read changes nothing (it is logged by the caller).
    pub fn check(&mut self) -> io::Result<Change> {
        let space = self.source.space(&self.dir)?;
        self.last = Some(space);
        let low = is_low(space, self.min);
        let was = self.low.swap(low, Ordering::Relaxed);
        Ok(match (was, low) {
            (false, true) => Change::BecameLow,
            (true, false) => Change::Recovered,
            _ => Change::Same,
        })
    }

    /// A sentence for `status` and the log while space is low.
    pub fn describe(&self) -> String {
        match self.last {
            Some(s) => format!(
                "low disk space on {}: {} MiB free, below the minimum of {} MiB (min_free_disk): \
                 no attempt starts and no log is written until space is freed",
                self.dir.display(),
                s.free / (1024 * 1024),
                self.min.bytes(s.total) / (1024 * 1024)
            ),
            None => "low disk space".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_parses_sizes_and_shares() {
        assert_eq!(MinFree::parse("256MiB"), Some(MinFree::Bytes(256 << 20)));
        assert_eq!(MinFree::parse("2%"), Some(MinFree::Percent(2.0)));
        assert_eq!(MinFree::parse("101%"), None);
        assert_eq!(MinFree::parse("lots"), None);
        assert_eq!(MinFree::Percent(2.0).bytes(1000), 20);
    }

    #[test]
    fn low_below_the_minimum_and_back() {
        let min = MinFree::Bytes(100);
        assert!(is_low(
            Space {
                free: 99,
                total: 10_000
            },
            min
        ));
        assert!(!is_low(
            Space {
                free: 100,
                total: 10_000
            },
            min
        ));
        assert!(is_low(
            Space {
                free: 199,
                total: 10_000
            },
            MinFree::Percent(2.0)
        ));
    }

    #[test]
    fn the_real_file_system_has_a_size() {
        let s = Statvfs.space(Path::new("/")).unwrap();
        assert!(s.total > 0 && s.free <= s.total, "{s:?}");
    }
}
