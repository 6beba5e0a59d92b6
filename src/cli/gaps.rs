//! `soma-flow gaps` and `soma-flow network map`: the `gaps` and `placement` stages'
//! measurements from the command line, printed rather than stored.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use soma_flow_engine::app::{ExitStatus, StoreArgs};
use soma_flow_stages::data::{TargetFilter, WonBy};
use soma_flow_stages::formats::embedding;
use soma_flow_stages::formats::gaps::Summary;
use soma_flow_stages::gaps::{measure, Measure};
use soma_flow_stages::placement::{plot, registry, scenarios, simulate};
use soma_flow_stages::BackendChoice;

use super::account::{AccountArgs, NetworkArgs};

#[derive(Args, Debug)]
pub struct GapsArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Whose models are mine (routing, `--won-by me`)
    #[command(flatten)]
    account: AccountArgs,
    /// My weights (canonical safetensors)
    #[arg(long, value_name = "W.safetensors")]
    model: PathBuf,
    /// Whose wins: `any`, `me` or a model id
    #[arg(long, default_value = "any")]
    won_by: String,
    /// Only targets generated in this epoch or later
    #[arg(long)]
    from_epoch: Option<u64>,
    /// Only targets generated in this epoch or earlier
    #[arg(long)]
    to_epoch: Option<u64>,
    /// At most this many targets, the most recent first
    #[arg(long)]
    limit: Option<u64>,
    /// Seed of the SIGReg noise stream (the scoring service's is 0)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Attention heads (default: the preset whose shapes match the weights)
    #[arg(long)]
    heads: Option<usize>,
    /// Burn backend
    #[arg(long, default_value = "ndarray")]
    backend: BackendChoice,
    /// How many of the targets I lose on by the most to name
    #[arg(long, default_value_t = 5)]
    worst: usize,
    /// Print the table and summary as JSON
    #[arg(long)]
    json: bool,
}

pub fn gaps(args: GapsArgs, store: &StoreArgs) -> Result<ExitStatus> {
    args.backend.ensure_compiled()?;
    let won_by =
        WonBy::try_from(args.won_by.clone()).map_err(|e| anyhow::anyhow!("--won-by: {e}"))?;
    let filter = TargetFilter {
        status: Vec::new(),
        from_epoch: args.from_epoch,
        to_epoch: args.to_epoch,
        won_by,
        limit: args.limit,
    };
    filter
        .check()
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let net = args.network.connect(store)?;
    let owner = args.account.address(&net).ok();
    let root = store.open()?.root().to_owned();
    let scratch = tempfile::Builder::new()
        .prefix("gaps-")
        .tempdir_in(root.join("tmp"))?;
    let note = |text: String| eprintln!("{text}");
    let progress = |line: &str| eprintln!("{line}");
    let how = Measure {
        filter,
        owner,
        model: &args.model,
        given: HashMap::new(),
        seed: args.seed,
        heads: args.heads,
        backend: args.backend,
        strict: false,
        data_cache: &soma_flow_engine::store::shared_state(&root, "data").join("network"),
        scratch: scratch.path(),
        note: &note,
        progress: &progress,
    };
    let measured = measure(&net, &how)?;
    let skipped = measured.skipped.clone();
    let summary = Summary::of(&measured.gaps, args.worst, measured.skipped);
    if args.json {
        // Serialised as the stage writes them (f32 as f32), not through a `Value`.
        println!(
            "{{\"table\":{},\"summary\":{}}}",
            serde_json::to_string(&measured.gaps)?,
            serde_json::to_string(&summary)?
        );
        return Ok(ExitStatus::Ok);
    }
    if measured.gaps.is_empty() {
        let how = match net.is_local() {
            true => {
                "`soma-flow localnet submit --data FILE` fills some as a data submitter \
                     would (targets exist once a model is Active: `soma-flow localnet \
                     advance-epoch`)"
            }
            false => {
                "data submitters fill them; try again later, or widen --from-epoch, \
                      --to-epoch and --won-by"
            }
        };
        println!(
            "no filled target to measure on {}{}: {how}",
            net.endpoint,
            if skipped.is_empty() {
                String::new()
            } else {
                format!(" ({} skipped: {})", skipped.len(), skipped.join("; "))
            }
        );
        return Ok(ExitStatus::Ok);
    }
    println!("target  epoch  my loss  winner's  margin  distance  routed  would win");
    for g in &measured.gaps {
        println!(
            "{}  {:>5}  {:>7.4}  {:>8.4}  {:>+6.4}  {:>8.4}  {:>6}  {}",
            &g.target[..10],
            g.epoch,
            g.my_loss,
            g.winner_loss,
            g.margin,
            g.distance,
            if g.routed_to_me { "yes" } else { "no" },
            if g.would_win { "yes" } else { "no" }
        );
    }
    for line in summary.lines() {
        println!("{line}");
    }
    Ok(ExitStatus::Ok)
}

/// Reading the network.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Simulate the chain's routing: the share of targets routed to my embedding and to
    /// candidates, whom each would meet, and a map of the registry (PNG)
    Map(MapArgs),
}

#[derive(Args, Debug)]
pub struct MapArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Whose model is mine
    #[command(flatten)]
    account: AccountArgs,
    /// A candidate embedding (an embed stage's output, a JSON array or little-endian
    /// f32; repeat for more), placed in my model's place or as a new model
    #[arg(long = "embedding", value_name = "FILE")]
    embeddings: Vec<PathBuf>,
    /// Target embeddings to draw, as the chain draws them
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Models per target (default: the chain's)
    #[arg(long)]
    k: Option<usize>,
    /// Stake (shannons) of a candidate placed as a new model (default: the median)
    #[arg(long)]
    stake: Option<u64>,
    /// Where to draw the map
    #[arg(long, default_value = "map.png")]
    out: PathBuf,
    /// Print the placement as JSON
    #[arg(long)]
    json: bool,
}

pub fn network(cmd: NetworkCommand, store: &StoreArgs) -> Result<ExitStatus> {
    let NetworkCommand::Map(args) = cmd;
    anyhow::ensure!(args.samples > 0, "--samples 0 draws no target");
    let net = args.network.connect(store)?;
    let owner = args.account.address(&net).ok();
    let (registry, k_chain) = registry(&net, owner)?;
    let mut candidates = Vec::new();
    for path in &args.embeddings {
        let e = embedding::read(path).with_context(|| format!("--embedding {}", path.display()))?;
        candidates.push((path.display().to_string(), e));
    }
    let scenarios = scenarios(&registry, candidates, args.stake);
    anyhow::ensure!(
        !scenarios.is_empty(),
        "nothing to place: no Active model of mine on {}; give --embedding FILE",
        net.endpoint
    );
    let placement = simulate(
        registry,
        scenarios,
        args.samples,
        args.seed,
        args.k.unwrap_or(k_chain),
    )?;
    plot(&placement, &args.out)?;
    if args.json {
        println!("{}", serde_json::to_string(&placement)?);
        return Ok(ExitStatus::Ok);
    }
    for line in placement.lines() {
        println!("{line}");
    }
    println!("map: {}", args.out.display());
    Ok(ExitStatus::Ok)
}
