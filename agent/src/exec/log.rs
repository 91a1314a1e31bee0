//! Size-capped attempt logs that keep the tail and can be followed while the task runs.
//!
//! # Design: two segments, rewritten once at the end
//!
//! The agent reads the attempt's output pipe and appends to the log (`<task>.<attempt>.log`,
//! called `LOG` here) **live**, so a reader can follow it while the task runs. `LOG` is created
//! lazily, on the first byte written: an attempt that prints nothing has no log file, and every
//! reader treats a missing log as empty. When `LOG` reaches `cap` bytes it is *rotated*:
//! renamed to `LOG.1` (replacing the previous one) and a fresh `LOG` is started. At any moment
//! `LOG.1 ++ LOG` therefore holds at least the last `cap` bytes of output, disk use is at most
//! `2 × cap`, and memory use is one read buffer.
//!
//! When the attempt ends, if a rotation happened, the final log is written to `LOG.tmp` — one
//! header line `[outpost] output truncated: first N bytes dropped, last M bytes kept` followed
//! by exactly the last `M = cap` bytes — and atomically renamed over `LOG`; `LOG.1` is removed.
//! An attempt whose output fits is never rewritten.
//!
//! Readers: [`read_log`] returns the same view at any time (live or final). [`LogFollower`]
//! follows the live file like `tail -F`, coping with the file not existing yet, rotations and
//! the final rewrite: it reads the file it has open to its end before switching to the new
//! `LOG`, and uses the truncation header's `N` to skip bytes it already delivered. A follower
//! that falls more than `cap` bytes behind may miss output — exactly the output the capped log
//! drops as well.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Prefix of the first line of a log whose head was dropped.
pub const TRUNCATION_PREFIX: &str = "[outpost] output truncated: first ";

/// The truncation header line (with its newline).
pub fn truncation_header(dropped: u64, kept: u64) -> String {
    format!("{TRUNCATION_PREFIX}{dropped} bytes dropped, last {kept} bytes kept\n")
}

/// Parse a truncation header at the start of `bytes`: `(dropped, kept, header_len)`.
pub fn parse_truncation_header(bytes: &[u8]) -> Option<(u64, u64, usize)> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    let rest = line.strip_prefix(TRUNCATION_PREFIX)?;
    let (dropped, rest) = rest.split_once(" bytes dropped, last ")?;
    let kept = rest.strip_suffix(" bytes kept")?;
    Some((dropped.parse().ok()?, kept.parse().ok()?, end + 1))
}

/// `LOG.1`, the previous segment while a log is over its cap.
pub(crate) fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// `LOG.tmp`, the final rewrite before it is renamed over `LOG`.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Create (truncate) a log segment at `path`; if its directory is missing (removed while the
/// agent ran), create the directory and retry once.
fn create_segment(path: &Path) -> io::Result<File> {
    let open = || {
        crate::private_fs::file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => {
                crate::private_fs::create_dir_all(dir)?;
                open()
            }
            _ => Err(e),
        },
        other => other,
    }
}

/// Appends an attempt's output to its log, enforcing the cap (see the module docs).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    /// `None` until the first byte is written.
    file: Option<File>,
    cap: u64,
    seg_len: u64,
    total: u64,
    rotated: bool,
    /// While set (free disk space is low), output is counted and dropped.
    paused: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Bytes dropped while paused, not yet reported in the log.
    dropped_while_paused: u64,
}

impl LogWriter {
    /// Drop output while `flag` is set (free disk space is low); once it clears, the log gets
    /// one line saying how many bytes were dropped.
    pub fn drop_while(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.paused = Some(flag);
    }

    /// A writer for the log at `path`; nothing is touched on disk until the first non-empty
    /// [`LogWriter::write`], which creates (truncates) the file. `cap` is at least 1.
    pub fn new(path: &Path, cap: u64) -> LogWriter {
        LogWriter {
            path: path.to_path_buf(),
            file: None,
            cap: cap.max(1),
            seg_len: 0,
            total: 0,
            rotated: false,
            paused: None,
            dropped_while_paused: 0,
        }
    }

    /// Has the log file been created (was anything written)?
    pub fn created(&self) -> bool {
        self.file.is_some()
    }

    fn open_first(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = create_segment(&self.path)?;
            // A stale segment from an earlier attempt with the same name must not leak in.
            match std::fs::remove_file(rotated_path(&self.path)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.file = Some(file);
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(io::Error::other("log file not open")),
        }
    }

    /// Total bytes written so far (including any that will be dropped).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Append `buf`, rotating when the live segment reaches the cap.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if let Some(flag) = &self.paused {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                self.dropped_while_paused += buf.len() as u64;
                return Ok(());
            }
            if self.dropped_while_paused > 0 {
                let note = format!(
                    "[outpost] {} bytes of output dropped while disk space was low\n",
                    self.dropped_while_paused
                );
                self.dropped_while_paused = 0;
                self.append(note.as_bytes())?;
            }
        }
        self.append(buf)
    }

    fn append(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.seg_len >= self.cap {
                self.rotate()?;
            }
            let room = (self.cap - self.seg_len) as usize;
            let n = room.min(buf.len());
            self.open_first()?.write_all(&buf[..n])?;
            self.seg_len += n as u64;
            self.total += n as u64;
            buf = &buf[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(&self.path, rotated_path(&self.path))?;
        self.file = Some(create_segment(&self.path)?);
        self.seg_len = 0;
        self.rotated = true;
        Ok(())
    }

    /// Finish the log: if output exceeded the cap, atomically replace it with the header and
    /// the tail. Returns the number of bytes dropped. A log never written stays absent.
    pub fn finish(self) -> io::Result<u64> {
        if !self.rotated {
            return Ok(0);
        }
        drop(self.file);
        let (tail, _) = read_tail(&self.path, self.cap)?;
        let dropped = self.total - tail.len() as u64;
        let tmp = tmp_path(&self.path);
        {
            let mut out = crate::private_fs::file_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            out.write_all(truncation_header(dropped, tail.len() as u64).as_bytes())?;
            out.write_all(&tail)?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::remove_file(rotated_path(&self.path))?;
        Ok(dropped)
    }
}

/// Open `path` for reading; `None` if it does not exist.
fn open_if_exists(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last `cap` bytes of `LOG.1 ++ LOG` (a missing file counts as empty), and whether the
/// `.1` segment existed.
fn read_tail(path: &Path, cap: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut current = Vec::new();
    if let Some(mut f) = open_if_exists(path)? {
        f.read_to_end(&mut current)?;
    }
    let live_tail_start = current.len().saturating_sub(cap as usize);
    let current = current.split_off(live_tail_start);
    let need = cap - current.len() as u64;
    let mut out = Vec::with_capacity(cap as usize);
    let mut had_rotated = false;
    match File::open(rotated_path(path)) {
        Ok(mut f) => {
            had_rotated = true;
            let len = f.metadata()?.len();
            if need > 0 {
                f.seek(SeekFrom::Start(len.saturating_sub(need)))?;
                f.read_to_end(&mut out)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.extend_from_slice(&current);
    Ok((out, had_rotated))
}

fn len_if_exists(path: &Path) -> io::Result<u64> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Read an attempt log as the final log would look, whether the attempt is still running
/// (live segments) or finished. `cap` should be the `log_max_bytes` the attempt ran with. A
/// log that does not exist (the attempt has printed nothing, yet or at all) reads as empty.
///
/// While running with a rotated segment, the header reports the bytes dropped from the
/// two segments' view (output dropped at earlier rotations is not counted).
pub fn read_log(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let rotated = rotated_path(path);
    if !rotated.exists() {
        match open_if_exists(path)? {
            Some(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                return Ok(bytes);
            }
            // Missing: never written, or renamed to `.1` by a rotation since the check above.
            None if !rotated.exists() => return Ok(Vec::new()),
            None => {}
        }
    }
    let seg1 = len_if_exists(&rotated)?;
    let seg2 = len_if_exists(path)?;
    let (tail, _) = read_tail(path, cap.max(1))?;
    let dropped = (seg1 + seg2).saturating_sub(tail.len() as u64);
    let mut out = truncation_header(dropped, tail.len() as u64).into_bytes();
    out.extend_from_slice(&tail);
    Ok(out)
}

/// Follows a live attempt log (see the module docs). Call [`LogFollower::poll`] repeatedly.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    /// Absolute output offset of the next byte to deliver.
    delivered: u64,
    /// Bytes of the open file already consumed (including any header).
    file_pos: u64,
}

impl LogFollower {
    /// A follower of `path`, which need not exist yet: until it does, [`LogFollower::poll`]
    /// delivers nothing; once created, its output is delivered from its first byte.
    pub fn new(path: &Path) -> LogFollower {
        LogFollower {
            path: path.to_path_buf(),
            file: None,
            ino: 0,
            delivered: 0,
            file_pos: 0,
        }
    }

    /// Append any new output to `out`; returns how many bytes were appended (0: nothing new).
    pub fn poll(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let before = out.len();
        if self.file.is_some() {
            self.drain_open(out)?;
        }
        // Has the path moved on to a new file (rotation or final rewrite)?
        let current_ino = match std::fs::metadata(&self.path) {
            Ok(m) => Some(m.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(ino) = current_ino
            && (self.file.is_none() || ino != self.ino)
        {
            if self.file.is_some() {
                // Everything written to the old file was written before it was replaced.
                self.drain_open(out)?;
            }
            self.open_new(ino)?;
            self.drain_open(out)?;
        }
        Ok(out.len() - before)
    }

    fn open_new(&mut self, ino: u64) -> io::Result<()> {
        let mut f = File::open(&self.path)?;
        let mut head = Vec::new();
        (&mut f).take(256).read_to_end(&mut head)?;
        f.seek(SeekFrom::Start(0))?;
        self.file_pos = 0;
        if let Some((dropped, _kept, header_len)) = parse_truncation_header(&head) {
            // The final rewrite: content starts at absolute offset `dropped`.
            let skip = self.delivered.saturating_sub(dropped);
            self.file_pos = header_len as u64 + skip;
            self.delivered = self.delivered.max(dropped);
        }
        // Otherwise: a fresh segment after a rotation starts where the old one ended, or this is
        // the first file; either way reading starts at its beginning.
        f.seek(SeekFrom::Start(self.file_pos))?;
        self.file = Some(f);
        self.ino = ino;
        Ok(())
    }

    fn drain_open(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            let n = f.read_to_end(out)?;
            self.file_pos += n as u64;
            self.delivered += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn output_is_dropped_while_the_disk_is_low_and_the_gap_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        let low = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut w = LogWriter::new(&path, 1 << 20);
        w.drop_while(low.clone());
        w.write(b"before\n").unwrap();
        low.store(true, std::sync::atomic::Ordering::Relaxed);
        w.write(b"dropped\n").unwrap();
        low.store(false, std::sync::atomic::Ordering::Relaxed);
        w.write(b"after\n").unwrap();
        w.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "before\n[outpost] 8 bytes of output dropped while disk space was low\nafter\n"
        );
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"0123456789abcdefghijklmnopqrstuvwxyz\n"[i % 37])
            .collect()
    }

    #[test]
    fn small_output_is_kept_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        let mut w = LogWriter::new(&path, 100);
        w.write(b"hello\n").unwrap();
        w.write(b"world\n").unwrap();
        assert_eq!(w.finish().unwrap(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello\nworld\n");
        assert!(!rotated_path(&path).exists());
    }

    #[test]
    fn exactly_cap_is_not_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        let data = pattern(100);
        let mut w = LogWriter::new(&path, 100);
        w.write(&data).unwrap();
        assert_eq!(w.finish().unwrap(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn overflow_keeps_exact_tail_with_header_for_many_sizes() {
        for (cap, total, chunk) in [
            (100usize, 101usize, 7usize),
            (100, 250, 13),
            (64, 1000, 64),
            (10, 95, 1),
            (4096, 50_000, 3000),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.1.log");
            let data = pattern(total);
            let mut w = LogWriter::new(&path, cap as u64);
            for c in data.chunks(chunk) {
                w.write(c).unwrap();
            }
            // The live view agrees with the final file.
            let live = read_log(&path, cap as u64).unwrap();
            let dropped = w.finish().unwrap();
            assert_eq!(dropped, (total - cap) as u64);
            let fin = std::fs::read(&path).unwrap();
            let mut expected = truncation_header((total - cap) as u64, cap as u64).into_bytes();
            expected.extend_from_slice(&data[total - cap..]);
            assert_eq!(fin, expected, "cap {cap} total {total}");
            assert!(!rotated_path(&path).exists());
            let (_, _, hl) = parse_truncation_header(&live).unwrap();
            assert_eq!(&live[hl..], &data[total - cap..]);
        }
    }

    #[test]
    fn nothing_written_means_no_file_and_an_empty_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        let mut w = LogWriter::new(&path, 100);
        w.write(b"").unwrap();
        assert!(!w.created());
        assert_eq!(w.finish().unwrap(), 0);
        assert!(!path.exists());
        assert_eq!(read_log(&path, 100).unwrap(), b"");
        let mut f = LogFollower::new(&path);
        let mut got = Vec::new();
        assert_eq!(f.poll(&mut got).unwrap(), 0);
    }

    #[test]
    fn first_write_creates_the_file_and_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("t.1.log");
        // A stale segment with the same name is dropped at creation.
        let mut w = LogWriter::new(&path, 100);
        assert!(!path.exists());
        w.write(b"x").unwrap();
        assert!(w.created());
        std::fs::write(rotated_path(&path), b"stale").unwrap();
        let mut w2 = LogWriter::new(&path, 100);
        w2.write(b"fresh\n").unwrap();
        assert!(!rotated_path(&path).exists());
        assert_eq!(w2.finish().unwrap(), 0);
        assert_eq!(read_log(&path, 100).unwrap(), b"fresh\n");
    }

    #[test]
    fn read_log_with_only_the_rotated_segment_is_its_tail() {
        // The instant between a rotation's rename and the new segment's creation.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        std::fs::write(rotated_path(&path), pattern(30)).unwrap();
        let got = read_log(&path, 20).unwrap();
        let (dropped, kept, hl) = parse_truncation_header(&got).unwrap();
        assert_eq!((dropped, kept), (10, 20));
        assert_eq!(&got[hl..], &pattern(30)[10..]);
    }

    #[test]
    fn header_round_trips() {
        let h = truncation_header(12345, 4096);
        assert_eq!(
            parse_truncation_header(h.as_bytes()),
            Some((12345, 4096, h.len()))
        );
        assert_eq!(parse_truncation_header(b"plain output\n"), None);
    }

    #[test]
    fn follower_sees_every_byte_across_rotations_and_final_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        let cap = 50u64;
        let data = pattern(333);
        let mut f = LogFollower::new(&path);
        let mut got = Vec::new();
        let mut w = LogWriter::new(&path, cap);
        // Not created until the first write: the follower waits.
        f.poll(&mut got).unwrap();
        assert!(got.is_empty() && !path.exists());
        // Poll after every small write: the follower never falls a whole cap behind.
        for c in data.chunks(11) {
            w.write(c).unwrap();
            f.poll(&mut got).unwrap();
        }
        w.finish().unwrap();
        f.poll(&mut got).unwrap();
        f.poll(&mut got).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn late_follower_gets_the_final_tail_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.1.log");
        let data = pattern(200);
        let mut w = LogWriter::new(&path, 40);
        w.write(&data).unwrap();
        w.finish().unwrap();
        let mut f = LogFollower::new(&path);
        let mut got = Vec::new();
        f.poll(&mut got).unwrap();
        assert_eq!(got, &data[160..]);
    }
}
