//! `soma-flow localnet …`: the local SOMA network. `serve` speaks the chain's own
//! protocol where SOMA's localnet listens (fullnode gRPC with HTTP `/model/{id}` and
//! `/data/{id}` on 9000, the BCS faucet on 9123, admin advance-epoch on 9125), so that
//! the official SDK (`SomaClient(chain="localnet")`) and a user's scripts work
//! against it offline; it serves the same folder (`state/network/localnet/` in the store) that
//! the network stages serve in process. `advance-epoch` and `models` work on it
//! whether or not it is being served.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use soma_flow_engine::app::{ExitStatus, StoreArgs};
use soma_flow_localnet::server::serve;
use soma_flow_stages::model::Preset;
use soma_flow_stages::network::lifecycle::awaiting;
use soma_flow_stages::network::local::{self, Settings};

use super::account::NetworkArgs;

#[derive(Subcommand, Debug)]
pub enum LocalnetCommand {
    /// Serve a local SOMA network until interrupted
    Serve(ServeArgs),
    /// Move the local network to the next epoch
    AdvanceEpoch {
        #[command(flatten)]
        network: NetworkArgs,
    },
    /// Change the epoch length of the store's local network: a duration (`10m`, `24h`),
    /// or `manual` (epochs advance only with `advance-epoch`)
    SetEpoch {
        /// A duration, or `manual`
        #[arg(value_name = "DURATION|manual")]
        length: String,
    },
    /// Play a data submitter: score data blobs with open targets' models as the chain's
    /// scorer does and fill the targets they fit (SubmitData)
    Submit(SubmitArgs),
    /// The targets of an epoch (default: the current one): status, models, threshold, winner
    Targets {
        #[command(flatten)]
        network: NetworkArgs,
        /// `open`, `filled`, `claimable` or `claimed`
        #[arg(long)]
        status: Option<String>,
        /// The generation epoch [default: the current one]
        #[arg(long)]
        epoch: Option<u64>,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// The network's epoch, parameters and models (state, owner, commit, manifest URL)
    Models {
        #[command(flatten)]
        network: NetworkArgs,
        /// As JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the ledger and served blobs live [default: state/network/localnet/ in the store]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Fullnode port (gRPC and HTTP); 0 picks a free one
    #[arg(long, default_value_t = soma_flow_chain::rpc::DEFAULT_RPC_PORT)]
    port: u16,
    /// Faucet port
    #[arg(long, default_value_t = soma_flow_chain::rpc::DEFAULT_FAUCET_PORT)]
    faucet_port: u16,
    /// Admin (advance-epoch) port
    #[arg(long, default_value_t = soma_flow_chain::rpc::DEFAULT_ADMIN_PORT)]
    admin_port: u16,
    /// The architecture the network demands; its embedding dimension follows
    /// (v1-tiny: the genesis models; v1: full size)
    #[arg(long, default_value = "v1-tiny", value_parser = parse_preset)]
    arch: Preset,
    /// Advance the epoch every DURATION (e.g. `2s`, `24h`); without it epochs move
    /// only through the admin endpoint
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    epoch_duration: Option<Duration>,
    /// Start without the genesis competitors
    #[arg(long)]
    no_genesis: bool,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// A data blob (repeat for more; each at most the chain's max_submission_data_size)
    #[arg(long = "data", required = true, value_name = "FILE")]
    data: Vec<PathBuf>,
    /// Fill at most this many targets
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// The submitter's key file (`SOMA_SECRET_KEY` takes precedence; on the local
    /// network its throwaway key is the default)
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Where the blobs are uploaded [default on the local network: the store's bucket]
    #[arg(long, value_name = "URL")]
    storage: Option<String>,
    /// Attention heads of the models (default: the preset whose shapes match)
    #[arg(long)]
    heads: Option<usize>,
    /// Burn backend
    #[arg(long, default_value = "ndarray")]
    backend: soma_flow_stages::BackendChoice,
}

fn submit(args: SubmitArgs, store: &StoreArgs) -> Result<ExitStatus> {
    use soma_flow_stages::network::{signer, storage_default, submitter};
    args.backend.ensure_compiled()?;
    let net = args.network.connect(store)?;
    let (key, source) = signer::resolve(args.key_file.as_deref(), net.local_dir())?;
    eprintln!("{source}: address 0x{}", key.address());
    let root = store.open()?.root().to_owned();
    let storage = match args.storage.clone() {
        Some(url) => url,
        None => storage_default(&net, &root)?,
    };
    let work = tempfile::Builder::new()
        .prefix("submit-")
        .tempdir_in(root.join("tmp"))?;
    let how = submitter::Submission {
        blobs: &args.data,
        count: args.count,
        storage: &storage,
        heads: args.heads,
        backend: args.backend,
        seed: 0,
    };
    let progress = |line: &str| eprintln!("{line}");
    let filled = submitter::submit(&net, &key, &how, work.path(), &progress)?;
    for f in &filled {
        println!(
            "filled target {} with {} through model {} (loss {:.4}, distance {:.4} <= {:.4})",
            f.target,
            f.blob.display(),
            f.model,
            f.loss,
            f.distance,
            f.threshold
        );
    }
    if filled.is_empty() {
        println!("no target filled: no blob's winning embedding lay within a target's distance threshold");
        return Ok(ExitStatus::Deferred);
    }
    Ok(ExitStatus::Ok)
}

fn targets(
    network: &NetworkArgs,
    status: Option<String>,
    epoch: Option<u64>,
    json: bool,
    store: &StoreArgs,
) -> Result<ExitStatus> {
    let net = network.connect(store)?;
    let epoch = match epoch {
        Some(e) => e,
        None => net.epoch()?.epoch,
    };
    let rows: Vec<serde_json::Value> = net
        .targets(status.as_deref(), Some(epoch))?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id.to_hex(),
                "status": t.status,
                "generation_epoch": t.generation_epoch,
                "reward_pool": t.reward_pool,
                "model_ids": t.model_ids.iter().map(|m| m.to_hex()).collect::<Vec<_>>(),
                "distance_threshold": t.distance_threshold.map(soma_flow_stages::formats::decimal),
                "fill_epoch": t.fill_epoch,
                "submitter": t.submitter.map(|a| a.to_string()),
                "winning_model_id": t.winning_model_id.map(|m| m.to_hex()),
                "data_url": t.data_url,
            })
        })
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "epoch": epoch, "targets": rows }))?
        );
        return Ok(ExitStatus::Ok);
    }
    println!("epoch {epoch}: {} target(s)", rows.len());
    for r in &rows {
        println!(
            "{}  {:<9} models {}  threshold {}  {}",
            r["id"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            r["model_ids"].as_array().map_or(0, Vec::len),
            r["distance_threshold"],
            r["winning_model_id"]
                .as_str()
                .map_or(String::new(), |w| format!("won by {w}"))
        );
    }
    Ok(ExitStatus::Ok)
}

fn parse_preset(name: &str) -> Result<Preset, String> {
    Preset::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            format!(
                "`{name}` is not an architecture; expected one of {}",
                names.join(", ")
            )
        })
}

pub fn run(cmd: LocalnetCommand, store: &StoreArgs) -> Result<ExitStatus> {
    match cmd {
        LocalnetCommand::Serve(args) => {
            let dir = match args.dir.clone() {
                // Blob URLs are file:// URLs of absolute paths.
                Some(dir) => {
                    std::path::absolute(&dir).with_context(|| format!("--dir {}", dir.display()))?
                }
                None => local::dir(store.open()?.root()),
            };
            serve_until_interrupted(args, dir)
        }
        LocalnetCommand::Submit(args) => submit(args, store),
        LocalnetCommand::SetEpoch { length } => {
            let ms = match length.trim() {
                "manual" => None,
                text => Some(
                    humantime::parse_duration(text)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "`{text}` is not an epoch length: {e}; expected a duration \
                                 (`10m`, `24h`) or `manual`"
                            )
                        })?
                        .as_millis()
                        .max(1) as u64,
                ),
            };
            let dir = local::dir(store.open()?.root());
            local::set_epoch(&dir, ms)?;
            match ms {
                Some(ms) => println!(
                    "the local network in {} now advances every {} while it is served",
                    dir.display(),
                    humantime::format_duration(Duration::from_millis(ms))
                ),
                None => println!(
                    "the local network in {} now advances only with `soma-flow localnet \
                     advance-epoch`",
                    dir.display()
                ),
            }
            Ok(ExitStatus::Ok)
        }
        LocalnetCommand::Targets {
            network,
            status,
            epoch,
            json,
        } => targets(&network, status, epoch, json, store),
        LocalnetCommand::AdvanceEpoch { network } => {
            let epoch = match network.admin.as_deref() {
                Some(_) => {
                    let net = network.connect(store)?;
                    net.block_on(net.client.advance_epoch())?
                }
                None => local::advance_epoch(&local::dir(store.open()?.root()))?,
            };
            println!("epoch {epoch}");
            Ok(ExitStatus::Ok)
        }
        LocalnetCommand::Models { network, json } => {
            let info = network.connect(store)?.epoch()?;
            let rows: Vec<serde_json::Value> = info
                .system
                .models
                .iter()
                .map(|m| {
                    let pending = awaiting(m);
                    serde_json::json!({
                        "id": m.id.to_hex(),
                        "owner": m.owner.to_string(),
                        "state": m.state,
                        "stake": m.stake,
                        "commit_epoch": pending.as_ref().map(|p| p.commit_epoch).or(m.commit_epoch),
                        "awaiting_reveal": pending.is_some(),
                        "url": pending.as_ref().map(|p| p.manifest.url().to_string())
                            .or_else(|| m.manifest.as_ref().map(|x| x.url().to_string())),
                        "embedding": m.embedding,
                    })
                })
                .collect();
            if json {
                let out = serde_json::json!({ "epoch": info.epoch, "models": rows });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitStatus::Ok);
            }
            let p = &info.system.parameters;
            println!(
                "epoch {}  (architecture v{}, embedding dim {}, minimum stake {} shannons)",
                info.epoch, p.model_architecture_version, p.target_embedding_dim, p.model_min_stake
            );
            for r in rows {
                let field = |k: &str| match &r[k] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".into(),
                    v => v.to_string(),
                };
                println!(
                    "{}  {:<8} commit {:<4} {}  {}",
                    field("id"),
                    field("state"),
                    field("commit_epoch"),
                    if r["awaiting_reveal"] == true {
                        "awaiting reveal"
                    } else {
                        "               "
                    },
                    field("url")
                );
            }
            Ok(ExitStatus::Ok)
        }
    }
}

fn serve_until_interrupted(args: ServeArgs, dir: PathBuf) -> Result<ExitStatus> {
    let lock = local::try_lock(&dir)?.with_context(|| {
        format!(
            "the local network in {} is already being served by another process",
            dir.display()
        )
    })?;
    let (settings, mut config) = local::server_config(
        &dir,
        &Settings {
            arch: args.arch.name().to_owned(),
            epoch_duration_ms: args.epoch_duration.map(|d| d.as_millis().max(1) as u64),
            genesis: !args.no_genesis,
        },
    )?;
    config.rpc_port = args.port;
    config.faucet_port = args.faucet_port;
    config.admin_port = args.admin_port;
    let runtime = soma_flow_stages::network::runtime();
    let handle = runtime
        .block_on(serve(config))
        .with_context(|| format!("cannot serve the local network from {}", dir.display()))?;
    let epochs = match settings.epoch_duration_ms {
        Some(ms) => format!(
            "epochs of {}",
            humantime::format_duration(Duration::from_millis(ms))
        ),
        None => "epochs advance through the admin service".to_owned(),
    };
    println!(
        "local SOMA network ({}, {epochs}) in {}",
        settings.arch,
        dir.display()
    );
    println!("fullnode {}", handle.rpc_url());
    println!("faucet   {}", handle.faucet_url());
    println!("admin    {}", handle.admin_url());
    runtime.block_on(wait_for_interrupt())?;
    runtime.block_on(handle.shutdown());
    drop(lock);
    Ok(ExitStatus::Ok)
}

async fn wait_for_interrupt() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}
