//! SOMA's real chain protocol primitives, independent of the rest of soma-flow.
//!
//! Everything here follows `SOMA-RPC.md` (the protocol reference; section numbers
//! in the docs refer to it) and is checked byte for byte against the official SDK
//! (`soma-sdk` 0.1.15) in `tests/`.
//!
//! - [`arrgen`]: target embeddings, `arrgen::normal_array` (§7.2).
//! - [`base`]: addresses, object ids, digests, object refs (§3.1).
//! - [`tensor`]: `SomaTensor` (§3.5).
//! - [`manifest`]: manifests and canonical URLs (§3.4, §2.7).
//! - [`object`]: objects, owners, coin/stake/target contents, object digest (§3.6).
//! - [`transaction`]: `TransactionData`, every kind, digest, derived ids (§3.2–3.3, §3.7).
//! - [`identity`]: secret keys, public keys, addresses (§4).
//! - [`signing`]: intent, signing digest, user signatures, server checks (§4).
//! - [`crypto`]: AES-256-CTR weights encryption and the commitments (§5).
//! - [`proto`]: the `soma.rpc` protobuf messages (§2), hand-written for prost,
//!   and their conversions to the BCS types ([`proto::convert`], §2.7).
//! - [`rpc`]: method paths, the BCS-codec faucet/admin services (§1.3, §1.5).
//! - [`client`]: `SomaClient`, a fullnode/faucet/admin client (§9).

pub mod arrgen;
pub mod base;
pub mod client;
pub mod crypto;
pub mod error;
pub mod identity;
pub mod knn;
pub mod manifest;
pub mod object;
pub mod proto;
pub mod rpc;
pub mod signing;
pub mod tensor;
pub mod transaction;

pub use base::{
    blake2b256, Checksum, Digest, ModelId, ObjectDigest, ObjectID, ObjectRef, SomaAddress,
    TargetId, TransactionDigest, SHANNONS_PER_SOMA,
};
pub use crypto::{
    apply_stream, embedding_commitment, weights_commitment, DecryptionKey, StreamDigests,
    WeightsCipher,
};
pub use error::{Error, Result};
pub use identity::{PublicKey, SecretKey};
pub use manifest::{CanonicalUrl, Manifest, SubmissionManifest};
pub use object::{
    Coin, ObjectData, ObjectInner, ObjectType, Owner, StakedSomaV1, TargetStatus, TargetV1,
};
pub use signing::{
    sign_transaction, signing_digest, verify_transaction, SignedTransaction, UserSignature,
};
pub use tensor::SomaTensor;
pub use transaction::{
    derive_id, model_id, target_seed, transaction_digest, TransactionData, TransactionKind,
};
