//! What the `commit` and `reveal` stage kinds do, on any [`Network`]: encrypt and
//! upload weights, commit, later reveal in exactly the next epoch, and fetch other
//! owners' revealed weights. Both steps are idempotent so that a re-run workflow
//! neither commits twice nor fails on an already revealed commit.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    Commitments, Epoch, Manifest, ModelId, ModelInfo, Network, NetworkError, PendingCommit,
    RevealedCommit,
};
use crate::crypto::{hash_file, ContentKey, CtrStream, Hash256, KeyError, StreamDigests};
use crate::identity::{PublicKey, Signer};
use crate::storage::{self, StorageError};

/// Stake and commission used when the first commit has to create the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTerms {
    pub stake: u64,
    pub commission_bps: u16,
}

/// What a commit produced; the reveal step needs it (and the key file in `key_dir`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub model_id: ModelId,
    pub commit_epoch: Epoch,
    pub manifest: Manifest,
    pub commitments: Commitments,
    /// Revealed alongside the key; kept here so the reveal can be re-run on its own.
    pub embedding: Vec<f32>,
}

/// Where a [`CommitRecord`] stands on the network now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordStatus {
    AwaitingReveal {
        current_epoch: Epoch,
        reveal_epoch: Epoch,
    },
    Revealed {
        reveal_epoch: Epoch,
    },
    /// The reveal window passed; only a new commit can publish these weights.
    Missed {
        commit_epoch: Epoch,
        current_epoch: Epoch,
    },
    /// The network holds another commit for the model (a newer one, or none).
    Superseded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevealOutcome {
    /// Still the commit epoch; try again from `from_epoch`.
    NotYet {
        from_epoch: Epoch,
    },
    Revealed {
        epoch: Epoch,
    },
    AlreadyRevealed {
        epoch: Epoch,
    },
    Missed {
        commit_epoch: Epoch,
        current_epoch: Epoch,
    },
}

impl fmt::Display for RevealOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotYet { from_epoch } => write!(
                f,
                "not revealable yet: the reveal window is epoch {from_epoch}"
            ),
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

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read weights {path}: {source}")]
    Weights {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the embedding must be non-empty and finite")]
    InvalidEmbedding,
    #[error("{0} changed while it was being committed; commit again")]
    WeightsChanged(PathBuf),
    #[error(
        "the commit of model {model_id} from epoch {commit_epoch} is no longer on the network \
         (a newer commit replaced it)"
    )]
    Superseded {
        model_id: ModelId,
        commit_epoch: Epoch,
    },
    #[error("cannot write {path}: {source}")]
    KeyDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "model {model_id} has a commit awaiting reveal, but {} is missing: it was committed \
         with another key directory (keep the store's keys/ between scheduled runs)",
        path.display()
    )]
    NoLocalCommit { model_id: ModelId, path: PathBuf },
    #[error("model {0} has no revealed weights")]
    NotRevealed(ModelId),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Where the decryption key of a commit is kept until its reveal.
pub fn key_path(key_dir: &Path, model_id: ModelId, commitments: &Commitments) -> PathBuf {
    key_dir.join(format!("model-{model_id}-{}.key", commitments.key))
}

/// Where the embedding of a commit is kept beside its key, so that the commit can be
/// revealed from the key directory and the network alone (a scheduled job that
/// reveals in the epoch after the run that committed).
fn embedding_path(key_dir: &Path, model_id: ModelId, commitments: &Commitments) -> PathBuf {
    key_dir.join(format!(
        "model-{model_id}-{}.embedding.json",
        commitments.key
    ))
}

/// The model of `owner` with a commit that can still be revealed (now or from the
/// next epoch), and that commit.
pub fn revealable_commit(
    network: &dyn Network,
    owner: &PublicKey,
) -> Result<Option<(ModelId, PendingCommit)>, NetworkError> {
    let current_epoch = network.current_epoch()?;
    Ok(network
        .models_owned_by(owner)?
        .into_iter()
        .find_map(|model| {
            let pending = model
                .pending
                .filter(|p| p.still_revealable(current_epoch))?;
            Some((model.id, pending))
        }))
}

/// The signer's revealable commit ([`revealable_commit`]) as a record, rebuilt from
/// the network and the key directory; `None` when there is none.
pub fn pending_record(
    network: &dyn Network,
    signer: &Signer,
    key_dir: &Path,
) -> Result<Option<CommitRecord>, LifecycleError> {
    let Some((model_id, p)) = revealable_commit(network, &signer.public_key())? else {
        return Ok(None);
    };
    let path = embedding_path(key_dir, model_id, &p.commitments);
    let embedding = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(LifecycleError::NoLocalCommit { model_id, path })?;
    Ok(Some(CommitRecord {
        model_id,
        commit_epoch: p.commit_epoch,
        manifest: p.manifest,
        commitments: p.commitments,
        embedding,
    }))
}

/// The ciphertext's object name under the storage URL; unique per commit.
fn object_name(model_id: ModelId, commitments: &Commitments) -> String {
    let key_tag = &commitments.key.to_hex()[..16];
    format!("model-{model_id}/{}-{key_tag}.bin", commitments.weights)
}

impl CommitRecord {
    pub fn key_path(&self, key_dir: &Path) -> PathBuf {
        key_path(key_dir, self.model_id, &self.commitments)
    }

    /// Re-checks this record against the network.
    pub fn check(&self, network: &dyn Network) -> Result<RecordStatus, NetworkError> {
        let model = network.model(self.model_id)?;
        let current_epoch = network.current_epoch()?;
        let is_this = |epoch, commitments: &Commitments| {
            epoch == self.commit_epoch && *commitments == self.commitments
        };
        if let Some(r) = model
            .revealed
            .filter(|r| is_this(r.commit_epoch, &r.commitments))
        {
            return Ok(RecordStatus::Revealed {
                reveal_epoch: r.reveal_epoch,
            });
        }
        Ok(match model.pending {
            Some(p) if is_this(p.commit_epoch, &p.commitments) => {
                if p.still_revealable(current_epoch) {
                    RecordStatus::AwaitingReveal {
                        current_epoch,
                        reveal_epoch: p.reveal_epoch(),
                    }
                } else {
                    RecordStatus::Missed {
                        commit_epoch: p.commit_epoch,
                        current_epoch,
                    }
                }
            }
            _ => RecordStatus::Superseded,
        })
    }
}

async fn hash_weights(path: &Path) -> Result<StreamDigests, LifecycleError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || hash_file(&owned))
        .await?
        .map_err(|source| LifecycleError::Weights {
            path: path.to_owned(),
            source,
        })
}

/// Commits the weights file and embedding for the signer's model (created with
/// `terms` on first use): encrypts with a fresh key kept in `key_dir` (mode 0600),
/// uploads the ciphertext under `storage_url`, and submits manifest and commitments.
///
/// If the network already holds a live commit of exactly these weights and this
/// embedding (and its key is in `key_dir`), or has them revealed, that commit's record
/// is returned and nothing is submitted.
pub async fn commit(
    network: &dyn Network,
    signer: &Signer,
    storage_url: &str,
    weights_path: &Path,
    embedding: &[f32],
    terms: ModelTerms,
    key_dir: &Path,
) -> Result<CommitRecord, LifecycleError> {
    if embedding.is_empty() || !embedding.iter().all(|v| v.is_finite()) {
        return Err(LifecycleError::InvalidEmbedding);
    }
    let weights = hash_weights(weights_path).await?.input;
    let embedding_commitment = Hash256::of_embedding(embedding);
    let model = match network
        .models_owned_by(&signer.public_key())?
        .into_iter()
        .next()
    {
        Some(model) => model,
        None => {
            let id = network.create_model(signer, terms.stake, terms.commission_bps)?;
            network.model(id)?
        }
    };
    let current_epoch = network.current_epoch()?;
    let wanted = |c: &Commitments| c.weights == weights && c.embedding == embedding_commitment;
    let record = |commit_epoch, manifest: &Manifest, commitments: &Commitments| CommitRecord {
        model_id: model.id,
        commit_epoch,
        manifest: manifest.clone(),
        commitments: *commitments,
        embedding: embedding.to_vec(),
    };
    if let Some(p) = &model.pending {
        let key_kept = || {
            ContentKey::load(&key_path(key_dir, model.id, &p.commitments))
                .is_ok_and(|k| k.commitment() == p.commitments.key)
        };
        if wanted(&p.commitments) && p.still_revealable(current_epoch) && key_kept() {
            return Ok(record(p.commit_epoch, &p.manifest, &p.commitments));
        }
        // Refuse before uploading gigabytes that the network would then reject.
        p.blocks_new_commit(model.id, current_epoch)
            .map_err(NetworkError::from)?;
    } else if let Some(r) = model.revealed.as_ref().filter(|r| wanted(&r.commitments)) {
        return Ok(record(r.commit_epoch, &r.manifest, &r.commitments));
    }

    let key = ContentKey::generate()?;
    let commitments = Commitments {
        weights,
        embedding: embedding_commitment,
        key: key.commitment(),
    };
    // The key is on disk before anything is published, so a crash can never leave a
    // commit that its owner is unable to reveal.
    key.save(&key_path(key_dir, model.id, &commitments))?;
    let kept_embedding = embedding_path(key_dir, model.id, &commitments);
    let json = serde_json::to_vec(embedding).expect("finite floats serialise");
    crate::private_file::write(
        &kept_embedding,
        &json,
        crate::private_file::Existing::Replace,
    )
    .map_err(|source| LifecycleError::KeyDir {
        path: kept_embedding,
        source,
    })?;
    let url = storage::join_url(storage_url, &object_name(model.id, &commitments));
    let sent = storage::upload(weights_path, &url, CtrStream::keyed(&key)).await?;
    if sent.input != weights {
        return Err(LifecycleError::WeightsChanged(weights_path.to_owned()));
    }
    let manifest = Manifest {
        url,
        checksum: sent.output,
        size: sent.size,
    };
    let commit_epoch = network.commit_model(signer, model.id, manifest.clone(), commitments)?;
    Ok(record(commit_epoch, &manifest, &commitments))
}

/// Reveals `record`'s key and embedding if this is its reveal epoch.
pub fn reveal(
    network: &dyn Network,
    signer: &Signer,
    record: &CommitRecord,
    key_dir: &Path,
) -> Result<RevealOutcome, LifecycleError> {
    match record.check(network)? {
        RecordStatus::AwaitingReveal {
            current_epoch,
            reveal_epoch,
        } if current_epoch < reveal_epoch => Ok(RevealOutcome::NotYet {
            from_epoch: reveal_epoch,
        }),
        RecordStatus::AwaitingReveal { .. } => {
            let key = ContentKey::load(&record.key_path(key_dir))?;
            let epoch = network.reveal_model(signer, record.model_id, &key, &record.embedding)?;
            Ok(RevealOutcome::Revealed { epoch })
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
        RecordStatus::Superseded => Err(LifecycleError::Superseded {
            model_id: record.model_id,
            commit_epoch: record.commit_epoch,
        }),
    }
}

/// Downloads a model's revealed ciphertext, checks its size and checksum, decrypts
/// it with the revealed key and checks the weights commitment; `dest` is written only
/// if every check passes. Returns the revealed commit that was fetched.
pub async fn fetch_revealed_weights(
    model: &ModelInfo,
    dest: &Path,
) -> Result<RevealedCommit, LifecycleError> {
    let revealed = model
        .revealed
        .as_ref()
        .ok_or(LifecycleError::NotRevealed(model.id))?;
    let key = ContentKey::from_hex(&revealed.decryption_key)?;
    storage::download(
        &revealed.manifest,
        dest,
        CtrStream::keyed(&key),
        Some(revealed.commitments.weights),
    )
    .await?;
    Ok(revealed.clone())
}
