//! `soma-flow claim`, `earnings` and `model …`: collect what the signer's models
//! win, read back what they earned, and manage their stake and commission.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use soma_flow_chain::ObjectID;
use soma_flow_engine::app::{ExitStatus, StoreArgs};
use soma_flow_stages::network::earn::{self, Manage};
use soma_flow_stages::network::signer;

use super::account::{AccountArgs, NetworkArgs};

#[derive(Args, Debug)]
pub struct ClaimArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// The signer's key file (`SOMA_SECRET_KEY` takes precedence; on the local network
    /// the store's throwaway key is the default)
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Also claim targets whose fee exceeds what they pay the signer
    #[arg(long)]
    all: bool,
    /// Print the claims as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EarningsArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Whose models
    #[command(flatten)]
    account: AccountArgs,
    /// Print as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Add stake to a model from the signer's coins (AddStakeToModel)
    Stake {
        /// The model id (0x…)
        model: ObjectID,
        /// SOMA to stake (e.g. `2.5`; 1 SOMA = 10^9 shannons)
        amount: Soma,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Set a model's commission rate, effective from the next epoch (SetModelCommissionRate)
    Commission {
        /// The model id (0x…)
        model: ObjectID,
        /// The new rate in basis points (0 to 10000; 100 bps = 1%)
        bps: u64,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Withdraw a model from the network; it becomes inactive at once (DeactivateModel)
    Deactivate {
        /// The model id (0x…)
        model: ObjectID,
        #[command(flatten)]
        signer: SignerArgs,
    },
}

/// The network and the signer of a model command.
#[derive(Args, Debug)]
pub struct SignerArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// The owner's key file (`SOMA_SECRET_KEY` takes precedence)
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// An amount of SOMA typed as a decimal, held in shannons.
#[derive(Clone, Copy, Debug)]
pub struct Soma(u64);

impl std::str::FromStr for Soma {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an amount of SOMA (e.g. 1, 2.5, 0.000000001)");
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if fraction.len() > 9
            || !(whole.chars().chain(fraction.chars())).all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let fraction: u64 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(soma_flow_chain::SHANNONS_PER_SOMA)
            .and_then(|w| w.checked_add(fraction))
            .map(Soma)
            .ok_or_else(bad)
    }
}

pub fn claim(args: ClaimArgs, store: &StoreArgs) -> Result<ExitStatus> {
    let net = args.network.connect(store)?;
    let (key, source) = signer::resolve(args.key_file.as_deref(), net.local_dir())?;
    eprintln!("{source}: address 0x{}", key.address());
    let root = store.open()?.root().to_owned();
    let report = earn::claim(&net, &key, args.all, &root, &|line| eprintln!("{line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.failed() > 0 {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}

pub fn earnings(args: EarningsArgs, store: &StoreArgs) -> Result<ExitStatus> {
    let net = args.network.connect(store)?;
    let owner = args.account.address(&net)?;
    let root = store.open()?.root().to_owned();
    let earnings = earn::earnings(&net, &owner, &root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&earnings)?);
    } else {
        print!("{}", earnings.render());
    }
    Ok(ExitStatus::Ok)
}

pub fn model(command: ModelCommand, store: &StoreArgs) -> Result<ExitStatus> {
    let (model, action, signer_args) = match command {
        ModelCommand::Stake {
            model,
            amount,
            signer,
        } => (model, Manage::Stake { amount: amount.0 }, signer),
        ModelCommand::Commission { model, bps, signer } => {
            (model, Manage::Commission { bps }, signer)
        }
        ModelCommand::Deactivate { model, signer } => (model, Manage::Deactivate, signer),
    };
    let net = signer_args.network.connect(store)?;
    let (key, _) = signer::resolve(signer_args.key_file.as_deref(), net.local_dir())?;
    let done = earn::manage(&net, &key, &model, action)
        .with_context(|| format!("not sent to {}", net.endpoint))?;
    println!("{done}");
    Ok(ExitStatus::Ok)
}
