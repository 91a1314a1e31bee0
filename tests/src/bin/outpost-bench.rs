//! `outpost-bench`: the benchmark harness. Measures the release `outpost-agent` against baselines
//! taken in the same run on the same machine, prints the figures as ratios, and optionally writes
//! them to `docs/BENCHMARKS.md`.
//!
//! ```sh
//! cargo run --release -p outpost-tests --bin outpost-bench -- [--airflow] [--write docs/BENCHMARKS.md] [--quick]
//! ```
//!
//! This is a harness, not a test: nothing here fails a build; a missed goal is reported as `miss`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use outpost_tests::{Daemon, Scratch, agent_bin, repo_root, wait_for};

const USAGE: &str = "usage: outpost-bench [--airflow] [--write FILE] [--quick] [--runs N] \
[--high N] [--cron-secs S] [--cron-runs N] [--cron-only N] [--validate-only] [--no-build]

  --airflow      also run ../shared/bench/airflow-peer.sh ($OUTPOST_AIRFLOW_PEER) and print
                 Airflow's figures beside ours (installs Airflow into a venv on first use)
  --write FILE   write the report (markdown) to FILE, e.g. docs/BENCHMARKS.md
  --quick        fewer runs, 10 s of cron, no 10,000-task DAG, no store micro-benchmark
  --runs N       runs per figure (default 7; medians are reported)
  --high N       the higher concurrency (default 8)
  --cron-secs S  length of the cron-precision run (default 60)
  --cron-runs N  how many cron-precision runs; percentiles are over all their samples
                 (default 3; 1 with --quick)
  --cron-only N  only the cron-precision run, N times: a line for each, then the percentiles
                 over all their samples (nothing is written)
  --validate-only  only the validation of a 10,000-task chain (time and peak memory); with
                 --no-build it needs no agent binary (nothing is written)
  --no-build     do not run `cargo build --release -p outpost-agent` first";

struct Opts {
    airflow: bool,
    write: Option<PathBuf>,
    quick: bool,
    runs: usize,
    high: usize,
    cron_secs: u64,
    cron_runs: usize,
    cron_only: Option<usize>,
    validate_only: bool,
    build: bool,
}

fn parse_args() -> anyhow::Result<Opts> {
    let mut o = Opts {
        airflow: false,
        write: None,
        quick: false,
        runs: 7,
        high: 8,
        cron_secs: 60,
        cron_runs: 3,
        cron_only: None,
        validate_only: false,
        build: true,
    };
    let mut cron_runs = None;
    let mut runs = None;
    let mut cron = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--airflow" => o.airflow = true,
            "--quick" => o.quick = true,
            "--no-build" => o.build = false,
            "--validate-only" => o.validate_only = true,
            // Internal: validate FILE in this fresh process, print "<ms> <peak KiB>".
            "--validate-child" => {
                let file = val("--validate-child")?;
                validate_child(Path::new(&file))?;
                std::process::exit(0);
            }
            "--write" => o.write = Some(PathBuf::from(val("--write")?)),
            "--runs" => runs = Some(val("--runs")?.parse().context("--runs: a number")?),
            "--high" => o.high = val("--high")?.parse().context("--high: a number")?,
            "--cron-runs" => {
                cron_runs = Some(
                    val("--cron-runs")?
                        .parse()
                        .context("--cron-runs: a number")?,
                )
            }
            "--cron-only" => {
                o.cron_only = Some(
                    val("--cron-only")?
                        .parse()
                        .context("--cron-only: a number")?,
                )
            }
            "--cron-secs" => {
                cron = Some(
                    val("--cron-secs")?
                        .parse()
                        .context("--cron-secs: seconds")?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    o.runs = runs.unwrap_or(if o.quick { 3 } else { 7 }).max(1);
    o.cron_secs = cron.unwrap_or(if o.quick { 10 } else { 60 }).max(3);
    o.cron_runs = cron_runs.unwrap_or(if o.quick { 1 } else { 3 }).max(1);
    o.cron_only = o.cron_only.map(|n| n.max(1));
    o.high = o.high.max(1);
    Ok(o)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ----- statistics ------------------------------------------------------------------------------

fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Nearest-rank percentile.
fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pass(ok: bool) -> &'static str {
    if ok { "pass" } else { "**miss**" }
}

// ----- the machine -----------------------------------------------------------------------------

struct Machine {
    nproc: usize,
    cpu: String,
    mem: String,
    kernel: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        nproc: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu,
        mem,
        kernel,
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ----- workloads -------------------------------------------------------------------------------

/// root → `middle` parallel tasks → sink, every task `/bin/true` (Airflow's peer DAG shape).
fn fan_dag(name: &str, middle: usize) -> String {
    let mut s = format!("name: {name}\ntasks:\n  root:\n    command: [/bin/true]\n");
    let ids: Vec<String> = (0..middle).map(|i| format!("m{i:05}")).collect();
    for id in &ids {
        let _ = write!(
            s,
            "  {id}:\n    depends_on: [root]\n    command: [/bin/true]\n"
        );
    }
    let _ = write!(
        s,
        "  sink:\n    depends_on: [{}]\n    command: [/bin/true]\n",
        ids.join(", ")
    );
    s
}

/// t00 → t01 → … (`n` tasks), every task `/bin/true`.
fn chain_dag(name: &str, n: usize) -> String {
    let mut s = format!("name: {name}\ntasks:\n");
    for i in 0..n {
        let _ = writeln!(s, "  t{i:02}:");
        if i > 0 {
            let _ = writeln!(s, "    depends_on: [t{:02}]", i - 1);
        }
        s.push_str("    command: [/bin/true]\n");
    }
    s
}

/// Wall time of one `outpost-agent run FILE` with a fresh store (a new state directory).
fn time_run(scratch: &Scratch, file: &Path, max_running: Option<usize>) -> anyhow::Result<Sample> {
    time_run_in(scratch.path(), file, max_running)
}

/// One timed run: its wall time and the CPU time its own process used (user + system, all its
/// threads, not the processes it spawned).
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: f64,
    own_cpu: f64,
}

/// Wait for `child` to exit; read its own CPU time while it is a zombie (`waitid` with `WNOWAIT`,
/// then `/proc/<pid>/stat`: `utime + stime`, clock ticks), then reap it. Returns the status, the
/// wall time since `start` at the exit, and the CPU time in ms.
fn wait_measured(
    child: &mut std::process::Child,
    start: Instant,
) -> anyhow::Result<(std::process::ExitStatus, Sample)> {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).context("child pid")?;
    loop {
        match rustix::process::waitid(
            rustix::process::WaitId::Pid(pid),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("waitid"),
        }
    }
    let wall = ms(start.elapsed());
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .context("reading the child's /proc/<pid>/stat")?;
    let st = child.wait()?;
    // The second field (comm) may hold spaces; the rest follows its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("parsing /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After comm, state is field 3, so field k is f[k - 3]; utime = 14, stime = 15.
    let ticks = |k: usize| -> anyhow::Result<f64> {
        f.get(k - 3)
            .context("short /proc/<pid>/stat")?
            .parse::<f64>()
            .context("parsing /proc/<pid>/stat")
    };
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let own_cpu = (ticks(14)? + ticks(15)?) * 1e3 / hz;
    Ok((st, Sample { wall, own_cpu }))
}

/// [`time_run`] with the state directory created under `parent`.
fn time_run_in(parent: &Path, file: &Path, max_running: Option<usize>) -> anyhow::Result<Sample> {
    let state = tempfile::Builder::new()
        .prefix("state-")
        .tempdir_in(parent)?;
    let err_path = state.path().with_extension("stderr");
    let err = std::fs::File::create(&err_path)?;
    let mut cmd = Command::new(agent_bin());
    cmd.arg("run")
        .arg(file)
        .arg("--state-dir")
        .arg(state.path())
        .args(["--output", "json", "--quiet"]);
    if let Some(n) = max_running {
        cmd.args(["--max-running", &n.to_string()]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err));
    let start = Instant::now();
    let mut child = cmd.spawn().context("running outpost-agent run")?;
    let (status, sample) = wait_measured(&mut child, start)?;
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    if !status.success() {
        bail!(
            "outpost-agent run {} failed ({status}): {stderr}",
            file.display()
        );
    }
    Ok(sample)
}

/// Wall time of `seq n | xargs -P p -n1 /bin/true` (the numbers are fed through a pipe by this
/// process, so neither `sh` nor `seq` is in the figure: only xargs and its n spawns).
fn time_xargs(n: usize, p: usize) -> anyhow::Result<Sample> {
    let input: String = (1..=n).map(|i| format!("{i}\n")).collect();
    let start = Instant::now();
    let mut child = Command::new("xargs")
        .args(["-P", &p.to_string(), "-n1", "/bin/true"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("spawning xargs")?;
    if let Some(mut si) = child.stdin.take() {
        si.write_all(input.as_bytes())?;
    }
    let (st, sample) = wait_measured(&mut child, start)?;
    if !st.success() {
        bail!("xargs failed: {st}");
    }
    Ok(sample)
}

/// `runs` interleaved (baseline, ours) pairs, so both see the same load.
struct Pair {
    /// Median wall time of ours, ms.
    ours: f64,
    /// Median wall time of the baseline, ms.
    base: f64,
    ours_all: Vec<f64>,
    base_all: Vec<f64>,
    /// CPU time (user + system) of our own process in each run, ms (not the tasks it spawned).
    ours_cpu: Vec<f64>,
}

impl Pair {
    /// The median of the per-pair differences `ours_i - base_i`, ms. Each pair is measured back
    /// to back, so a slow drift in the machine's load cancels out of the difference; the
    /// difference of two independent medians does not cancel it.
    fn paired_overhead(&self) -> f64 {
        let d: Vec<f64> = self
            .ours_all
            .iter()
            .zip(&self.base_all)
            .map(|(o, b)| o - b)
            .collect();
        median(&d)
    }

    /// Our process's own CPU time per run, ms: the mean over the runs (clock ticks are 10 ms,
    /// so a single run's figure is coarse).
    fn own_cpu(&self) -> f64 {
        self.ours_cpu.iter().sum::<f64>() / self.ours_cpu.len().max(1) as f64
    }
}

fn measure_pair(
    runs: usize,
    mut base: impl FnMut() -> anyhow::Result<Sample>,
    mut ours: impl FnMut() -> anyhow::Result<Sample>,
) -> anyhow::Result<Pair> {
    // One warm-up of each (page cache, binary mapped).
    base()?;
    ours()?;
    let mut p = Pair {
        ours: 0.0,
        base: 0.0,
        ours_all: Vec::new(),
        base_all: Vec::new(),
        ours_cpu: Vec::new(),
    };
    for _ in 0..runs {
        p.base_all.push(base()?.wall);
        let o = ours()?;
        p.ours_all.push(o.wall);
        p.ours_cpu.push(o.own_cpu);
    }
    p.ours = median(&p.ours_all);
    p.base = median(&p.base_all);
    Ok(p)
}

// ----- report ----------------------------------------------------------------------------------

struct Report {
    md: String,
}

impl Report {
    fn line(&mut self, s: &str) {
        println!("{s}");
        self.md.push_str(s);
        self.md.push('\n');
    }
}

fn real_main() -> anyhow::Result<()> {
    let o = parse_args()?;
    let root = repo_root();
    if o.build {
        eprintln!("building the release agent: cargo build --release -p outpost-agent");
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "outpost-agent"])
            .current_dir(&root)
            .status()
            .context("running cargo build")?;
        if !st.success() {
            bail!("cargo build --release -p outpost-agent failed");
        }
    }
    if o.validate_only {
        let v = validate_chain(o.runs)?;
        for l in v.lines() {
            println!("{l}");
        }
        return Ok(());
    }
    let bin = agent_bin();
    if !bin.exists() {
        bail!(
            "{} not found: run the harness from a release build (cargo run --release -p \
             outpost-tests --bin outpost-bench) or point OUTPOST_BIN_DIR at target/release",
            bin.display()
        );
    }
    if !bin.to_string_lossy().contains("release") {
        eprintln!(
            "warning: measuring {} which does not look like a release build",
            bin.display()
        );
    }
    if let Some(n) = o.cron_only {
        return cron_only(n, o.cron_secs);
    }
    let m = machine();
    let load_start = loadavg();
    let scratch = Scratch::new("bench")?;
    let default_p = m.nproc;
    let high = o.high;
    let runs = o.runs;
    let mut r = Report { md: String::new() };

    // --- 1. foreground runs: fixed cost, 202-task fan-out/fan-in, 10-task chain -----------------
    eprintln!("[1/5] foreground runs ({runs} runs each)");
    let one = scratch.write("one.yaml", &chain_dag("one", 1))?;
    let fan = scratch.write("fan200.yaml", &fan_dag("fan200", 200))?;
    let chain = scratch.write("chain10.yaml", &chain_dag("chain10", 10))?;
    let fixed = measure_pair(runs, || time_xargs(1, 1), || time_run(&scratch, &one, None))?;
    let fan_default = measure_pair(
        runs,
        || time_xargs(200, default_p),
        || time_run(&scratch, &fan, None),
    )?;
    let fan_high = measure_pair(
        runs,
        || time_xargs(200, high),
        || time_run(&scratch, &fan, Some(high)),
    )?;
    // Diagnostic: the same DAG with the store and logs on tmpfs (no fsync cost, no disk inode
    // allocation), to show how much of the figure is the filesystem.
    let shm = Path::new("/dev/shm");
    let fan_tmpfs = if shm.is_dir() {
        Some(measure_pair(
            runs,
            || time_xargs(200, default_p),
            || time_run_in(shm, &fan, None),
        )?)
    } else {
        None
    };
    let chain_p = measure_pair(
        runs,
        || time_xargs(10, 1),
        || time_run(&scratch, &chain, None),
    )?;

    // --- 2. scaling -----------------------------------------------------------------------------
    let mut sizes = vec![202usize, 1_000];
    if !o.quick {
        sizes.push(10_000);
    }
    eprintln!("[2/5] scaling: {sizes:?} tasks");
    let mut scaling = Vec::new();
    for &n in &sizes {
        let f = scratch.write(&format!("fan{n}.yaml"), &fan_dag(&format!("fan{n}"), n - 2))?;
        let k = if n >= 10_000 { runs.min(5) } else { runs };
        let p = measure_pair(
            k,
            || time_xargs(n, default_p),
            || time_run(&scratch, &f, None),
        )?;
        scaling.push((n, k, p));
    }

    // --- 3. cron precision ----------------------------------------------------------------------
    eprintln!(
        "[3/5] cron precision: a per-second schedule for {} s, {} time(s)",
        o.cron_secs, o.cron_runs
    );
    let (cron, cron_maxima) = cron_precision_runs(o.cron_runs, o.cron_secs, |_, _| {})?;

    // --- 4. footprint ---------------------------------------------------------------------------
    eprintln!("[4/5] footprint: idle serve with 50 workflows");
    let (rss_kib, hwm_kib) = idle_rss(50)?;
    let bin_size = std::fs::metadata(&bin)?.len();

    // --- 5. store commit latency ------------------------------------------------------------------
    eprintln!("[5/5] store: raw fsync and the store's 2PC commit");
    let fsync_ms = raw_fsync(scratch.path(), 50)?;
    let commit = if o.quick {
        None
    } else {
        store_commit(&root).ok()
    };

    let airflow = if o.airflow {
        eprintln!("[+] Airflow peer (slow: installs Airflow into a venv on first use)");
        match airflow_peer(&root, runs.min(5)) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("warning: airflow peer failed: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let load_end = loadavg();

    // --- the report -------------------------------------------------------------------------------
    r.line("## Results");
    r.line("");
    r.line(&format!(
        "Machine: {} CPUs ({}), {} RAM, Linux {}. Load average (1/5/15 min) at start {}, at end {}. \
         Medians of {runs} runs (5 for 10,000 tasks), each after one warm-up, ours and the baseline \
         interleaved.",
        m.nproc, m.cpu, m.mem, m.kernel, load_start, load_end
    ));
    r.line("");
    r.line("### Foreground runs (`outpost-agent run`, fresh store each time)");
    r.line("");
    r.line("| Workload | Concurrency | Outpost | Baseline (xargs) | Ratio | Goal | |");
    r.line("|---|---|---|---|---|---|---|");
    r.line(&format!(
        "| 1 task (fixed cost: exec + store create + 1 spawn) | 1 | {:.1} ms | {:.1} ms (1 spawn) | {:.2}x | — | |",
        fixed.ours,
        fixed.base,
        fixed.ours / fixed.base
    ));
    for (p, pair) in [(default_p, &fan_default), (high, &fan_high)] {
        let ratio = pair.ours / pair.base;
        r.line(&format!(
            "| 202-task fan-out/fan-in | {p}{} | {:.1} ms | {:.1} ms (200 spawns) | {ratio:.2}x | ≤ 1.3x | {} |",
            if p == default_p { " (default)" } else { "" },
            pair.ours,
            pair.base,
            pass(ratio <= 1.3)
        ));
    }
    if let Some(t) = &fan_tmpfs {
        r.line(&format!(
            "| 202-task fan-out/fan-in, state dir on tmpfs (diagnostic) | {default_p} (default) | {:.1} ms | {:.1} ms (200 spawns) | {:.2}x | — | |",
            t.ours,
            t.base,
            t.ours / t.base
        ));
    }
    r.line(&format!(
        "| 10-task chain | {default_p} (default) | {:.1} ms | {:.1} ms (10 spawns, -P 1) | {:.2}x | — | |",
        chain_p.ours,
        chain_p.base,
        chain_p.ours / chain_p.base
    ));
    r.line("");
    r.line(&format!(
        "Without the fixed cost of a `run` invocation ({:.1} ms − {:.1} ms = {:.1} ms: process start, \
         store creation, workflow parse, the run's commits), the 202-task DAG at the default \
         concurrency takes {:.1} ms, {:.2}x the raw spawn time. All runs (ms): fan-out default {:?}; \
         fan-out {high} {:?}.",
        fixed.ours,
        fixed.base,
        fixed.ours - fixed.base,
        fan_default.ours - (fixed.ours - fixed.base),
        (fan_default.ours - (fixed.ours - fixed.base)) / fan_default.base,
        round1(&fan_default.ours_all),
        round1(&fan_high.ours_all),
    ));
    if let Some(a) = &airflow {
        r.line("");
        r.line("Airflow 3.3.2 (`airflow dags test`, same machine, same run):");
        r.line("");
        r.line("| Workload | Airflow | Outpost | Airflow / Outpost |");
        r.line("|---|---|---|---|");
        r.line(&format!(
            "| 202-task fan-out/fan-in | {:.2} s | {:.3} s | {:.0}x |",
            a.fan,
            fan_default.ours / 1e3,
            a.fan * 1e3 / fan_default.ours
        ));
        r.line(&format!(
            "| 10-task chain | {:.2} s | {:.3} s | {:.0}x |",
            a.chain,
            chain_p.ours / 1e3,
            a.chain * 1e3 / chain_p.ours
        ));
    }
    r.line("");
    r.line(&format!(
        "### Scaling (fan-out/fan-in, concurrency {default_p})"
    ));
    r.line("");
    r.line(
        "| Tasks | Outpost | xargs (same count) | Overhead per task (paired) | \
         (difference of medians) | Agent CPU per task | Runs |",
    );
    r.line("|---|---|---|---|---|---|---|");
    let mut per_task = Vec::new();
    for (n, k, p) in &scaling {
        let n_f = *n as f64;
        let us = p.paired_overhead() * 1e3 / n_f;
        let us_medians = (p.ours - p.base) * 1e3 / n_f;
        let cpu_us = p.own_cpu() * 1e3 / n_f;
        per_task.push((*n, us, cpu_us));
        r.line(&format!(
            "| {n} | {:.1} ms | {:.1} ms | {us:.0} µs | {us_medians:.0} µs | {cpu_us:.0} µs | {k} |",
            p.ours, p.base
        ));
    }
    r.line("");
    r.line(
        "Overhead per task (paired): the median over runs of (Outpost − xargs) for runs taken \
         back to back, divided by the task count; the difference of the two medians is shown \
         beside it. Agent CPU: the CPU time (user + system, all threads) of the `outpost-agent \
         run` process itself, not of the tasks it spawned, per task (mean over the runs).",
    );
    if let (Some(small), Some(big)) = (
        per_task.iter().find(|(n, ..)| *n == 1_000),
        per_task.iter().find(|(n, ..)| *n == 10_000),
    ) {
        let ratio = big.1 / small.1;
        r.line("");
        r.line(&format!(
            "Per-task overhead at 10,000 tasks is {ratio:.2}x that at 1,000 (goal: flat, ≤ 1.25x): {}. \
             Agent CPU per task: {:.2}x.",
            pass(ratio <= 1.25),
            big.2 / small.2
        ));
    }
    r.line("");
    r.line(&format!(
        "### Cron precision (`serve`, schedule `* * * * * *`, {} run(s) of {} s)",
        o.cron_runs, o.cron_secs
    ));
    r.line("");
    r.line(&format!(
        "| Measured at | Samples (of {} firings a run, 2 dropped a run) | p50 | p99 | max | Goal | |",
        o.cron_secs
    ));
    r.line("|---|---|---|---|---|---|---|");
    // One row per series: label, samples, p50, p99, max, goal and verdict.
    let row = |label: &str, xs: &[f64], goal: &str, verdict: &str| {
        format!(
            "| {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {goal} | {verdict} |",
            xs.len(),
            percentile(xs, 50.0),
            percentile(xs, 99.0),
            percentile(xs, 100.0),
        )
    };
    let rows = [
        row(
            "driver: spawn returned (debug event `late_us`)",
            &cron.driver,
            "p99 < 2 ms",
            pass(percentile(&cron.driver, 99.0) < 2.0),
        ),
        row(
            "of which the spawn call itself (`fork`/`exec` of `sh`; debug event `spawn_us`)",
            &cron.spawn,
            "—",
            "",
        ),
        row(
            "inside the task: `date +%s%N` (includes sh and date exec)",
            &cron.task,
            "—",
            "",
        ),
        row(
            "baseline: `std::thread::sleep` to half a second past each second (this harness)",
            &cron.sleep,
            "—",
            "",
        ),
        row(
            "baseline: the same sleep to three quarters past each second, then a spawn of `sh` \
             (std `Command::spawn` returned; this harness)",
            &cron.raw,
            "—",
            "",
        ),
    ];
    for line in &rows {
        r.line(line);
    }
    r.line("");
    r.line(&format!(
        "The largest sample of each run (a single run's p99 is its largest sample): {:?} ms. \
         Over the machine's own sleep-and-spawn, the daemon adds {:+.2} ms at p50 and {:+.2} ms at p99.",
        round2(&cron_maxima),
        percentile(&cron.driver, 50.0) - percentile(&cron.raw, 50.0),
        percentile(&cron.driver, 99.0) - percentile(&cron.raw, 99.0),
    ));
    r.line("");
    r.line("### Footprint");
    r.line("");
    r.line("| Figure | Value | Goal | |");
    r.line("|---|---|---|---|");
    r.line(&format!(
        "| VmRSS of an idle `serve` with 50 workflows loaded | {:.1} MiB (peak VmHWM {:.1} MiB) | < 15 MiB | {} |",
        rss_kib as f64 / 1024.0,
        hwm_kib as f64 / 1024.0,
        pass((rss_kib as f64 / 1024.0) < 15.0)
    ));
    r.line(&format!(
        "| `outpost-agent` release binary (stripped) | {:.1} MiB | — | |",
        bin_size as f64 / 1024.0 / 1024.0
    ));
    r.line("");
    r.line("### Validation (10,000-task chain)");
    r.line("");
    r.line("| Figure | Value | Goal | |");
    r.line("|---|---|---|---|");
    r.line(&validate_chain(runs)?.table_row());
    r.line("");
    r.line("### Store");
    r.line("");
    r.line("| Figure | Value |");
    r.line("|---|---|");
    r.line(&format!(
        "| raw `write` + `fdatasync` of 4 KiB in the state directory's filesystem (median of 50) | {fsync_ms:.2} ms |"
    ));
    match &commit {
        Some(lines) => {
            for l in lines {
                r.line(&format!("| `bench_commit` (debug build): {l} | |"));
            }
        }
        None => r.line("| `bench_commit` | not run (`--quick`, or it failed) |"),
    }

    if let Some(path) = &o.write {
        write_doc(path, &r.md, &o)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

// ----- validation of a large DAG ----------------------------------------------------------------

const VALIDATE_TASKS: usize = 10_000;

/// The validation figures: medians over fresh processes.
struct Validation {
    /// In-process `workflow::load_file` (read, parse, validate), wall ms.
    lib_ms: f64,
    /// The same, CPU time of the process (ms): what the goal is held to, as it does not grow
    /// with the other load of a shared machine the way wall time does.
    lib_cpu_ms: f64,
    /// The largest peak RSS (VmHWM) of those processes, KiB.
    peak_kib: u64,
    /// Wall time of `outpost-agent validate FILE` (the CLI, process start included), if the
    /// agent binary is there.
    cli_ms: Option<f64>,
}

impl Validation {
    fn pass(&self) -> bool {
        self.lib_cpu_ms < 100.0 && (self.peak_kib as f64) < 64.0 * 1024.0
    }

    fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "validate a {VALIDATE_TASKS}-task chain: {:.1} ms CPU ({:.1} ms wall), peak RSS {:.1} MiB (goal < 100 ms and < 64 MiB): {}",
            self.lib_cpu_ms,
            self.lib_ms,
            self.peak_kib as f64 / 1024.0,
            pass(self.pass())
        )];
        if let Some(c) = self.cli_ms {
            v.push(format!(
                "`outpost-agent validate` of the same file (process start included): {c:.1} ms"
            ));
        }
        v
    }

    fn table_row(&self) -> String {
        let cli = self.cli_ms.map_or(String::new(), |c| {
            format!("; `outpost-agent validate` {c:.1} ms wall")
        });
        format!(
            "| read, parse and validate a {VALIDATE_TASKS}-task chain (median CPU time and wall time; peak VmHWM of the process){cli} | {:.1} ms CPU ({:.1} ms wall), {:.1} MiB | < 100 ms, < 64 MiB | {} |",
            self.lib_cpu_ms,
            self.lib_ms,
            self.peak_kib as f64 / 1024.0,
            pass(self.pass())
        )
    }
}

/// Validate a [`VALIDATE_TASKS`]-task chain `runs` times, each in a fresh child process (this
/// binary with `--validate-child`), so that each peak RSS is that of one validation alone.
fn validate_chain(runs: usize) -> anyhow::Result<Validation> {
    eprintln!("[+] validation: a {VALIDATE_TASKS}-task chain ({runs} runs)");
    let scratch = Scratch::new("bench-validate")?;
    let file = scratch.write("chain.yaml", &chain_dag("chain", VALIDATE_TASKS))?;
    let me = std::env::current_exe().context("locating outpost-bench")?;
    let mut times = Vec::new();
    let mut cpus = Vec::new();
    let mut peak = 0u64;
    for _ in 0..runs {
        let out = Command::new(&me)
            .arg("--validate-child")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .context("running outpost-bench --validate-child")?;
        if !out.status.success() {
            bail!(
                "validating the chain failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut f = text.split_whitespace();
        let (Some(t), Some(kib), Some(cpu)) = (f.next(), f.next(), f.next()) else {
            bail!("unexpected --validate-child output: {text}");
        };
        times.push(t.parse::<f64>().context("--validate-child: time")?);
        cpus.push(cpu.parse::<f64>().context("--validate-child: CPU time")?);
        peak = peak.max(kib.parse::<u64>().context("--validate-child: KiB")?);
    }
    let bin = agent_bin();
    let cli_ms = if bin.exists() {
        let mut cli = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let st = Command::new(&bin)
                .arg("validate")
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("running outpost-agent validate")?;
            if !st.success() {
                bail!("outpost-agent validate {} failed ({st})", file.display());
            }
            cli.push(ms(start.elapsed()));
        }
        Some(median(&cli))
    } else {
        None
    };
    Ok(Validation {
        lib_ms: median(&times),
        lib_cpu_ms: median(&cpus),
        peak_kib: peak,
        cli_ms,
    })
}

/// `--validate-child FILE`: load and validate FILE here, then print the time it took (ms) and this
/// process's peak RSS (VmHWM, KiB).
fn validate_child(file: &Path) -> anyhow::Result<()> {
    let cpu0 = own_cpu_ns()?;
    let start = Instant::now();
    let wf = outpost_common::workflow::load_file(file, &Default::default()).map_err(|d| {
        anyhow::anyhow!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let elapsed = ms(start.elapsed());
    let cpu = own_cpu_ns()?.saturating_sub(cpu0) as f64 / 1e6;
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmHWM in /proc/self/status")?;
    println!("{elapsed:.3} {hwm} {cpu:.3} {}", wf.tasks.len());
    Ok(())
}

/// This process's CPU time so far (ns, all threads): the first field of /proc/self/schedstat.
fn own_cpu_ns() -> anyhow::Result<u64> {
    std::fs::read_to_string("/proc/self/schedstat")
        .context("/proc/self/schedstat")?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .context("parsing /proc/self/schedstat")
}

fn round2(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|x| (x * 100.0).round() / 100.0).collect()
}

fn round1(xs: &[f64]) -> Vec<f64> {
    xs.iter().map(|x| (x * 10.0).round() / 10.0).collect()
}

// ----- cron precision --------------------------------------------------------------------------

struct Cron {
    /// Lateness (ms) of each spawn, from the driver's debug event.
    driver: Vec<f64>,
    /// Duration (ms) of the spawn call of each of those (part of `driver`).
    spawn: Vec<f64>,
    /// Lateness (ms) seen by the task itself.
    task: Vec<f64>,
    /// Lateness (ms) of a plain thread sleep to the next half second.
    sleep: Vec<f64>,
    /// Lateness (ms) of the same sleep followed by a spawn of `sh`, when the spawn returned:
    /// the machine's floor for what `driver` measures.
    raw: Vec<f64>,
}

impl Cron {
    /// Add another run's samples.
    fn extend(&mut self, c: Cron) {
        self.driver.extend(c.driver);
        self.spawn.extend(c.spawn);
        self.task.extend(c.task);
        self.sleep.extend(c.sleep);
        self.raw.extend(c.raw);
    }
}

/// `n` cron-precision runs (at least one) of `secs` each: every sample pooled, and the largest
/// driver sample of each run. `each` sees every run as it ends (1-based index).
fn cron_precision_runs(
    n: usize,
    secs: u64,
    mut each: impl FnMut(usize, &Cron),
) -> anyhow::Result<(Cron, Vec<f64>)> {
    let first = cron_precision(secs)?;
    each(1, &first);
    let mut maxima = vec![percentile(&first.driver, 100.0)];
    let mut all = first;
    for i in 2..=n {
        let c = cron_precision(secs)?;
        each(i, &c);
        maxima.push(percentile(&c.driver, 100.0));
        all.extend(c);
    }
    Ok((all, maxima))
}

/// `--cron-only N`: N cron-precision runs, a summary line for each, then the percentiles over
/// all their samples (so that a p99 is not just the largest of ~58).
fn cron_only(n: usize, secs: u64) -> anyhow::Result<()> {
    let line = |what: &str, c: &Cron| {
        println!(
            "{what}: {} samples: late p50 {:.2} p99 {:.2} max {:.2} ms; spawn call p50 {:.2} max \
             {:.2} ms | baseline sleep+spawn ({} samples) p50 {:.2} p99 {:.2} max {:.2} ms; \
             sleep alone p99 {:.2} ms",
            c.driver.len(),
            percentile(&c.driver, 50.0),
            percentile(&c.driver, 99.0),
            percentile(&c.driver, 100.0),
            percentile(&c.spawn, 50.0),
            percentile(&c.spawn, 100.0),
            c.raw.len(),
            percentile(&c.raw, 50.0),
            percentile(&c.raw, 99.0),
            percentile(&c.raw, 100.0),
            percentile(&c.sleep, 99.0),
        )
    };
    let mut load = loadavg();
    let (all, _) = cron_precision_runs(n, secs, |i, c| {
        line(
            &format!("run {i}/{n} ({secs} s, load at its start {load})"),
            c,
        );
        load = loadavg();
    })?;
    line(&format!("all {n} runs"), &all);
    Ok(())
}

fn cron_precision(secs: u64) -> anyhow::Result<Cron> {
    let scratch = Scratch::new("bench-cron")?;
    let stamps = scratch.join("stamps.txt");
    let wf = format!(
        "name: tick\nschedule: \"* * * * * *\"\ncatchup: none\noverlap: allow\nmax_active_runs: 5\n\
         tasks:\n  stamp:\n    command: [sh, -c, 'date +%s%N >> \"$1\"', stamp, \"{}\"]\n",
        stamps.display()
    );
    std::fs::create_dir_all(scratch.join("workflows"))?;
    scratch.write("workflows/tick.yaml", &wf)?;
    let mut d = Daemon::start_logged(scratch.path(), "", Some("info,outpost_agent::driver=debug"))?;
    // Meanwhile, the baselines (the daemon's own sleeps are independent of them; the machine is
    // the same): this thread sleeping to half a second past each whole one (so as not to
    // compete with the daemon at the whole second), and sleeping to three quarters past it,
    // then spawning `sh` as the daemon does: the floor of what the daemon's figure measures.
    let mut sleep = Vec::new();
    let mut raw = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let into = chrono::Utc::now().timestamp_subsec_nanos() as u64;
        let (phase, spawn) = if into < 500_000_000 {
            (500_000_000, false)
        } else if into < 750_000_000 {
            (750_000_000, true)
        } else {
            (1_500_000_000, false)
        };
        std::thread::sleep(Duration::from_nanos(phase - into));
        let late_ms = || {
            let sub = chrono::Utc::now().timestamp_subsec_nanos() as i64;
            (sub - (phase % 1_000_000_000) as i64) as f64 / 1e6
        };
        if !spawn {
            sleep.push(late_ms());
            continue;
        }
        let child = Command::new("sh")
            .args(["-c", "exit 0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let late = late_ms();
        if let Ok(mut child) = child {
            raw.push(late);
            let _ = child.wait();
        }
    }
    d.terminate(Duration::from_secs(10))?;
    let log = std::fs::read_to_string(&d.stderr_path)?;
    let mut driver: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("scheduled spawn"))
        .filter_map(|l| {
            let v = l.split("late_us=").nth(1)?;
            let v: String = v
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            v.parse::<f64>().ok()
        })
        .map(|us| us / 1e3)
        .collect();
    let mut spawn: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("scheduled spawn"))
        .filter_map(|l| {
            let v = l.split("spawn_us=").nth(1)?;
            let v: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            v.parse::<f64>().ok()
        })
        .map(|us| us / 1e3)
        .collect();
    let mut task: Vec<f64> = std::fs::read_to_string(&stamps)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .map(|ns| (ns % 1_000_000_000) as f64 / 1e6)
        .collect();
    // The first two firings follow the daemon's start-up: not steady state.
    for v in [&mut driver, &mut spawn, &mut task] {
        if v.len() > 4 {
            v.drain(..2);
        }
    }
    if driver.is_empty() {
        bail!(
            "no `scheduled spawn` debug events in the daemon's log\n{}",
            d.stderr_tail()
        );
    }
    Ok(Cron {
        driver,
        spawn,
        task,
        sleep,
        raw,
    })
}

// ----- footprint -------------------------------------------------------------------------------

fn idle_rss(n: usize) -> anyhow::Result<(u64, u64)> {
    let scratch = Scratch::new("bench-rss")?;
    std::fs::create_dir_all(scratch.join("workflows"))?;
    let example = std::fs::read_to_string(repo_root().join("examples/hello.yaml"))
        .context("reading examples/hello.yaml")?;
    for i in 0..n {
        // The example DAG, renamed, scheduled once a year so that the daemon stays idle.
        let body = example
            .replace("name: hello", &format!("name: wf{i:03}"))
            .replace("schedule: \"*/10 * * * * *\"", "schedule: \"0 0 1 1 *\"");
        scratch.write(&format!("workflows/wf{i:03}.yaml"), &body)?;
    }
    let d = Daemon::start(scratch.path(), "")?;
    wait_for(Duration::from_secs(30), "50 workflows loaded", || {
        let v = d.ctl_json("status", &[]).ok()?;
        (v["workflows"].as_array()?.len() >= n).then_some(())
    })?;
    // Let it settle (a few rescans).
    std::thread::sleep(Duration::from_secs(3));
    let pid = d.pid().context("daemon pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

// ----- store -----------------------------------------------------------------------------------

/// Median latency (ms) of writing 4 KiB and `fdatasync`, `n` times.
fn raw_fsync(dir: &Path, n: usize) -> anyhow::Result<f64> {
    let path = dir.join("fsync.bin");
    let mut f = std::fs::File::create(&path)?;
    let buf = vec![7u8; 4096];
    let mut xs = Vec::new();
    for _ in 0..n {
        let s = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        xs.push(ms(s.elapsed()));
    }
    Ok(median(&xs))
}

/// The store's own measurement: `cargo test -p outpost-agent --lib -- --ignored bench_commit`.
fn store_commit(root: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "test",
            "-p",
            "outpost-agent",
            "--lib",
            "--",
            "--ignored",
            "--nocapture",
            "--exact",
            "store::tests::bench_commit",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running bench_commit")?;
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("2PC commit"))
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!("bench_commit printed nothing");
    }
    Ok(lines)
}

// ----- Airflow ---------------------------------------------------------------------------------

struct Airflow {
    fan: f64,
    chain: f64,
}

fn airflow_peer(root: &Path, runs: usize) -> anyhow::Result<Airflow> {
    let script = std::env::var_os("OUTPOST_AIRFLOW_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/bench/airflow-peer.sh"));
    let script = if script.exists() {
        script
    } else {
        PathBuf::from("/work/shared/bench/airflow-peer.sh")
    };
    let out = Command::new("bash")
        .arg(&script)
        .arg(runs.to_string())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |dag: &str| -> anyhow::Result<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("dag={dag} ")))
            .and_then(|l| l.split("wall_s=").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no figure for {dag} in: {text}"))
    };
    Ok(Airflow {
        fan: get("peer_fan200")?,
        chain: get("peer_chain10")?,
    })
}

// ----- docs ------------------------------------------------------------------------------------

/// Replace the generated section of `path` (between the markers) or write a fresh document.
fn write_doc(path: &Path, results: &str, o: &Opts) -> anyhow::Result<()> {
    const BEGIN: &str = "<!-- outpost-bench:begin (generated; do not edit by hand) -->";
    const END: &str = "<!-- outpost-bench:end -->";
    let mut cmd = String::from("cargo run --release -p outpost-tests --bin outpost-bench --");
    if o.airflow {
        cmd.push_str(" --airflow");
    }
    if o.quick {
        cmd.push_str(" --quick");
    }
    cmd.push_str(&format!(" --write {}", path.display()));
    let generated = format!(
        "{BEGIN}\n\nGenerated {} by:\n\n```sh\n{cmd}\n```\n\n{results}\n{END}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let doc = match std::fs::read_to_string(path) {
        Ok(old) if old.contains(BEGIN) && old.contains(END) => {
            let (head, rest) = old.split_once(BEGIN).unwrap_or((&old, ""));
            let tail = rest.split_once(END).map(|(_, t)| t).unwrap_or("");
            format!("{head}{generated}{tail}")
        }
        _ => format!("# Benchmarks\n\n{generated}\n"),
    };
    std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))
}
