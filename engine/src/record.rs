//! Run records: what a run did, enough to list it, explain it and repeat it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::pipeline::Plan;
use crate::store::{write_json_atomic, Artifact, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageStatus {
    /// Restored from the cache.
    Hit,
    /// Executed.
    Ran,
    Deferred,
    Failed,
    /// Not started because a dependency failed or deferred, or the run was interrupted.
    Skipped,
    /// Running when soma-flow was interrupted (SIGINT, SIGTERM, SIGHUP); it kept nothing.
    Interrupted,
}

impl StageStatus {
    pub fn label(self) -> &'static str {
        match self {
            StageStatus::Hit => "cached",
            StageStatus::Ran => "ran",
            StageStatus::Deferred => "deferred",
            StageStatus::Failed => "FAILED",
            StageStatus::Skipped => "skipped",
            StageStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Failed,
    Deferred,
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub kind: String,
    pub version: u32,
    pub status: StageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Milliseconds from the start of the run.
    pub start_ms: u64,
    pub duration_ms: u64,
    /// `with` after interpolation and defaults.
    pub with: Json,
    pub params_used: Vec<String>,
    /// Input artifact hashes per input name.
    pub inputs: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Json::is_null")]
    pub key_material: Json,
    pub outputs: BTreeMap<String, Artifact>,
    /// Its outputs are in the remote store (a hit there, or built by a Slurm job with a
    /// store of its own): local only once a stage that ran needed them, or after
    /// `soma-flow pull`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remote: bool,
    /// The stage whose result came from the remote store unverified (nobody configured
    /// trusted keys) that these outputs derive from: this one, or one upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Summary lines the stage reported (score tables, committed ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub started: String,
    pub duration_ms: u64,
    /// Absolute path of the pipeline file.
    pub pipeline: PathBuf,
    pub name: String,
    pub pipeline_hash: String,
    /// The pipeline text as run, so that `rerun` repeats it even if the file changed.
    pub pipeline_source: String,
    pub overrides: Vec<String>,
    pub params: IndexMap<String, Json>,
    pub backend: String,
    pub no_cache: bool,
    pub soma_flow_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    pub status: RunStatus,
    pub stages: IndexMap<String, StageRecord>,
}

impl StageRecord {
    /// How long the stage took, or `-` when it never started.
    pub fn time_label(&self) -> String {
        if self.status == StageStatus::Skipped {
            "-".to_string()
        } else {
            crate::duration::fmt_duration(std::time::Duration::from_millis(self.duration_ms))
        }
    }
}

/// What a run was, beside its plan and its stages: for [`RunRecord::assemble`].
pub struct RunInfo {
    pub id: String,
    /// RFC 3339, to the millisecond.
    pub started: String,
    pub duration_ms: u64,
    pub overrides: Vec<String>,
    pub no_cache: bool,
    pub interrupted: bool,
}

impl RunStatus {
    /// A run's status from its stages': interrupted, else failed if a stage failed, else
    /// deferred if one deferred or was skipped, else ok.
    pub fn of(interrupted: bool, stages: &IndexMap<String, StageRecord>) -> RunStatus {
        let any = |f: fn(StageStatus) -> bool| stages.values().any(|s| f(s.status));
        if interrupted {
            RunStatus::Interrupted
        } else if any(|s| s == StageStatus::Failed) {
            RunStatus::Failed
        } else if any(|s| matches!(s, StageStatus::Deferred | StageStatus::Skipped)) {
            RunStatus::Deferred
        } else {
            RunStatus::Ok
        }
    }
}

impl RunRecord {
    pub fn count(&self, status: StageStatus) -> usize {
        self.stages.values().filter(|s| s.status == status).count()
    }

    /// The record of a run of `plan` whose stages ended as `stages`.
    pub fn assemble(plan: &Plan, run: RunInfo, stages: IndexMap<String, StageRecord>) -> RunRecord {
        RunRecord {
            id: run.id,
            started: run.started,
            duration_ms: run.duration_ms,
            pipeline: std::path::absolute(&plan.source.path)
                .unwrap_or_else(|_| plan.source.path.clone()),
            name: plan.name.clone(),
            pipeline_hash: plan.pipeline_hash(),
            pipeline_source: plan.source.text.clone(),
            overrides: run.overrides,
            params: plan.params.clone(),
            backend: plan.backend.clone(),
            no_cache: run.no_cache,
            soma_flow_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: git_commit(&plan.dir),
            status: RunStatus::of(run.interrupted, &stages),
            stages,
        }
    }
}

pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
    let salt = blake3::hash(format!("{:?}{}", now, std::process::id()).as_bytes()).to_hex();
    format!("{}-{}-{}", &compact[..8], &compact[8..14], &salt[..6])
}

pub fn save(store: &Store, record: &RunRecord) -> Result<()> {
    let path = store.runs_dir().join(format!("{}.json", record.id));
    write_json_atomic(&path, record)
}

/// All records, oldest first. Unreadable records are skipped with a warning.
pub fn list(store: &Store) -> Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(store.runs_dir())?.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json") {
            // The id names files (logs, reports): it must be the record's own file name.
            let named = |r: RunRecord| {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                match stem.as_deref() == Some(r.id.as_str()) {
                    true => Ok(r),
                    false => Err(anyhow::anyhow!("its id `{}` is not its file name", r.id)),
                }
            };
            match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<RunRecord>(&b)?))
                .and_then(named)
            {
                Ok(r) => out.push(r),
                Err(err) => {
                    tracing::warn!("skipping unreadable run record {}: {err}", path.display())
                }
            }
        }
    }
    out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// A record by id, by a unique prefix of one, or `latest`.
pub fn find(store: &Store, id: &str) -> Result<RunRecord> {
    let all = list(store)?;
    if id == "latest" {
        return all.into_iter().next_back().with_context(|| {
            format!(
                "no recorded runs in store {}; run a pipeline first",
                store.root().display()
            )
        });
    }
    let matches: Vec<_> = all.into_iter().filter(|r| r.id.starts_with(id)).collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().unwrap()),
        0 => anyhow::bail!(
            "no run `{id}` in store {} (see `soma-flow runs`)",
            store.root().display()
        ),
        n => anyhow::bail!("`{id}` matches {n} runs; give more of the id"),
    }
}

/// The latest record of the pipeline at `path`.
pub fn latest_for(store: &Store, path: &Path) -> Result<Option<RunRecord>> {
    let path = path
        .canonicalize()
        .with_context(|| format!("cannot find {}", path.display()))?;
    Ok(list(store)?.into_iter().rev().find(|r| r.pipeline == path))
}

/// The commit checked out in the git repository holding `dir`, read from `.git` (HEAD,
/// loose refs, packed refs; worktrees too) without running `git`, which would cost a
/// process per run.
pub fn git_commit(dir: &Path) -> Option<String> {
    let dir = std::path::absolute(dir).ok()?;
    let dot_git = dir
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    // A worktree's `.git` is a file naming its git directory, whose `commondir` names
    // the repository's (where shared refs live).
    let git_dir = match std::fs::read_to_string(&dot_git) {
        Ok(text) => {
            let named = PathBuf::from(text.strip_prefix("gitdir:")?.trim());
            dot_git.parent()?.join(named)
        }
        Err(_) => dot_git,
    };
    let common = match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(rel) => git_dir.join(rel.trim()),
        Err(_) => git_dir.clone(),
    };
    let mut head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    for _ in 0..8 {
        let Some(name) = head.trim().strip_prefix("ref:").map(str::trim) else {
            let id = head.trim();
            let is_id = id.len() >= 40 && id.bytes().all(|b| b.is_ascii_hexdigit());
            return is_id.then(|| id.to_owned());
        };
        let loose = [&git_dir, &common].into_iter().map(|d| d.join(name));
        head = match loose.filter_map(|p| std::fs::read_to_string(p).ok()).next() {
            Some(text) => text,
            None => packed_ref(&common, name)?,
        };
    }
    None
}

/// `name`'s commit in the repository's `packed-refs`.
fn packed_ref(common: &Path, name: &str) -> Option<String> {
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, refname) = line.split_once(' ')?;
        (refname == name).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::git_commit;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// What `.git` says is what `git rev-parse HEAD` says: a loose branch, packed refs,
    /// a detached HEAD, a worktree, and from a folder inside; outside a repository, none.
    #[test]
    fn the_commit_read_from_dot_git_is_what_git_says() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("pipelines")).unwrap();
        assert_eq!(git_commit(&repo), None);
        git(&repo, &["init", "-q"]);
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let check =
            |dir: &Path| assert_eq!(git_commit(dir), Some(git(dir, &["rev-parse", "HEAD"])));
        check(&repo);
        check(&repo.join("pipelines"));
        git(&repo, &["pack-refs", "--all"]);
        git(&repo, &["commit", "-q", "--allow-empty", "-m", "two"]);
        check(&repo);
        git(&repo, &["pack-refs", "--all"]);
        check(&repo);
        git(&repo, &["checkout", "-q", "--detach", "HEAD~1"]);
        check(&repo);
        git(
            &repo,
            &["worktree", "add", "-q", "-b", "side", "../side", "main"],
        );
        let side = tmp.path().join("side");
        check(&side);
        git(&side, &["commit", "-q", "--allow-empty", "-m", "three"]);
        check(&side);
        assert_ne!(git_commit(&side), git_commit(&repo));
    }
}
