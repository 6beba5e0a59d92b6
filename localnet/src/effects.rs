//! What `Ledger::execute` returns: [`Effects`] for an executed transaction
//! (success or an execution failure with the chain's error name, §2.8), or a
//! [`Rejection`] when the input checks of §6.1 refuse it (a gRPC error, not
//! effects).

use std::fmt;

use serde::{Deserialize, Serialize};
use soma_flow_chain::{Digest, ObjectID, ObjectRef, ObjectType, Owner, TransactionDigest};

/// `ExecutionErrorKind` (§2.8): the chain's error names and proto values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    InsufficientGas,
    InvalidOwnership,
    ObjectNotFound,
    InvalidObjectType,
    InvalidArguments,
    ModelNotFound,
    NotModelOwner,
    ModelNotActive,
    InsufficientCoinBalance,
    CoinBalanceOverflow,
    OtherError,
    ModelAlreadyInactive,
    ModelRevealEpochMismatch,
    ModelEmbeddingCommitmentMismatch,
    ModelNoPendingUpdate,
    ModelArchitectureVersionMismatch,
    ModelCommissionRateTooHigh,
    ModelMinStakeNotMet,
    TargetNotFound,
    TargetNotOpen,
    TargetExpired,
    TargetNotFilled,
    ChallengeWindowOpen,
    TargetAlreadyClaimed,
    ModelNotInTarget,
    EmbeddingDimensionMismatch,
    DistanceExceedsThreshold,
    InsufficientBond,
    DataExceedsMaxSize,
    ModelDecryptionKeyCommitmentMismatch,
    NotAValidator,
    ReportRecordNotFound,
    ChallengeWindowClosed,
}

impl ErrorKind {
    /// The proto enum value.
    pub fn proto_value(&self) -> i32 {
        use ErrorKind::*;
        match self {
            InsufficientGas => 1,
            InvalidOwnership => 2,
            ObjectNotFound => 3,
            InvalidObjectType => 4,
            InvalidArguments => 6,
            ModelNotFound => 11,
            NotModelOwner => 12,
            ModelNotActive => 13,
            InsufficientCoinBalance => 14,
            CoinBalanceOverflow => 15,
            OtherError => 24,
            ModelAlreadyInactive => 26,
            ModelRevealEpochMismatch => 27,
            ModelEmbeddingCommitmentMismatch => 28,
            ModelNoPendingUpdate => 29,
            ModelArchitectureVersionMismatch => 30,
            ModelCommissionRateTooHigh => 31,
            ModelMinStakeNotMet => 32,
            TargetNotFound => 34,
            TargetNotOpen => 35,
            TargetExpired => 36,
            TargetNotFilled => 37,
            ChallengeWindowOpen => 38,
            TargetAlreadyClaimed => 39,
            ModelNotInTarget => 40,
            EmbeddingDimensionMismatch => 41,
            DistanceExceedsThreshold => 42,
            InsufficientBond => 43,
            DataExceedsMaxSize => 52,
            ModelDecryptionKeyCommitmentMismatch => 57,
            NotAValidator => 8,
            ReportRecordNotFound => 20,
            ChallengeWindowClosed => 45,
        }
    }

    /// The proto enum name without its prefix, e.g. `MODEL_NOT_FOUND`.
    pub fn name(&self) -> &'static str {
        use ErrorKind::*;
        match self {
            InsufficientGas => "INSUFFICIENT_GAS",
            InvalidOwnership => "INVALID_OWNERSHIP",
            ObjectNotFound => "OBJECT_NOT_FOUND",
            InvalidObjectType => "INVALID_OBJECT_TYPE",
            InvalidArguments => "INVALID_ARGUMENTS",
            ModelNotFound => "MODEL_NOT_FOUND",
            NotModelOwner => "NOT_MODEL_OWNER",
            ModelNotActive => "MODEL_NOT_ACTIVE",
            InsufficientCoinBalance => "INSUFFICIENT_COIN_BALANCE",
            CoinBalanceOverflow => "COIN_BALANCE_OVERFLOW",
            OtherError => "OTHER_ERROR",
            ModelAlreadyInactive => "MODEL_ALREADY_INACTIVE",
            ModelRevealEpochMismatch => "MODEL_REVEAL_EPOCH_MISMATCH",
            ModelEmbeddingCommitmentMismatch => "MODEL_EMBEDDING_COMMITMENT_MISMATCH",
            ModelNoPendingUpdate => "MODEL_NO_PENDING_UPDATE",
            ModelArchitectureVersionMismatch => "MODEL_ARCHITECTURE_VERSION_MISMATCH",
            ModelCommissionRateTooHigh => "MODEL_COMMISSION_RATE_TOO_HIGH",
            ModelMinStakeNotMet => "MODEL_MIN_STAKE_NOT_MET",
            TargetNotFound => "TARGET_NOT_FOUND",
            TargetNotOpen => "TARGET_NOT_OPEN",
            TargetExpired => "TARGET_EXPIRED",
            TargetNotFilled => "TARGET_NOT_FILLED",
            ChallengeWindowOpen => "CHALLENGE_WINDOW_OPEN",
            TargetAlreadyClaimed => "TARGET_ALREADY_CLAIMED",
            ModelNotInTarget => "MODEL_NOT_IN_TARGET",
            EmbeddingDimensionMismatch => "EMBEDDING_DIMENSION_MISMATCH",
            DistanceExceedsThreshold => "DISTANCE_EXCEEDS_THRESHOLD",
            InsufficientBond => "INSUFFICIENT_BOND",
            DataExceedsMaxSize => "DATA_EXCEEDS_MAX_SIZE",
            ModelDecryptionKeyCommitmentMismatch => "MODEL_DECRYPTION_KEY_COMMITMENT_MISMATCH",
            NotAValidator => "NOT_A_VALIDATOR",
            ReportRecordNotFound => "REPORT_RECORD_NOT_FOUND",
            ChallengeWindowClosed => "CHALLENGE_WINDOW_CLOSED",
        }
    }
}

/// The detail carried in proto `ExecutionError.error_details`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorDetails {
    ObjectId(ObjectID),
    Other(String),
}

/// An execution failure: the kind, its detail, and a description in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionFailure {
    pub kind: ErrorKind,
    pub details: Option<ErrorDetails>,
    pub description: String,
}

impl ExecutionFailure {
    pub fn new(kind: ErrorKind, description: impl Into<String>) -> Self {
        Self {
            kind,
            details: None,
            description: description.into(),
        }
    }

    pub fn other(kind: ErrorKind, detail: String, description: impl Into<String>) -> Self {
        Self {
            kind,
            details: Some(ErrorDetails::Other(detail)),
            description: description.into(),
        }
    }

    pub fn object(kind: ErrorKind, id: ObjectID, description: impl Into<String>) -> Self {
        Self {
            kind,
            details: Some(ErrorDetails::ObjectId(id)),
            description: description.into(),
        }
    }

    /// The chain's `ModelInvalidState`, surfaced as OTHER_ERROR.
    pub fn model_invalid_state() -> Self {
        let text = "Model in invalid state for this operation";
        Self::other(ErrorKind::OtherError, text.to_owned(), text)
    }

    /// `InvalidArguments { reason }`.
    pub fn invalid_arguments(reason: &str) -> Self {
        Self::other(ErrorKind::InvalidArguments, reason.to_owned(), reason)
    }

    /// `ArithmeticOverflow`, surfaced as OTHER_ERROR.
    pub fn overflow() -> Self {
        let text = "Arithmetic overflow in execution";
        Self::other(ErrorKind::OtherError, text.to_owned(), text)
    }
}

impl fmt::Display for ExecutionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.description)
    }
}

/// `ExecutionStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    Success,
    Failure(ExecutionFailure),
}

/// `TransactionFee` (§2.8): `total_fee` is the sum of the other three.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionFee {
    pub base_fee: u64,
    pub operation_fee: u64,
    pub value_fee: u64,
}

impl TransactionFee {
    pub fn total(&self) -> u64 {
        self.base_fee + self.operation_fee + self.value_fee
    }
}

/// One side of a changed object: what it was or what it became.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectState {
    pub version: u64,
    pub digest: Digest,
    pub owner: Owner,
}

/// `IdOperation` of a `ChangedObject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdOperation {
    None,
    Created,
    Deleted,
}

/// `ChangedObject` (§2.8): `input` is `None` for a created object, `output`
/// is `None` for a deleted one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedObject {
    pub object_id: ObjectID,
    pub object_type: ObjectType,
    pub input: Option<ObjectState>,
    pub output: Option<ObjectState>,
    pub id_operation: IdOperation,
}

impl ChangedObject {
    /// The reference after the transaction, if the object still exists.
    pub fn output_ref(&self) -> Option<ObjectRef> {
        self.output.as_ref().map(|o| ObjectRef {
            object_id: self.object_id,
            version: o.version,
            digest: o.digest,
        })
    }
}

/// A balance change of one address (proto `BalanceChange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    pub address: soma_flow_chain::SomaAddress,
    pub amount: i128,
}

/// The effects of an executed transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effects {
    pub transaction_digest: TransactionDigest,
    pub status: ExecutionStatus,
    pub epoch: u64,
    pub fee: TransactionFee,
    /// The version every written object got: `1 + max(input versions)`.
    pub lamport_version: u64,
    /// In object id order.
    pub changed_objects: Vec<ChangedObject>,
    /// Index of the gas coin in `changed_objects` (system transactions: none).
    pub gas_object_index: Option<usize>,
    /// Coin balance changes by address, in address order.
    pub balance_changes: Vec<BalanceChange>,
    /// The checkpoint that holds the transaction.
    pub checkpoint: u64,
    pub timestamp_ms: u64,
}

impl Effects {
    pub fn is_success(&self) -> bool {
        self.status == ExecutionStatus::Success
    }

    /// The failure, if the transaction failed.
    pub fn failure(&self) -> Option<&ExecutionFailure> {
        match &self.status {
            ExecutionStatus::Success => None,
            ExecutionStatus::Failure(f) => Some(f),
        }
    }

    fn refs(&self, op: IdOperation, mutated: bool) -> Vec<ObjectRef> {
        self.changed_objects
            .iter()
            .filter(|c| c.id_operation == op && (!mutated || c.input.is_some()))
            .filter_map(ChangedObject::output_ref)
            .collect()
    }

    pub fn created(&self) -> Vec<ObjectRef> {
        self.refs(IdOperation::Created, false)
    }

    pub fn mutated(&self) -> Vec<ObjectRef> {
        self.refs(IdOperation::None, true)
    }

    pub fn deleted(&self) -> Vec<ObjectID> {
        self.changed_objects
            .iter()
            .filter(|c| c.output.is_none())
            .map(|c| c.object_id)
            .collect()
    }

    /// The gas coin's reference after the transaction (none if it reached 0).
    pub fn gas_object(&self) -> Option<ObjectRef> {
        self.gas_object_index
            .and_then(|i| self.changed_objects.get(i))
            .and_then(ChangedObject::output_ref)
    }

    /// The created objects of a type, in object id order.
    pub fn created_of(&self, object_type: ObjectType) -> Vec<ObjectRef> {
        self.changed_objects
            .iter()
            .filter(|c| c.id_operation == IdOperation::Created && c.object_type == object_type)
            .filter_map(ChangedObject::output_ref)
            .collect()
    }
}

/// The gRPC status a rejection maps to (§1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionCode {
    InvalidArgument,
    FailedPrecondition,
    NotFound,
}

/// A transaction refused before execution (§6.1): no effects, nothing charged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Invalid user signature: {0}")]
    InvalidSignature(String),
    #[error("{0} transactions are not supported by the local network")]
    Unsupported(&'static str),
    #[error("{0} is a system transaction and cannot be submitted")]
    SystemTransaction(&'static str),
    #[error("gas_payment must hold at least one coin")]
    EmptyGas,
    #[error("Object {0} not found")]
    ObjectNotFound(ObjectID),
    #[error(
        "Object ({}, SequenceNumber({}), o#{}) is not available for consumption, \
         its current version: SequenceNumber({current_version})",
        requested.object_id, requested.version, requested.digest
    )]
    NotAvailableForConsumption {
        requested: ObjectRef,
        current_version: u64,
    },
    #[error("InvalidObjectDigest: object {object_id} has digest {actual}, the transaction gives {expected}")]
    InvalidObjectDigest {
        object_id: ObjectID,
        expected: Digest,
        actual: Digest,
    },
    #[error("Object {object_id} is not owned by the sender {sender}: its owner is {owner:?}")]
    NotOwnedBySender {
        object_id: ObjectID,
        sender: soma_flow_chain::SomaAddress,
        owner: Owner,
    },
    #[error("Gas object {0} is not a coin")]
    GasNotCoin(ObjectID),
    #[error("Object {0} appears twice among the mutable inputs")]
    DuplicateInput(ObjectID),
    /// The ledger could not encode the transaction or an object (a bug, not
    /// a property of the transaction).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Rejection {
    /// The gRPC code a server answers with.
    pub fn code(&self) -> RejectionCode {
        match self {
            Self::ObjectNotFound(_) => RejectionCode::NotFound,
            _ => RejectionCode::InvalidArgument,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_the_proto_names_and_values() {
        let cases = [
            (ErrorKind::InsufficientGas, "INSUFFICIENT_GAS", 1),
            (
                ErrorKind::ModelRevealEpochMismatch,
                "MODEL_REVEAL_EPOCH_MISMATCH",
                27,
            ),
            (
                ErrorKind::ModelArchitectureVersionMismatch,
                "MODEL_ARCHITECTURE_VERSION_MISMATCH",
                30,
            ),
            (ErrorKind::ChallengeWindowOpen, "CHALLENGE_WINDOW_OPEN", 38),
            (ErrorKind::DataExceedsMaxSize, "DATA_EXCEEDS_MAX_SIZE", 52),
            (
                ErrorKind::ModelDecryptionKeyCommitmentMismatch,
                "MODEL_DECRYPTION_KEY_COMMITMENT_MISMATCH",
                57,
            ),
        ];
        for (kind, name, value) in cases {
            assert_eq!((kind.name(), kind.proto_value()), (name, value));
        }
        let invalid = ExecutionFailure::model_invalid_state();
        assert_eq!(invalid.kind, ErrorKind::OtherError);
        assert_eq!(
            invalid.to_string(),
            "OTHER_ERROR: Model in invalid state for this operation"
        );
    }

    #[test]
    fn the_stale_input_message_is_the_one_the_sdk_retries_on() {
        let r = ObjectRef {
            object_id: ObjectID([0xab; 32]),
            version: 3,
            digest: Digest([0; 32]),
        };
        let text = Rejection::NotAvailableForConsumption {
            requested: r,
            current_version: 4,
        }
        .to_string();
        assert!(
            text.starts_with(&format!("Object (0x{}, ", "ab".repeat(32))),
            "{text}"
        );
        assert!(text.contains("not available for consumption"), "{text}");
    }
}
