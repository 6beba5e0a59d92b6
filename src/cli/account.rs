//! `soma-flow keygen`, `address`, `faucet` and `balance`: the signer's identity and
//! funds on a SOMA network, with keys as the official SDK takes them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use soma_flow_chain::SomaAddress;
use soma_flow_engine::app::{ExitStatus, StoreArgs};
use soma_flow_stages::network::local::Settings;
use soma_flow_stages::network::{signer, soma, Endpoint, Network};

/// Which network a command talks to.
#[derive(Args, Debug, Clone)]
pub struct NetworkArgs {
    /// `local` (the store's local network), `testnet`, or a fullnode URL
    #[arg(long, env = "SOMA_NETWORK", default_value = "local")]
    pub network: String,
    /// The network's faucet, for a fullnode URL (testnet's is known)
    #[arg(long, value_name = "URL")]
    pub faucet: Option<String>,
    /// The admin service of a local network served elsewhere
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
}

impl NetworkArgs {
    pub fn connect(&self, store: &StoreArgs) -> Result<Network> {
        let endpoint = Endpoint::parse(&self.network)?
            .with_services(self.faucet.as_deref(), self.admin.as_deref());
        let root = match endpoint {
            Endpoint::Local => store.open()?.root().to_owned(),
            _ => PathBuf::new(),
        };
        Network::connect(&endpoint, &root, &Settings::default())
    }
}

/// Whose account: a key file, `SOMA_SECRET_KEY`, or an address.
#[derive(Args, Debug, Clone)]
pub struct AccountArgs {
    /// The key file (`SOMA_SECRET_KEY` takes precedence; on the local network the
    /// store's throwaway key is the default)
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// An address instead of a key (64 hex digits)
    #[arg(long, conflicts_with = "key_file")]
    pub address: Option<String>,
}

impl AccountArgs {
    pub fn address(&self, net: &Network) -> Result<SomaAddress> {
        if let Some(text) = &self.address {
            return text.parse().map_err(|_| {
                anyhow::anyhow!("`{text}` is not an address: expected 64 hex digits (0x optional)")
            });
        }
        let (key, _) = signer::resolve(self.key_file.as_deref(), net.local_dir())?;
        Ok(key.address())
    }
}

pub fn keygen(out: PathBuf) -> Result<ExitStatus> {
    let key = signer::keygen(&out)?;
    println!("created {} (mode 0600)", out.display());
    println!("address 0x{}", key.address());
    Ok(ExitStatus::Ok)
}

pub fn address(key_file: Option<PathBuf>) -> Result<ExitStatus> {
    let (key, source) = signer::resolve(key_file.as_deref(), None)?;
    eprintln!("{source}");
    println!("0x{}", key.address());
    Ok(ExitStatus::Ok)
}

pub fn balance(
    network: NetworkArgs,
    account: AccountArgs,
    store: &StoreArgs,
) -> Result<ExitStatus> {
    let net = network.connect(store)?;
    let address = account.address(&net)?;
    let balance = net
        .block_on(net.client.balance(&address))
        .with_context(|| format!("cannot read the balance from {}", net.endpoint))?;
    println!("0x{address}: {balance} shannons ({})", soma(balance));
    Ok(ExitStatus::Ok)
}

pub fn faucet(network: NetworkArgs, account: AccountArgs, store: &StoreArgs) -> Result<ExitStatus> {
    let net = network.connect(store)?;
    let address = account.address(&net)?;
    let sent = net
        .block_on(net.client.request_gas(&address))
        .map_err(|e| {
            let what = match e {
                soma_flow_chain::client::ClientError::Unreachable { .. } => "is unreachable",
                _ => "refused",
            };
            anyhow::Error::new(e).context(format!("the faucet of {} {what}", net.endpoint))
        })?;
    let total: u64 = sent.coins_sent.iter().map(|c| c.amount).sum();
    println!(
        "0x{address}: the faucet sent {total} shannons ({})",
        soma(total)
    );
    Ok(ExitStatus::Ok)
}
