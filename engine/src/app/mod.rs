//! The generic commands of the `soma-flow` binary: run, validate, status, dag, path,
//! runs, rerun, verify, report, gc, schema, one file each. The binary adds its domain
//! commands beside these.

pub mod compare;
mod dag;
mod gc;
mod path;
mod remote;
mod report;
mod rerun;
mod run;
mod runs;
mod schema;
mod status;
mod validate;
mod verify;

pub use gc::{gc, Swept};
pub use run::{execute, print_summary};

use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::dag::Format;
use crate::diag::Source;
use crate::exec::{ExecOptions, StopOn};
use crate::kind::Registry;
use crate::pipeline::{self, BackendSetting, Executor, LoadError, LoadOptions, Plan};
use crate::record::{RunRecord, RunStatus};
use crate::remote::{KeyScheme, Remote, RemoteSetting, Trust};
use crate::store::Store;

/// How a command ends, as the process's exit status (documented in README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done; for `run`, every stage ran or was cached.
    Ok,
    /// A stage failed, or the command could not do what was asked.
    Failed,
    /// Usage or validation error: nothing ran.
    Usage,
    /// Some stage is not ready yet (e.g. a reveal before its epoch); run again later.
    Deferred,
    /// Stopped by a signal (Ctrl-C, SIGTERM, SIGHUP), as shells report SIGINT.
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Deferred => 3,
            ExitStatus::Interrupted => 130,
        }
    }
}

impl From<RunStatus> for ExitStatus {
    fn from(status: RunStatus) -> ExitStatus {
        match status {
            RunStatus::Ok => ExitStatus::Ok,
            RunStatus::Failed => ExitStatus::Failed,
            RunStatus::Deferred => ExitStatus::Deferred,
            RunStatus::Interrupted => ExitStatus::Interrupted,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// What the binary provides to the generic commands.
pub struct Env {
    pub registry: Registry,
    /// The backend setting: its default and the names it accepts.
    pub backend: BackendSetting,
    /// How key files are read and public keys named (the remote store's signatures).
    pub keys: KeyScheme,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Content-addressed store [default: .soma-flow in the current directory]
    #[arg(long, global = true, env = "SOMA_FLOW_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

impl StoreArgs {
    pub fn open(&self) -> Result<Store> {
        Store::open(self.store.as_deref().unwrap_or(Path::new(".soma-flow")))
    }
}

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// The pipeline file
    pub file: PathBuf,
    /// Override a param: NAME=VALUE (repeatable; VALUE is read as YAML)
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Backend for the stages that compute on one (overrides the pipeline's `backend`)
    #[arg(long)]
    pub backend: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    /// Stages run at once [default: number of cores]
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Run every stage even if its outputs are cached
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Where stages without an `executor` of their own execute (overrides the
    /// pipeline's `executor`)
    #[arg(long, value_enum)]
    pub executor: Option<Executor>,
}

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// A cache shared with other machines (s3://bucket/prefix, gs://, az://, file://);
    /// overrides the pipeline's `remote`; `none` runs without one
    #[arg(long = "remote", env = "SOMA_FLOW_REMOTE", value_name = "URL")]
    pub url: Option<String>,
}

impl RemoteArgs {
    /// The URL to use: `--remote` (or `SOMA_FLOW_REMOTE`), else the pipeline's; `none`
    /// (or empty) is none.
    fn url<'a>(&'a self, pipeline: Option<&'a RemoteSetting>) -> Option<&'a str> {
        self.url
            .as_deref()
            .or(pipeline.map(|p| p.url.as_str()))
            .filter(|u| !u.is_empty() && *u != "none")
    }

    /// The remote store named, signing and trusting as the environment (else the
    /// pipeline) says, or `None` when none is named. How entries are judged is said
    /// once, when they are not verified.
    fn open_remote(
        &self,
        pipeline: Option<&RemoteSetting>,
        keys: KeyScheme,
    ) -> Option<Result<Remote>> {
        let url = self.url(pipeline)?;
        let trust = Trust::from_env(keys, pipeline.and_then(|p| p.trust.as_ref()));
        Some(trust.and_then(|trust| {
            if let Some(note) = trust.describe() {
                eprintln!("note: {note}");
            }
            Remote::open_with(url, trust)
        }))
    }

    /// The remote store to use. One that cannot be used is a warning, and the run goes
    /// on with the local store alone.
    pub fn open(&self, pipeline: Option<&RemoteSetting>, keys: KeyScheme) -> Option<Arc<Remote>> {
        match self.open_remote(pipeline, keys)? {
            Ok(remote) => Some(Arc::new(remote)),
            Err(e) => {
                eprintln!("warning: {e:#}; running with the local store alone");
                None
            }
        }
    }

    /// The remote store, or an error when none is named or it cannot be used (for the
    /// commands that exist to talk to it).
    pub fn require(
        &self,
        pipeline: Option<&RemoteSetting>,
        keys: KeyScheme,
    ) -> Result<Arc<Remote>> {
        let opened = self.open_remote(pipeline, keys).context(
            "no remote store: give --remote URL, set SOMA_FLOW_REMOTE, or name `remote` in the pipeline",
        )?;
        Ok(Arc::new(opened?))
    }
}

impl ExecArgs {
    /// The plan, with `--executor` applied.
    pub fn apply(&self, mut plan: Plan) -> Plan {
        if let Some(e) = self.executor {
            plan.executor = e;
        }
        plan
    }

    /// The run's options, stopped by signals.
    pub fn options(&self, overrides: Vec<String>, remote: Option<Arc<Remote>>) -> ExecOptions {
        ExecOptions {
            jobs: self
                .jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            no_cache: self.no_cache,
            overrides,
            stop_on: StopOn::Signals,
            remote,
        }
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run a pipeline: only stages whose inputs changed, in parallel where possible
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[command(flatten)]
        exec: ExecArgs,
        /// Run only this stage and what it needs (repeatable)
        #[arg(long = "target", value_name = "STAGE")]
        targets: Vec<String>,
        /// Say what would run and why, and run nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Check a pipeline file without running anything
    Validate {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Say, per stage, whether it would run and why [default: the latest run's pipeline
    /// and overrides]
    Status {
        /// A pipeline file, or a run id (or `latest`) whose pipeline and overrides to check
        #[arg(value_name = "FILE|RUN")]
        target: Option<String>,
        /// Override a param: NAME=VALUE (repeatable; VALUE is read as YAML)
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Backend for the stages that compute on one (overrides the pipeline's `backend`)
        #[arg(long)]
        backend: Option<String>,
    },
    /// Print the stage graph
    Dag {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: Format,
    },
    /// Print the stored path of a stage output from the latest run of a pipeline
    Path {
        file: PathBuf,
        /// STAGE.OUTPUT
        output: String,
    },
    /// List recorded runs
    Runs {
        /// Print the records as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run a recorded run's pipeline again with its recorded params and backend
    Rerun {
        id: String,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Repeat a recorded run from nothing in a scratch store and say, per stage,
    /// whether its outputs are bit-identical to the recorded ones
    Verify {
        id: String,
        /// Keep the scratch store (its path is printed) instead of removing it
        #[arg(long)]
        keep: bool,
        /// Stages run at once [default: number of cores]
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Write an HTML report of a recorded run (graph, timeline, stages, notes, images)
    /// [default: the latest run]
    Report {
        /// The run (an id, a unique prefix, or `latest`), or with `--compare` the runs
        /// [default: the latest; with `--compare`, the last 2]
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// One page with the runs side by side: their comparison table, and each curve
        /// (a loss per step) with a line per run
        #[arg(long)]
        compare: bool,
        /// Directory for index.html and the PNG outputs [default: report-<run id>]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Remove stored objects that no run record references
    Gc {
        #[arg(long)]
        dry_run: bool,
    },
    /// Put runs side by side: the params that differ and each stage's headline results
    Compare {
        /// Run ids (or unique prefixes); without them, the last `--last` runs
        ids: Vec<String>,
        /// Compare the last N runs [default: 2]
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        /// Only runs of this pipeline file (with `--last`)
        #[arg(long, value_name = "FILE")]
        pipeline: Option<PathBuf>,
        /// Print the comparison as JSON
        #[arg(long)]
        json: bool,
    },
    /// Upload a run's outputs and cache entries to the remote store [default: the latest run]
    Push {
        /// The run (or a unique prefix of its id)
        id: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Download results from the remote store into this one: every stage of a pipeline
    /// file the remote has, or a recorded run's stages [default: the latest run]
    Pull {
        /// A pipeline file, or a run id
        #[arg(value_name = "FILE|RUN")]
        target: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print the JSON Schema of pipeline files
    Schema,
    /// Build one stage a job file describes: how executors run a stage outside the
    /// process that schedules it (a Slurm job, a stage with a timeout)
    #[command(hide = true)]
    StageJob {
        /// The job file (job.json in the stage's working directory), `-` for stdin;
        /// `--store` is the store of a job whose file names none (a node of its own)
        job: PathBuf,
    },
}

pub fn run_command(env: &Env, cmd: Command, store: &StoreArgs) -> Result<ExitStatus> {
    match cmd {
        Command::Run {
            pipeline,
            exec,
            targets,
            dry_run,
        } => run::run(env, &pipeline, &exec, &targets, dry_run, store),
        Command::Validate { pipeline } => validate::run(env, &pipeline),
        Command::Status {
            target,
            set,
            backend,
        } => status::run(env, target, set, backend, store),
        Command::Dag { pipeline, format } => dag::run(env, &pipeline, format),
        Command::Path { file, output } => path::run(&file, &output, store),
        Command::Runs { json } => runs::run(json, store),
        Command::Rerun { id, exec } => rerun::run(env, &id, &exec, store),
        Command::Verify { id, keep, jobs } => verify::run(env, &store.open()?, &id, keep, jobs),
        Command::Report { ids, compare, out } => report::run(env, &ids, compare, out, store),
        Command::Gc { dry_run } => gc::run(&store.open()?, dry_run),
        Command::Push { id, remote } => remote::push(env, &store.open()?, id.as_deref(), &remote),
        Command::Pull { target, remote } => {
            remote::pull(env, &store.open()?, target.as_deref(), &remote)
        }
        Command::Compare {
            ids,
            last,
            pipeline,
            json,
        } => {
            let which = compare::Selection {
                ids: &ids,
                last: last.unwrap_or(2),
                pipeline: pipeline.as_deref(),
            };
            compare::run(env, &store.open()?, &which, json)
        }
        Command::Schema => schema::run(env),
        Command::StageJob { job } => {
            let built = crate::exec::stage_job(
                &env.registry,
                env.backend,
                env.keys,
                &job,
                store.store.as_deref(),
            )?;
            Ok(if built {
                ExitStatus::Ok
            } else {
                ExitStatus::Failed
            })
        }
    }
}

impl PipelineArgs {
    /// These args with the `--set` paths taken from the working directory
    /// ([`crate::params::from_working_dir`]): what a run loads and records.
    fn paths_from_working_dir(&self) -> PipelineArgs {
        let set = match std::env::current_dir() {
            Ok(cwd) => crate::params::from_working_dir(&self.set, &cwd),
            Err(_) => self.set.clone(),
        };
        PipelineArgs {
            set,
            ..self.clone()
        }
    }
}

/// Loads and validates `args` as typed on the command line; on failure prints the
/// diagnostics and gives the exit status.
pub fn load(env: &Env, args: &PipelineArgs) -> Result<Plan, ExitStatus> {
    load_as_given(env, &args.paths_from_working_dir())
}

/// [`load`] of args whose `--set` paths are already resolved.
fn load_as_given(env: &Env, args: &PipelineArgs) -> Result<Plan, ExitStatus> {
    let opts = LoadOptions {
        registry: &env.registry,
        overrides: &args.set,
        backend: args.backend.as_deref(),
        backends: env.backend,
    };
    let plan = pipeline::read(&args.file)
        .and_then(|source| pipeline::load(source, &opts))
        .map_err(|e| load_failed(&e))?;
    for warning in &plan.warnings {
        eprint!("{warning}");
    }
    Ok(plan)
}

/// Prints why a pipeline does not load as a command reports it (diagnostics carry
/// their own `error:`); a usage error.
fn load_failed(e: &LoadError) -> ExitStatus {
    match e {
        LoadError::Invalid(_) => eprintln!("{e}"),
        LoadError::Io(..) | LoadError::Usage(_) => eprintln!("error: {e}"),
    }
    ExitStatus::Usage
}

/// The plan of a recorded run: its recorded pipeline text, params and backend, so that
/// later edits to the file change nothing.
fn load_recorded(env: &Env, rec: &RunRecord, backends: BackendSetting) -> Result<Plan, LoadError> {
    let opts = LoadOptions {
        registry: &env.registry,
        overrides: &rec.overrides,
        backend: Some(&rec.backend),
        backends,
    };
    pipeline::load(
        Source::new(&rec.pipeline, rec.pipeline_source.clone()),
        &opts,
    )
}

/// The plan of a recorded run, its stages only (a `run --target` recorded a part), or
/// the exit status after printing why it does not load.
fn recorded_plan(env: &Env, rec: &RunRecord) -> Result<Plan, ExitStatus> {
    let plan = load_recorded(env, rec, env.backend).map_err(|e| load_failed(&e))?;
    let stages: Vec<String> = rec.stages.keys().cloned().collect();
    plan.only(&stages).map_err(|why| {
        eprintln!("error: run {}: {why}", rec.id);
        ExitStatus::Usage
    })
}
