//! The trait every stage kind implements, and the registry the engine looks kinds up in.
//!
//! A kind declares typed `with` parameters (deserialised with defaults and checked
//! before anything runs), its named inputs and outputs, and an implementation version
//! that enters the cache key. The engine erases the `with` type behind [`DynKind`] so
//! kinds from other crates plug in without the engine knowing them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::yaml::PathSeg;

mod erased;
mod moved;
mod with_error;

pub use erased::{DynKind, Prepared, PreparedWith};
pub use moved::{Move, Moved};
pub(crate) use with_error::unknown_field;

/// One named input a kind accepts.
#[derive(Debug, Clone)]
pub struct InputPort {
    pub name: &'static str,
    pub required: bool,
    /// Accepts a list of references (e.g. `models: [a.model, b.model]`).
    pub many: bool,
    /// Ports with the same group are alternatives: at least one of them is required
    /// (`commit` computes its embedding from `data` when it is not given one).
    pub one_of: Option<&'static str>,
}

impl InputPort {
    pub const fn required(name: &'static str) -> Self {
        InputPort {
            name,
            required: true,
            many: false,
            one_of: None,
        }
    }
    pub const fn optional(name: &'static str) -> Self {
        InputPort {
            name,
            required: false,
            many: false,
            one_of: None,
        }
    }
    pub const fn many(name: &'static str) -> Self {
        InputPort {
            name,
            required: true,
            many: true,
            one_of: None,
        }
    }
    /// An alternative of `group`: the stage needs at least one port of each group.
    pub const fn one_of(name: &'static str, group: &'static str) -> Self {
        InputPort {
            name,
            required: false,
            many: false,
            one_of: Some(group),
        }
    }
}

/// Which inputs a stage accepts.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Any names, each a single reference or a list (the `command` kind).
    Any,
    Fixed(Vec<InputPort>),
}

/// How a stage finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Not ready yet (e.g. a reveal before the epoch turns); nothing is cached and
    /// dependents wait for a later run.
    Deferred(String),
}

/// A problem with a `with` value, located by its path inside `with`.
#[derive(Debug, Clone)]
pub struct WithError {
    pub path: Vec<PathSeg>,
    pub message: String,
    pub help: Option<String>,
}

impl WithError {
    pub fn at(path: &[&str], message: impl Into<String>) -> Self {
        WithError {
            path: path
                .iter()
                .map(|k| PathSeg::Key((*k).to_string()))
                .collect(),
            message: message.into(),
            help: None,
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// The same error, for a value nested under `key` (e.g. commit's `embed`).
    pub fn within(mut self, key: &str) -> Self {
        self.path.insert(0, PathSeg::Key(key.to_string()));
        self
    }
}

/// What a stage needs of the run, beyond its inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// It computes on the run's backend (the binary's [`crate::app::Env::backend`]
    /// setting), whose name then enters its cache key.
    pub backend: bool,
    /// A resource class (e.g. `model`, `gpu`) whose capacity limits how many such
    /// stages run at once (`resources:` in the pipeline; default 1).
    pub resource: Option<String>,
}

impl Requirements {
    /// Computes on the backend, within resource class `class`.
    pub fn backend_in(class: &str) -> Requirements {
        Requirements {
            backend: true,
            resource: Some(class.to_string()),
        }
    }
}

/// What a stage sees while it computes its cache key.
pub struct KeyContext<'a> {
    /// The stage's name in the pipeline.
    pub stage: &'a str,
    /// Directory of the pipeline file: relative paths in `with` are relative to it.
    pub pipeline_dir: &'a Path,
}

/// A stage's stored outputs: what `revalidate` sees of a cached result, and what
/// `headline` summarises.
pub struct CachedOutputs<'a> {
    /// Each output's path in the store.
    pub outputs: &'a BTreeMap<String, PathBuf>,
    /// The store's root, for [`crate::store::shared_state`].
    pub store: &'a Path,
    /// Brings an output into the local store before it is read, when the result is
    /// the remote store's (it is downloaded only if a kind reads it).
    pub fetch: Option<&'a FetchOutput<'a>>,
}

/// Brings one named output into the local store.
pub type FetchOutput<'a> = dyn Fn(&str) -> anyhow::Result<()> + 'a;

impl CachedOutputs<'_> {
    pub fn output(&self, name: &str) -> anyhow::Result<&Path> {
        let path = self
            .outputs
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| anyhow::anyhow!("the cached result has no output `{name}`"))?;
        if let Some(fetch) = self.fetch {
            fetch(name)?;
        }
        Ok(path)
    }
}

/// A named series of `(x, y)` points, e.g. `("loss", [(step, loss), ...])`.
pub type Curve = (String, Vec<(f64, f64)>);

/// What a running stage sees.
pub struct RunContext<'a> {
    pub stage: &'a str,
    /// Fresh, empty working directory; inputs are linked at `inputs/<name>`.
    pub workdir: &'a Path,
    /// Each input's artifact paths in the store (one entry unless the port takes many).
    pub inputs: &'a BTreeMap<String, Vec<PathBuf>>,
    /// The `<stage>.<output>` each input came from, in the same order (for labels).
    pub input_refs: &'a BTreeMap<String, Vec<String>>,
    /// Where the stage must write each declared output, as `outputs/<name>`.
    pub outputs_dir: &'a Path,
    /// Survives a killed run of the same cache key (checkpoints); removed after success.
    pub scratch: &'a Path,
    /// The store's root. Kinds keep state across runs under [`RunContext::shared_state`],
    /// never by joining paths onto it.
    pub store: &'a Path,
    pub pipeline_dir: &'a Path,
    pub backend: &'a str,
    /// Where the stage writes the output of tools it runs; kept after the run.
    pub log: &'a Path,
    /// Reports progress (step, loss, bytes) to the live view or the periodic lines.
    pub progress: &'a (dyn Fn(&str) + Sync),
    /// Lines for the run summary (a score table, a committed model id); kept with the
    /// cache entry so a cached stage still shows them.
    pub notes: &'a std::sync::Mutex<Vec<String>>,
}

impl RunContext<'_> {
    /// The owner-only folder `<store>/state/<name>/` that kinds share across runs
    /// ([`crate::store::shared_state`]), created if missing.
    pub fn shared_state(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = crate::store::shared_state(self.store, name);
        crate::store::private_dir(&dir)?;
        Ok(dir)
    }

    pub fn input(&self, name: &str) -> Option<&Path> {
        self.inputs
            .get(name)
            .and_then(|v| v.first())
            .map(PathBuf::as_path)
    }
    pub fn input_list(&self, name: &str) -> &[PathBuf] {
        self.inputs.get(name).map_or(&[], Vec::as_slice)
    }
    /// The `<stage>.<output>` references behind [`RunContext::input_list`].
    pub fn input_labels(&self, name: &str) -> &[String] {
        self.input_refs.get(name).map_or(&[], Vec::as_slice)
    }
    pub fn output(&self, name: &str) -> PathBuf {
        self.outputs_dir.join(name)
    }
    pub fn note(&self, text: impl Into<String>) {
        self.notes.lock().expect("notes lock").push(text.into());
    }
    /// A note about this run only (a key file it created, say): shown when the stage
    /// runs, not repeated when a later run finds its result cached.
    pub fn note_once(&self, text: impl Into<String>) {
        let text = format!("{ONCE}{}", text.into());
        self.notes.lock().expect("notes lock").push(text);
    }
}

/// The mark of a [`RunContext::note_once`] note in a cache entry's notes.
const ONCE: char = '\u{1}';

/// The notes of a stage's result as a run shows them: all of them when it was just
/// built (`fresh`), only those that hold for every run when it is a cache hit.
pub(crate) fn shown_notes(notes: Vec<String>, fresh: bool) -> Vec<String> {
    notes
        .into_iter()
        .filter_map(|note| match note.strip_prefix(ONCE) {
            Some(once) => fresh.then(|| once.to_owned()),
            None => Some(note),
        })
        .collect()
}

/// A stage kind with typed parameters.
pub trait StageKind: Send + Sync + 'static {
    type With: DeserializeOwned + Serialize + JsonSchema + Send + Sync + 'static;

    /// The name used as `kind:` in pipeline files.
    const NAME: &'static str;
    /// Bump when the implementation changes its outputs for the same inputs.
    const VERSION: u32;
    const ABOUT: &'static str;

    fn inputs(&self, with: &Self::With) -> Inputs;
    fn outputs(&self, with: &Self::With) -> Vec<String>;

    /// `with` keys still read under an old spelling, for one release: each old
    /// top-level key and the path it moved to (`("lr", &["optimizer", "lr"])`). The
    /// loader moves them before deserialising (so both spellings give one cache key)
    /// and warns at the old key with the new spelling.
    fn moved(&self) -> Vec<Move> {
        Vec::new()
    }

    /// Checks beyond what deserialisation enforces.
    fn check(&self, _with: &Self::With) -> Result<(), WithError> {
        Ok(())
    }
    /// Checks, on load (`validate`, and `run` before anything runs), that the files the
    /// stage names exist: key files, local data. Relative paths are the pipeline's
    /// folder's, `dir`.
    fn check_files(&self, _with: &Self::With, _dir: &Path) -> Result<(), WithError> {
        Ok(())
    }
    /// What the stage needs of the run: the backend, a resource class.
    fn requirements(&self, _with: &Self::With) -> Requirements {
        Requirements::default()
    }
    /// Extra cache-key material, e.g. hashes of files the stage reads from disk.
    fn key_material(
        &self,
        _with: &Self::With,
        _ctx: &KeyContext<'_>,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    fn run(&self, with: &Self::With, ctx: &RunContext<'_>) -> anyhow::Result<Outcome>;

    /// Whether cached outputs still hold. Most outputs are facts about their inputs and
    /// always do; a record of something outside (a commit on a network) may not.
    /// `Err` explains why not, and the stage runs again.
    fn revalidate(&self, _with: &Self::With, _cached: &CachedOutputs<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The stage's headline results, read from its stored outputs: named values that
    /// `soma-flow compare` puts side by side across runs (a final loss, whether my
    /// model wins). Numbers compare best; most kinds have none.
    fn headline(
        &self,
        _with: &Self::With,
        _outputs: &CachedOutputs<'_>,
    ) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
        Ok(Vec::new())
    }

    /// Named series of `(x, y)` points read from the stored outputs (a loss per step),
    /// which `report --compare` draws with one line per run.
    fn curves(
        &self,
        _with: &Self::With,
        _outputs: &CachedOutputs<'_>,
    ) -> anyhow::Result<Vec<Curve>> {
        Ok(Vec::new())
    }

    /// Why two executions with the same inputs give a different `output` (a fresh
    /// encryption key, the network's clock, timings), or `None` when it is a function
    /// of the inputs alone. `soma-flow verify` compares only the latter.
    fn irreproducible(&self, _with: &Self::With, _output: &str) -> Option<&'static str> {
        None
    }

    /// Why `output` must never leave this machine (it would let a reader decrypt an
    /// unrevealed commit, say), or `None` when it may be shared. A stage with a private
    /// output is never uploaded to a remote store, and `push` refuses it.
    fn private(&self, _with: &Self::With, _output: &str) -> Option<&'static str> {
        None
    }

    /// Whether the stage acts for the user beyond this machine (`commit` puts a model
    /// on the network under the owner's key and stake), so that it refuses inputs that
    /// derive from a remote store's entry nobody verified, unless the user trusts
    /// `any`.
    fn needs_verified_inputs(&self, _with: &Self::With) -> bool {
        false
    }
}

/// The kinds a binary knows, by name.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: IndexMap<&'static str, Arc<dyn DynKind>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register<K: StageKind>(&mut self, kind: K) -> &mut Self {
        self.kinds.insert(K::NAME, Arc::new(Arc::new(kind)));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn DynKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynKind>> {
        self.kinds.values()
    }
}
