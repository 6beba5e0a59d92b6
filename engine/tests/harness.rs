//! A temporary project, the test kinds, and in-process load and run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::app;
use soma_flow_engine::command::CommandKind;
use soma_flow_engine::exec::{ExecOptions, StopOn};
use soma_flow_engine::pipeline::{load, read, BackendSetting, LoadError, LoadOptions, Plan};
use soma_flow_engine::record::{RunRecord, StageStatus};
use soma_flow_engine::store::Store;
use soma_flow_engine::{
    CachedOutputs, Inputs, Outcome, Registry, Requirements, RunContext, StageKind,
};

/// `step`: writes its inputs' contents followed by `text` to `out`, after `sleep_ms`,
/// and logs each execution to `tally`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepWith {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub sleep_ms: u64,
    /// A file that gets one line per execution: `<stage> <start ms> <end ms>`.
    pub tally: Option<PathBuf>,
    #[serde(default)]
    pub fail: bool,
    #[serde(default)]
    pub defer: bool,
    pub resource: Option<String>,
    /// Computes on the run's backend.
    #[serde(default)]
    pub backend: bool,
    /// Its output must not leave the machine.
    #[serde(default)]
    pub private: bool,
    /// Acts for the user beyond this machine (as `commit` does).
    #[serde(default)]
    pub acts: bool,
}

pub struct Step;

impl StageKind for Step {
    type With = StepWith;
    const NAME: &'static str = "step";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "A test stage";

    fn inputs(&self, _: &StepWith) -> Inputs {
        Inputs::Any
    }
    fn outputs(&self, _: &StepWith) -> Vec<String> {
        vec!["out".into()]
    }
    fn requirements(&self, with: &StepWith) -> Requirements {
        Requirements {
            backend: with.backend,
            resource: with.resource.clone(),
        }
    }
    fn run(&self, with: &StepWith, ctx: &RunContext<'_>) -> anyhow::Result<Outcome> {
        let start = now_ms();
        let mut text = String::new();
        for paths in ctx.inputs.values() {
            for p in paths {
                text += &std::fs::read_to_string(p)?;
            }
        }
        text += &with.text;
        std::thread::sleep(Duration::from_millis(with.sleep_ms));
        if let Some(tally) = &with.tally {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(tally)?;
            // One write per line: concurrent stages append to the same file.
            f.write_all(format!("{} {start} {}\n", ctx.stage, now_ms()).as_bytes())?;
        }
        if with.fail {
            anyhow::bail!("asked to fail");
        }
        if with.defer {
            return Ok(Outcome::Deferred("not yet".into()));
        }
        std::fs::write(ctx.output("out"), text)?;
        Ok(Outcome::Done)
    }

    fn private(&self, with: &StepWith, _: &str) -> Option<&'static str> {
        with.private.then_some("is a test secret")
    }

    fn needs_verified_inputs(&self, with: &StepWith) -> bool {
        with.acts
    }

    /// The output's length so far at each character, as a curve.
    fn curves(
        &self,
        _: &StepWith,
        outputs: &CachedOutputs<'_>,
    ) -> anyhow::Result<Vec<soma_flow_engine::Curve>> {
        let text = std::fs::read_to_string(outputs.output("out")?)?;
        let points = (0..=text.len()).map(|i| (i as f64, i as f64)).collect();
        Ok(vec![("chars".into(), points)])
    }

    /// The output's text and its length.
    fn headline(
        &self,
        _: &StepWith,
        outputs: &CachedOutputs<'_>,
    ) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
        let text = std::fs::read_to_string(outputs.output("out")?)?;
        Ok(vec![
            ("out".into(), text.clone().into()),
            ("length".into(), text.len().into()),
        ])
    }
}

/// `shaped`: does nothing; its `with` groups `width` and `height` under `shape`, and
/// still reads them at the top level (their old spelling) with a warning.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShapedWith {
    #[serde(default)]
    pub count: usize,
    #[serde(default)]
    pub shape: Shape,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    pub kind: Option<String>,
    pub width: Option<usize>,
    pub height: Option<usize>,
}

pub struct Shaped;

impl StageKind for Shaped {
    type With = ShapedWith;
    const NAME: &'static str = "shaped";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "A test stage with grouped settings and old spellings";

    fn inputs(&self, _: &ShapedWith) -> Inputs {
        Inputs::Any
    }
    fn moved(&self) -> Vec<soma_flow_engine::Move> {
        // `shape: square` (a string) was the old spelling of `shape.kind`.
        vec![
            ("width", &["shape", "width"]),
            ("height", &["shape", "height"]),
            ("shape", &["shape", "kind"]),
        ]
    }
    fn outputs(&self, _: &ShapedWith) -> Vec<String> {
        vec!["out".into()]
    }
    fn run(&self, _: &ShapedWith, ctx: &RunContext<'_>) -> anyhow::Result<Outcome> {
        std::fs::write(ctx.output("out"), "")?;
        Ok(Outcome::Done)
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The test kinds, and a backend setting that offers `cpu` (the default) and `fast`.
pub fn env() -> app::Env {
    app::Env {
        registry: registry(),
        backend: BackendSetting {
            default: "cpu",
            check: |name| match name {
                "cpu" | "fast" => Ok(()),
                other => Err(format!("this test offers `cpu` and `fast`, not `{other}`")),
            },
        },
        keys: soma_flow_engine::remote::KeyScheme::PLAIN,
    }
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(CommandKind);
    r.register(Step);
    r.register(Shaped);
    r
}

/// One execution of a `step` stage, from its tally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub stage: String,
    pub start: u128,
    pub end: u128,
}

impl Execution {
    pub fn overlaps(&self, other: &Execution) -> bool {
        self.start < other.end && other.start < self.end
    }
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a pipeline, with `TALLY` replaced by the project's tally file.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        let tally = self.tally();
        std::fs::write(&path, text.replace("TALLY", tally.to_str().unwrap())).unwrap();
        path
    }

    pub fn tally(&self) -> PathBuf {
        self.path().join("tally")
    }

    /// Executions so far, in the order they ended.
    pub fn executions(&self) -> Vec<Execution> {
        std::fs::read_to_string(self.tally())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut f = l.split(' ');
                Execution {
                    stage: f.next().unwrap().to_string(),
                    start: f.next().unwrap().parse().unwrap(),
                    end: f.next().unwrap().parse().unwrap(),
                }
            })
            .collect()
    }

    pub fn executed(&self) -> Vec<String> {
        self.executions().into_iter().map(|e| e.stage).collect()
    }

    pub fn store(&self) -> Store {
        Store::open(&self.path().join("store")).unwrap()
    }

    pub fn load(&self, file: &str, overrides: &[&str]) -> Result<Plan, LoadError> {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let env = env();
        let opts = LoadOptions {
            registry: &env.registry,
            overrides: &overrides,
            backend: None,
            backends: env.backend,
        };
        load(read(&self.path().join(file))?, &opts)
    }

    /// Loads and runs `file` with `--set` overrides, four stages at a time.
    pub fn run(&self, file: &str, overrides: &[&str]) -> RunRecord {
        self.run_with(file, overrides, options(4, overrides))
    }

    pub fn run_with(&self, file: &str, overrides: &[&str], opts: ExecOptions) -> RunRecord {
        let plan = self.load(file, overrides).unwrap_or_else(|e| panic!("{e}"));
        app::execute(Arc::new(plan), self.store(), opts).unwrap()
    }
}

pub fn options(jobs: usize, overrides: &[&str]) -> ExecOptions {
    ExecOptions {
        jobs,
        no_cache: false,
        overrides: overrides.iter().map(|s| s.to_string()).collect(),
        stop_on: StopOn::Notified(Default::default()),
        remote: None,
    }
}

/// Each stage's status, in pipeline order.
pub fn statuses(record: &RunRecord) -> Vec<(&str, StageStatus)> {
    record
        .stages
        .iter()
        .map(|(name, s)| (name.as_str(), s.status))
        .collect()
}

/// The stored content of `stage`'s `out` in `record`.
pub fn output(store: &Store, record: &RunRecord, stage: &str) -> String {
    let artifact = &record.stages[stage].outputs["out"];
    std::fs::read_to_string(store.path_of(artifact)).unwrap()
}

/// Each stage's cache key in `record`.
pub fn keys(record: &RunRecord) -> BTreeMap<&str, &str> {
    record
        .stages
        .iter()
        .filter_map(|(name, s)| Some((name.as_str(), s.key.as_deref()?)))
        .collect()
}
