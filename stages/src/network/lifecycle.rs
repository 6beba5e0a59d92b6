//! What the `commit`, `reveal` and `fetch-competitors` kinds do on a SOMA network,
//! exactly as the chain checks it (SOMA-RPC §5, §6.3, §8): create the model on
//! first use, encrypt and upload the weights, commit the three commitments,
//! reveal key and embedding in exactly the next epoch, and fetch, check and
//! decrypt revealed models. Commit and reveal are idempotent, so that a re-run
//! workflow neither commits twice nor fails on a commit it already revealed.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use soma_flow_chain::client::ModelInfo;
use soma_flow_chain::{
    embedding_commitment, DecryptionKey, Digest, Manifest, ObjectID, SecretKey, SomaAddress,
};

use super::Network;
use crate::crypto::{hash_file, CtrStream, Decrypting, Hash256};
use crate::data::download::Through;
use crate::data::{download_object, ProgressFn};
use crate::private_file::{self, Existing};
use crate::storage;

/// The model architecture soma-flow builds (the chain's `model_architecture_version`).
pub const ARCHITECTURE_VERSION: u64 = 1;

/// A commit as soma-flow records it: the `commit` stage's output, and the file
/// beside its key in the key folder from which a later run reveals it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The model's object id, `0x` + 64 hex digits.
    pub model_id: String,
    pub owner: String,
    pub commit_epoch: u64,
    /// The manifest: where the ciphertext is, its Blake2b-256 (also the weights
    /// commitment) and its size.
    pub url: String,
    pub checksum: Hash256,
    pub size: u64,
    /// Blake2b-256 of the plaintext weights (not on chain; it recognises a re-commit
    /// of the same file).
    pub weights: Hash256,
    pub embedding_commitment: Hash256,
    pub key_commitment: Hash256,
    /// Revealed with the key; kept so that the reveal can run on its own.
    pub embedding: Vec<f32>,
    /// The CommitModel transaction (Base58), once executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A commit awaiting its reveal, as the chain shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Awaiting {
    pub manifest: Manifest,
    pub key_commitment: Digest,
    pub embedding_commitment: Digest,
    pub commit_epoch: u64,
}

/// The commit of `model` that awaits its reveal: a Pending model's first commit,
/// or an Active model's pending update.
pub fn awaiting(model: &ModelInfo) -> Option<Awaiting> {
    match model.state.as_str() {
        "pending" => Some(Awaiting {
            manifest: model.manifest.clone()?,
            key_commitment: model.decryption_key_commitment?,
            embedding_commitment: model.embedding_commitment?,
            commit_epoch: model.commit_epoch?,
        }),
        "active" => model.pending_update.as_ref().map(|p| Awaiting {
            manifest: p.manifest.clone(),
            key_commitment: p.decryption_key_commitment,
            embedding_commitment: p.embedding_commitment,
            commit_epoch: p.commit_epoch,
        }),
        _ => None,
    }
}

/// Whether a commit from `commit_epoch` can still be revealed (now or next epoch).
fn still_revealable(commit_epoch: u64, epoch: u64) -> bool {
    epoch <= commit_epoch + 1
}

/// Where a [`CommitRecord`] stands on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    AwaitingReveal {
        current_epoch: u64,
        reveal_epoch: u64,
    },
    Revealed {
        reveal_epoch: u64,
    },
    /// The reveal window passed; only a new commit can publish these weights.
    Missed {
        commit_epoch: u64,
        current_epoch: u64,
    },
    /// The network holds another commit for the model (a newer one, or none).
    Superseded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevealOutcome {
    NotYet {
        from_epoch: u64,
    },
    Revealed {
        epoch: u64,
    },
    AlreadyRevealed {
        epoch: u64,
    },
    Missed {
        commit_epoch: u64,
        current_epoch: u64,
    },
}

impl fmt::Display for RevealOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotYet { from_epoch } => {
                write!(
                    f,
                    "not revealable yet: the reveal window is epoch {from_epoch}"
                )
            }
            Self::Revealed { epoch } => write!(f, "revealed in epoch {epoch}"),
            Self::AlreadyRevealed { epoch } => write!(f, "already revealed in epoch {epoch}"),
            Self::Missed {
                commit_epoch,
                current_epoch,
            } => write!(
                f,
                "missed the reveal window: committed in epoch {commit_epoch}, revealable only \
                 in epoch {}, and it is now epoch {current_epoch}; a new commit is needed",
                commit_epoch + 1
            ),
        }
    }
}

fn digest(hash: Hash256) -> Digest {
    Digest(hash.0)
}

fn hash(digest: Digest) -> Hash256 {
    Hash256(digest.0)
}

impl CommitRecord {
    /// Reads a record (the `commit` stage's `record` output).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading commit record {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a commit record", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn model(&self) -> Result<ObjectID> {
        self.model_id
            .parse()
            .map_err(|_| anyhow!("commit record: `{}` is not a model id", self.model_id))
    }

    /// The file holding this commit's decryption key until its reveal.
    pub fn key_path(&self, key_dir: &Path) -> PathBuf {
        key_path(key_dir, &self.model_id, self.key_commitment)
    }

    /// Re-checks this record against the network's `models` in `epoch`.
    pub fn status(&self, models: &[ModelInfo], epoch: u64) -> Result<RecordStatus> {
        let id = self.model()?;
        let Some(model) = models.iter().find(|m| m.id == id) else {
            return Ok(RecordStatus::Superseded);
        };
        let key = digest(self.key_commitment);
        // (The chain shows `commit_epoch` only while a model is Pending.)
        let revealed = model.state == "active" && model.decryption_key_commitment == Some(key);
        if revealed {
            return Ok(RecordStatus::Revealed {
                reveal_epoch: self.commit_epoch + 1,
            });
        }
        let live = awaiting(model).filter(|a| a.key_commitment == key);
        let commit_epoch = live.as_ref().map_or(self.commit_epoch, |a| a.commit_epoch);
        Ok(if !still_revealable(commit_epoch, epoch) {
            // The chain drops an unrevealed commit at the next epoch change (and
            // slashes a never-revealed model).
            RecordStatus::Missed {
                commit_epoch,
                current_epoch: epoch,
            }
        } else if live.is_some() {
            RecordStatus::AwaitingReveal {
                current_epoch: epoch,
                reveal_epoch: commit_epoch + 1,
            }
        } else {
            RecordStatus::Superseded
        })
    }
}

fn key_path(key_dir: &Path, model_id: &str, key_commitment: Hash256) -> PathBuf {
    key_dir.join(format!("{model_id}-{key_commitment}.key"))
}

fn record_path(key_dir: &Path, model_id: &str, key_commitment: Hash256) -> PathBuf {
    key_dir.join(format!("{model_id}-{key_commitment}.json"))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    private_file::write(path, bytes, Existing::Replace)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn load_key(path: &Path) -> Result<DecryptionKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read decryption key {}", path.display()))?,
    );
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| anyhow!("{} does not hold a 32-byte hex key", path.display()))?;
    Ok(DecryptionKey::from_bytes(bytes))
}

/// The record kept in the key folder for `model`'s commit with this key commitment.
fn kept_record(key_dir: &Path, model: &ObjectID, key_commitment: Digest) -> Option<CommitRecord> {
    CommitRecord::read(&record_path(key_dir, &model.to_hex(), hash(key_commitment))).ok()
}

/// What a machine that did not commit needs to reveal (the decryption key and the
/// record), sealed for the owner alone and kept beside the ciphertext as
/// `<model>/<key commitment>.escrow`: a scheduled run on a fresh runner reveals with
/// nothing but the owner's signing key, and nothing that opens an unrevealed commit
/// sits readable in a bucket or a shared cache.
///
/// AES-256-CTR under a key derived (BLAKE3 `derive_key`) from the signing key, the
/// model id and the key commitment: one key per commit, so the zero IV never encrypts
/// two plaintexts under one key. What comes back is authenticated by the chain: the
/// key must match the key commitment the chain holds, the embedding its embedding
/// commitment.
#[derive(Serialize, Deserialize)]
struct Escrow {
    /// Hex.
    key: String,
    record: CommitRecord,
}

/// Escrows are small; a larger object at the escrow's address is not one.
const ESCROW_MAX: u64 = 1 << 20;

fn escrow_cipher(owner: &SecretKey, model_hex: &str, key_commitment: Hash256) -> CtrStream {
    let mut material = zeroize::Zeroizing::new(Vec::new());
    material.extend_from_slice(owner.expose_hex().as_bytes());
    material.extend_from_slice(model_hex.as_bytes());
    material.extend_from_slice(&key_commitment.0);
    let key = blake3::derive_key("soma-flow 2026-12-02 commit escrow v1", &material);
    CtrStream::keyed(&DecryptionKey::from_bytes(key))
}

/// The escrow's name beside the ciphertext's (`….bin`).
fn escrow_name(ciphertext: &str) -> String {
    format!("{}.escrow", ciphertext.trim_end_matches(".bin"))
}

/// Seals `key` and `record` for `owner` and uploads them as the escrow of the
/// ciphertext at `upload_url`.
fn escrow(
    net: &Network,
    owner: &SecretKey,
    key: &DecryptionKey,
    record: &CommitRecord,
    upload_url: &str,
) -> Result<()> {
    let escrow = Escrow {
        key: hex::encode(key.expose_bytes()),
        record: record.clone(),
    };
    let mut bytes = zeroize::Zeroizing::new(serde_json::to_vec(&escrow)?);
    drop(zeroize::Zeroizing::new(escrow.key));
    escrow_cipher(owner, &record.model_id, record.key_commitment).process(&mut bytes);
    let url = escrow_name(upload_url);
    net.block_on(storage::put_small(&url, bytes.to_vec()))
        .with_context(|| format!("cannot upload the commit's escrow to {url}"))
}

/// Restores the key folder's key and record of `model`'s awaiting commit `a` from its
/// escrow, checked against the chain's commitments; returns both.
fn recover(
    net: &Network,
    owner: &SecretKey,
    model: &ModelInfo,
    a: &Awaiting,
    key_dir: &Path,
) -> Result<(CommitRecord, DecryptionKey)> {
    let url = escrow_name(a.manifest.url().as_str());
    let model_hex = model.id.to_hex();
    let opened = || -> Result<(DecryptionKey, CommitRecord)> {
        // Plaintext key material is wiped when dropped.
        let mut bytes =
            zeroize::Zeroizing::new(net.block_on(storage::get_small(&url, ESCROW_MAX))?);
        escrow_cipher(owner, &model_hex, hash(a.key_commitment)).process(&mut bytes);
        let escrow: Escrow = serde_json::from_slice(&bytes)
            .map_err(|_| anyhow!("it does not open with this signing key"))?;
        let hex_key = zeroize::Zeroizing::new(escrow.key);
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key.as_str(), key.as_mut())
            .map_err(|_| anyhow!("it holds no 32-byte key"))?;
        let key = DecryptionKey::from_bytes(*key);
        let mut record = escrow.record;
        let embedding = embedding_commitment(&record.embedding)?;
        anyhow::ensure!(
            key.commitment() == a.key_commitment
                && embedding == a.embedding_commitment
                && record.model_id == model_hex,
            "its key or embedding does not match the commitments on chain"
        );
        record.commit_epoch = a.commit_epoch;
        Ok((key, record))
    };
    let (key, record) = opened().with_context(|| {
        format!(
            "model {} has a commit awaiting reveal that {} holds no record of, and its \
             escrow {url} cannot restore it",
            model.id,
            key_dir.display()
        )
    })?;
    soma_flow_engine::store::private_dir(key_dir)?;
    write_private(
        &record.key_path(key_dir),
        hex::encode(key.expose_bytes()).as_bytes(),
    )?;
    write_private(
        &record_path(key_dir, &model_hex, record.key_commitment),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    Ok((record, key))
}

/// The signer's models that are not Inactive, in registry order.
pub fn own_models<'m>(models: &'m [ModelInfo], owner: &SomaAddress) -> Vec<&'m ModelInfo> {
    models
        .iter()
        .filter(|m| m.owner == *owner && m.state != "inactive")
        .collect()
}

/// The owner's commit that can still be revealed (of the models `which` admits), rebuilt
/// from the network and the key folder, or from the commit's escrow when `signer` (the
/// owner's key) is given; `None` when there is none.
pub fn pending_record(
    net: &Network,
    owner: &SomaAddress,
    which: &super::models::Selection,
    signer: Option<&SecretKey>,
    key_dir: &Path,
) -> Result<Option<CommitRecord>> {
    let info = net.epoch()?;
    let mine = own_models(&info.system.models, owner);
    for model in mine.into_iter().filter(|m| which.admits(&m.id)) {
        let Some(a) = awaiting(model).filter(|a| still_revealable(a.commit_epoch, info.epoch))
        else {
            continue;
        };
        let record = match (kept_record(key_dir, &model.id, a.key_commitment), signer) {
            (Some(record), _) => record,
            (None, Some(signer)) => recover(net, signer, model, &a, key_dir)?.0,
            (None, None) => bail!(
                "model {} has a commit awaiting reveal, but {} holds no record of it",
                model.id,
                key_dir.display()
            ),
        };
        return Ok(Some(record));
    }
    Ok(None)
}

/// What the first commit creates the model with.
#[derive(Debug, Clone, Copy)]
pub struct ModelTerms {
    /// Shannons; `None`: the chain's minimum model stake.
    pub stake: Option<u64>,
    /// Basis points.
    pub commission_bps: u64,
}

/// Where the ciphertext goes: uploaded under `upload`, announced in the manifest
/// under `public` (the same place unless validators read it from elsewhere).
#[derive(Debug, Clone)]
pub struct Upload {
    pub upload: String,
    pub public: String,
}

/// How an owner publishes: the terms of a model the first commit creates, where
/// ciphertexts go, and where keys wait for their reveal.
#[derive(Debug, Clone)]
pub struct Publish {
    /// Which of the signer's models to commit to ([`super::models`]: a `New` one is
    /// created with `terms`); `None`: the signer's first model, created if it has none.
    pub model: Option<super::models::Named>,
    pub terms: ModelTerms,
    pub upload: Upload,
    pub key_dir: PathBuf,
}

/// Commits `weights_path` with `embedding` for the signer's model (created with
/// `publish.terms` on first use). Refuses up front what the chain would reject: the wrong
/// architecture version or embedding length, a commit still awaiting its reveal,
/// too little balance. If the network already holds a live commit of exactly these
/// weights and this embedding (its key kept in the key folder), that commit's record
/// is returned and nothing is sent.
pub fn commit(
    net: &Network,
    key: &SecretKey,
    weights_path: &Path,
    embedding: &[f32],
    publish: &Publish,
    progress: ProgressFn<'_>,
) -> Result<CommitRecord> {
    let (terms, upload, key_dir) = (&publish.terms, &publish.upload, publish.key_dir.as_path());
    let info = net.epoch()?;
    let params = &info.system.parameters;
    if params.model_architecture_version != ARCHITECTURE_VERSION {
        bail!(
            "{} demands model architecture version {}; soma-flow builds version {ARCHITECTURE_VERSION} (V1)",
            net.endpoint,
            params.model_architecture_version
        );
    }
    if embedding.len() as u64 != params.target_embedding_dim {
        bail!(
            "the embedding has {} values, but {}'s target_embedding_dim is {}",
            embedding.len(),
            net.endpoint,
            params.target_embedding_dim
        );
    }
    if !embedding.iter().all(|v| v.is_finite()) {
        bail!("the embedding holds a value that is not finite");
    }
    let owner = key.address();
    let embedding_commitment = hash(embedding_commitment(embedding)?);
    let mine = own_models(&info.system.models, &owner);
    let model = match &publish.model {
        None => mine.first().copied(),
        Some(super::models::Named::New) => None,
        Some(super::models::Named::Model(id)) => Some(
            mine.iter()
                .copied()
                .find(|m| m.id == *id)
                .with_context(|| format!("model {id} is not the signer's, or is inactive"))?,
        ),
    };
    // The plaintext is hashed only to recognise a record kept for the same weights;
    // a new commit hashes it while uploading.
    let mut plaintext: Option<Hash256> = None;
    let mut same = |r: &CommitRecord| -> Result<bool> {
        if r.embedding_commitment != embedding_commitment {
            return Ok(false);
        }
        let weights = match plaintext {
            Some(h) => h,
            None => *plaintext.insert(
                hash_file(weights_path)
                    .with_context(|| format!("cannot read weights {}", weights_path.display()))?
                    .input,
            ),
        };
        Ok(r.weights == weights)
    };
    if let Some(m) = model {
        if let Some(a) = awaiting(m).filter(|a| still_revealable(a.commit_epoch, info.epoch)) {
            if let Some(record) = kept_record(key_dir, &m.id, a.key_commitment) {
                if same(&record)? && load_key(&record.key_path(key_dir)).is_ok() {
                    return Ok(record);
                }
            }
            bail!(
                "model {} already has a commit from epoch {} awaiting its reveal in epoch {}: \
                 reveal it (the `reveal` stage) before committing again",
                m.id,
                a.commit_epoch,
                a.commit_epoch + 1
            );
        }
        let revealed = m.decryption_key_commitment.filter(|_| m.state == "active");
        if let Some(record) = revealed.and_then(|k| kept_record(key_dir, &m.id, k)) {
            if same(&record)? {
                return Ok(record);
            }
        }
    }

    // What the transactions will take from the gas coin.
    let stake = terms.stake.unwrap_or(params.model_min_stake);
    let create_cost = model.map_or(params.create_model_cost(stake), |_| 0);
    net.ensure_balance(&owner, create_cost + params.small_cost(), "this commit")?;
    let model_id = match model {
        Some(m) => m.id,
        None => {
            progress(&format!("creating a model (stake {})", super::soma(stake)));
            net.block_on(net.client.create_model(key, stake, terms.commission_bps))
                .context("cannot create the model")?
                .0
        }
    };

    let decryption_key = DecryptionKey::generate()?;
    let key_commitment = hash(decryption_key.commitment());
    let model_hex = model_id.to_hex();
    // The key is on disk before anything is published, so a crash can never leave a
    // commit its owner is unable to reveal.
    let key_file = key_path(key_dir, &model_hex, key_commitment);
    write_private(
        &key_file,
        hex::encode(decryption_key.expose_bytes()).as_bytes(),
    )?;
    let name = format!("{}/{}.bin", model_hex, &key_commitment.to_hex()[..16]);
    progress(&format!("encrypting and uploading to {}", upload.upload));
    let sent = net.block_on(storage::upload(
        weights_path,
        &storage::join_url(&upload.upload, &name),
        CtrStream::keyed(&decryption_key),
    ))?;
    if plaintext.is_some_and(|h| h != sent.input) {
        bail!(
            "{} changed while it was being committed; commit again",
            weights_path.display()
        );
    }
    let url = storage::join_url(&upload.public, &name);
    let manifest = Manifest::new(&url, Digest(sent.output.0), sent.size)?;
    let mut record = CommitRecord {
        model_id: model_hex.clone(),
        owner: owner.to_string(),
        commit_epoch: info.epoch,
        url: manifest.url().to_string(),
        checksum: sent.output,
        size: sent.size,
        weights: sent.input,
        embedding_commitment,
        key_commitment,
        embedding: embedding.to_vec(),
        digest: None,
    };
    let record_file = record_path(key_dir, &model_hex, key_commitment);
    write_private(&record_file, &serde_json::to_vec_pretty(&record)?)?;
    escrow(
        net,
        key,
        &decryption_key,
        &record,
        &storage::join_url(&upload.upload, &name),
    )?;
    let executed = net
        .block_on(net.client.commit_model(
            key,
            &model_id,
            &manifest,
            digest(sent.output),
            digest(embedding_commitment),
            decryption_key.commitment(),
        ))
        .context("the commit was not accepted")?;
    // The epoch it landed in, as the chain recorded it.
    let after = net.epoch()?;
    record.commit_epoch = after
        .system
        .model(&model_id)
        .and_then(awaiting)
        .filter(|a| a.key_commitment == decryption_key.commitment())
        .map_or(after.epoch, |a| a.commit_epoch);
    record.digest = Some(executed.digest.to_base58());
    write_private(&record_file, &serde_json::to_vec_pretty(&record)?)?;
    Ok(record)
}

/// Reveals `record`'s key and embedding if this is its reveal epoch.
pub fn reveal(
    net: &Network,
    key: &SecretKey,
    record: &CommitRecord,
    key_dir: &Path,
) -> Result<RevealOutcome> {
    let info = net.epoch()?;
    match record.status(&info.system.models, info.epoch)? {
        RecordStatus::AwaitingReveal {
            current_epoch,
            reveal_epoch,
        } if current_epoch < reveal_epoch => Ok(RevealOutcome::NotYet {
            from_epoch: reveal_epoch,
        }),
        RecordStatus::AwaitingReveal { .. } => {
            let decryption_key = match load_key(&record.key_path(key_dir)) {
                Ok(decryption_key) => decryption_key,
                // A machine without the key folder: the commit's escrow.
                Err(missing) => {
                    let model = info.system.model(&record.model()?);
                    match model.and_then(|m| awaiting(m).map(|a| (m, a))) {
                        Some((model, a)) => recover(net, key, model, &a, key_dir)?.1,
                        None => return Err(missing),
                    }
                }
            };
            net.block_on(net.client.reveal_model(
                key,
                &record.model()?,
                &decryption_key,
                &record.embedding,
            ))
            .with_context(|| format!("the reveal of model {} was not accepted", record.model_id))?;
            Ok(RevealOutcome::Revealed { epoch: info.epoch })
        }
        RecordStatus::Revealed { reveal_epoch } => Ok(RevealOutcome::AlreadyRevealed {
            epoch: reveal_epoch,
        }),
        RecordStatus::Missed {
            commit_epoch,
            current_epoch,
        } => Ok(RevealOutcome::Missed {
            commit_epoch,
            current_epoch,
        }),
        RecordStatus::Superseded => bail!(
            "the commit of model {} from epoch {} is no longer on the network (a newer commit \
             replaced it)",
            record.model_id,
            record.commit_epoch
        ),
    }
}

/// A revealed model anyone can fetch: its manifest, key and embedding.
#[derive(Debug, Clone)]
pub struct Revealed {
    pub id: ObjectID,
    pub owner: SomaAddress,
    pub manifest: Manifest,
    pub key: DecryptionKey,
    pub embedding: Vec<f32>,
}

impl Revealed {
    /// `model`'s revealed weights, if it is Active.
    pub fn of(model: &ModelInfo) -> Option<Self> {
        (model.state == "active").then_some(())?;
        Some(Self {
            id: model.id,
            owner: model.owner,
            manifest: model.manifest.clone()?,
            key: DecryptionKey::from_bytes(model.decryption_key?),
            embedding: model.embedding.clone(),
        })
    }
}

/// A judge of downloaded bytes: `Err` says why they are not the ones wanted.
pub type Check<'a> = &'a dyn Fn(&Path) -> Result<()>;

/// What a manifest's bytes are, for the fullnode's fallback path.
#[derive(Debug, Clone, Copy)]
pub enum Blob {
    /// A model's encrypted weights: `/model/{id}`.
    Model(ObjectID),
    /// A filled target's winning data: `/data/{target id}`.
    Data(ObjectID),
}

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blob::Model(id) => write!(f, "model {id}"),
            Blob::Data(id) => write!(f, "the data of target {id}"),
        }
    }
}

/// Downloads the bytes `manifest` names into `dest` (ranged and resumable): from its
/// URL, or, failing that, from the fullnode's `/model/{id}` or `/data/{id}` (§8).
/// The size is checked before a byte comes. `decrypting`, when given, decrypts the
/// bytes as they arrive and checks the ciphertext's hash against the manifest;
/// `check`, when given, judges the file; either way a corrupt copy at the URL falls
/// back too.
pub fn download_blob(
    net: &Network,
    manifest: &Manifest,
    blob: Blob,
    dest: &Path,
    mut decrypting: Option<&mut Decrypting<'_>>,
    check: Option<Check<'_>>,
    progress: ProgressFn<'_>,
) -> Result<()> {
    let size = manifest.size();
    let direct = manifest.url().to_string();
    let (route, id) = match blob {
        Blob::Model(id) => ("model", id),
        Blob::Data(id) => ("data", id),
    };
    let rpc = net.client.rpc_url().trim_end_matches('/').to_owned();
    let fallback = format!("{rpc}/{route}/{}", id.to_hex());
    let mut failures = Vec::new();
    for url in [&direct, &fallback] {
        let through = decrypting.as_deref_mut().map(|d| d as &mut dyn Through);
        let got = download_object(url, Some(size), dest, through, progress)
            .map_err(anyhow::Error::from)
            .and_then(|_| match decrypting.as_deref().map(Decrypting::checksum) {
                Some(got) if got.0 != manifest.checksum().0 => bail!(
                    "its Blake2b-256 is {got}, but the manifest says {}",
                    hex::encode(manifest.checksum().0)
                ),
                _ => check.map_or(Ok(()), |check| check(dest)),
            });
        let Err(e) = got else { return Ok(()) };
        let _ = std::fs::remove_file(dest);
        if url == &direct {
            progress(&format!("{direct}: {e:#}; trying {fallback}"));
        }
        failures.push(format!("{url}: {e:#}"));
    }
    bail!("cannot download {blob}: {}", failures.join("; "))
}

/// Downloads a revealed model's ciphertext from its manifest URL, or, failing that,
/// from the fullnode's `/model/{id}`, decrypting it as it arrives (ranged and
/// resumable: the plaintext so far waits beside `dest`), checks its size and
/// checksum, and writes `dest` only when every check passed.
pub fn fetch(net: &Network, model: &Revealed, dest: &Path, progress: ProgressFn<'_>) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    let staged = dir.join(format!(
        ".fetch-{}",
        hex::encode(model.manifest.checksum().0)
    ));
    let mut decrypting = Decrypting::new(&model.key);
    download_blob(
        net,
        &model.manifest,
        Blob::Model(model.id),
        &staged,
        Some(&mut decrypting),
        None,
        progress,
    )?;
    std::fs::rename(&staged, dest)
        .with_context(|| format!("cannot move the fetched model to {}", dest.display()))?;
    Ok(())
}
