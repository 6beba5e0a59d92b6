//! `soma-flow localnet serve`: a local SOMA network that speaks the chain's own
//! protocol where SOMA's localnet listens (fullnode gRPC with HTTP `/model/{id}` and
//! `/data/{id}` on 9000, the BCS faucet on 9123, admin advance-epoch on 9125), so that
//! the official SDK (`SomaClient(chain="localnet")`) and a user's scripts work
//! against it offline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use soma_flow_chain::client::SomaClient;
use soma_flow_engine::app::StoreArgs;
use soma_flow_localnet::server::{serve, ServerConfig};
use soma_flow_localnet::GenesisConfig;
use soma_flow_stages::model::Preset;

#[derive(Subcommand, Debug)]
pub enum LocalnetCommand {
    /// Serve a local SOMA network until interrupted
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the ledger and served blobs live [default: localnet/ in the store]
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

pub fn run(cmd: LocalnetCommand, store: &StoreArgs) -> Result<i32> {
    match cmd {
        LocalnetCommand::Serve(args) => {
            let dir = match args.dir.clone() {
                Some(dir) => dir,
                None => store.open()?.root().join("localnet"),
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve_until_interrupted(args, dir))
        }
    }
}

async fn serve_until_interrupted(args: ServeArgs, dir: PathBuf) -> Result<i32> {
    let mut genesis = GenesisConfig::new(args.arch.config().embedding_dim as u64);
    if let Some(epoch) = args.epoch_duration {
        genesis.parameters.epoch_duration_ms = epoch.as_millis() as u64;
    }
    let mut config = ServerConfig::new(&dir, genesis);
    config.rpc_port = args.port;
    config.faucet_port = args.faucet_port;
    config.admin_port = args.admin_port;
    let handle = serve(config)
        .await
        .with_context(|| format!("cannot serve the local network from {}", dir.display()))?;
    println!(
        "local SOMA network ({}) in {}",
        args.arch.name(),
        dir.display()
    );
    println!("fullnode {}", handle.rpc_url());
    println!("faucet   {}", handle.faucet_url());
    println!("admin    {}", handle.admin_url());
    let ticker = match args.epoch_duration {
        Some(every) => {
            let client =
                SomaClient::connect(&handle.rpc_url(), None)?.with_admin(&handle.admin_url())?;
            Some(tokio::spawn(async move {
                let mut interval = tokio::time::interval(every);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    match client.advance_epoch().await {
                        Ok(epoch) => println!("epoch {epoch}"),
                        Err(e) => eprintln!("warning: cannot advance the epoch: {e}"),
                    }
                }
            }))
        }
        None => None,
    };
    wait_for_interrupt().await?;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    handle.shutdown().await;
    Ok(0)
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
