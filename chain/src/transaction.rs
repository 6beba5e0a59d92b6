//! The signed transaction payload (§3.2, §3.3): `TransactionData`, every
//! `TransactionKind` variant in declaration order, the transaction digest, and the
//! object ids a transaction derives from it (§3.7).
//!
//! BCS encodes an enum variant by its declaration index, so the variants below
//! must stay complete and in order even where soma-flow never builds them: a
//! missing one would shift CreateModel (14) and everything after it.

use serde::{Deserialize, Serialize};

use crate::base::{blake2b256, Digest, ObjectID, ObjectRef, SomaAddress, TransactionDigest};
use crate::crypto::DecryptionKey;
use crate::error::Result;
use crate::manifest::{Manifest, SubmissionManifest};
use crate::object::ObjectInner;
use crate::tensor::SomaTensor;

/// `enum TransactionData { V1(TransactionDataV1) }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TransactionData {
    V1(TransactionDataV1),
}

/// No gas price, budget or expiration: fees are fixed by the protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransactionDataV1 {
    pub kind: TransactionKind,
    pub sender: SomaAddress,
    pub gas_payment: Vec<ObjectRef>,
}

/// All kinds, in the order that fixes their BCS variant index (shown on each).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TransactionKind {
    /// 0
    Genesis { objects: Vec<ObjectInner> },
    /// 1, system only. SOMA-RPC.md gives no fields; this layout was found by
    /// probing the 0.1.15 wheel (see tests/reference/make_vectors.py). The field
    /// names are Sui's.
    ConsensusCommitPrologueV1 {
        epoch: u64,
        round: u64,
        sub_dag_index: Option<u64>,
        commit_timestamp_ms: u64,
        consensus_commit_digest: Digest,
        additional_state_digest: Digest,
    },
    /// 2
    ChangeEpoch {
        epoch: u64,
        epoch_start_timestamp_ms: u64,
        protocol_version: u64,
        fees: u64,
        epoch_randomness: Vec<u8>,
    },
    /// 3
    AddValidator {
        pubkey_bytes: Vec<u8>,
        network_pubkey_bytes: Vec<u8>,
        worker_pubkey_bytes: Vec<u8>,
        proof_of_possession: Vec<u8>,
        net_address: Vec<u8>,
        p2p_address: Vec<u8>,
        primary_address: Vec<u8>,
        proxy_address: Vec<u8>,
    },
    /// 4
    RemoveValidator { pubkey_bytes: Vec<u8> },
    /// 5
    ReportValidator { reportee: SomaAddress },
    /// 6
    UndoReportValidator { reportee: SomaAddress },
    /// 7
    UpdateValidatorMetadata {
        next_epoch_network_address: Option<Vec<u8>>,
        next_epoch_p2p_address: Option<Vec<u8>>,
        next_epoch_primary_address: Option<Vec<u8>>,
        next_epoch_proxy_address: Option<Vec<u8>>,
        next_epoch_protocol_pubkey: Option<Vec<u8>>,
        next_epoch_worker_pubkey: Option<Vec<u8>>,
        next_epoch_network_pubkey: Option<Vec<u8>>,
        next_epoch_proof_of_possession: Option<Vec<u8>>,
    },
    /// 8
    SetCommissionRate { new_rate: u64 },
    /// 9
    TransferCoin {
        coin: ObjectRef,
        amount: Option<u64>,
        recipient: SomaAddress,
    },
    /// 10
    PayCoins {
        coins: Vec<ObjectRef>,
        amounts: Option<Vec<u64>>,
        recipients: Vec<SomaAddress>,
    },
    /// 11
    TransferObjects {
        objects: Vec<ObjectRef>,
        recipient: SomaAddress,
    },
    /// 12
    AddStake {
        address: SomaAddress,
        coin_ref: ObjectRef,
        amount: Option<u64>,
    },
    /// 13
    WithdrawStake { staked_soma: ObjectRef },
    /// 14
    CreateModel {
        stake_amount: u64,
        commission_rate: u64,
        architecture_version: u64,
    },
    /// 15
    CommitModel {
        model_id: ObjectID,
        manifest: Manifest,
        weights_commitment: Digest,
        embedding_commitment: Digest,
        decryption_key_commitment: Digest,
    },
    /// 16
    RevealModel {
        model_id: ObjectID,
        decryption_key: DecryptionKey,
        embedding: SomaTensor,
    },
    /// 17. `amount: None` stakes the whole coin.
    AddStakeToModel {
        model_id: ObjectID,
        coin_ref: ObjectRef,
        amount: Option<u64>,
    },
    /// 18
    SetModelCommissionRate { model_id: ObjectID, new_rate: u64 },
    /// 19
    DeactivateModel { model_id: ObjectID },
    /// 20
    ReportModel { model_id: ObjectID },
    /// 21
    UndoReportModel { model_id: ObjectID },
    /// 22. BCS puts `loss_score` before `bond_coin` (the proto numbering differs).
    SubmitData {
        target_id: ObjectID,
        data_manifest: SubmissionManifest,
        model_id: ObjectID,
        embedding: SomaTensor,
        distance_score: SomaTensor,
        loss_score: SomaTensor,
        bond_coin: ObjectRef,
    },
    /// 23
    ClaimRewards { target_id: ObjectID },
    /// 24
    ReportSubmission { target_id: ObjectID },
    /// 25
    UndoReportSubmission { target_id: ObjectID },
}

impl TransactionKind {
    /// The variant's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            TransactionKind::Genesis { .. } => "Genesis",
            TransactionKind::ConsensusCommitPrologueV1 { .. } => "ConsensusCommitPrologueV1",
            TransactionKind::ChangeEpoch { .. } => "ChangeEpoch",
            TransactionKind::AddValidator { .. } => "AddValidator",
            TransactionKind::RemoveValidator { .. } => "RemoveValidator",
            TransactionKind::ReportValidator { .. } => "ReportValidator",
            TransactionKind::UndoReportValidator { .. } => "UndoReportValidator",
            TransactionKind::UpdateValidatorMetadata { .. } => "UpdateValidatorMetadata",
            TransactionKind::SetCommissionRate { .. } => "SetCommissionRate",
            TransactionKind::TransferCoin { .. } => "TransferCoin",
            TransactionKind::PayCoins { .. } => "PayCoins",
            TransactionKind::TransferObjects { .. } => "TransferObjects",
            TransactionKind::AddStake { .. } => "AddStake",
            TransactionKind::WithdrawStake { .. } => "WithdrawStake",
            TransactionKind::CreateModel { .. } => "CreateModel",
            TransactionKind::CommitModel { .. } => "CommitModel",
            TransactionKind::RevealModel { .. } => "RevealModel",
            TransactionKind::AddStakeToModel { .. } => "AddStakeToModel",
            TransactionKind::SetModelCommissionRate { .. } => "SetModelCommissionRate",
            TransactionKind::DeactivateModel { .. } => "DeactivateModel",
            TransactionKind::ReportModel { .. } => "ReportModel",
            TransactionKind::UndoReportModel { .. } => "UndoReportModel",
            TransactionKind::SubmitData { .. } => "SubmitData",
            TransactionKind::ClaimRewards { .. } => "ClaimRewards",
            TransactionKind::ReportSubmission { .. } => "ReportSubmission",
            TransactionKind::UndoReportSubmission { .. } => "UndoReportSubmission",
        }
    }
}

impl TransactionData {
    pub fn new(kind: TransactionKind, sender: SomaAddress, gas_payment: Vec<ObjectRef>) -> Self {
        Self::V1(TransactionDataV1 {
            kind,
            sender,
            gas_payment,
        })
    }

    pub fn v1(&self) -> &TransactionDataV1 {
        match self {
            Self::V1(v1) => v1,
        }
    }

    pub fn to_bcs(&self) -> Result<Vec<u8>> {
        Ok(bcs::to_bytes(self)?)
    }

    /// Decodes BCS, rejecting truncated input, trailing bytes and bad values.
    pub fn from_bcs(bytes: &[u8]) -> Result<Self> {
        Ok(bcs::from_bytes(bytes)?)
    }

    /// `Blake2b-256("TransactionData::" ‖ BCS)`, shown in Base58.
    pub fn digest(&self) -> Result<TransactionDigest> {
        Ok(transaction_digest(&self.to_bcs()?))
    }
}

/// The digest of already-encoded `TransactionData`.
pub fn transaction_digest(tx_bcs: &[u8]) -> TransactionDigest {
    Digest(blake2b256(&[b"TransactionData::", tx_bcs]))
}

/// The id of the `creation_num`-th object created by a transaction:
/// `Blake2b-256(tx_digest ‖ creation_num u64 LE)`. CreateModel derives the model
/// id (0), its staking pool (1) and the StakedSoma (2).
pub fn derive_id(tx_digest: &TransactionDigest, creation_num: u64) -> ObjectID {
    ObjectID(blake2b256(&[&tx_digest.0, &creation_num.to_le_bytes()]))
}

/// The model id a CreateModel transaction with this digest creates.
pub fn model_id(create_digest: &TransactionDigest) -> ObjectID {
    derive_id(create_digest, 0)
}

/// `make_target_seed`: the first 8 bytes of `derive_id(d, n)` as u64 LE.
pub fn target_seed(tx_digest: &TransactionDigest, creation_num: u64) -> u64 {
    let id = derive_id(tx_digest, creation_num).0;
    u64::from_le_bytes([id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7]])
}
