//! A local SOMA network for rehearsing commit-reveal: a ledger in SQLite inside a
//! directory, shared safely by concurrent processes. Every request runs in one
//! `BEGIN IMMEDIATE` transaction (writers queue on the lock rather than interleave),
//! and WAL journaling keeps the ledger consistent if a process dies mid-write.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{
    Epoch, ModelId, ModelInfo, ModelRow, ModelState, Network, NetworkError, PendingCommit, Receipt,
    Rejection, Request, RevealedCommit, SignedRequest, MAX_COMMISSION_BPS,
};
use crate::crypto::{ContentKey, Hash256};
use crate::identity::{self, IdentityError, IdentitySource, PublicKey, Signer};
use crate::private_file::{self, Existing};

pub const CONFIG_FILE: &str = "devnet.json";
pub const LEDGER_FILE: &str = "ledger.sqlite3";

/// How long a writer waits for another process's transaction before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// `devnet.json`: fixed at `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetConfig {
    /// Wall-clock start of epoch 0, in milliseconds since the Unix epoch.
    pub genesis_unix_ms: u64,
    /// Epoch length such as `24h` or `2s` (humantime); absent means epochs only
    /// move with `advance-epoch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_duration: Option<String>,
}

/// How the devnet's epochs move, as reported by `devnet status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum EpochMode {
    Manual,
    Timed {
        epoch_duration: String,
        next_epoch_in: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevnetStatus {
    pub dir: PathBuf,
    pub epoch: Epoch,
    pub epochs: EpochMode,
    pub genesis_unix_ms: u64,
    pub models_created: usize,
    pub models_pending: usize,
    pub models_active: usize,
}

pub struct Devnet {
    dir: PathBuf,
    config: DevnetConfig,
    epoch_duration: Option<Duration>,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn devnet_error(dir: &Path, reason: impl ToString) -> NetworkError {
    NetworkError::Devnet {
        dir: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn parse_duration(dir: &Path, text: &str) -> Result<Duration, NetworkError> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(devnet_error(dir, "epoch_duration must be longer than zero")),
        Err(e) => Err(devnet_error(
            dir,
            format!("epoch_duration {text:?} is not a duration like 24h or 2s: {e}"),
        )),
    }
}

/// How a new devnet is set up.
#[derive(Debug, Clone, Default)]
pub struct DevnetOptions {
    /// Epoch length (e.g. `"24h"`) makes epochs follow the clock; `None` makes them
    /// manual.
    pub epoch_duration: Option<String>,
    /// Start with the genesis models revealed and Active ([`super::genesis`]).
    pub genesis: bool,
}

impl Devnet {
    /// Creates a devnet in `dir` with epoch 0 starting now. Refuses a directory that
    /// already holds a devnet.
    ///
    /// The devnet is built in a sibling directory and moved into place complete, so
    /// a concurrent opener never sees it half-made (e.g. without its genesis models),
    /// and a process killed during init leaves no devnet behind.
    pub fn init(dir: &Path, options: &DevnetOptions) -> Result<Self, NetworkError> {
        if let Some(text) = &options.epoch_duration {
            parse_duration(dir, text)?;
        }
        let already = || devnet_error(dir, "already initialised");
        if dir.join(CONFIG_FILE).exists() {
            return Err(already());
        }
        let io = |what: &str, e: std::io::Error| devnet_error(dir, format!("{what}: {e}"));
        let name = dir
            .file_name()
            .ok_or_else(|| devnet_error(dir, "not a directory name"))?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| io("cannot create its parent", e))?;
        let published = parent
            .canonicalize()
            .map_err(|e| io("cannot resolve its parent", e))?
            .join(name);
        let building = tempfile::Builder::new()
            .prefix(".devnet-init-")
            .tempdir_in(parent)
            .map_err(|e| io("cannot create a staging directory", e))?;
        let config = DevnetConfig {
            genesis_unix_ms: now_unix_ms(),
            epoch_duration: options.epoch_duration.clone(),
        };
        let json = serde_json::to_vec_pretty(&config).expect("config serialises");
        private_file::write(&building.path().join(CONFIG_FILE), &json, Existing::Refuse)
            .map_err(|e| io(&format!("cannot write {CONFIG_FILE}"), e))?;
        {
            let mut conn = open_ledger(&building.path().join(LEDGER_FILE))?;
            if options.genesis {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                super::genesis::seed(&tx, building.path(), &published)?;
                tx.commit()?;
            }
        }
        // `rename` replaces an empty directory but never one with contents: of two
        // concurrent inits, the second fails here and finds the first's devnet.
        match std::fs::rename(building.path(), dir) {
            Ok(()) => {
                let _ = building.keep();
            }
            Err(_) if dir.join(CONFIG_FILE).exists() => return Err(already()),
            Err(e) => return Err(io("cannot move the new devnet into place", e)),
        }
        Self::open(dir)
    }

    pub fn open(dir: &Path) -> Result<Self, NetworkError> {
        let path = dir.join(CONFIG_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(devnet_error(
                    dir,
                    "not initialised (run `soma-flow devnet init`)",
                ))
            }
            Err(e) => return Err(devnet_error(dir, format!("cannot read {CONFIG_FILE}: {e}"))),
        };
        let config: DevnetConfig = serde_json::from_slice(&text)
            .map_err(|e| devnet_error(dir, format!("{CONFIG_FILE} is invalid: {e}")))?;
        let epoch_duration = match &config.epoch_duration {
            Some(text) => Some(parse_duration(dir, text)?),
            None => None,
        };
        let conn = open_ledger(&dir.join(LEDGER_FILE))?;
        Ok(Self {
            dir: dir.to_owned(),
            config,
            epoch_duration,
            conn: Mutex::new(conn),
        })
    }

    /// Opens the devnet in `dir`, first creating one with `options` if there is none.
    /// Concurrent first uses agree on a single devnet.
    pub fn open_or_init(dir: &Path, options: &DevnetOptions) -> Result<Self, NetworkError> {
        if dir.join(CONFIG_FILE).exists() {
            return Self::open(dir);
        }
        match Self::init(dir, options) {
            // Another process initialised it in the meantime.
            Err(_) if dir.join(CONFIG_FILE).exists() => Self::open(dir),
            result => result,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &DevnetConfig {
        &self.config
    }

    /// The devnet's throwaway identity, created on first use (see [`IdentitySource`]'s
    /// message).
    pub fn identity(&self) -> Result<(Signer, IdentitySource), IdentityError> {
        identity::devnet_identity(&self.dir)
    }

    pub fn status(&self) -> Result<DevnetStatus, NetworkError> {
        let epoch = self.current_epoch()?;
        let models = self.models()?;
        let count = |state| models.iter().filter(|m| m.state == state).count();
        let epochs = match self.epoch_duration {
            None => EpochMode::Manual,
            Some(duration) => {
                let elapsed = now_unix_ms().saturating_sub(self.config.genesis_unix_ms);
                let length = duration.as_millis() as u64;
                let left = Duration::from_millis(length - elapsed % length);
                EpochMode::Timed {
                    epoch_duration: humantime::format_duration(duration).to_string(),
                    next_epoch_in: humantime::format_duration(left).to_string(),
                }
            }
        };
        Ok(DevnetStatus {
            dir: self.dir.clone(),
            epoch,
            epochs,
            genesis_unix_ms: self.config.genesis_unix_ms,
            models_created: count(ModelState::Created),
            models_pending: count(ModelState::Pending),
            models_active: count(ModelState::Active),
        })
    }

    /// The rows of `soma-flow devnet models`, by id.
    pub fn model_rows(&self) -> Result<Vec<ModelRow>, NetworkError> {
        Ok(self.models()?.iter().map(ModelRow::from).collect())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied request: the
        // transaction rolls back when dropped, so the connection is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn epoch_in(&self, conn: &Connection) -> Result<Epoch, NetworkError> {
        match self.epoch_duration {
            Some(duration) => {
                let elapsed = now_unix_ms().saturating_sub(self.config.genesis_unix_ms);
                Ok(elapsed / duration.as_millis() as u64)
            }
            None => Ok(conn
                .query_row("SELECT manual_epoch FROM chain", [], |r| r.get::<_, i64>(0))?
                as Epoch),
        }
    }

    fn apply(
        &self,
        conn: &Connection,
        epoch: Epoch,
        signer: PublicKey,
        request: &Request,
    ) -> Result<Receipt, NetworkError> {
        match request {
            Request::CreateModel {
                stake,
                commission_bps,
            } => {
                if *commission_bps > MAX_COMMISSION_BPS {
                    return Err(Rejection::CommissionTooHigh {
                        bps: *commission_bps,
                    }
                    .into());
                }
                conn.execute(
                    "INSERT INTO models (owner, stake, commission_bps) VALUES (?1, ?2, ?3)",
                    params![signer.to_string(), *stake as i64, commission_bps],
                )?;
                Ok(Receipt::ModelCreated {
                    model_id: conn.last_insert_rowid() as ModelId,
                })
            }
            Request::CommitModel {
                model_id,
                manifest,
                commitments,
            } => {
                let model = owned_model(conn, *model_id, signer)?;
                if let Some(pending) = &model.pending {
                    pending.blocks_new_commit(*model_id, epoch)?;
                }
                let pending = PendingCommit {
                    commit_epoch: epoch,
                    manifest: manifest.clone(),
                    commitments: *commitments,
                };
                conn.execute(
                    "UPDATE models SET pending = ?1 WHERE id = ?2",
                    params![to_json(&pending), *model_id as i64],
                )?;
                Ok(Receipt::Committed {
                    model_id: *model_id,
                    epoch,
                })
            }
            Request::RevealModel {
                model_id,
                decryption_key,
                embedding,
            } => {
                let model = owned_model(conn, *model_id, signer)?;
                let pending = model.pending.ok_or(Rejection::NothingToReveal {
                    model_id: *model_id,
                })?;
                if epoch != pending.reveal_epoch() {
                    return Err(Rejection::RevealEpochMismatch {
                        model_id: *model_id,
                        current_epoch: epoch,
                        commit_epoch: pending.commit_epoch,
                        required_epoch: pending.reveal_epoch(),
                    }
                    .into());
                }
                let key = ContentKey::from_hex(decryption_key)
                    .map_err(|e| Rejection::Malformed(e.to_string()))?;
                if key.commitment() != pending.commitments.key {
                    return Err(Rejection::CommitmentMismatch {
                        what: "decryption key",
                    }
                    .into());
                }
                if Hash256::of_embedding(embedding) != pending.commitments.embedding {
                    return Err(Rejection::CommitmentMismatch { what: "embedding" }.into());
                }
                let revealed = RevealedCommit {
                    commit_epoch: pending.commit_epoch,
                    reveal_epoch: epoch,
                    manifest: pending.manifest,
                    commitments: pending.commitments,
                    embedding: embedding.clone(),
                    decryption_key: decryption_key.to_ascii_lowercase(),
                };
                conn.execute(
                    "UPDATE models SET pending = NULL, revealed = ?1 WHERE id = ?2",
                    params![to_json(&revealed), *model_id as i64],
                )?;
                Ok(Receipt::Revealed {
                    model_id: *model_id,
                    epoch,
                })
            }
        }
    }
}

impl Network for Devnet {
    fn current_epoch(&self) -> Result<Epoch, NetworkError> {
        self.epoch_in(&self.lock())
    }

    fn models(&self) -> Result<Vec<ModelInfo>, NetworkError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!("{SELECT_MODELS} ORDER BY id"))?;
        let rows = statement.query_map([], model_from_row)?;
        rows.map(|row| Ok(row?)).collect()
    }

    fn model(&self, id: ModelId) -> Result<ModelInfo, NetworkError> {
        load_model(&self.lock(), id)
    }

    fn submit(&self, signed: &SignedRequest) -> Result<Receipt, NetworkError> {
        signed.verify()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let epoch = self.epoch_in(&tx)?;
        let receipt = self.apply(&tx, epoch, signed.signer, &signed.request)?;
        tx.commit()?;
        Ok(receipt)
    }

    fn advance_epoch(&self) -> Result<Epoch, NetworkError> {
        if let Some(text) = &self.config.epoch_duration {
            return Err(Rejection::EpochsAreTimed(text.clone()).into());
        }
        let conn = self.lock();
        let epoch = conn.query_row(
            "UPDATE chain SET manual_epoch = manual_epoch + 1 RETURNING manual_epoch",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(epoch as Epoch)
    }
}

fn open_ledger(path: &Path) -> Result<Connection, NetworkError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(LOCK_WAIT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS chain (
             singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
             manual_epoch INTEGER NOT NULL
         );
         INSERT OR IGNORE INTO chain (singleton, manual_epoch) VALUES (0, 0);
         CREATE TABLE IF NOT EXISTS models (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             owner TEXT NOT NULL,
             stake INTEGER NOT NULL,
             commission_bps INTEGER NOT NULL,
             pending TEXT,
             revealed TEXT
         );",
    )?;
    tx.commit()?;
    Ok(conn)
}

const SELECT_MODELS: &str =
    "SELECT id, owner, stake, commission_bps, pending, revealed FROM models";

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("ledger records serialise to JSON")
}

fn from_json<T: serde::de::DeserializeOwned>(
    column: usize,
    text: Option<String>,
) -> rusqlite::Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
        })
}

fn model_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ModelInfo> {
    let owner: String = row.get(1)?;
    let owner = owner.parse().map_err(|e: identity::InvalidPublicKey| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
    })?;
    let pending: Option<PendingCommit> = from_json(4, row.get(4)?)?;
    let revealed: Option<RevealedCommit> = from_json(5, row.get(5)?)?;
    let state = match (&revealed, &pending) {
        (Some(_), _) => ModelState::Active,
        (None, Some(_)) => ModelState::Pending,
        (None, None) => ModelState::Created,
    };
    Ok(ModelInfo {
        id: row.get::<_, i64>(0)? as ModelId,
        owner,
        stake: row.get::<_, i64>(2)? as u64,
        commission_bps: row.get(3)?,
        state,
        pending,
        revealed,
    })
}

fn load_model(conn: &Connection, id: ModelId) -> Result<ModelInfo, NetworkError> {
    conn.query_row(
        &format!("{SELECT_MODELS} WHERE id = ?1"),
        [id as i64],
        model_from_row,
    )
    .optional()?
    .ok_or_else(|| Rejection::UnknownModel(id).into())
}

fn owned_model(
    conn: &Connection,
    id: ModelId,
    signer: PublicKey,
) -> Result<ModelInfo, NetworkError> {
    let model = load_model(conn, id)?;
    if model.owner != signer {
        return Err(Rejection::NotOwner {
            model_id: id,
            owner: model.owner,
            signer,
        }
        .into());
    }
    Ok(model)
}
