//! The generic `command` kind: a shell command with declared outputs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hash;
use crate::kind::{Inputs, KeyContext, Outcome, RunContext, StageKind, WithError};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandWith {
    /// Run with `sh -c` in a fresh directory holding `inputs/<name>`; write `outputs/<name>`.
    pub run: String,
    /// Names the command must write under `outputs/`.
    #[serde(default)]
    pub outs: Vec<String>,
    /// Files or directories (relative to the pipeline file) whose content enters the cache key.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// An exit code meaning "not ready yet": the stage is deferred, not failed, and its
    /// last output line is the reason (e.g. `3` for a nested `soma-flow run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer_on_exit: Option<i32>,
}

pub struct CommandKind;

/// Lines of output quoted in the error when a command fails.
const TAIL_LINES: usize = 20;

impl StageKind for CommandKind {
    type With = CommandWith;
    const NAME: &'static str = "command";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Runs a shell command; inputs at inputs/<name>, outputs written to outputs/<name>";

    fn inputs(&self, _: &CommandWith) -> Inputs {
        Inputs::Any
    }

    fn outputs(&self, with: &CommandWith) -> Vec<String> {
        with.outs.clone()
    }

    fn check(&self, with: &CommandWith) -> Result<(), WithError> {
        if with.run.trim().is_empty() {
            return Err(WithError::at(&["run"], "the command is empty"));
        }
        for (i, out) in with.outs.iter().enumerate() {
            let bad = out.is_empty() || out.contains(['/', '\\']) || out == "." || out == "..";
            if bad || with.outs[..i].contains(out) {
                return Err(WithError {
                    path: vec![
                        crate::yaml::PathSeg::Key("outs".into()),
                        crate::yaml::PathSeg::Index(i),
                    ],
                    message: format!("invalid output name `{out}`"),
                    help: Some(
                        "output names are unique plain file names, e.g. `model` or `text`".into(),
                    ),
                });
            }
        }
        Ok(())
    }

    fn key_material(&self, with: &CommandWith, ctx: &KeyContext<'_>) -> Result<serde_json::Value> {
        let mut deps = BTreeMap::new();
        for dep in &with.deps {
            let path = ctx.pipeline_dir.join(dep);
            let (h, _) = hash::hash_path(&path)
                .with_context(|| format!("with.deps: cannot read `{dep}` ({})", path.display()))?;
            deps.insert(dep.clone(), h);
        }
        Ok(if deps.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(deps)
        })
    }

    fn run(&self, with: &CommandWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&with.run)
            .current_dir(ctx.workdir)
            .envs(&with.env)
            .env("SOMA_FLOW_STAGE", ctx.stage)
            .env("SOMA_FLOW_PIPELINE_DIR", ctx.pipeline_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `sh`")?;
        let log = Mutex::new(std::fs::File::create(ctx.log)?);
        let tail = Mutex::new(std::collections::VecDeque::new());
        let pump = |stream: Box<dyn Read + Send>| {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = writeln!(log.lock().unwrap(), "{line}");
                (ctx.progress)(&line);
                let mut t = tail.lock().unwrap();
                t.push_back(line);
                if t.len() > TAIL_LINES {
                    t.pop_front();
                }
            }
        };
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        std::thread::scope(|s| {
            s.spawn(|| pump(Box::new(stdout)));
            pump(Box::new(stderr));
        });
        let status = child.wait()?;
        let tail: Vec<String> = tail.into_inner().unwrap().into();
        if with.defer_on_exit.is_some() && status.code() == with.defer_on_exit {
            let reason = tail
                .last()
                .cloned()
                .unwrap_or_else(|| format!("command exited with {status}"));
            return Ok(Outcome::Deferred(reason));
        }
        if !status.success() {
            let shown = if tail.is_empty() {
                String::new()
            } else {
                format!("; last output:\n  {}", tail.join("\n  "))
            };
            anyhow::bail!(
                "command failed ({status}){shown}\n(full log: {})",
                ctx.log.display()
            );
        }
        Ok(Outcome::Done)
    }
}
