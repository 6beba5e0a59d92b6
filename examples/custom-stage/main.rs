//! A stage kind of your own, next to soma-flow's: `word-count` counts the words of a
//! text input and writes them as JSON. Build and run it with
//!
//!   cargo run --example custom-stage -- run examples/custom-stage/pipeline.yaml
//!
//! A kind is a type implementing `StageKind`: its `with` parameters as a serde type
//! (their JSON Schema comes from `JsonSchema`), its inputs and outputs by name, and
//! `run`, which reads inputs and writes outputs through the `RunContext`. The engine
//! does the rest: validation with file:line errors, caching by content hash (bump
//! `VERSION` when the same inputs would give new outputs), scheduling and records.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::app::{self, Env, StoreArgs};
use soma_flow_engine::command::CommandKind;
use soma_flow_engine::{InputPort, Inputs, Outcome, Registry, RunContext, StageKind, WithError};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WordCountWith {
    /// Count `Word` and `word` as one.
    #[serde(default)]
    pub lowercase: bool,
    /// Keep only the most frequent words.
    #[serde(default = "default_top")]
    pub top: usize,
}

fn default_top() -> usize {
    10
}

pub struct WordCount;

impl StageKind for WordCount {
    type With = WordCountWith;
    const NAME: &'static str = "word-count";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Counts the words of a text file";

    fn inputs(&self, _: &WordCountWith) -> Inputs {
        Inputs::Fixed(vec![InputPort::required("text")])
    }

    fn outputs(&self, _: &WordCountWith) -> Vec<String> {
        vec!["counts".into()]
    }

    fn check(&self, with: &WordCountWith) -> Result<(), WithError> {
        match with.top {
            0 => Err(WithError::at(&["top"], "`top: 0` keeps nothing").help("give 1 or more")),
            _ => Ok(()),
        }
    }

    fn run(&self, with: &WordCountWith, ctx: &RunContext<'_>) -> anyhow::Result<Outcome> {
        let path = ctx.input("text").expect("required input");
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let counts = count_words(&text, with);
        ctx.note(format!("{} distinct words kept", counts.len()));
        std::fs::write(ctx.output("counts"), serde_json::to_vec_pretty(&counts)?)?;
        Ok(Outcome::Done)
    }
}

/// The `top` most frequent words, most frequent first (ties alphabetical).
fn count_words(text: &str, with: &WordCountWith) -> Vec<(String, usize)> {
    let mut counts = BTreeMap::<String, usize>::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = if with.lowercase {
            word.to_lowercase()
        } else {
            word.to_string()
        };
        *counts.entry(word).or_default() += 1;
    }
    let mut sorted: Vec<_> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(with.top);
    sorted
}

/// The engine's kinds, soma-flow's, and ours.
fn env() -> Env {
    let mut registry = Registry::new();
    registry.register(CommandKind);
    soma_flow_stages::kinds::register(&mut registry);
    registry.register(WordCount);
    Env {
        registry,
        backend: soma_flow_stages::backend::SETTING,
        keys: soma_flow_stages::network::signer::REMOTE_KEYS,
    }
}

/// The engine's generic commands (run, validate, status, dag, runs, verify, ...).
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: app::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match app::run_command(&env(), cli.command, &cli.store) {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use soma_flow_engine::pipeline::{load, read, LoadError, LoadOptions, Plan};

    #[test]
    fn counts_words_most_frequent_first() {
        let with = WordCountWith {
            lowercase: true,
            top: 2,
        };
        let counts = count_words("The cat saw the dog; the DOG ran.", &with);
        assert_eq!(counts, vec![("the".into(), 3), ("dog".into(), 2)]);
    }

    fn load_example(overrides: &[String]) -> Result<Plan, LoadError> {
        let env = env();
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/custom-stage/pipeline.yaml");
        let opts = LoadOptions {
            registry: &env.registry,
            overrides,
            backend: None,
            backends: env.backend,
        };
        load(read(&file)?, &opts)
    }

    #[test]
    fn the_example_pipeline_validates_and_a_bad_value_is_located() {
        let plan = load_example(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.stages["count"].kind.name(), "word-count");
        let err = load_example(&["top=0".into()])
            .err()
            .expect("top: 0 is refused");
        let err = err.to_string();
        assert!(
            err.contains("keeps nothing") && err.contains("top"),
            "{err}"
        );
    }
}
