//! What the network stages share: which network, which identity, where keys live.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use soma_flow_engine::{RunContext, WithError};

use crate::identity::{self, IdentitySource, Signer};
use crate::network::devnet::{Devnet, DevnetOptions};

/// How a network stage reaches the network and signs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkWith {
    /// `devnet`: the embedded devnet in the store (the only network soma-flow can reach
    /// offline).
    #[serde(default)]
    pub name: NetworkName,
    /// Epoch length if this stage creates the devnet, e.g. `2s` for demos or `24h` like
    /// testnet; default: epochs move only with `soma-flow devnet advance-epoch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_duration: Option<String>,
    /// The signer's key file (from `soma-flow keygen`), relative to the pipeline file.
    /// `SOMA_SECRET_KEY` takes precedence; on the devnet a throwaway identity is used
    /// when neither is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Whether a devnet this stage creates starts with the genesis models revealed
    /// (the competitors a fresh machine can fetch).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub genesis: bool,
}

fn yes() -> bool {
    true
}

impl Default for NetworkWith {
    fn default() -> Self {
        Self {
            name: NetworkName::default(),
            epoch_duration: None,
            key_file: None,
            genesis: true,
        }
    }
}

fn is_yes(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkName {
    #[default]
    Devnet,
}

pub fn devnet_dir(store: &Path) -> PathBuf {
    store.join("devnet")
}

/// Decryption keys of commits awaiting their reveal (mode 0600 files).
pub fn key_dir(store: &Path) -> PathBuf {
    store.join("keys")
}

impl NetworkWith {
    pub fn check(&self) -> Result<(), WithError> {
        match &self.epoch_duration {
            Some(d) => humantime::parse_duration(d).map(drop).map_err(|e| {
                WithError::at(&["network", "epoch_duration"], format!("`{d}`: {e}"))
                    .help("e.g. `2s`, `10m`, `24h`")
            }),
            None => Ok(()),
        }
    }

    pub fn open(&self, store: &Path) -> Result<Devnet> {
        let options = DevnetOptions {
            epoch_duration: self.epoch_duration.clone(),
            genesis: self.genesis,
        };
        let devnet =
            Devnet::open_or_init(&devnet_dir(store), &options).context("cannot open the devnet")?;
        // The devnet holds a signing identity and `keys/` decryption keys awaiting their
        // reveal: both owner-only, also in stores made before this rule.
        for dir in [devnet_dir(store), key_dir(store)] {
            soma_flow_engine::store::private_dir(&dir)
                .with_context(|| format!("cannot make {} private", dir.display()))?;
        }
        Ok(devnet)
    }

    /// The signer, saying (in the run summary) when a throwaway identity was created.
    pub fn signer(&self, ctx: &RunContext<'_>) -> Result<Signer> {
        let key_file = self.key_file.as_ref().map(|p| ctx.pipeline_dir.join(p));
        let (signer, source) =
            identity::resolve(key_file.as_deref(), Some(&devnet_dir(ctx.store)))?;
        if matches!(
            source,
            IdentitySource::DevnetThrowaway { created: true, .. }
        ) {
            ctx.note(source.to_string());
        }
        (ctx.progress)(&source.to_string());
        Ok(signer)
    }
}

/// Runs network I/O from a stage's (blocking) thread.
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}
