//! Helpers shared by the integration tests: run the real binary in a temporary project.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The tiny SOMA V1 model the tests publish (soma-models' fixture).
pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/reference/fixtures/tiny_soma_models.safetensors"
);

/// Prints a v1-tiny embedding (128 values): the argument, then its negation, repeated.
pub const EMBED: &str = "python3 -c 'import sys; e = float(sys.argv[1]); print([e, -e] * 64)'";

/// The stages (under a pipeline's `stages:`) that publish [`FIXTURE`] with the embedding
/// of `e` ([`EMBED`]): `weights`, `embed`, `commit` with the settings `commit` (a YAML
/// map's contents) and, given its settings (`""`: none), `reveal`.
pub fn publish_stages(e: &str, commit: &str, reveal: Option<&str>) -> String {
    let mut yaml = format!(
        "  weights:\n    kind: command\n    with: {{ run: \"cp {FIXTURE} outputs/model\", outs: [model] }}\n  \
         embed:\n    kind: command\n    with: {{ run: \"{EMBED} {e} > outputs/embedding\", outs: [embedding] }}\n  \
         commit:\n    kind: commit\n    inputs: {{ model: weights.model, embedding: embed.embedding }}\n    \
         with: {{ {commit} }}\n"
    );
    match reveal {
        None => {}
        Some("") => yaml += "  reveal:\n    kind: reveal\n    inputs: { commit: commit.record }\n",
        Some(with) => {
            yaml += &format!(
                "  reveal:\n    kind: reveal\n    inputs: {{ commit: commit.record }}\n    with: {{ {with} }}\n"
            )
        }
    }
    yaml
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_soma-flow"));
        c.args(args)
            .current_dir(self.path())
            .env_remove("SOMA_FLOW_STORE")
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }

    pub fn store(&self) -> PathBuf {
        self.path().join(".soma-flow")
    }

    /// Run records, oldest first.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["runs", "--json"]);
        assert_eq!(out.code(), 0, "{}", out.all());
        serde_json::from_str(&out.stdout()).unwrap()
    }

    pub fn last_record(&self) -> serde_json::Value {
        self.records().pop().expect("a run record")
    }

    /// The stored path of `STAGE.OUTPUT` from the latest run of `pipeline`.
    pub fn output_path(&self, pipeline: &str, output: &str) -> String {
        let out = self.run(&["path", pipeline, output]);
        assert_eq!(out.code(), 0, "{}", out.all());
        out.stdout().trim().to_string()
    }

    /// A stage output of the latest run of `pipeline`, read as JSON.
    pub fn output_json(&self, pipeline: &str, output: &str) -> serde_json::Value {
        let path = self.output_path(pipeline, output);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// `soma-flow localnet models --json`: `{epoch, models: [...]}`.
    pub fn localnet_models(&self) -> serde_json::Value {
        let out = self.run(&["localnet", "models", "--json"]);
        assert_eq!(out.code(), 0, "{}", out.all());
        serde_json::from_str(&out.stdout()).unwrap()
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into()
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }
}

/// Status label of each stage in a run record.
pub fn statuses(record: &serde_json::Value) -> Vec<(String, String)> {
    record["stages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap().to_string()))
        .collect()
}

/// The local path behind a `file://` URL.
#[allow(dead_code)]
pub fn file_url_path(url: &str) -> std::path::PathBuf {
    url::Url::parse(url).unwrap().to_file_path().unwrap()
}

/// Whether `pid` still runs (a zombie awaiting its reaper does not count), given a
/// few seconds to die.
#[cfg(unix)]
pub fn still_running(pid: i32) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(10) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return false,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return false
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    true
}

/// Sends `sig` (`INT`, `KILL`, …) to `child`.
#[cfg(unix)]
pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}
