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
use crate::process;

/// Whether an environment variable's name marks it as a secret that a `command`
/// stage does not get unless its `pass_env` names it: signing keys, tokens,
/// passwords, credentials (`SOMA_SECRET_KEY`, `HF_TOKEN`, `AWS_SECRET_ACCESS_KEY`,
/// `GITHUB_TOKEN`, `*_PASSWORD`, `*_PRIVATE_KEY`, `*_API_KEY`, mnemonics).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "PRIVATE",
        "MNEMONIC",
        "API_KEY",
    ]
    .iter()
    .any(|word| upper.contains(word))
        || upper.ends_with("_KEY")
}

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
    /// Variables of soma-flow's environment that look like secrets (see
    /// [`is_secret_name`]) but that this command needs, e.g. `[HF_TOKEN]`. Secrets are
    /// otherwise removed from a command's environment; their values never enter the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
    /// An exit code meaning "not ready yet": the stage is deferred, not failed, and its
    /// last output line is the reason (e.g. `3` for a nested `soma-flow run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer_on_exit: Option<i32>,
    /// Outputs that must never leave this machine (a key, a token): the stage is never
    /// uploaded to a remote store, and `soma-flow push` refuses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
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
        if let Some(i) = with.private.iter().position(|p| !with.outs.contains(p)) {
            return Err(WithError {
                path: vec![
                    crate::yaml::PathSeg::Key("private".into()),
                    crate::yaml::PathSeg::Index(i),
                ],
                message: format!("`{}` is not one of the stage's `outs`", with.private[i]),
                help: Some(format!("outs: {:?}", with.outs)),
            });
        }
        Ok(())
    }

    fn private(&self, with: &CommandWith, output: &str) -> Option<&'static str> {
        with.private
            .iter()
            .any(|p| p == output)
            .then_some("is declared `private` (it must not leave this machine)")
    }

    /// The `deps` contents, and the engine's own variables the command sees: two
    /// stages with the same command text but other names or pipeline directories can
    /// print different things, so they never share a result.
    fn key_material(&self, with: &CommandWith, ctx: &KeyContext<'_>) -> Result<serde_json::Value> {
        let mut deps = BTreeMap::new();
        for dep in &with.deps {
            let path = ctx.pipeline_dir.join(dep);
            let (h, _) = hash::hash_path(&path)
                .with_context(|| format!("with.deps: cannot read `{dep}` ({})", path.display()))?;
            deps.insert(dep.clone(), h);
        }
        let pipeline_dir = std::path::absolute(ctx.pipeline_dir)?;
        Ok(serde_json::json!({
            "deps": deps,
            "env": {
                "SOMA_FLOW_STAGE": ctx.stage,
                "SOMA_FLOW_PIPELINE_DIR": pipeline_dir,
            },
        }))
    }

    fn run(&self, with: &CommandWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&with.run).current_dir(ctx.workdir);
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if is_secret_name(&name) && !with.pass_env.iter().any(|p| *p == name) {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.envs(&with.env)
            .env("SOMA_FLOW_STAGE", ctx.stage)
            .env("SOMA_FLOW_PIPELINE_DIR", ctx.pipeline_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = process::spawn(&mut cmd).context("cannot start `sh`")?;
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
        let stdout = process.child.stdout.take().expect("piped");
        let stderr = process.child.stderr.take().expect("piped");
        // The pumps end when the group is gone, even if a background process of the
        // command still held its output open.
        let status = std::thread::scope(|s| {
            s.spawn(|| pump(Box::new(stdout)));
            s.spawn(|| pump(Box::new(stderr)));
            process.wait()
        })?;
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
