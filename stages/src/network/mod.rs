//! The SOMA network as the stages see it: epochs, models and their commit-reveal
//! lifecycle, driven by owner-signed requests. [`devnet::Devnet`] implements it
//! locally; a real chain client would implement the same [`Network`] trait.

pub mod devnet;
pub mod genesis;
pub mod lifecycle;

use serde::{Deserialize, Serialize};

use crate::crypto::{ContentKey, Hash256};
use crate::identity::{PublicKey, Signer};
pub use crate::storage::Manifest;

pub type ModelId = u64;
pub type Epoch = u64;

/// The highest commission the chain accepts: 100.00 %.
pub const MAX_COMMISSION_BPS: u16 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelState {
    /// Stake and commission registered, nothing committed yet.
    Created,
    /// Committed, never revealed.
    Pending,
    /// Revealed; may additionally carry a pending update.
    Active,
}

/// The three Blake2b-256 commitments of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitments {
    /// Hash of the plaintext weights (safetensors bytes).
    pub weights: Hash256,
    /// [`Hash256::of_embedding`] of the embedding to be revealed.
    pub embedding: Hash256,
    /// Hash of the 32 raw key bytes.
    pub key: Hash256,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCommit {
    pub commit_epoch: Epoch,
    pub manifest: Manifest,
    pub commitments: Commitments,
}

impl PendingCommit {
    /// The only epoch in which this commit may be revealed.
    pub fn reveal_epoch(&self) -> Epoch {
        self.commit_epoch + 1
    }

    /// Whether this commit can be revealed in `epoch` or a later one (it is not dead).
    pub fn still_revealable(&self, epoch: Epoch) -> bool {
        epoch <= self.reveal_epoch()
    }

    /// A commit still revealable in `epoch` blocks a new commit; a missed one is dead.
    pub fn blocks_new_commit(&self, model_id: ModelId, epoch: Epoch) -> Result<(), Rejection> {
        match self.still_revealable(epoch) {
            true => Err(Rejection::CommitAlreadyPending {
                model_id,
                commit_epoch: self.commit_epoch,
                reveal_epoch: self.reveal_epoch(),
            }),
            false => Ok(()),
        }
    }
}

/// A revealed commit: everything anyone needs to fetch and decrypt the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevealedCommit {
    pub commit_epoch: Epoch,
    pub reveal_epoch: Epoch,
    pub manifest: Manifest,
    pub commitments: Commitments,
    pub embedding: Vec<f32>,
    /// Public once revealed, as hex.
    pub decryption_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: ModelId,
    pub owner: PublicKey,
    pub stake: u64,
    pub commission_bps: u16,
    pub state: ModelState,
    /// The commit awaiting reveal: the first one (Pending) or an update (Active).
    pub pending: Option<PendingCommit>,
    /// The weights currently in force (Active only).
    pub revealed: Option<RevealedCommit>,
}

/// A request as the owner signs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    CreateModel {
        stake: u64,
        commission_bps: u16,
    },
    CommitModel {
        model_id: ModelId,
        manifest: Manifest,
        commitments: Commitments,
    },
    RevealModel {
        model_id: ModelId,
        /// Hex; revealing it is the point of this request.
        decryption_key: String,
        embedding: Vec<f32>,
    },
}

/// Prefix that keeps these signatures from being valid for any other protocol.
const SIGNING_DOMAIN: &[u8] = b"soma-flow/network-request/v1\0";

impl Request {
    /// The exact bytes signed and verified: the domain tag, then compact JSON of the
    /// request (serde emits fields in declaration order, and f32 values in their
    /// shortest round-trip form, so the encoding is deterministic).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = SIGNING_DOMAIN.to_vec();
        serde_json::to_writer(&mut bytes, self).expect("requests serialise to JSON");
        bytes
    }

    pub fn sign(self, signer: &Signer) -> SignedRequest {
        let signature = signer.sign(&self.canonical_bytes());
        SignedRequest {
            signer: signer.public_key(),
            request: self,
            signature: hex::encode(signature),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRequest {
    pub signer: PublicKey,
    pub request: Request,
    /// Ed25519 signature over [`Request::canonical_bytes`], hex.
    pub signature: String,
}

impl SignedRequest {
    pub fn verify(&self) -> Result<(), Rejection> {
        let mut signature = [0u8; 64];
        hex::decode_to_slice(&self.signature, &mut signature)
            .map_err(|_| Rejection::BadSignature)?;
        match self
            .signer
            .verify(&self.request.canonical_bytes(), &signature)
        {
            true => Ok(()),
            false => Err(Rejection::BadSignature),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    ModelCreated { model_id: ModelId },
    Committed { model_id: ModelId, epoch: Epoch },
    Revealed { model_id: ModelId, epoch: Epoch },
}

/// Why the network refused a request, in the chain's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("invalid signature: the request is not signed by the key it names")]
    BadSignature,
    #[error("model {model_id} is owned by {owner}, not by the signer {signer}")]
    NotOwner {
        model_id: ModelId,
        owner: PublicKey,
        signer: PublicKey,
    },
    #[error("unknown model {0}")]
    UnknownModel(ModelId),
    #[error("commission of {bps} bps exceeds the maximum of {MAX_COMMISSION_BPS} bps")]
    CommissionTooHigh { bps: u16 },
    #[error(
        "model {model_id} already has a commit from epoch {commit_epoch} awaiting reveal \
         in epoch {reveal_epoch}"
    )]
    CommitAlreadyPending {
        model_id: ModelId,
        commit_epoch: Epoch,
        reveal_epoch: Epoch,
    },
    #[error("model {model_id} has no pending commit to reveal")]
    NothingToReveal { model_id: ModelId },
    #[error(
        "reveal-epoch mismatch: it is epoch {current_epoch}, but model {model_id} committed \
         in epoch {commit_epoch} can only be revealed in epoch {required_epoch}"
    )]
    RevealEpochMismatch {
        model_id: ModelId,
        current_epoch: Epoch,
        commit_epoch: Epoch,
        required_epoch: Epoch,
    },
    #[error("the revealed {what} does not match its commitment")]
    CommitmentMismatch { what: &'static str },
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error(
        "epochs advance with the clock on this network ({0} each); they cannot be advanced by hand"
    )]
    EpochsAreTimed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("rejected by the network: {0}")]
    Rejected(#[from] Rejection),
    #[error("devnet ledger: {0}")]
    Ledger(#[from] rusqlite::Error),
    #[error("devnet at {dir}: {reason}")]
    Devnet { dir: String, reason: String },
}

/// A SOMA network. Methods take signed requests so that the network, not the
/// caller, decides who may do what.
pub trait Network: Send + Sync {
    fn current_epoch(&self) -> Result<Epoch, NetworkError>;

    fn models(&self) -> Result<Vec<ModelInfo>, NetworkError>;

    fn model(&self, id: ModelId) -> Result<ModelInfo, NetworkError>;

    fn submit(&self, request: &SignedRequest) -> Result<Receipt, NetworkError>;

    /// Moves to the next epoch where the network allows it (the devnet's manual mode).
    fn advance_epoch(&self) -> Result<Epoch, NetworkError>;

    fn create_model(
        &self,
        signer: &Signer,
        stake: u64,
        commission_bps: u16,
    ) -> Result<ModelId, NetworkError> {
        let request = Request::CreateModel {
            stake,
            commission_bps,
        };
        match self.submit(&request.sign(signer))? {
            Receipt::ModelCreated { model_id } => Ok(model_id),
            other => Err(unexpected(other)),
        }
    }

    /// Returns the commit epoch.
    fn commit_model(
        &self,
        signer: &Signer,
        model_id: ModelId,
        manifest: Manifest,
        commitments: Commitments,
    ) -> Result<Epoch, NetworkError> {
        let request = Request::CommitModel {
            model_id,
            manifest,
            commitments,
        };
        match self.submit(&request.sign(signer))? {
            Receipt::Committed { epoch, .. } => Ok(epoch),
            other => Err(unexpected(other)),
        }
    }

    /// Returns the reveal epoch.
    fn reveal_model(
        &self,
        signer: &Signer,
        model_id: ModelId,
        key: &ContentKey,
        embedding: &[f32],
    ) -> Result<Epoch, NetworkError> {
        let request = Request::RevealModel {
            model_id,
            decryption_key: key.expose_hex().to_string(),
            embedding: embedding.to_vec(),
        };
        match self.submit(&request.sign(signer))? {
            Receipt::Revealed { epoch, .. } => Ok(epoch),
            other => Err(unexpected(other)),
        }
    }

    /// The signer's models, oldest first.
    fn models_owned_by(&self, owner: &PublicKey) -> Result<Vec<ModelInfo>, NetworkError> {
        let mut models = self.models()?;
        models.retain(|m| m.owner == *owner);
        models.sort_by_key(|m| m.id);
        Ok(models)
    }
}

fn unexpected(receipt: Receipt) -> NetworkError {
    Rejection::Malformed(format!("unexpected receipt {receipt:?}")).into()
}

/// One row of `soma-flow devnet models`: the model's latest commit. The embedding
/// and decryption key appear only once that commit is revealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub id: ModelId,
    pub owner: PublicKey,
    pub state: ModelState,
    pub pending_update: bool,
    pub commit_epoch: Option<Epoch>,
    pub weights_url: Option<String>,
    pub checksum: Option<Hash256>,
    pub size: Option<u64>,
    pub embedding: Option<Vec<f32>>,
    pub decryption_key: Option<String>,
}

impl From<&ModelInfo> for ModelRow {
    fn from(model: &ModelInfo) -> Self {
        let mut row = ModelRow {
            id: model.id,
            owner: model.owner,
            state: model.state,
            pending_update: model.state == ModelState::Active && model.pending.is_some(),
            commit_epoch: None,
            weights_url: None,
            checksum: None,
            size: None,
            embedding: None,
            decryption_key: None,
        };
        if let Some(pending) = &model.pending {
            row.commit_epoch = Some(pending.commit_epoch);
            row.weights_url = Some(pending.manifest.url.clone());
            row.checksum = Some(pending.manifest.checksum);
            row.size = Some(pending.manifest.size);
        } else if let Some(revealed) = &model.revealed {
            row.commit_epoch = Some(revealed.commit_epoch);
            row.weights_url = Some(revealed.manifest.url.clone());
            row.checksum = Some(revealed.manifest.checksum);
            row.size = Some(revealed.manifest.size);
            row.embedding = Some(revealed.embedding.clone());
            row.decryption_key = Some(revealed.decryption_key.clone());
        }
        row
    }
}
