//! `soma-flow`: run SOMA training pipelines as cached, parallel DAGs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use soma_flow_engine::app::{self, ExitStatus, StoreArgs};

mod cli;
mod kinds;

/// Freed tensor buffers are reused, not unmapped and faulted in again (see Cargo.toml
/// and `prepare_process`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "soma-flow",
    version,
    about = "Train, score and publish SOMA V1 models with cached, parallel pipelines"
)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Engine(app::Command),
    /// Loss and embedding of models on a blob exactly as the chain computes them, and the winner
    Score(cli::score::ScoreArgs),
    /// The local SOMA network (the network stages' default): serve it, advance its epoch, list its models
    #[command(subcommand)]
    Localnet(cli::localnet::LocalnetCommand),
    /// My model's on-chain loss against each filled target's winner on the target's data
    Gaps(cli::gaps::GapsArgs),
    /// Read the network: `map` simulates its routing for embeddings
    #[command(subcommand)]
    Network(cli::gaps::NetworkCommand),
    /// Claim the rewards of every target the signer's models won (or its data filled)
    Claim(cli::earn::ClaimArgs),
    /// What the signer's models earned: stake, commission, targets routed and won, SOMA earned and claimable, per epoch
    Earnings(cli::earn::EarningsArgs),
    /// Manage a model on the network: add stake, set its commission, deactivate it
    #[command(subcommand)]
    Model(cli::earn::ModelCommand),
    /// Create a SOMA signing key file (mode 0600) and print its address
    Keygen {
        /// Where to write the key
        #[arg(long, default_value = "soma.key")]
        out: std::path::PathBuf,
    },
    /// Print the address of the signing key (SOMA_SECRET_KEY, or --key-file)
    Address {
        #[arg(long, value_name = "FILE")]
        key_file: Option<std::path::PathBuf>,
    },
    /// Ask a network's faucet for SOMA
    Faucet {
        #[command(flatten)]
        network: cli::account::NetworkArgs,
        #[command(flatten)]
        account: cli::account::AccountArgs,
    },
    /// The balance of an account on a network
    Balance {
        #[command(flatten)]
        network: cli::account::NetworkArgs,
        #[command(flatten)]
        account: cli::account::AccountArgs,
    },
}

fn main() -> ExitCode {
    soma_flow_stages::backend::prepare_process();
    // Piping into `head` must end the process quietly, as for other Unix tools. SIGPIPE
    // stays ignored (Rust's default): network code writing to a connection the peer
    // reset must get an error, not die without a word. A closed stdout makes `println!`
    // panic instead, which ends the process here with the status a shell gives SIGPIPE.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(128 + 13);
        }
        default_hook(info);
    }));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let env = kinds::env();
    let code = match cli.command {
        Command::Engine(cmd) => app::run_command(&env, cmd, &cli.store),
        Command::Score(args) => cli::score::run(args),
        Command::Localnet(cmd) => cli::localnet::run(cmd, &cli.store),
        Command::Gaps(args) => cli::gaps::gaps(args, &cli.store),
        Command::Network(cmd) => cli::gaps::network(cmd, &cli.store),
        Command::Claim(args) => cli::earn::claim(args, &cli.store),
        Command::Earnings(args) => cli::earn::earnings(args, &cli.store),
        Command::Model(cmd) => cli::earn::model(cmd, &cli.store),
        Command::Keygen { out } => cli::account::keygen(out),
        Command::Address { key_file } => cli::account::address(key_file),
        Command::Faucet { network, account } => cli::account::faucet(network, account, &cli.store),
        Command::Balance { network, account } => {
            cli::account::balance(network, account, &cli.store)
        }
    };
    match code {
        Ok(status) => status.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitStatus::Failed.into()
        }
    }
}
