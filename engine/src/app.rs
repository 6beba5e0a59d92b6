//! The generic commands of the `soma-flow` binary: run, validate, status, dag, path,
//! runs, rerun, verify, report, gc, schema. The binary adds its domain commands beside these.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::dag::{self, Format};
use crate::diag::Source;
use crate::exec::{self, ExecOptions};
use crate::explain::{explain, Verdict};
use crate::kind::Registry;
use crate::pipeline::{self, LoadError, LoadOptions, Plan};
use crate::progress::fmt_duration;
use crate::record::{self, RunRecord, StageStatus};
use crate::report;
use crate::store::{self, Check, Store};

/// Exit code for usage and validation errors.
pub const EXIT_USAGE: i32 = 2;

/// What the binary provides to the generic commands.
pub struct Env {
    pub registry: Registry,
    /// Accepts a backend name, or says why not (e.g. the cargo feature to enable).
    pub check_backend: fn(&str) -> Result<(), String>,
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
    /// Burn backend for model stages (overrides the pipeline's `backend`)
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
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run a pipeline: only stages whose inputs changed, in parallel where possible
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Check a pipeline file without running anything
    Validate {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Say, per stage, whether it would run and why
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
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
    Report {
        id: String,
        /// Directory for index.html and the PNG outputs [default: report-<run id>]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Remove stored objects that no run record references
    Gc {
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the JSON Schema of pipeline files
    Schema,
}

pub fn run_command(env: &Env, cmd: Command, store: &StoreArgs) -> Result<i32> {
    match cmd {
        Command::Run { pipeline, exec } => {
            let plan = match load(env, &pipeline) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            run_plan(plan, store.open()?, &exec, pipeline.set)
        }
        Command::Validate { pipeline } => Ok(match load(env, &pipeline) {
            Ok(plan) => {
                println!(
                    "{}: ok ({} stages)",
                    pipeline.file.display(),
                    plan.stages.len()
                );
                0
            }
            Err(code) => code,
        }),
        Command::Status { pipeline } => {
            let plan = match load(env, &pipeline) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            let store = store.open()?;
            let previous = record::latest_for(&store, &pipeline.file)?;
            for (stage, verdict) in explain(&plan, &store, previous.as_ref())? {
                match verdict {
                    Verdict::Cached => println!("{stage:<24} cached"),
                    Verdict::WouldRun(why) => println!("{stage:<24} would run: {}", why.join("; ")),
                }
            }
            Ok(0)
        }
        Command::Dag { pipeline, format } => {
            let plan = match load(env, &pipeline) {
                Ok(p) => p,
                Err(code) => return Ok(code),
            };
            print!("{}", dag::render(&plan.stages, format));
            Ok(0)
        }
        Command::Path { file, output } => {
            let store = store.open()?;
            let Some((stage, out)) = output.split_once('.') else {
                eprintln!("error: `{output}`: expected STAGE.OUTPUT");
                return Ok(EXIT_USAGE);
            };
            let runs = record::list(&store)?;
            let abs = file
                .canonicalize()
                .with_context(|| format!("cannot find {}", file.display()))?;
            let found = runs
                .iter()
                .rev()
                .filter(|r| r.pipeline == abs)
                .find_map(|r| r.stages.get(stage).and_then(|s| s.outputs.get(out)));
            match found {
                Some(a) => match store.check(a)? {
                    Check::Ok => {
                        println!("{}", store.path_of(a).display());
                        Ok(0)
                    }
                    problem => {
                        let what = match problem {
                            Check::Missing => {
                                "is no longer in the store (removed by gc or by hand)"
                            }
                            _ => "was corrupt (did not match its hash) and has been discarded",
                        };
                        eprintln!(
                            "error: `{output}` ({}) {what}; run the pipeline again to rebuild it",
                            a.hash.short()
                        );
                        Ok(1)
                    }
                },
                None => {
                    eprintln!(
                        "error: no recorded run of {} produced `{output}`",
                        file.display()
                    );
                    Ok(1)
                }
            }
        }
        Command::Runs { json } => {
            let store = store.open()?;
            let runs = record::list(&store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print_runs(&runs);
            }
            Ok(0)
        }
        Command::Rerun { id, exec } => {
            let store = store.open()?;
            let rec = record::find(&store, &id)?;
            eprintln!(
                "rerunning {} ({}) with {} override(s), backend {}",
                rec.id,
                rec.pipeline.display(),
                rec.overrides.len(),
                rec.backend
            );
            match recorded_plan(env, &rec) {
                Ok(plan) => run_plan(plan, store, &exec, rec.overrides.clone()),
                Err(code) => Ok(code),
            }
        }
        Command::Verify { id, keep, jobs } => verify(env, &store.open()?, &id, keep, jobs),
        Command::Report { id, out } => {
            let store = store.open()?;
            let rec = record::find(&store, &id)?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("report-{}", rec.id)));
            let index = report::write(&store, &rec, &recorded_dependencies(env, &rec), &out)?;
            println!("{}", index.display());
            Ok(0)
        }
        Command::Gc { dry_run } => gc(&store.open()?, dry_run),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::schema::pipeline_schema(&env.registry))?
            );
            Ok(0)
        }
    }
}

/// The plan of a recorded run: its recorded pipeline text, params and backend, so that
/// later edits to the file change nothing.
fn load_recorded(
    env: &Env,
    rec: &RunRecord,
    check_backend: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Plan, LoadError> {
    let opts = LoadOptions {
        registry: &env.registry,
        overrides: &rec.overrides,
        backend: Some(&rec.backend),
        check_backend,
    };
    pipeline::load_source(
        Source::new(&rec.pipeline, rec.pipeline_source.clone()),
        &opts,
    )
}

/// The stage graph of a recorded run.
fn recorded_dependencies(env: &Env, rec: &RunRecord) -> report::Dependencies {
    // Nothing runs: a backend this build lacks must not hide the graph.
    match load_recorded(env, rec, &|_| Ok(())) {
        Ok(plan) => Ok(dag::edges(&plan.stages)),
        Err(e) => {
            eprintln!("warning: the recorded pipeline does not load, so the report's graph has no arrows:\n{e}");
            Err(e.to_string())
        }
    }
}

/// Loads and validates; on failure prints the diagnostics and gives the exit code.
pub fn load(env: &Env, args: &PipelineArgs) -> Result<Plan, i32> {
    let opts = LoadOptions {
        registry: &env.registry,
        overrides: &args.set,
        backend: args.backend.as_deref(),
        check_backend: &env.check_backend,
    };
    pipeline::load(&args.file, &opts).map_err(|e: LoadError| {
        eprintln!("{e}");
        EXIT_USAGE
    })
}

/// The plan of a recorded run, or the exit code after printing why it does not load.
fn recorded_plan(env: &Env, rec: &RunRecord) -> Result<Plan, i32> {
    load_recorded(env, rec, &env.check_backend).map_err(|e| {
        eprintln!("{e}");
        EXIT_USAGE
    })
}

fn run_plan(plan: Plan, store: Store, exec: &ExecArgs, overrides: Vec<String>) -> Result<i32> {
    let record = execute(Arc::new(plan), store, exec, overrides)?;
    print_summary(&record);
    Ok(record.status.exit_code())
}

fn verify(env: &Env, store: &Store, id: &str, keep: bool, jobs: Option<usize>) -> Result<i32> {
    let original = record::find(store, id)?;
    let plan = match recorded_plan(env, &original) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    // Held for the whole repeat: gc (which takes it exclusively) then leaves the
    // scratch store under tmp/ alone.
    let _store_lock = store.lock_store(false)?;
    let scratch_dir = store.tmp_dir("verify")?;
    eprintln!(
        "verifying {} ({}): repeating it from nothing in {}",
        original.id,
        original.pipeline.display(),
        scratch_dir.display()
    );
    let exec = ExecArgs {
        jobs,
        no_cache: true,
    };
    let plan = Arc::new(plan);
    let repeat = execute(
        Arc::clone(&plan),
        Store::open(&scratch_dir)?,
        &exec,
        original.overrides.clone(),
    )?;
    let verdicts = crate::verify::compare(&plan, &original, &repeat);
    println!("\n{:<24} {:<18} result", "stage", "kind");
    for (name, verdict) in &verdicts {
        println!("{name:<24} {:<18} {verdict}", original.stages[name].kind);
    }
    let failures = verdicts.iter().filter(|(_, v)| v.is_failure()).count();
    let identical = verdicts.iter().filter(|(_, v)| v.is_identical()).count();
    println!(
        "\n{identical} stage(s) identical, {failures} not, {} not comparable",
        verdicts.len() - identical - failures
    );
    if keep {
        println!("scratch store kept: {}", scratch_dir.display());
    } else {
        store::discard(&scratch_dir)?;
    }
    Ok(if failures == 0 { 0 } else { 1 })
}

/// Runs a plan, saving its record in `store`.
fn execute(
    plan: Arc<Plan>,
    store: Store,
    exec: &ExecArgs,
    overrides: Vec<String>,
) -> Result<RunRecord> {
    let jobs = exec
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let record = rt.block_on(exec::run(
        plan,
        store,
        ExecOptions {
            jobs,
            no_cache: exec.no_cache,
            overrides,
        },
    ));
    // An interrupted run returns while in-process stages may still compute; their
    // results are not wanted.
    rt.shutdown_background();
    record
}

pub fn print_summary(r: &RunRecord) {
    println!();
    println!(
        "{:<24} {:<18} {:<9} {:>8}",
        "stage", "kind", "status", "time"
    );
    for (name, s) in &r.stages {
        println!(
            "{name:<24} {:<18} {:<9} {:>8}",
            s.kind,
            s.status.label(),
            s.time_label()
        );
        if let (Some(msg), StageStatus::Failed | StageStatus::Deferred) = (&s.message, s.status) {
            for line in msg.lines() {
                println!("    {line}");
            }
        }
    }
    for (name, s) in r.stages.iter().filter(|(_, s)| !s.notes.is_empty()) {
        println!("\n{name}:");
        for note in &s.notes {
            for line in note.lines() {
                println!("  {line}");
            }
        }
    }
    println!(
        "\nrun {} ({}): {} ran, {} cached, {} deferred, {} failed, {} skipped in {}",
        r.id,
        r.name,
        r.count(StageStatus::Ran),
        r.count(StageStatus::Hit),
        r.count(StageStatus::Deferred),
        r.count(StageStatus::Failed),
        r.count(StageStatus::Skipped),
        fmt_duration(std::time::Duration::from_millis(r.duration_ms)),
    );
}

fn print_runs(runs: &[RunRecord]) {
    println!(
        "{:<24} {:<21} {:<20} {:<11} {:>4} {:>6} {:>5}",
        "id", "started", "pipeline", "status", "ran", "cached", "other"
    );
    for r in runs {
        let other = r.stages.len() - r.count(StageStatus::Ran) - r.count(StageStatus::Hit);
        println!(
            "{:<24} {:<21} {:<20} {:<11} {:>4} {:>6} {:>5}",
            r.id,
            r.started,
            r.name,
            format!("{:?}", r.status).to_lowercase(),
            r.count(StageStatus::Ran),
            r.count(StageStatus::Hit),
            other
        );
    }
}

fn gc(store: &Store, dry_run: bool) -> Result<i32> {
    let _lock = store.lock_store(true)?;
    let runs = record::list(store)?;
    let mut live_hashes = std::collections::HashSet::new();
    let mut live_keys = std::collections::HashSet::new();
    for r in &runs {
        for s in r.stages.values() {
            live_hashes.extend(s.outputs.values().map(|a| a.hash.clone()));
            live_keys.extend(s.key.clone());
        }
    }
    let (mut count, mut bytes) = (0usize, 0u64);
    for (artifact, path) in store.all_artifacts()? {
        match &artifact {
            Ok(a) if live_hashes.contains(&a.hash) => continue,
            Ok(a) => bytes += a.size,
            // Not a name the store gives: nothing can reference it.
            Err(_) => {}
        }
        count += 1;
        if dry_run {
            println!("would remove {}", path.display());
        } else {
            match artifact {
                Ok(a) => store.remove_object(&a)?,
                Err(_) => store::discard(&path)?,
            }
        }
    }
    for key in store.all_cache_keys()? {
        if !live_keys.contains(&key) && !dry_run {
            store.cache_remove(&key);
        }
    }
    if !dry_run {
        // No run or verify holds the store lock now, so nothing under tmp/ is in use,
        // and no writer is half-way through a file.
        for e in std::fs::read_dir(store.root().join("tmp"))?.flatten() {
            store::discard(&e.path())?;
        }
        store.remove_stale_temp_files()?;
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {count} object(s), {:.1} MB; {} run record(s) kept",
        bytes as f64 / 1e6,
        runs.len()
    );
    Ok(0)
}
