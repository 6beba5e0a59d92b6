//! `Transaction`, its kinds and user signatures (§2.7).
//!
//! The `TransactionKind` oneof keeps every arm number of §2.7. The arms whose
//! messages §2.7 describes are typed; the others (system and validator kinds,
//! and the rejected challenge arms) are carried as their encoded bytes.

use super::common::{Manifest, ObjectReference, SubmissionManifest};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Transaction {
    /// Base58 digest; ignored by the server, needed by the SDK to wait.
    #[prost(string, optional, tag = "1")]
    pub digest: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub kind: Option<TransactionKind>,
    #[prost(string, optional, tag = "3")]
    pub sender: Option<String>,
    #[prost(message, repeated, tag = "4")]
    pub gas_payment: Vec<ObjectReference>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TransactionKind {
    #[prost(
        oneof = "transaction_kind::Kind",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33"
    )]
    pub kind: Option<transaction_kind::Kind>,
}

pub mod transaction_kind {
    use super::*;

    /// Proto field numbers, which are not the BCS variant indices.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(bytes, tag = "1")]
        Genesis(Vec<u8>),
        #[prost(bytes, tag = "2")]
        ConsensusCommitPrologue(Vec<u8>),
        #[prost(bytes, tag = "3")]
        ChangeEpoch(Vec<u8>),
        #[prost(bytes, tag = "4")]
        AddValidator(Vec<u8>),
        #[prost(bytes, tag = "5")]
        RemoveValidator(Vec<u8>),
        #[prost(bytes, tag = "6")]
        ReportValidator(Vec<u8>),
        #[prost(bytes, tag = "7")]
        UndoReportValidator(Vec<u8>),
        #[prost(bytes, tag = "8")]
        UpdateValidatorMetadata(Vec<u8>),
        #[prost(bytes, tag = "9")]
        SetCommissionRate(Vec<u8>),
        #[prost(message, tag = "10")]
        TransferCoin(TransferCoin),
        #[prost(message, tag = "11")]
        PayCoins(PayCoins),
        #[prost(bytes, tag = "12")]
        TransferObjects(Vec<u8>),
        #[prost(bytes, tag = "13")]
        AddStake(Vec<u8>),
        #[prost(bytes, tag = "14")]
        WithdrawStake(Vec<u8>),
        #[prost(message, tag = "33")]
        CreateModel(CreateModel),
        #[prost(message, tag = "15")]
        CommitModel(CommitModel),
        #[prost(message, tag = "16")]
        RevealModel(RevealModel),
        #[prost(message, tag = "19")]
        AddStakeToModel(AddStakeToModel),
        #[prost(message, tag = "20")]
        SetModelCommissionRate(SetModelCommissionRate),
        #[prost(message, tag = "21")]
        DeactivateModel(DeactivateModel),
        #[prost(bytes, tag = "22")]
        ReportModel(Vec<u8>),
        #[prost(bytes, tag = "23")]
        UndoReportModel(Vec<u8>),
        #[prost(message, tag = "24")]
        SubmitData(SubmitData),
        #[prost(message, tag = "25")]
        ClaimRewards(ClaimRewards),
        /// Rejected by the server.
        #[prost(bytes, tag = "26")]
        InitiateChallenge(Vec<u8>),
        #[prost(bytes, tag = "28")]
        ReportSubmission(Vec<u8>),
        #[prost(bytes, tag = "29")]
        UndoReportSubmission(Vec<u8>),
        /// Rejected by the server.
        #[prost(bytes, tag = "30")]
        ReportChallenge(Vec<u8>),
        /// Rejected by the server.
        #[prost(bytes, tag = "31")]
        UndoReportChallenge(Vec<u8>),
        /// Rejected by the server.
        #[prost(bytes, tag = "32")]
        ClaimChallengeBond(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CreateModel {
    /// Shannons.
    #[prost(uint64, optional, tag = "1")]
    pub stake_amount: Option<u64>,
    /// Basis points.
    #[prost(uint64, optional, tag = "2")]
    pub commission_rate: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub architecture_version: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CommitModel {
    #[prost(string, optional, tag = "1")]
    pub model_id: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub manifest: Option<Manifest>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub weights_commitment: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub embedding_commitment: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub decryption_key_commitment: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RevealModel {
    #[prost(string, optional, tag = "1")]
    pub model_id: Option<String>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub decryption_key: Option<Vec<u8>>,
    #[prost(float, repeated, tag = "3")]
    pub embedding: Vec<f32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AddStakeToModel {
    #[prost(string, optional, tag = "1")]
    pub model_id: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub coin_ref: Option<ObjectReference>,
    /// Absent: the whole coin.
    #[prost(uint64, optional, tag = "3")]
    pub amount: Option<u64>,
}

/// Field 2 was removed; BCS orders the fields differently (§3.3).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubmitData {
    #[prost(string, optional, tag = "1")]
    pub target_id: Option<String>,
    #[prost(message, optional, tag = "3")]
    pub data_manifest: Option<SubmissionManifest>,
    #[prost(string, optional, tag = "4")]
    pub model_id: Option<String>,
    #[prost(float, repeated, tag = "5")]
    pub embedding: Vec<f32>,
    #[prost(float, optional, tag = "6")]
    pub distance_score: Option<f32>,
    #[prost(message, optional, tag = "7")]
    pub bond_coin: Option<ObjectReference>,
    #[prost(float, repeated, tag = "8")]
    pub loss_score: Vec<f32>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ClaimRewards {
    #[prost(string, optional, tag = "1")]
    pub target_id: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SetModelCommissionRate {
    #[prost(string, optional, tag = "1")]
    pub model_id: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub new_rate: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeactivateModel {
    #[prost(string, optional, tag = "1")]
    pub model_id: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TransferCoin {
    #[prost(message, optional, tag = "1")]
    pub coin: Option<ObjectReference>,
    #[prost(uint64, optional, tag = "2")]
    pub amount: Option<u64>,
    #[prost(string, optional, tag = "3")]
    pub recipient: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PayCoins {
    #[prost(message, repeated, tag = "1")]
    pub coins: Vec<ObjectReference>,
    #[prost(uint64, repeated, tag = "2")]
    pub amounts: Vec<u64>,
    #[prost(string, repeated, tag = "3")]
    pub recipients: Vec<String>,
}

/// `scheme` must be present (ED25519 = 0) and the signature `simple`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UserSignature {
    #[prost(enumeration = "SignatureScheme", optional, tag = "1")]
    pub scheme: Option<i32>,
    #[prost(oneof = "user_signature::Signature", tags = "2, 3")]
    pub signature: Option<user_signature::Signature>,
}

pub mod user_signature {
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Signature {
        #[prost(message, tag = "2")]
        Simple(super::SimpleSignature),
        /// Not described by §2.7; kept as its encoded bytes.
        #[prost(bytes, tag = "3")]
        Multisig(Vec<u8>),
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SimpleSignature {
    #[prost(enumeration = "SignatureScheme", optional, tag = "1")]
    pub scheme: Option<i32>,
    /// 64 bytes.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signature: Option<Vec<u8>>,
    /// 32 bytes.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub public_key: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SignatureScheme {
    Ed25519 = 0,
    Bls12381 = 1,
    Multisig = 2,
}

impl From<&crate::signing::UserSignature> for UserSignature {
    /// The wire form of a flat Ed25519 signature (§4 step 4).
    fn from(flat: &crate::signing::UserSignature) -> Self {
        let scheme = Some(SignatureScheme::Ed25519 as i32);
        Self {
            scheme,
            signature: Some(user_signature::Signature::Simple(SimpleSignature {
                scheme,
                signature: Some(flat.signature().to_vec()),
                public_key: Some(flat.public_key().0.to_vec()),
            })),
        }
    }
}
