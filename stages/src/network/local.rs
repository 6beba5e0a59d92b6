//! The zero-setup local network: a SOMA ledger in `<store>/state/network/localnet/`, served in
//! process on loopback ports picked by the OS while a stage needs it, and spoken
//! to through the same gRPC client as testnet.
//!
//! One process serves a folder at a time (a file lock): stages of one run share
//! the server, and another process waits for it, or (a `soma-flow localnet serve`
//! holding it) is told how to reach that server instead. The ledger is saved
//! after every transaction, so nothing is lost between runs. Epochs advance by
//! hand (`soma-flow localnet advance-epoch`) or, when the network was created
//! with an epoch duration, by the clock while it is served; a network that was
//! down past an epoch's end starts the next epoch when it is served again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use soma_flow_chain::client::SomaClient;
use soma_flow_chain::SHANNONS_PER_SOMA;
use soma_flow_localnet::server::{serve, ServerConfig, ServerHandle};
use soma_flow_localnet::{now_ms, GenesisConfig, Ledger, LEDGER_FILE};

use super::{genesis, runtime};
use crate::model::ArchConfig;

/// The folder of the store's local network.
pub fn dir(store: &Path) -> PathBuf {
    super::state_dir(store).join("localnet")
}

const SETTINGS_FILE: &str = "settings.json";
const LOCK_FILE: &str = "serve.lock";
/// How long a stage waits for another process to release the local network.
const LOCK_WAIT: Duration = Duration::from_secs(120);
/// What the in-process faucet sends per request: plenty for a stake and fees.
const FAUCET_AMOUNT: u64 = 1_000 * SHANNONS_PER_SOMA;

/// How a new local network is made. Fixed when it is created (kept in its
/// `settings.json`); later settings do not change an existing network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The architecture preset the network demands; its embedding dimension is the
    /// chain's `target_embedding_dim`.
    pub arch: String,
    /// Epoch length; `None`: epochs advance only by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_duration_ms: Option<u64>,
    /// Whether it starts with the genesis competitors revealed (`v1-tiny` only).
    pub genesis: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            arch: genesis::ARCH.to_owned(),
            epoch_duration_ms: None,
            genesis: true,
        }
    }
}

impl Settings {
    fn embedding_dim(&self) -> Result<u64> {
        let arch: ArchConfig = self
            .arch
            .parse()
            .with_context(|| format!("local network architecture `{}`", self.arch))?;
        Ok(arch.embedding_dim as u64)
    }

    /// The genesis of a network made with these settings at `now_ms`.
    pub fn genesis_config(&self, now_ms: u64) -> Result<GenesisConfig> {
        let mut config = GenesisConfig::new(self.embedding_dim()?);
        config.genesis_timestamp_ms = now_ms;
        if let Some(ms) = self.epoch_duration_ms {
            config.parameters.epoch_duration_ms = ms;
        }
        if self.with_genesis_models() {
            for owner in genesis::owners() {
                config = config.with_account(owner, genesis::OWNER_FUNDS);
            }
        }
        Ok(config)
    }

    fn with_genesis_models(&self) -> bool {
        self.genesis && self.arch == genesis::ARCH
    }

    /// Writes `settings.json` in `dir`, whole.
    fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(SETTINGS_FILE);
        crate::private_file::write(
            &path,
            &serde_json::to_vec_pretty(self)?,
            crate::private_file::Existing::Replace,
        )
        .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The settings a network in `dir` was made with (the defaults for one made
    /// by `soma-flow localnet serve` before settings were kept).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not a local network's settings", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// Whether `dir` holds a local network.
pub fn exists(dir: &Path) -> bool {
    dir.join(LEDGER_FILE).exists()
}

/// Makes the network in `dir` with `settings` unless one is there; returns the
/// settings it has. The caller holds the folder's lock.
pub fn create(dir: &Path, settings: &Settings) -> Result<Settings> {
    if exists(dir) {
        return Ok(Settings::read(dir)?.unwrap_or_default());
    }
    let now = now_ms();
    let mut ledger = Ledger::genesis(settings.genesis_config(now)?)?;
    if settings.with_genesis_models() {
        genesis::seed(&mut ledger, dir, now).context("cannot reveal the genesis models")?;
    }
    settings.write(dir)?;
    // The ledger last: its presence is what makes the network exist.
    ledger.save(dir)?;
    Ok(settings.clone())
}

/// The server configuration of the network in `dir`, made with `settings` first
/// if it is new (the caller holds the folder's lock); the settings it has.
/// Ports are SOMA's localnet defaults.
pub fn server_config(dir: &Path, settings: &Settings) -> Result<(Settings, ServerConfig)> {
    let settings = create(dir, settings)?;
    let mut config = ServerConfig::new(dir, settings.genesis_config(now_ms())?);
    config.timed_epochs = settings.epoch_duration_ms.is_some();
    Ok((settings, config))
}

/// The lock that gives one process the folder; `None` if another holds it.
pub fn try_lock(dir: &Path) -> Result<Option<File>> {
    soma_flow_engine::store::private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Waits up to [`LOCK_WAIT`] for the folder's lock.
pub fn lock(dir: &Path) -> Result<File> {
    let started = Instant::now();
    loop {
        if let Some(file) = try_lock(dir)? {
            return Ok(file);
        }
        if started.elapsed() > LOCK_WAIT {
            bail!(
                "the local network in {} stayed in use by another process for {} s (a \
                 `soma-flow localnet serve`, or another run on this store): stop it, or reach \
                 that server with `network: {{ rpc: http://127.0.0.1:9000, faucet: \
                 http://127.0.0.1:9123, admin: http://127.0.0.1:9125 }}`",
                dir.display(),
                LOCK_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A local network being served by this process.
pub struct Running {
    dir: PathBuf,
    handle: ServerHandle,
    _lock: File,
}

/// The networks this process serves, so that concurrent stages share one.
static RUNNING: Mutex<Vec<(PathBuf, Weak<Running>)>> = Mutex::new(Vec::new());

impl Running {
    /// Serves the network in `dir` (created with `settings` if new), or joins
    /// this process's server of it.
    pub fn open(dir: &Path, settings: &Settings) -> Result<Arc<Self>> {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(live) = running
            .iter()
            .find(|(d, _)| d == dir)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(live);
        }
        let lock = lock(dir)?;
        let (_, config) = server_config(dir, settings)?;
        let config = ServerConfig {
            faucet_amount: FAUCET_AMOUNT,
            ..config.ephemeral_ports()
        };
        let handle = runtime()
            .block_on(serve(config))
            .map_err(|e| anyhow!("cannot serve the local network in {}: {e}", dir.display()))?;
        let live = Arc::new(Self {
            dir: dir.to_owned(),
            handle,
            _lock: lock,
        });
        running.push((dir.to_owned(), Arc::downgrade(&live)));
        Ok(live)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client of this server, with its faucet and admin.
    pub fn client(&self) -> Result<SomaClient> {
        let _in_runtime = runtime().enter();
        Ok(
            SomaClient::connect(&self.handle.rpc_url(), Some(&self.handle.faucet_url()))?
                .with_admin(&self.handle.admin_url())?,
        )
    }
}

/// Changes the epoch length of the network in `dir` (nobody else serving it): `Some`
/// advances epochs by the clock at that length while it is served, `None` only by hand
/// (`soma-flow localnet advance-epoch`). Returns the settings it now has.
pub fn set_epoch(dir: &Path, epoch_duration_ms: Option<u64>) -> Result<Settings> {
    let _lock = offline(dir, "stop it first")?;
    let mut settings = Settings::read(dir)?.unwrap_or_default();
    settings.epoch_duration_ms = epoch_duration_ms;
    let mut ledger = Ledger::open(dir)?;
    if let Some(ms) = epoch_duration_ms {
        ledger.set_epoch_duration_ms(ms);
    }
    settings.write(dir)?;
    ledger.save(dir)?;
    Ok(settings)
}

/// The lock of the network in `dir`, which must exist and be served by nobody else
/// (`otherwise` says what to do then).
fn offline(dir: &Path, otherwise: &str) -> Result<File> {
    if !exists(dir) {
        bail!(
            "{} holds no local network yet (a run with a network stage makes it)",
            dir.display()
        );
    }
    try_lock(dir)?.ok_or_else(|| {
        anyhow!(
            "the local network in {} is being served by another process: {otherwise}",
            dir.display()
        )
    })
}

/// Advances the epoch of the network in `dir` directly (nobody else serving it).
pub fn advance_epoch(dir: &Path) -> Result<u64> {
    let _lock = offline(dir, "advance it through that server's admin service")?;
    let mut ledger = Ledger::open(dir)?;
    ledger.advance_epoch_now()?;
    ledger.save(dir)?;
    Ok(ledger.epoch())
}
