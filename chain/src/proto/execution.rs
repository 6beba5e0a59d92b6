//! TransactionExecutionService messages (§2.8): execute and simulate requests,
//! the executed transaction, its effects and execution errors.

use super::common::{FieldMask, Timestamp};
use super::ledger::{ObjectSet, Owner};
use super::transaction::{Transaction, UserSignature};

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecuteTransactionRequest {
    #[prost(message, optional, tag = "1")]
    pub transaction: Option<Transaction>,
    #[prost(message, repeated, tag = "2")]
    pub signatures: Vec<UserSignature>,
    /// Server default `effects`; the SDK sends `effects,balance_changes,objects`.
    #[prost(message, optional, tag = "3")]
    pub read_mask: Option<FieldMask>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecuteTransactionResponse {
    #[prost(message, optional, tag = "1")]
    pub transaction: Option<ExecutedTransaction>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SimulateTransactionRequest {
    #[prost(message, optional, tag = "1")]
    pub transaction: Option<Transaction>,
    /// Paths are prefixed `transaction.`; absent means everything.
    #[prost(message, optional, tag = "2")]
    pub read_mask: Option<FieldMask>,
    #[prost(enumeration = "TransactionChecks", optional, tag = "3")]
    pub checks: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SimulateTransactionResponse {
    #[prost(message, optional, tag = "1")]
    pub transaction: Option<ExecutedTransaction>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TransactionChecks {
    Enabled = 0,
    Disabled = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutedTransaction {
    #[prost(string, optional, tag = "1")]
    pub digest: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub transaction: Option<Transaction>,
    #[prost(message, repeated, tag = "3")]
    pub signatures: Vec<UserSignature>,
    #[prost(message, optional, tag = "4")]
    pub effects: Option<TransactionEffects>,
    #[prost(uint64, optional, tag = "5")]
    pub checkpoint: Option<u64>,
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, repeated, tag = "7")]
    pub balance_changes: Vec<BalanceChange>,
    #[prost(message, optional, tag = "9")]
    pub objects: Option<ObjectSet>,
}

/// The SDK needs at least status, epoch, fee (all four), transaction_digest and
/// lamport_version.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TransactionEffects {
    #[prost(message, optional, tag = "1")]
    pub status: Option<ExecutionStatus>,
    #[prost(uint64, optional, tag = "2")]
    pub epoch: Option<u64>,
    #[prost(message, optional, tag = "3")]
    pub fee: Option<TransactionFee>,
    #[prost(string, optional, tag = "4")]
    pub transaction_digest: Option<String>,
    /// Index in `changed_objects`.
    #[prost(uint32, optional, tag = "5")]
    pub gas_object_index: Option<u32>,
    #[prost(string, repeated, tag = "6")]
    pub dependencies: Vec<String>,
    #[prost(uint64, optional, tag = "7")]
    pub lamport_version: Option<u64>,
    #[prost(message, repeated, tag = "8")]
    pub changed_objects: Vec<ChangedObject>,
    #[prost(message, repeated, tag = "9")]
    pub unchanged_shared_objects: Vec<UnchangedSharedObject>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TransactionFee {
    #[prost(uint64, optional, tag = "1")]
    pub base_fee: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub operation_fee: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub value_fee: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub total_fee: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ChangedObject {
    #[prost(string, optional, tag = "1")]
    pub object_id: Option<String>,
    #[prost(enumeration = "changed_object::InputObjectState", optional, tag = "2")]
    pub input_state: Option<i32>,
    #[prost(uint64, optional, tag = "3")]
    pub input_version: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub input_digest: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub input_owner: Option<Owner>,
    #[prost(enumeration = "changed_object::OutputObjectState", optional, tag = "6")]
    pub output_state: Option<i32>,
    #[prost(uint64, optional, tag = "7")]
    pub output_version: Option<u64>,
    #[prost(string, optional, tag = "8")]
    pub output_digest: Option<String>,
    #[prost(message, optional, tag = "9")]
    pub output_owner: Option<Owner>,
    #[prost(enumeration = "changed_object::IdOperation", optional, tag = "10")]
    pub id_operation: Option<i32>,
    #[prost(string, optional, tag = "11")]
    pub object_type: Option<String>,
}

/// The SDK rejects the UNKNOWN (0) values.
pub mod changed_object {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum InputObjectState {
        Unknown = 0,
        DoesNotExist = 1,
        Exists = 2,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum OutputObjectState {
        Unknown = 0,
        DoesNotExist = 1,
        ObjectWrite = 2,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum IdOperation {
        Unknown = 0,
        None = 1,
        Created = 2,
        Deleted = 3,
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UnchangedSharedObject {
    #[prost(enumeration = "unchanged_shared_object::Kind", optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub object_id: Option<String>,
    #[prost(uint64, optional, tag = "3")]
    pub version: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub digest: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub object_type: Option<String>,
}

pub mod unchanged_shared_object {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Kind {
        Unknown = 0,
        ReadOnlyRoot = 1,
        MutatedDeleted = 2,
        ReadDeleted = 3,
        Canceled = 4,
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BalanceChange {
    #[prost(string, optional, tag = "1")]
    pub address: Option<String>,
    /// A signed i128 as a decimal string.
    #[prost(string, optional, tag = "2")]
    pub amount: Option<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExecutionStatus {
    #[prost(bool, optional, tag = "1")]
    pub success: Option<bool>,
    /// Present iff `success` is false.
    #[prost(message, optional, tag = "2")]
    pub error: Option<ExecutionError>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExecutionError {
    /// Rust Debug rendering; informational.
    #[prost(string, optional, tag = "1")]
    pub description: Option<String>,
    #[prost(enumeration = "ExecutionErrorKind", optional, tag = "2")]
    pub kind: Option<i32>,
    #[prost(oneof = "execution_error::ErrorDetails", tags = "3, 4")]
    pub error_details: Option<execution_error::ErrorDetails>,
}

pub mod execution_error {
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum ErrorDetails {
        /// `0x` + 64 hex.
        #[prost(string, tag = "3")]
        ObjectId(String),
        #[prost(string, tag = "4")]
        OtherError(String),
    }
}

/// §2.8's table; 17 is unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ExecutionErrorKind {
    Unknown = 0,
    InsufficientGas = 1,
    InvalidOwnership = 2,
    ObjectNotFound = 3,
    InvalidObjectType = 4,
    InvalidTransactionType = 5,
    InvalidArguments = 6,
    DuplicateValidator = 7,
    NotAValidator = 8,
    ValidatorAlreadyRemoved = 9,
    AdvancedToWrongEpoch = 10,
    ModelNotFound = 11,
    NotModelOwner = 12,
    ModelNotActive = 13,
    InsufficientCoinBalance = 14,
    CoinBalanceOverflow = 15,
    ValidatorNotFound = 16,
    StakingPoolNotFound = 18,
    CannotReportOneself = 19,
    ReportRecordNotFound = 20,
    InputObjectDeleted = 21,
    CertificateDenied = 22,
    SharedObjectCongestion = 23,
    OtherError = 24,
    ModelNotPending = 25,
    ModelAlreadyInactive = 26,
    ModelRevealEpochMismatch = 27,
    ModelEmbeddingCommitmentMismatch = 28,
    ModelNoPendingUpdate = 29,
    ModelArchitectureVersionMismatch = 30,
    ModelCommissionRateTooHigh = 31,
    ModelMinStakeNotMet = 32,
    NoActiveModels = 33,
    TargetNotFound = 34,
    TargetNotOpen = 35,
    TargetExpired = 36,
    TargetNotFilled = 37,
    ChallengeWindowOpen = 38,
    TargetAlreadyClaimed = 39,
    ModelNotInTarget = 40,
    EmbeddingDimensionMismatch = 41,
    DistanceExceedsThreshold = 42,
    InsufficientBond = 43,
    InsufficientEmissionBalance = 44,
    ChallengeWindowClosed = 45,
    InsufficientChallengerBond = 46,
    ChallengeNotFound = 47,
    ChallengeNotPending = 48,
    ChallengeExpired = 49,
    InvalidChallengeResult = 50,
    InvalidChallengeQuorum = 51,
    DataExceedsMaxSize = 52,
    ChallengeAlreadyExists = 53,
    DuplicateValidatorMetadata = 54,
    MissingProofOfPossession = 55,
    InvalidProofOfPossession = 56,
    ModelDecryptionKeyCommitmentMismatch = 57,
}
