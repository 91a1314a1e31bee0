//! The command implementations behind `outpost-agent`'s CLI.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use outpost_common::clock::SystemClock;
use outpost_common::record::{RunState, StatusEvent, TaskState};
use outpost_common::workflow::{Diagnostic, ValidateOptions};

use crate::cli::{Cli, ClientOpts, Command, Output, parse_params};
use crate::config::AgentConfig;
use crate::control::{self, Request, Response};
use crate::driver::{Driver, DriverConfig, Event};
use crate::store::Store;
use crate::views::{self, RunView};

/// Exit codes (docs/operations.md, "Exit codes"): 0 success, 1 failure (an invalid file, a
/// failed run), 2 bad input or usage, 64 (`serve`) a bad configuration.
const EXIT_FAIL: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match dispatch(cli.command, cli.log_format) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn dispatch(cmd: Command, log_format: crate::cli::Output) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Validate { files, config } => validate(&files, config.as_deref()),
        Command::Completion { shell } => {
            crate::cli::print_completion(shell);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            let n = crate::cli::write_man(dir.as_deref())?;
            if let Some(d) = dir {
                println!("{n} man pages written to {}", d.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule { file, from, count } => schedule(&file, from.as_deref(), count),
        Command::Run {
            file,
            params,
            state_dir,
            output,
            max_running,
            config,
            quiet,
        } => run_once(
            &file,
            &params,
            state_dir,
            output,
            max_running,
            config.as_deref(),
            quiet,
        ),
        Command::Serve { config } => serve(&config, log_format),
        Command::Enroll {
            hub,
            token,
            token_file,
            name,
            labels,
            hub_name,
            config,
            state_dir,
        } => crate::enroll::run(crate::enroll::EnrollCli {
            hub,
            token,
            token_file,
            name,
            labels,
            hub_name,
            config,
            state_dir,
        }),
        Command::Status { client, output } => client_status(&client, output),
        Command::Runs {
            client,
            workflow,
            limit,
            output,
        } => {
            let resp = call(&client, &Request::Runs { workflow, limit })?;
            let Response::Runs { runs } = expect_ok(resp)? else {
                anyhow::bail!("unexpected response")
            };
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        vec![
                            r.run_id.clone(),
                            r.workflow.clone(),
                            r.kind.clone(),
                            r.state.clone(),
                            r.scheduled.clone(),
                            duration_between(r.started.as_deref(), r.ended.as_deref()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    views::table(
                        &["RUN", "WORKFLOW", "KIND", "STATE", "SCHEDULED", "DURATION"],
                        &rows
                    )
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show {
            client,
            run_id,
            output,
        } => {
            let Response::Run(run) = expect_ok(call(&client, &Request::Show { run_id })?)? else {
                anyhow::bail!("unexpected response")
            };
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print_run(&run);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Logs {
            client,
            run_id,
            task,
            attempt,
            follow,
        } => logs(&client, &run_id, &task, attempt, follow),
        Command::Trigger {
            client,
            workflow,
            params,
            at,
        } => {
            let params = parse_params(&params).map_err(anyhow::Error::msg)?;
            let req = match at {
                None => Request::Trigger { workflow, params },
                Some(at) => Request::TriggerAt {
                    workflow,
                    params,
                    at_ms: chrono::DateTime::parse_from_rfc3339(&at)
                        .map_err(|e| anyhow::anyhow!("--at {at:?}: not an RFC 3339 time ({e})"))?
                        .timestamp_millis(),
                },
            };
            let Response::Triggered { run_id } = expect_ok(call(&client, &req)?)? else {
                anyhow::bail!("unexpected response")
            };
            println!("{run_id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { client, workflow } => simple(&client, Request::Pause { workflow }),
        Command::Resume { client, workflow } => simple(&client, Request::Resume { workflow }),
        Command::Cancel { client, run_id } => simple(&client, Request::Cancel { run_id }),
        Command::Schema => {
            use std::io::Write as _;
            let text = outpost_common::workflow::schema::json_schema_text();
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Secret {
            action,
            config,
            state_dir,
        } => secret(action, config.as_deref(), state_dir),
        Command::Retry {
            client,
            run_id,
            task,
            downstream,
        } => simple(
            &client,
            Request::Retry {
                run_id,
                task,
                downstream,
                if_ended_ms: None,
            },
        ),
    }
}

// ----- secret ----------------------------------------------------------------------------------

fn secret(
    action: crate::cli::SecretAction,
    config: Option<&Path>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use crate::cli::SecretAction;
    let cfg = match (state_dir, config) {
        (Some(d), _) => AgentConfig::with_state_dir(d),
        (None, Some(c)) => AgentConfig::load(c)?,
        (None, None) => AgentConfig::with_state_dir(crate::config::default_state_dir()),
    };
    let store = cfg.secrets();
    match action {
        SecretAction::Set { name } => {
            if !outpost_common::workflow::valid_secret_name(&name) {
                anyhow::bail!("{}", crate::secrets::SecretError::Name(name));
            }
            if !cfg.state_dir.exists() {
                crate::private_fs::state_dir(&cfg.state_dir)
                    .with_context(|| format!("creating state_dir {}", cfg.state_dir.display()))?;
            }
            let value = crate::secrets::read_value_from_stdin()?;
            store.set(&name, &value)?;
            eprintln!("secret `{name}` set ({} bytes)", value.len());
        }
        SecretAction::List { output } => {
            let list = store.list()?;
            match output {
                Output::Json => {
                    let items: Vec<serde_json::Value> = list
                        .iter()
                        .map(|(n, src)| serde_json::json!({"name": n, "source": src}))
                        .collect();
                    println!("{}", serde_json::Value::Array(items));
                }
                Output::Text => {
                    for (n, src) in &list {
                        println!("{n}\t{src}");
                    }
                }
            }
        }
        SecretAction::Rm { name } => {
            if !store.remove(&name)? {
                eprintln!("secret `{name}` is not in this agent's store");
                return Ok(ExitCode::from(EXIT_FAIL));
            }
            eprintln!("secret `{name}` removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ----- validate / schedule ---------------------------------------------------------------------

fn validate_options(config: Option<&Path>) -> anyhow::Result<ValidateOptions> {
    let mut opts = ValidateOptions::default();
    if let Some(c) = config {
        let cfg = AgentConfig::load(c)?;
        opts.known_resources = Some(cfg.resources.keys().cloned().collect());
    }
    Ok(opts)
}

fn validate(files: &[PathBuf], config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let opts = validate_options(config)?;
    // With the agent's config: also this agent's secrets and run-as policy.
    let local = match config {
        Some(c) => {
            let cfg = AgentConfig::load(c)?;
            let exec = cfg.exec_config()?;
            Some((exec.secrets, exec.run_as))
        }
        None => None,
    };
    let mut bad = 0usize;
    for f in files {
        match outpost_common::workflow::load_file(f, &opts) {
            Ok(wf) => {
                let problems = local
                    .as_ref()
                    .map(|(s, p)| crate::run_as::check_workflow(&wf, s, p))
                    .unwrap_or_default();
                if problems.is_empty() {
                    println!("{}: ok ({} tasks)", f.display(), wf.tasks.len());
                } else {
                    bad += 1;
                    for p in problems {
                        eprintln!("{}: on this agent: {p}", f.display());
                    }
                }
            }
            Err(diags) => {
                bad += 1;
                print_diagnostics(&diags);
            }
        }
    }
    if bad > 0 {
        eprintln!("{bad} of {} file(s) invalid", files.len());
        Ok(ExitCode::from(EXIT_FAIL))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

fn schedule(file: &Path, from: Option<&str>, count: usize) -> anyhow::Result<ExitCode> {
    let wf = match outpost_common::workflow::load_file(file, &ValidateOptions::default()) {
        Ok(wf) => wf,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let Some(sched) = wf.schedule.as_ref() else {
        eprintln!(
            "{}: workflow `{}` has no schedule (it runs only when triggered)",
            file.display(),
            wf.name
        );
        return Ok(ExitCode::from(EXIT_FAIL));
    };
    let from = match from {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .with_context(|| {
                format!("--from `{s}` is not an RFC 3339 timestamp (e.g. 2026-03-29T00:00:00Z)")
            })?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let mut out = std::io::stdout().lock();
    for t in sched.iter_after(from, wf.timezone).take(count) {
        if writeln!(out, "{}", t.with_timezone(&wf.timezone).to_rfc3339()).is_err() {
            break; // broken pipe: fine
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ----- run (foreground) -----------------------------------------------------------------------

fn default_run_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("outpost/run");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state/outpost/run"),
        None => std::env::temp_dir().join("outpost-run"),
    }
}

/// The runtime of `run`: one thread. A foreground run has no network; its driver, the
/// processes' supervisors and the timers all run on the main thread, so an exit reaches the
/// driver without a hand-off between threads (the store's commits have their own thread). On 2
/// CPUs this took the 202-task fan-out from ~157 to ~141 ms (xargs ~116 ms; docs/BENCHMARKS.md).
fn runtime_foreground() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Open the store in `dir` and enroll with `f`. A refused or failed enrollment leaves nothing
/// behind: the files it created in `dir` (the store among them), and `dir` itself if it made it,
/// are removed, so the next try starts as this one did. A store already open (the agent service
/// running on it) is refused with the working order.
pub(crate) fn enroll_leaving_nothing_on_failure<T>(
    dir: &Path,
    f: impl FnOnce(&Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir_existed = dir.exists();
    let before: std::collections::HashSet<std::ffi::OsString> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
        Err(_) => Default::default(),
    };
    let cleanup = || {
        if !dir_existed {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if !before.contains(&e.file_name()) {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
    };
    crate::private_fs::state_dir(dir)
        .with_context(|| format!("preparing state_dir {} (mode 0700)", dir.display()))?;
    let store = match Store::open(&dir.join("agent.redb")) {
        Ok(s) => s,
        Err(e) => {
            let already_open = matches!(
                e,
                crate::store::StoreError::Db(crate::store::DbError::AlreadyOpen { .. })
            );
            cleanup();
            let err =
                anyhow::Error::new(e).context(format!("opening the store in {}", dir.display()));
            return Err(if already_open {
                err.context(
                    "the agent service is running on this state directory: stop it \
                     (`systemctl stop outpost-agent`), enroll, then start it again",
                )
            } else {
                err
            });
        }
    };
    let result = f(&store);
    drop(store);
    if result.is_err() {
        cleanup();
    }
    result
}

/// The runtime of `serve` and `enroll`: two workers, so that the hub link and the control
/// socket go on while the driver waits for the disk.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run_once(
    file: &Path,
    raw_params: &[String],
    state_dir: Option<PathBuf>,
    output: Output,
    max_running: Option<usize>,
    config: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let params = match parse_params(raw_params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let mut cfg = match config {
        Some(c) => AgentConfig::load(c)?,
        None => AgentConfig::with_state_dir(default_run_state_dir()),
    };
    if let Some(d) = state_dir {
        cfg = AgentConfig {
            socket: d.join("agent.sock"),
            state_dir: d,
            ..cfg
        };
    }
    if let Some(n) = max_running {
        // A dispatch depth left at its default follows the new limit.
        cfg.max_running = n.max(1);
    }
    let opts = ValidateOptions {
        known_resources: config.map(|_| cfg.resources.keys().cloned().collect()),
    };
    let source = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let format = outpost_common::workflow::Format::from_path(file);
    let wf = match outpost_common::workflow::parse(
        &file.display().to_string(),
        &String::from_utf8_lossy(&source),
        format,
        &opts,
    ) {
        Ok(wf) => wf,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    crate::private_fs::state_dir(&cfg.state_dir).with_context(|| {
        format!(
            "preparing state_dir {} (mode 0700)",
            cfg.state_dir.display()
        )
    })?;
    let store = Arc::new(
        Store::open(&cfg.store_path())
            .with_context(|| format!("opening the store in {}", cfg.state_dir.display()))?,
    );
    let rt = runtime_foreground()?;
    let name = wf.name.clone();
    let total = wf.tasks.len();
    let result = rt.block_on(async move {
        let mut driver = Driver::new(
            DriverConfig {
                max_running: cfg.max_running,
                dispatch_ahead: cfg.dispatch_ahead(),
                resources: cfg.resources.clone(),
                exec: cfg.exec_config()?,
                shutdown_grace: Duration::from_secs(5),
                agent_id: None,
                workflows_dir: None,
                validate: opts.clone(),
                retention: None,
                start_journal_dir: Some(cfg.state_dir.clone()),
                precommit_lead: cfg.precommit_lead,
                disk_guard: None,
            },
            Arc::new(SystemClock::default()),
            store.clone(),
        );
        let version = driver.record_version(
            &wf,
            &source,
            format_name(format),
            &file.display().to_string(),
        )?;
        driver.install_workflow(wf, version, file.display().to_string(), false)?;
        let progress = Arc::new(Mutex::new(Progress::new(
            total,
            output == Output::Text && !quiet,
        )));
        let p2 = progress.clone();
        driver.set_observer(Box::new(move |e| {
            if let Ok(mut p) = p2.lock() {
                p.event(e);
            }
        }));
        let run_id = driver.trigger(&name, params)?;
        if let Ok(mut p) = progress.lock() {
            p.start(&run_id);
        }
        let tx = driver.sender();
        tokio::spawn(async move {
            crate::daemon::wait_for_signal().await;
            let _ = tx.send(Event::Shutdown);
        });
        let rid = run_id.clone();
        let mut state = None;
        driver
            .run_loop(|d| {
                for (id, s) in d.take_finished() {
                    if id == rid {
                        state = Some(s);
                    }
                }
                state.is_some()
            })
            .await?;
        // Its hooks (each bounded by its timeout) finish before the command returns.
        driver.wait_hooks(Duration::from_secs(24 * 3600));
        if let Ok(mut p) = progress.lock() {
            p.finish();
        }
        let run = store
            .run(&run_id)?
            .context("the run vanished from the store")?;
        let tasks = store.tasks(&run_id)?;
        anyhow::Ok(RunView::new(&run, &order_tasks(tasks, &driver, &name)))
    })?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        Output::Text => print_run(&result),
    }
    Ok(if result.state == RunState::Succeeded.as_str() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAIL)
    })
}

/// Tasks in the workflow's (topological) order.
fn order_tasks(
    mut tasks: Vec<outpost_common::record::TaskInstanceRecord>,
    driver: &Driver,
    name: &str,
) -> Vec<outpost_common::record::TaskInstanceRecord> {
    if let Some(order) = driver.task_order(name) {
        let index: std::collections::HashMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        tasks.sort_by_key(|t| index.get(t.task_id.as_str()).copied().unwrap_or(usize::MAX));
    }
    tasks
}

fn format_name(f: outpost_common::workflow::Format) -> &'static str {
    match f {
        outpost_common::workflow::Format::Toml => "toml",
        _ => "yaml",
    }
}

/// Live progress of a foreground run: one line per task state change, and a bar on a TTY.
struct Progress {
    enabled: bool,
    tty: bool,
    total: usize,
    done: usize,
    last: std::collections::HashMap<String, TaskState>,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(total: usize, enabled: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        Progress {
            enabled,
            tty,
            total,
            done: 0,
            last: Default::default(),
            bar: None,
        }
    }

    fn start(&mut self, run_id: &str) {
        if !self.enabled {
            return;
        }
        eprintln!("run {run_id}");
        if self.tty {
            let bar = indicatif::ProgressBar::new(self.total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {pos}/{len} tasks  {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
    }

    fn event(&mut self, e: &StatusEvent) {
        let StatusEvent::Task(t) = e else { return };
        // Dispatched ahead of a free slot: shown when it really starts.
        if t.state == TaskState::Running
            && t.attempts.last().is_some_and(|a| a.dispatched_ms.is_some())
        {
            return;
        }
        if self.last.get(&t.task_id) == Some(&t.state) {
            return;
        }
        let was_terminal = self.last.get(&t.task_id).is_some_and(|s| s.is_terminal());
        self.last.insert(t.task_id.clone(), t.state);
        if t.state.is_terminal() && !was_terminal {
            self.done += 1;
        }
        if !self.enabled {
            return;
        }
        let attempt = t.attempts.last();
        let mut line = format!(
            "{}  {:<24} {}",
            chrono::Local::now().format("%H:%M:%S%.3f"),
            t.task_id,
            t.state.as_str()
        );
        if let Some(a) = attempt {
            if t.state == TaskState::Running || t.attempts.len() > 1 {
                line.push_str(&format!(" (attempt {})", a.attempt));
            }
            if let Some(o) = &a.outcome
                && !o.is_success()
            {
                line.push_str(&format!(": {}", o));
            }
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done as u64);
                bar.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn print_run(run: &RunView) {
    println!("run       {}", run.run_id);
    println!("workflow  {} (version {})", run.workflow, run.version);
    println!("state     {}", run.state);
    if let Some(why) = &run.skip_reason {
        println!("skipped   {why}");
    }
    println!("scheduled {}", run.scheduled);
    if !run.params.is_empty() {
        let p: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("params    {}", p.join(" "));
    }
    println!(
        "duration  {}",
        duration_between(run.started.as_deref(), run.ended.as_deref())
    );
    println!();
    let rows: Vec<Vec<String>> = run
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.task.clone(),
                t.state.clone(),
                t.attempts.to_string(),
                t.exit_code
                    .map(|c| c.to_string())
                    .or_else(|| t.outcome.clone())
                    .unwrap_or_else(|| "-".into()),
                duration_between(t.start.as_deref(), t.end.as_deref()),
                t.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        views::table(
            &["TASK", "STATE", "ATTEMPTS", "EXIT", "DURATION", "REASON"],
            &rows
        )
    );
}

fn duration_between(start: Option<&str>, end: Option<&str>) -> String {
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (start.and_then(parse), end.and_then(parse)) {
        (Some(s), Some(e)) => {
            let ms = (e - s).num_milliseconds().max(0);
            if ms < 10_000 {
                format!("{:.3}s", ms as f64 / 1000.0)
            } else {
                format!("{}s", ms / 1000)
            }
        }
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

// ----- serve -------------------------------------------------------------------------------------

fn serve(config: &Path, log_format: crate::cli::Output) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(log_format == crate::cli::Output::Json);
    let cfg = match AgentConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(64)); // EX_USAGE: bad configuration
        }
    };
    crate::private_fs::state_dir(&cfg.state_dir).with_context(|| {
        format!(
            "preparing state_dir {} (mode 0700)",
            cfg.state_dir.display()
        )
    })?;
    let store = Arc::new(
        Store::open(&cfg.store_path())
            .with_context(|| format!("opening the store {}", cfg.store_path().display()))?,
    );
    let rt = runtime()?;
    rt.block_on(crate::daemon::serve(cfg, store))?;
    Ok(ExitCode::SUCCESS)
}

// ----- clients -----------------------------------------------------------------------------------

fn socket_path(c: &ClientOpts) -> anyhow::Result<PathBuf> {
    if let Some(s) = &c.socket {
        return Ok(s.clone());
    }
    if let Some(cfg) = &c.config {
        return Ok(AgentConfig::load(cfg)?.socket);
    }
    Ok(crate::config::default_state_dir().join("agent.sock"))
}

fn call(c: &ClientOpts, req: &Request) -> anyhow::Result<Response> {
    Ok(control::call(&socket_path(c)?, req)?)
}

fn expect_ok(r: Response) -> anyhow::Result<Response> {
    match r {
        Response::Error { message } => Err(anyhow::anyhow!(message)),
        other => Ok(other),
    }
}

fn simple(c: &ClientOpts, req: Request) -> anyhow::Result<ExitCode> {
    match call(c, &req)? {
        Response::Error { message } => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(EXIT_FAIL))
        }
        Response::Ok { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn client_status(c: &ClientOpts, output: Output) -> anyhow::Result<ExitCode> {
    let Response::Status(s) = expect_ok(call(c, &Request::Status)?)? else {
        anyhow::bail!("unexpected response")
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "outpost-agent {} (pid {}), up since {}",
        s.version, s.pid, s.started
    );
    println!(
        "tasks running {}/{}   active runs {}   outbox pending {}",
        s.running_tasks, s.max_running, s.active_runs, s.outbox_pending
    );
    if let Some(d) = &s.disk_low {
        println!("PAUSED: {d}");
    }
    if let Some(h) = &s.hub_link {
        for line in hub_link_lines(h) {
            println!("{line}");
        }
    }
    if let Some(d) = &s.director {
        println!(
            "director {} until {}   clock offset {} ms   root metadata v{}",
            if d.stale { "STALE since" } else { "fresh" },
            d.fresh_until,
            d.clock_offset_ms,
            d.root_version
        );
    }
    println!();
    let rows: Vec<Vec<String>> = s
        .workflows
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.version.to_string(),
                w.schedule.clone().unwrap_or_else(|| "-".into()),
                if w.paused {
                    "paused".into()
                } else {
                    "active".into()
                },
                w.next_fire.clone().unwrap_or_else(|| "-".into()),
                w.active_runs.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        views::table(
            &["WORKFLOW", "VERSION", "SCHEDULE", "STATE", "NEXT", "RUNS"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `status`: the hub link, one line each for the connection, the last error and the outbox.
fn hub_link_lines(h: &crate::control::HubLinkStatus) -> Vec<String> {
    let mut out = vec![match &h.connected_since {
        Some(since) if h.connected => format!("hub {}: connected since {since}", h.hub),
        _ => format!("hub {}: NOT CONNECTED", h.hub),
    }];
    if h.addresses.len() > 1 {
        out.push(format!("hub addresses: {}", h.addresses.join(", ")));
    }
    if let Some(e) = &h.last_error {
        out.push(format!(
            "hub last error at {}: {e}",
            h.last_error_at.as_deref().unwrap_or("-")
        ));
    }
    out.push(match (&h.outbox_oldest_seq, &h.outbox_oldest_at) {
        (Some(seq), at) if h.outbox_pending > 0 => format!(
            "hub outbox: {} pending, oldest seq {seq} ({})",
            h.outbox_pending,
            at.as_deref().unwrap_or("time unknown")
        ),
        _ => "hub outbox: nothing pending".to_string(),
    });
    out
}

fn logs(
    c: &ClientOpts,
    run_id: &str,
    task: &str,
    attempt: Option<u32>,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let req = Request::Logs {
        run_id: run_id.into(),
        task: task.into(),
        attempt,
    };
    let Response::Log {
        path,
        attempt,
        mut running,
    } = expect_ok(call(c, &req)?)?
    else {
        anyhow::bail!("unexpected response")
    };
    let mut follower = crate::exec::log::LogFollower::new(Path::new(&path));
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        follower
            .poll(&mut buf)
            .with_context(|| format!("reading {path}"))?;
        if out.write_all(&buf).and_then(|_| out.flush()).is_err() {
            break; // broken pipe: fine
        }
        if !follow || !running {
            if follow {
                buf.clear();
                follower.poll(&mut buf)?;
                let _ = out.write_all(&buf);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let req = Request::Logs {
            run_id: run_id.into(),
            task: task.into(),
            attempt: Some(attempt),
        };
        if let Response::Log { running: r, .. } = expect_ok(call(c, &req)?)? {
            running = r;
        }
    }
    Ok(ExitCode::SUCCESS)
}
