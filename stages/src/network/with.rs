//! The `network` key of the network stages: which network, who signs, how a new
//! local network is made.

use soma_flow_engine::duration::HumanDuration;
use std::path::{Path, PathBuf};

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_inline_default::serde_inline_default;
use soma_flow_chain::SecretKey;
use soma_flow_engine::{Parsed, RunContext, WithError};

use super::local::Settings;
use super::signer::{self, Source};
use super::{Endpoint, Network};

/// Which network a stage uses, and who signs. Written as a name (`local`,
/// `testnet`, or a fullnode URL) or as a map with these keys.
#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct NetworkWith {
    /// `local` (the default: a local SOMA network in the store, served by soma-flow
    /// itself), `testnet`, or the URL of a fullnode.
    #[serde_inline_default(local())]
    pub name: Parsed<Endpoint>,
    /// A fullnode URL (the same as giving it as `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<Parsed<Endpoint>>,
    /// The faucet of that network (`soma-flow faucet`; testnet's is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faucet: Option<String>,
    /// The admin service of a local network served elsewhere (epoch advance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// Which of the signer's models: a name this pipeline gives it (the store maps it
    /// to the model's id on each network; `commit` creates the model under it on first
    /// use) or the model's id (`0x…`). Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The signer's key file (from `soma-flow keygen`), relative to the pipeline
    /// file. `SOMA_SECRET_KEY` takes precedence; on the local network a throwaway
    /// key is used when neither is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Local network only, when this stage creates it: the epoch length (e.g. `2s`
    /// for demos, `24h` like testnet); default: epochs advance only with
    /// `soma-flow localnet advance-epoch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_duration: Option<HumanDuration>,
    /// Local network only, when this stage creates it: the architecture it demands
    /// (`v1-tiny`, `v1-small`, `v1`); its embedding dimension follows.
    #[serde_inline_default(tiny())]
    pub arch: Parsed<crate::ArchConfig>,
    /// Local network only, when this stage creates it: start with the genesis
    /// competitors revealed (`v1-tiny` networks).
    #[serde_inline_default(true)]
    pub genesis: bool,
}

/// Defaults shared by serde and `Default` (a bare name is the map with only `name`).
fn local() -> Parsed<Endpoint> {
    "local".parse().expect("a network")
}
fn tiny() -> Parsed<crate::ArchConfig> {
    super::genesis::ARCH.parse().expect("a preset")
}

impl Default for NetworkWith {
    fn default() -> Self {
        Self {
            name: local(),
            rpc: None,
            faucet: None,
            admin: None,
            model: None,
            key_file: None,
            epoch_duration: None,
            arch: tiny(),
            genesis: true,
        }
    }
}

impl Serialize for NetworkWith {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NetworkWith::serialize(self, serializer)
    }
}

/// A bare name is the map with only `name`; a map reports its own errors (an
/// unknown key) rather than "matched no variant".
impl<'de> Deserialize<'de> for NetworkWith {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::string_or_map::string_or_map(
            deserializer,
            "`local`, `testnet`, a fullnode URL, or a map {name, rpc, faucet, key_file, …}",
            |name| {
                Ok(NetworkWith {
                    name: name.parse()?,
                    ..NetworkWith::default()
                })
            },
            |NetworkMap(network)| network,
        )
    }
}

/// The map form, read by the derived deserialiser (`remote = "Self"`).
struct NetworkMap(NetworkWith);

impl<'de> Deserialize<'de> for NetworkMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NetworkWith::deserialize(deserializer).map(NetworkMap)
    }
}

/// The `network` key's schema: a name or the map.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // only its schema is used
pub enum NetworkSchema {
    Name(String),
    Map(NetworkWith),
}

impl NetworkWith {
    /// The network, with the services given beside it.
    pub fn endpoint(&self) -> Endpoint {
        let named = self.rpc.as_ref().unwrap_or(&self.name);
        (**named)
            .clone()
            .with_services(self.faucet.as_deref(), self.admin.as_deref())
    }

    pub fn check(&self) -> Result<(), WithError> {
        if self.rpc.is_some() && *self.name != Endpoint::Local {
            return Err(WithError::at(
                &["network", "rpc"],
                "give the network by `name` or by `rpc`, not both",
            ));
        }
        if let (Endpoint::Testnet, Some(_)) = (self.endpoint(), &self.admin) {
            return Err(WithError::at(
                &["network", "admin"],
                "testnet has no admin service",
            ));
        }
        Ok(())
    }

    /// The name of the signer's model this stage works with.
    pub fn model_name(&self) -> &str {
        self.model.as_deref().unwrap_or(super::models::DEFAULT)
    }

    /// The key file, when one is named, exists (unless `SOMA_SECRET_KEY`, which takes
    /// precedence, is set): checked on load, not when the stage after a training needs it.
    pub fn check_files(&self, dir: &Path) -> Result<(), WithError> {
        let Some(file) = &self.key_file else {
            return Ok(());
        };
        if std::env::var_os(signer::SECRET_KEY_ENV).is_some() || dir.join(file).is_file() {
            return Ok(());
        }
        Err(WithError::at(
            &["network", "key_file"],
            format!(
                "no key file at {}{}",
                dir.join(file).display(),
                taken_from(file, dir)
            ),
        )
        .help(
            "create one with `soma-flow keygen --out FILE`; a path given with --set is taken \
             from the working directory when it exists there",
        ))
    }

    /// How a local network is created when this stage creates it.
    pub fn settings(&self) -> Settings {
        Settings {
            arch: self.arch.text().to_owned(),
            epoch_duration_ms: self
                .epoch_duration
                .as_ref()
                .map(|d| d.get().as_millis().max(1) as u64),
            genesis: self.genesis,
        }
    }

    /// Connects; the local network lives in `store`.
    pub fn open(&self, store: &Path) -> Result<Network> {
        Network::connect(&self.endpoint(), store, &self.settings())
    }

    /// Connects for a running stage, noting when the store's local network was made
    /// for another architecture than `arch` (which applies only to a new one): models
    /// of `arch` cannot be committed to it.
    pub fn open_for(&self, ctx: &RunContext<'_>) -> Result<Network> {
        let net = self.open(ctx.store)?;
        let made = net.local_dir().map(Settings::read).transpose()?.flatten();
        if let Some(made) = made.filter(|made| made.arch != self.arch.text()) {
            ctx.note(format!(
                "the local network in this store demands {} models (its `arch` when it was \
                 made); `network.arch: {}` applies to a new network only: give this run a \
                 store of its own (--store DIR)",
                made.arch, self.arch
            ));
        }
        Ok(net)
    }

    /// Checks that `arch` (what the pipeline trains, as its network stages are told)
    /// is what `net` demands (its `target_embedding_dim`), so that a pipeline for
    /// testnet learns that it must train full V1 before it trains, not at `commit`.
    /// The local network in the store keeps the architecture it was made with, which
    /// [`NetworkWith::open_for`] notes instead.
    pub fn check_arch(&self, net: &Network) -> Result<()> {
        if net.is_local() {
            return Ok(());
        }
        let arch = &*self.arch;
        let demanded = net.parameters()?.target_embedding_dim;
        if arch.embedding_dim as u64 == demanded {
            return Ok(());
        }
        let preset = crate::model::Preset::ALL
            .into_iter()
            .find(|p| p.config().embedding_dim as u64 == demanded)
            .map_or(String::new(), |p| format!(" ({})", p.name()));
        anyhow::bail!(
            "{} demands models of embedding dimension {demanded}{preset}, but `network.arch` \
             is {} (dimension {}): a model of that size could not be committed there; train \
             the architecture it demands (`--set arch=…` in the shipped pipelines)",
            net.endpoint,
            self.arch,
            arch.embedding_dim
        )
    }

    /// The signer, saying (in the run summary) when a throwaway key was created.
    pub fn signer(&self, net: &Network, ctx: &RunContext<'_>) -> Result<SecretKey> {
        let key_file = self.key_file.as_ref().map(|p| ctx.pipeline_dir.join(p));
        let relative = self.key_file.as_ref().is_some_and(|p| p.is_relative());
        let (key, source) =
            signer::resolve(key_file.as_deref(), net.local_dir()).map_err(|e| match relative {
                true => e.context(format!(
                    "`key_file` is relative, so it was taken from the pipeline's folder {} \
                     (a path given with --set is taken from the working directory when it \
                     exists there)",
                    ctx.pipeline_dir.display()
                )),
                false => e,
            })?;
        if matches!(source, Source::LocalThrowaway { created: true, .. }) {
            ctx.note_once(source.to_string());
        }
        (ctx.progress)(&format!("{source}: address 0x{}", key.address()));
        Ok(key)
    }
}

/// How an error names the base of a path a pipeline gives: " (relative to the
/// pipeline's folder DIR)" for a relative one, nothing for an absolute one.
pub(crate) fn taken_from(path: &Path, dir: &Path) -> String {
    match path.is_relative() {
        true => format!(" (relative to the pipeline's folder {})", dir.display()),
        false => String::new(),
    }
}
