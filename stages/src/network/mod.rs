//! The SOMA network as the stages see it, on the chain's real protocol: every
//! network goes through one [`SomaClient`] (gRPC, BCS transactions signed as the
//! chain verifies them), whether it is testnet, another fullnode, or the local
//! network soma-flow serves in process from the store ([`local`]).
//!
//! - [`signer`]: who signs (`SOMA_SECRET_KEY`, a key file, a local throwaway).
//! - [`local`]: the zero-setup local network, with its genesis competitors ([`genesis`]).
//! - [`lifecycle`]: commit, reveal and fetch, as the chain checks them.
//! - [`earn`]: claim what the signer's models won; their earnings.
//! - [`models`]: which of the signer's models a pipeline names.
//! - [`submitter`]: a data submitter that fills targets (`soma-flow localnet submit`).
//! - [`with`]: the network stages' `network` key.

pub mod earn;
pub mod genesis;
pub mod lifecycle;
pub mod local;
pub mod models;
pub mod signer;
pub mod submitter;
pub mod with;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use soma_flow_chain::client::{ChainParameters, EpochInfo, SomaClient, TargetInfo, TargetQuery};
use soma_flow_chain::SomaAddress;

/// The public testnet's fullnode and faucet (SOMA-RPC §1.2).
pub const TESTNET_RPC: &str = "https://fullnode.testnet.soma.org";
pub const TESTNET_FAUCET: &str = "https://faucet.testnet.soma.org";

/// Which network to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The local network in the store, served in process (the default).
    Local,
    /// SOMA's public testnet.
    Testnet,
    /// Any fullnode, e.g. a `soma-flow localnet serve` or SOMA's own localnet.
    Remote {
        rpc: String,
        faucet: Option<String>,
        admin: Option<String>,
    },
}

impl Endpoint {
    /// `local`, `testnet`, or a fullnode URL (`http(s)://…`), as `--network` and
    /// `SOMA_NETWORK` take it.
    pub fn parse(text: &str) -> Result<Self> {
        match text.trim() {
            "local" | "" => Ok(Self::Local),
            "testnet" => Ok(Self::Testnet),
            url if url.starts_with("http://") || url.starts_with("https://") => Ok(Self::Remote {
                rpc: url.to_owned(),
                faucet: None,
                admin: None,
            }),
            other => bail!(
                "`{other}` is not a network: expected `local`, `testnet`, or a fullnode URL \
                 (http://… or https://…)"
            ),
        }
    }

    /// The same endpoint with the faucet and admin services of a fullnode URL (the
    /// named networks know their own).
    pub fn with_services(mut self, faucet: Option<&str>, admin: Option<&str>) -> Self {
        if let Self::Remote {
            faucet: f,
            admin: a,
            ..
        } = &mut self
        {
            *f = faucet.map(str::to_owned);
            *a = admin.map(str::to_owned);
        }
        self
    }
}

impl std::str::FromStr for Endpoint {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str("the local network"),
            Self::Testnet => f.write_str("testnet"),
            Self::Remote { rpc, .. } => write!(f, "the fullnode at {rpc}"),
        }
    }
}

/// The process's runtime for network I/O. Stages call [`Network::block_on`] from
/// their own (blocking) threads; a local network's server runs on it too.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("soma-flow-network")
            .enable_all()
            .build()
            .expect("the network runtime starts (threads and a timer are all it needs)")
    })
}

/// A connected network: its client and, for the local network, the server that
/// stays up while any handle to it lives.
pub struct Network {
    pub endpoint: Endpoint,
    pub client: SomaClient,
    local: Option<Arc<local::Running>>,
}

impl Network {
    /// Connects to `endpoint`; the local network is opened (or created with
    /// `settings`) under `store`.
    pub fn connect(endpoint: &Endpoint, store: &Path, settings: &local::Settings) -> Result<Self> {
        let _guard = runtime().enter();
        let (client, local) = match endpoint {
            Endpoint::Local => {
                let running = local::Running::open(&local::dir(store), settings)?;
                (running.client()?, Some(running))
            }
            Endpoint::Testnet => (
                SomaClient::connect(TESTNET_RPC, Some(TESTNET_FAUCET))?,
                None,
            ),
            Endpoint::Remote { rpc, faucet, admin } => {
                let mut client = SomaClient::connect(rpc, faucet.as_deref())?;
                if let Some(admin) = admin {
                    client = client.with_admin(admin)?;
                }
                (client, None)
            }
        };
        Ok(Self {
            endpoint: endpoint.clone(),
            client,
            local,
        })
    }

    /// Runs network I/O to completion from a stage's thread.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        runtime().block_on(f)
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The local network's folder, when this is it.
    pub fn local_dir(&self) -> Option<&Path> {
        self.local.as_deref().map(local::Running::dir)
    }

    /// The network's chain id (its genesis digest): what the store keeps per-network
    /// state under.
    pub fn chain_id(&self) -> Result<String> {
        self.block_on(self.client.service_info())
            .with_context(|| format!("cannot read the chain id of {}", self.endpoint))?
            .chain_id
            .with_context(|| format!("{} sent no chain id", self.endpoint))
    }

    /// The current epoch, the system state and the live parameters.
    pub fn epoch(&self) -> Result<EpochInfo> {
        self.block_on(self.client.epoch())
            .with_context(|| format!("cannot read the epoch from {}", self.endpoint))
    }

    pub fn parameters(&self) -> Result<ChainParameters> {
        Ok(self.epoch()?.system.parameters)
    }

    /// The targets generated in `epoch` (every epoch if `None`), with `status` if
    /// given, every page.
    pub fn targets(&self, status: Option<&str>, epoch: Option<u64>) -> Result<Vec<TargetInfo>> {
        let mut targets = Vec::new();
        let mut page_token = None;
        loop {
            let page = self.block_on(self.client.list_targets(&TargetQuery {
                status: status.map(str::to_owned),
                epoch,
                page_size: Some(100),
                page_token: page_token.take(),
                ..TargetQuery::default()
            }))?;
            let last = page.targets.is_empty();
            targets.extend(page.targets);
            match page.next_page_token {
                Some(token) if !last => page_token = Some(token),
                _ => return Ok(targets),
            }
        }
    }

    /// Makes sure `address` holds at least `needed` shannons. On the local network
    /// its faucet pays; elsewhere a shortfall is an error that says what to do.
    pub fn ensure_balance(&self, address: &SomaAddress, needed: u64, purpose: &str) -> Result<()> {
        let mut balance = self.block_on(self.client.balance(address))?;
        if balance >= needed {
            return Ok(());
        }
        if self.is_local() {
            // Each request sends one coin; gas must come from a single coin, so one
            // request of at least `needed` is what counts.
            self.block_on(self.client.request_gas(address))
                .context("the local network's faucet failed")?;
            balance = self.block_on(self.client.balance(address))?;
            if balance >= needed {
                return Ok(());
            }
        }
        let how = match &self.endpoint {
            Endpoint::Local => "the local faucet sent too little".to_owned(),
            Endpoint::Testnet => "get SOMA with `soma-flow faucet --network testnet`".to_owned(),
            Endpoint::Remote { rpc, .. } => {
                format!("send SOMA to it, or ask the network's faucet (`soma-flow faucet --network {rpc} --faucet URL`)")
            }
        };
        bail!(
            "{purpose} needs {needed} shannons ({}), but {address} holds {balance} on {}: {how}",
            soma(needed),
            self.endpoint
        )
    }
}

/// Where uploads go when no `storage` is given: on the local network a `file://`
/// bucket in the store; other networks need a place their validators can read.
pub fn storage_default(net: &Network, store: &Path) -> Result<String> {
    match net.is_local() {
        true => Ok(crate::storage::local_url(&state_dir(store).join("bucket"))?),
        false => bail!(
            "{} reads uploads from their manifest URL: give a storage URL its validators can \
             download from",
            net.endpoint
        ),
    }
}

/// Shannons as SOMA, for messages.
pub fn soma(shannons: u64) -> String {
    format!(
        "{} SOMA",
        shannons as f64 / soma_flow_chain::SHANNONS_PER_SOMA as f64
    )
}

/// The network's state in the store, `<store>/state/network/` (owner-only):
/// `localnet/` (the local network), `keys/`, `bucket/`.
pub fn state_dir(store: &Path) -> PathBuf {
    soma_flow_engine::store::shared_state(store, "network")
}

/// Decryption keys and records of commits awaiting their reveal (0600 files in a
/// 0700 folder): kept in the store so that a later run can reveal.
pub fn key_dir(store: &Path) -> PathBuf {
    state_dir(store).join("keys")
}
