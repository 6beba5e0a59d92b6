//! `soma-flow devnet ...` and `soma-flow keygen`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use soma_flow_engine::app::StoreArgs;
use soma_flow_stages::identity;
use soma_flow_stages::kinds::network::devnet_dir;
use soma_flow_stages::network::devnet::{Devnet, DevnetOptions, EpochMode};
use soma_flow_stages::network::Network;

#[derive(Subcommand, Debug)]
pub enum DevnetCommand {
    /// Create the embedded devnet in the store
    Init {
        /// Epoch length, e.g. `2s` or `24h`; default: epochs move only with advance-epoch
        #[arg(long)]
        epoch_duration: Option<String>,
        /// Start without the genesis models
        #[arg(long)]
        empty: bool,
    },
    /// Current epoch, epoch mode and model counts
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Move to the next epoch (manual epochs only)
    AdvanceEpoch,
    /// Models with their state, manifest and (once revealed) embedding and key
    Models {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DevnetCommand, store: &StoreArgs) -> Result<i32> {
    let store = store.open()?;
    let dir = devnet_dir(store.root());
    match cmd {
        DevnetCommand::Init {
            epoch_duration,
            empty,
        } => {
            let options = DevnetOptions {
                epoch_duration,
                genesis: !empty,
            };
            let devnet = Devnet::init(&dir, &options)?;
            println!(
                "devnet created in {} (epoch {})",
                dir.display(),
                devnet.current_epoch()?
            );
        }
        DevnetCommand::Status { json } => {
            let status = Devnet::open(&dir)?.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                let epochs = match &status.epochs {
                    EpochMode::Manual => "manual (soma-flow devnet advance-epoch)".to_string(),
                    EpochMode::Timed {
                        epoch_duration,
                        next_epoch_in,
                    } => {
                        format!("every {epoch_duration}, next in {next_epoch_in}")
                    }
                };
                println!("devnet  {}", status.dir.display());
                println!("epoch   {} ({epochs})", status.epoch);
                println!(
                    "models  {} created, {} pending, {} active",
                    status.models_created, status.models_pending, status.models_active
                );
            }
        }
        DevnetCommand::AdvanceEpoch => {
            let epoch = Devnet::open(&dir)?.advance_epoch()?;
            println!("epoch {epoch}");
        }
        DevnetCommand::Models { json } => {
            let rows = Devnet::open(&dir)?.model_rows()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<5} {:<10} {:<8} {:<46} {:<12} url",
                    "id", "state", "commit", "owner", "checksum"
                );
                for r in rows {
                    let v = serde_json::to_value(&r)?;
                    let field = |k: &str| {
                        v[k].as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v[k].to_string())
                    };
                    println!(
                        "{:<5} {:<10} {:<8} {:<46} {:<12} {}",
                        field("id"),
                        field("state"),
                        field("commit_epoch"),
                        field("owner"),
                        field("checksum").chars().take(12).collect::<String>(),
                        field("weights_url")
                    );
                }
            }
        }
    }
    Ok(0)
}

pub fn keygen(out: PathBuf) -> Result<i32> {
    let public = identity::keygen(&out)?;
    println!(
        "created {} (mode 0600)\npublic key: {public}",
        out.display()
    );
    Ok(0)
}
