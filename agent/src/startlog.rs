//! The start journal: which *dispatched* attempts were started, so that a restart after the
//! agent itself died (kill -9, the OOM killer, a panic) knows which ones never did.
//!
//! A dispatched attempt is committed before its slot frees and started later without a commit
//! (see "Dispatch ahead" in the engine). After a crash the store cannot tell whether it started:
//! its start is recorded by the next commit, which may not have happened. Without more, such an
//! attempt counts as interrupted, and a task that is not `idempotent` fails although it may
//! never have run.
//!
//! So, right before the `fork`/`exec` of a dispatched attempt, the driver appends
//! `<run id>\t<task id>\t<attempt>\n` to `<state_dir>/starts.log` with a plain `write` (no
//! fsync: it costs a few microseconds). The file begins with `boot <boot id>\n`, the kernel's
//! `/proc/sys/kernel/random/boot_id` when it was created.
//!
//! **Why no fsync is needed.** Within one boot the kernel's page cache is the file: a `write`
//! that returned is seen by every later `read`, whatever happens to the process that made it.
//! So if the agent dies and restarts in the same boot, an attempt missing from the journal was
//! never started (its line would have been written before the spawn). After a reboot (a power
//! loss) the unsynced tail may be lost, so the journal is not trusted when its boot id differs
//! from the current one, nor when it is missing or unreadable: then every dispatched attempt
//! counts as interrupted, as before (the processes died with the machine anyway).
//!
//! **Rotation.** An attempt's start is recorded in the store by the commit after it. Once every
//! batch submitted so far is durable and nothing is pending, every start journalled so far is
//! in the store, and the journal can start over (truncated, with the header again). The driver
//! does that when the file has grown past [`ROTATE_BYTES`], and after recovery once its commit
//! is durable; never before recovery (the old lines are the evidence about the dispatched
//! attempts still open in the store), so `run`, which recovers nothing, only appends to a
//! trusted journal, and removes an untrusted one (which must not be trusted later while it
//! lacks `run`'s starts).
//!
//! **Failures.** If a `write` fails, the journal can no longer vouch for anything: the driver
//! removes the file (a missing journal is not trusted) and stops journalling until the next
//! rotation succeeds. The attempt still starts.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Rotate the journal once it is larger than this (and every start in it is durable).
pub const ROTATE_BYTES: u64 = 256 * 1024;

/// The journal's file name in the state directory.
pub const FILE_NAME: &str = "starts.log";

/// (run id, task id, attempt)
pub type StartKey = (String, String, u32);

/// The kernel's id of the current boot, if it can be read.
pub fn current_boot_id() -> Option<String> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// What a journal left by the previous process says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Same boot: exactly these dispatched attempts were started (or were about to be).
    Trusted(HashSet<StartKey>),
    /// Missing, unreadable, or from another boot (the reason, for the log).
    Untrusted(String),
}

impl Recovered {
    /// Did the journal prove that this dispatched attempt never started?
    pub fn never_started(&self, run_id: &str, task_id: &str, attempt: u32) -> bool {
        match self {
            Recovered::Trusted(set) => {
                !set.contains(&(run_id.to_string(), task_id.to_string(), attempt))
            }
            Recovered::Untrusted(_) => false,
        }
    }
}

/// Parse a journal's text against the current boot id. Lines that do not parse are skipped:
/// only a line cut short by the end of the file can be one, and the spawn it announced had not
/// happened yet (the `write` returns before the spawn).
pub fn parse(text: &str, boot_id: Option<&str>) -> Recovered {
    let mut lines = text.split('\n');
    let header = lines.next().unwrap_or("");
    let Some(written) = header.strip_prefix("boot ") else {
        return Recovered::Untrusted("the start journal has no header".into());
    };
    let Some(now) = boot_id else {
        return Recovered::Untrusted("the current boot id cannot be read".into());
    };
    if written != now {
        return Recovered::Untrusted(format!(
            "the start journal is from another boot ({written}; now {now}): the machine restarted"
        ));
    }
    let mut set = HashSet::new();
    // The last element is "" after a final newline, or a line cut short: both skipped.
    let complete: Vec<&str> = lines.collect();
    let n = complete.len();
    for line in complete.into_iter().take(n.saturating_sub(1)) {
        let mut f = line.split('\t');
        if let (Some(run), Some(task), Some(attempt), None) =
            (f.next(), f.next(), f.next(), f.next())
            && let Ok(attempt) = attempt.parse::<u32>()
        {
            set.insert((run.to_string(), task.to_string(), attempt));
        }
    }
    Recovered::Trusted(set)
}

/// Read the journal left in `state_dir`.
pub fn recover(state_dir: &Path) -> Recovered {
    let path = state_dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => parse(
            &String::from_utf8_lossy(&bytes),
            current_boot_id().as_deref(),
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Recovered::Untrusted("there is no start journal".into())
        }
        Err(e) => Recovered::Untrusted(format!("reading {}: {e}", path.display())),
    }
}

/// The journal of this process.
#[derive(Debug)]
pub struct StartLog {
    path: PathBuf,
    boot_id: Option<String>,
    file: Option<File>,
    bytes: u64,
}

impl StartLog {
    /// A journal in `state_dir`; nothing is written before [`StartLog::reset`].
    pub fn new(state_dir: &Path) -> StartLog {
        StartLog {
            path: state_dir.join(FILE_NAME),
            boot_id: current_boot_id(),
            file: None,
            bytes: 0,
        }
    }

    /// Start over: the file is truncated and gets its header. Call it only when every start
    /// journalled so far is durable in the store (module docs). Without a boot id the journal
    /// stays off (it could never be trusted).
    pub fn reset(&mut self) {
        self.file = None;
        let Some(boot) = self.boot_id.clone() else {
            return;
        };
        let opened = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| {
                let header = format!("boot {boot}\n");
                f.write_all(header.as_bytes())?;
                Ok((f, header.len() as u64))
            });
        self.adopt(opened, "write");
    }

    /// Keep the journal left by the previous process of this boot and append to it (it was
    /// trusted; more lines only claim more starts). On failure the journal stays off until
    /// the next [`StartLog::reset`].
    pub fn append(&mut self) {
        let opened = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                // A line cut short by the previous process's death must not swallow the next
                // one: end it first.
                let len = f.metadata()?.len();
                let mut last = [0u8; 1];
                if len > 0 && f.read_at(&mut last, len - 1)? == 1 && last[0] != b'\n' {
                    f.write_all(b"\n")?;
                    return Ok((f, len + 1));
                }
                Ok((f, len))
            });
        self.adopt(opened, "append to");
    }

    /// Use the journal file just opened (and its length so far), or turn the journal off.
    fn adopt(&mut self, opened: io::Result<(File, u64)>, what: &str) {
        match opened {
            Ok((f, len)) => {
                self.file = Some(f);
                self.bytes = len;
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot {what} the start journal: {e}");
                self.disable();
            }
        }
    }

    /// Journal the start of a dispatched attempt; call it right before the spawn.
    pub fn record(&mut self, run_id: &str, task_id: &str, attempt: u32) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        let line = format!("{run_id}\t{task_id}\t{attempt}\n");
        match f.write_all(line.as_bytes()) {
            Ok(()) => self.bytes += line.len() as u64,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "cannot write the start journal: {e}");
                self.disable();
            }
        }
    }

    /// Has the journal grown enough to be rotated (when it safely can)?
    pub fn wants_rotation(&self) -> bool {
        self.file.is_some() && self.bytes > ROTATE_BYTES
    }

    /// Stop journalling and remove the file, so that a restart does not trust it (until the
    /// next [`StartLog::reset`]).
    pub fn discard(&mut self) {
        self.disable();
    }

    fn disable(&mut self) {
        self.file = None;
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::error!(
                path = %self.path.display(),
                "cannot remove the start journal after a failed write ({e}); a restart in this \
                 boot may take back a dispatched attempt that had started"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: &str, t: &str, a: u32) -> StartKey {
        (r.into(), t.into(), a)
    }

    #[test]
    fn same_boot_is_trusted_and_a_cut_line_is_skipped() {
        let text = "boot b1\nr1\ta\t1\nr1\tb\t2\nr1\tc\t";
        let Recovered::Trusted(set) = parse(text, Some("b1")) else {
            panic!("not trusted")
        };
        assert_eq!(set, HashSet::from([key("r1", "a", 1), key("r1", "b", 2)]));
        let r = parse(text, Some("b1"));
        assert!(!r.never_started("r1", "a", 1));
        assert!(r.never_started("r1", "a", 2));
        assert!(r.never_started("r1", "c", 1));
    }

    #[test]
    fn another_boot_a_missing_header_or_no_boot_id_is_not_trusted() {
        for (text, boot) in [
            ("boot b1\nr\ta\t1\n", Some("b2")),
            ("r\ta\t1\n", Some("b1")),
            ("", Some("b1")),
            ("boot b1\n", None),
        ] {
            let r = parse(text, boot);
            assert!(matches!(r, Recovered::Untrusted(_)), "{text:?} {boot:?}");
            assert!(!r.never_started("r", "x", 1));
        }
    }

    #[test]
    fn records_survive_the_writer_and_reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = StartLog::new(dir.path());
        if log.boot_id.is_none() {
            eprintln!("no /proc/sys/kernel/random/boot_id here: the journal stays off");
            assert!(matches!(recover(dir.path()), Recovered::Untrusted(_)));
            return;
        }
        assert!(
            matches!(recover(dir.path()), Recovered::Untrusted(_)),
            "no file yet"
        );
        log.reset();
        log.record("r@v1@m1", "a", 1);
        log.record("r@v1@m1", "b", 3);
        drop(log); // what a dying process leaves: no fsync, no close protocol
        let r = recover(dir.path());
        assert_eq!(
            r,
            Recovered::Trusted(HashSet::from([
                key("r@v1@m1", "a", 1),
                key("r@v1@m1", "b", 3)
            ]))
        );
        // A line cut short, then another process of the same boot appends: both survive apart.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap()
            .write_all(b"r@v1@m1\tc\t")
            .unwrap();
        let mut next = StartLog::new(dir.path());
        next.append();
        next.record("r@v1@m1", "d", 1);
        drop(next);
        let Recovered::Trusted(set) = recover(dir.path()) else {
            panic!("not trusted")
        };
        assert!(set.contains(&key("r@v1@m1", "d", 1)), "{set:?}");
        assert_eq!(set.len(), 3, "{set:?}");
        let mut again = StartLog::new(dir.path());
        again.reset();
        assert_eq!(recover(dir.path()), Recovered::Trusted(HashSet::new()));
        assert!(!again.wants_rotation());
        for i in 0..10_000 {
            again.record("some-workflow@v12@m20261125T000000.000Z", "task", i);
        }
        assert!(again.wants_rotation());
    }

    /// The journal under a crash at every point of its writes. The writer is the real one
    /// (`reset`, `record`); the images are what a crash can leave:
    /// - the process dies (kill -9) but the machine does not: the page cache is the file, so the
    ///   image is every completed `write`, plus any prefix of the one in progress. Same boot:
    ///   trusted, holding exactly the completed records (a cut line is no record);
    /// - the power goes: the unsynced file may keep any prefix of what was written, with a tail
    ///   of zeros (allocated, never written back), or the previous boot's content (the truncate
    ///   never reached the disk). The boot id is new after the reboot: never trusted, so every
    ///   dispatched attempt counts as interrupted.
    #[test]
    fn a_crash_at_any_point_of_the_journal_is_trusted_exactly_when_it_may_be() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = StartLog::new(dir.path());
        let Some(boot) = log.boot_id.clone() else {
            panic!("/proc/sys/kernel/random/boot_id is unreadable: the journal cannot be tested");
        };
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "boot an-earlier-boot\nold\tx\t1\n").unwrap();
        let stale = std::fs::read(&path).unwrap();
        log.reset();
        let mut images = vec![std::fs::read(&path).unwrap()];
        let mut keys = Vec::new();
        for i in 0..40u32 {
            log.record(&format!("wf@v1@r{}", i / 3), &format!("t{i}"), i % 3 + 1);
            keys.push(key(
                &format!("wf@v1@r{}", i / 3),
                &format!("t{i}"),
                i % 3 + 1,
            ));
            images.push(std::fs::read(&path).unwrap());
        }
        let mut points = 0;
        for (i, done) in images.iter().enumerate() {
            let expected: HashSet<StartKey> = keys[..i].iter().cloned().collect();
            // Process crash: the completed writes, and any prefix of the next one.
            let next = images.get(i + 1).unwrap_or(done);
            for cut in done.len()..=next.len() {
                let text = String::from_utf8_lossy(&next[..cut]);
                let got = parse(&text, Some(&boot));
                let want = if cut == next.len() && i + 1 < images.len() {
                    keys[..=i].iter().cloned().collect()
                } else {
                    expected.clone()
                };
                assert_eq!(got, Recovered::Trusted(want), "process crash at {i}+{cut}");
                points += 1;
            }
            // Power loss: any prefix, with or without a zero tail, or the stale content.
            for cut in 0..=done.len() {
                for zeros in [0usize, 7, 4096] {
                    let mut img = done[..cut].to_vec();
                    img.resize(cut + zeros, 0);
                    let got = parse(&String::from_utf8_lossy(&img), Some("the-next-boot"));
                    assert!(
                        matches!(got, Recovered::Untrusted(_)),
                        "power loss at {i}/{cut}"
                    );
                    assert!(!got.never_started("wf@v1@r0", "t0", 1));
                    points += 1;
                }
            }
            let got = parse(&String::from_utf8_lossy(&stale), Some("the-next-boot"));
            assert!(matches!(got, Recovered::Untrusted(_)));
        }
        eprintln!("start journal: {points} crash images checked");
        assert!(points > 10_000, "{points}");
    }
}
