//! The run context a task sees: `{{ ... }}` placeholders in `command`/`script`, and environment
//! variables (`OUTPOST_*`).

use std::collections::BTreeMap;

use outpost_common::template::{self, Placeholder, RunField};

pub struct Context<'a> {
    pub run_id: &'a str,
    pub workflow: &'a str,
    pub task: &'a str,
    pub attempt: u32,
    /// RFC 3339.
    pub scheduled: &'a str,
    pub params: &'a BTreeMap<String, String>,
    /// (task id, key, value) of upstream outputs.
    pub outputs: &'a [(String, String, String)],
}

impl Context<'_> {
    fn lookup(&self, p: &Placeholder) -> Option<String> {
        match p {
            Placeholder::Run(field) => Some(match field {
                RunField::Id => self.run_id.to_string(),
                RunField::Workflow => self.workflow.to_string(),
                RunField::Task => self.task.to_string(),
                RunField::Attempt => self.attempt.to_string(),
                RunField::ScheduledTime => self.scheduled.to_string(),
            }),
            Placeholder::Param(name) => self.params.get(name).cloned(),
            Placeholder::TaskOutput { task, key } => self
                .outputs
                .iter()
                .find(|(t, k, _)| t == task && k == key)
                .map(|(_, _, v)| v.clone()),
        }
    }

    /// Render a template; a placeholder without a value (an upstream output that was never
    /// written) is an error that fails the attempt with a clear reason.
    pub fn render(&self, s: &str) -> anyhow::Result<String> {
        template::render(s, &|p| self.lookup(p)).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Render a `script` for a POSIX shell: each placeholder becomes a reference to a variable
    /// that carries its value (see `outpost_common::template::render_script`); returns the script
    /// and those variables. A value is never part of the script text.
    pub fn render_script(&self, s: &str) -> anyhow::Result<(String, Vec<(String, String)>)> {
        let r =
            template::render_script(s, &|p| self.lookup(p)).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((r.script, r.env))
    }

    /// `OUTPOST_RUN_ID`, `OUTPOST_WORKFLOW`, `OUTPOST_TASK`, `OUTPOST_ATTEMPT`,
    /// `OUTPOST_SCHEDULED_TIME`, `OUTPOST_PARAM_<NAME>`, `OUTPOST_OUTPUT_<TASK>_<KEY>`.
    pub fn env(&self) -> Vec<(String, String)> {
        let run = |f: RunField, v: String| (template::run_var(f).to_string(), v);
        let mut env = vec![
            run(RunField::Id, self.run_id.to_string()),
            run(RunField::Workflow, self.workflow.to_string()),
            run(RunField::Task, self.task.to_string()),
            run(RunField::Attempt, self.attempt.to_string()),
            run(RunField::ScheduledTime, self.scheduled.to_string()),
        ];
        for (k, v) in self.params {
            env.push((template::param_var(k), v.clone()));
        }
        for (t, k, v) in self.outputs {
            env.push((template::output_var(t, k), v.clone()));
        }
        env
    }
}
