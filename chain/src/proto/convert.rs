//! Conversions between the `soma.rpc` proto messages and the BCS domain types,
//! following the server's rebuild rules (§2.7) and the renderings of §2.0.
//!
//! Proto → domain is what a server does before verifying a signature, so it
//! must rebuild exactly the BCS the client signed: URLs are canonicalised,
//! embeddings become `[len]` tensors, distances `[1]`, an absent `amount` is
//! `None`. Every absent or malformed field is an [`Error::Proto`] naming it;
//! nothing here panics on what the other side sends. Domain → proto always sets
//! presence, zeros included, and uses the id forms the SDK sends.

use std::str::FromStr;

use crate::base::{Digest, ObjectID, ObjectRef, SomaAddress};
use crate::crypto::DecryptionKey;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestV1, Metadata, MetadataV1};
use crate::object::{ObjectData, ObjectInner, ObjectType, Owner, TargetStatus, TargetV1};
use crate::signing::UserSignature;
use crate::tensor::SomaTensor;
use crate::transaction::{TransactionData, TransactionKind};

use crate::proto as pb;

use super::{transaction_kind::Kind, user_signature, OwnerKind, SignatureScheme};

/// An error for `field`.
pub fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::Proto {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The value of a required field.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T> {
    value.ok_or_else(|| invalid(field, "missing"))
}

fn parse<T: FromStr<Err = Error>>(value: Option<&String>, field: &str) -> Result<T> {
    let text = required(value, field)?;
    text.parse()
        .map_err(|e: Error| invalid(field, format!("{e} (got {text:?})")))
}

/// A `BalanceChange`: the address and the signed amount (an i128 in decimal).
pub fn balance_change(change: &super::BalanceChange) -> Result<(SomaAddress, i128)> {
    let address = parse(change.address.as_ref(), "balance_changes.address")?;
    let text = required(change.amount.as_ref(), "balance_changes.amount")?;
    let amount = text.parse().map_err(|_| {
        invalid(
            "balance_changes.amount",
            format!("not an integer: {text:?}"),
        )
    })?;
    Ok((address, amount))
}

fn bytes32(value: Option<&Vec<u8>>, field: &str) -> Result<[u8; 32]> {
    let bytes = required(value, field)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| invalid(field, format!("expected 32 bytes, got {}", bytes.len())))
}

fn digest(value: Option<&String>, field: &str) -> Result<Digest> {
    parse(value, field)
}

// ---- object references, manifests -------------------------------------------

impl From<&ObjectRef> for super::ObjectReference {
    /// The SDK's form: id as 64 hex digits without `0x`, Base58 digest.
    fn from(r: &ObjectRef) -> Self {
        Self {
            object_id: Some(hex::encode(r.object_id.0)),
            version: Some(r.version),
            digest: Some(r.digest.to_base58()),
        }
    }
}

fn object_ref(value: Option<&super::ObjectReference>, field: &str) -> Result<ObjectRef> {
    let r = required(value, field)?;
    Ok(ObjectRef {
        object_id: parse(r.object_id.as_ref(), &format!("{field}.object_id"))?,
        version: required(r.version, &format!("{field}.version"))?,
        digest: digest(r.digest.as_ref(), &format!("{field}.digest"))?,
    })
}

impl TryFrom<&super::ObjectReference> for ObjectRef {
    type Error = Error;
    fn try_from(r: &super::ObjectReference) -> Result<Self> {
        object_ref(Some(r), "object_reference")
    }
}

impl From<&Manifest> for super::Manifest {
    fn from(m: &Manifest) -> Self {
        Self {
            version: Some(super::manifest::Version::V1(super::ManifestV1 {
                url: Some(m.url().to_string()),
                metadata: Some(super::Metadata {
                    version: Some(super::metadata::Version::V1(super::MetadataV1 {
                        checksum: Some(m.checksum().0.to_vec()),
                        size: Some(m.size()),
                    })),
                }),
            })),
        }
    }
}

/// The manifest at `field`; its URL is canonicalised as the server does.
pub fn manifest(value: Option<&super::Manifest>, field: &str) -> Result<Manifest> {
    let Some(super::manifest::Version::V1(v1)) = &required(value, field)?.version else {
        return Err(invalid(field, "missing version v1"));
    };
    let Some(super::metadata::Version::V1(meta)) =
        &required(v1.metadata.as_ref(), &format!("{field}.metadata"))?.version
    else {
        return Err(invalid(&format!("{field}.metadata"), "missing version v1"));
    };
    let url_field = format!("{field}.url");
    let url = required(v1.url.as_ref(), &url_field)?;
    Ok(Manifest::V1(ManifestV1 {
        url: crate::manifest::CanonicalUrl::parse(url)
            .map_err(|e| invalid(&url_field, e.to_string()))?,
        metadata: Metadata::V1(MetadataV1 {
            checksum: Digest(bytes32(
                meta.checksum.as_ref(),
                &format!("{field}.metadata.checksum"),
            )?),
            size: required(meta.size, &format!("{field}.metadata.size"))?,
        }),
    }))
}

// ---- transactions -----------------------------------------------------------

fn vector(values: &[f32]) -> SomaTensor {
    SomaTensor::vector(values)
}

/// The proto arm of `kind`, for the kinds a model owner and a data submitter
/// send; any other kind is an error.
pub fn kind_to_proto(kind: &TransactionKind) -> Result<Kind> {
    let id = |id: &ObjectID| Some(id.to_hex());
    Ok(match kind {
        TransactionKind::CreateModel {
            stake_amount,
            commission_rate,
            architecture_version,
        } => Kind::CreateModel(pb::CreateModel {
            stake_amount: Some(*stake_amount),
            commission_rate: Some(*commission_rate),
            architecture_version: Some(*architecture_version),
        }),
        TransactionKind::CommitModel {
            model_id,
            manifest,
            weights_commitment,
            embedding_commitment,
            decryption_key_commitment,
        } => Kind::CommitModel(pb::CommitModel {
            model_id: id(model_id),
            manifest: Some(manifest.into()),
            weights_commitment: Some(weights_commitment.0.to_vec()),
            embedding_commitment: Some(embedding_commitment.0.to_vec()),
            decryption_key_commitment: Some(decryption_key_commitment.0.to_vec()),
        }),
        TransactionKind::RevealModel {
            model_id,
            decryption_key,
            embedding,
        } => Kind::RevealModel(pb::RevealModel {
            model_id: id(model_id),
            decryption_key: Some(decryption_key.expose_bytes().to_vec()),
            embedding: vector_values(embedding, "embedding")?,
        }),
        TransactionKind::AddStakeToModel {
            model_id,
            coin_ref,
            amount,
        } => Kind::AddStakeToModel(pb::AddStakeToModel {
            model_id: id(model_id),
            coin_ref: Some(coin_ref.into()),
            amount: *amount,
        }),
        TransactionKind::SubmitData {
            target_id,
            data_manifest,
            model_id,
            embedding,
            distance_score,
            loss_score,
            bond_coin,
        } => {
            let [distance] = vector_values(distance_score, "distance_score")?[..] else {
                return Err(invalid("distance_score", "expected shape [1]"));
            };
            Kind::SubmitData(pb::SubmitData {
                target_id: id(target_id),
                data_manifest: Some(pb::SubmissionManifest {
                    manifest: Some((&data_manifest.manifest).into()),
                }),
                model_id: id(model_id),
                embedding: vector_values(embedding, "embedding")?,
                distance_score: Some(distance),
                bond_coin: Some(bond_coin.into()),
                loss_score: vector_values(loss_score, "loss_score")?,
            })
        }
        TransactionKind::SetModelCommissionRate { model_id, new_rate } => {
            Kind::SetModelCommissionRate(pb::SetModelCommissionRate {
                model_id: id(model_id),
                new_rate: Some(*new_rate),
            })
        }
        TransactionKind::DeactivateModel { model_id } => {
            Kind::DeactivateModel(pb::DeactivateModel {
                model_id: id(model_id),
            })
        }
        TransactionKind::ClaimRewards { target_id } => Kind::ClaimRewards(pb::ClaimRewards {
            target_id: id(target_id),
        }),
        TransactionKind::TransferCoin {
            coin,
            amount,
            recipient,
        } => Kind::TransferCoin(pb::TransferCoin {
            coin: Some(coin.into()),
            amount: *amount,
            recipient: Some(recipient.to_hex()),
        }),
        TransactionKind::PayCoins {
            coins,
            amounts,
            recipients,
        } => Kind::PayCoins(pb::PayCoins {
            coins: coins.iter().map(Into::into).collect(),
            amounts: amounts.clone().unwrap_or_default(),
            recipients: recipients.iter().map(SomaAddress::to_hex).collect(),
        }),
        other => {
            return Err(invalid(
                "kind",
                format!("{} is not sent by soma-flow", other.name()),
            ))
        }
    })
}

/// A one-dimensional tensor's values (the only shape the proto carries).
fn vector_values(tensor: &SomaTensor, field: &str) -> Result<Vec<f32>> {
    if tensor.shape().len() != 1 {
        return Err(invalid(
            field,
            format!("expected a vector, got shape {:?}", tensor.shape()),
        ));
    }
    Ok(tensor.values())
}

/// The server's rebuild of the signed kind (§2.7).
pub fn kind_from_proto(kind: Option<&super::TransactionKind>) -> Result<TransactionKind> {
    let kind = required(required(kind, "kind")?.kind.as_ref(), "kind.kind")?;
    let id = |value: &Option<String>, field: &str| parse::<ObjectID>(value.as_ref(), field);
    Ok(match kind {
        Kind::CreateModel(m) => TransactionKind::CreateModel {
            stake_amount: required(m.stake_amount, "create_model.stake_amount")?,
            commission_rate: required(m.commission_rate, "create_model.commission_rate")?,
            architecture_version: required(
                m.architecture_version,
                "create_model.architecture_version",
            )?,
        },
        Kind::CommitModel(m) => TransactionKind::CommitModel {
            model_id: id(&m.model_id, "commit_model.model_id")?,
            manifest: manifest(m.manifest.as_ref(), "commit_model.manifest")?,
            weights_commitment: Digest(bytes32(
                m.weights_commitment.as_ref(),
                "commit_model.weights_commitment",
            )?),
            embedding_commitment: Digest(bytes32(
                m.embedding_commitment.as_ref(),
                "commit_model.embedding_commitment",
            )?),
            decryption_key_commitment: Digest(bytes32(
                m.decryption_key_commitment.as_ref(),
                "commit_model.decryption_key_commitment",
            )?),
        },
        Kind::RevealModel(m) => TransactionKind::RevealModel {
            model_id: id(&m.model_id, "reveal_model.model_id")?,
            decryption_key: DecryptionKey::from_bytes(bytes32(
                m.decryption_key.as_ref(),
                "reveal_model.decryption_key",
            )?),
            embedding: vector(&m.embedding),
        },
        Kind::AddStakeToModel(m) => TransactionKind::AddStakeToModel {
            model_id: id(&m.model_id, "add_stake_to_model.model_id")?,
            coin_ref: object_ref(m.coin_ref.as_ref(), "add_stake_to_model.coin_ref")?,
            amount: m.amount,
        },
        Kind::SubmitData(m) => TransactionKind::SubmitData {
            target_id: id(&m.target_id, "submit_data.target_id")?,
            data_manifest: crate::manifest::SubmissionManifest {
                manifest: manifest(
                    required(m.data_manifest.as_ref(), "submit_data.data_manifest")?
                        .manifest
                        .as_ref(),
                    "submit_data.data_manifest.manifest",
                )?,
            },
            model_id: id(&m.model_id, "submit_data.model_id")?,
            embedding: vector(&m.embedding),
            distance_score: SomaTensor::scalar(required(
                m.distance_score,
                "submit_data.distance_score",
            )?),
            loss_score: vector(&m.loss_score),
            bond_coin: object_ref(m.bond_coin.as_ref(), "submit_data.bond_coin")?,
        },
        Kind::ClaimRewards(m) => TransactionKind::ClaimRewards {
            target_id: id(&m.target_id, "claim_rewards.target_id")?,
        },
        Kind::SetModelCommissionRate(m) => TransactionKind::SetModelCommissionRate {
            model_id: id(&m.model_id, "set_model_commission_rate.model_id")?,
            new_rate: required(m.new_rate, "set_model_commission_rate.new_rate")?,
        },
        Kind::DeactivateModel(m) => TransactionKind::DeactivateModel {
            model_id: id(&m.model_id, "deactivate_model.model_id")?,
        },
        Kind::TransferCoin(m) => TransactionKind::TransferCoin {
            coin: object_ref(m.coin.as_ref(), "transfer_coin.coin")?,
            amount: m.amount,
            recipient: parse(m.recipient.as_ref(), "transfer_coin.recipient")?,
        },
        Kind::PayCoins(m) => TransactionKind::PayCoins {
            coins: m
                .coins
                .iter()
                .map(|c| object_ref(Some(c), "pay_coins.coins"))
                .collect::<Result<_>>()?,
            amounts: Some(m.amounts.clone()),
            recipients: m
                .recipients
                .iter()
                .map(|r| parse(Some(r), "pay_coins.recipients"))
                .collect::<Result<_>>()?,
        },
        _ => {
            return Err(invalid(
                "kind",
                "this transaction kind is not accepted from users here",
            ))
        }
    })
}

/// The proto transaction a client sends: digest set (the SDK needs it to wait),
/// sender and gas ids as 64 hex digits without `0x`.
pub fn transaction_to_proto(tx: &TransactionData) -> Result<super::Transaction> {
    let v1 = tx.v1();
    Ok(super::Transaction {
        digest: Some(tx.digest()?.to_base58()),
        kind: Some(super::TransactionKind {
            kind: Some(kind_to_proto(&v1.kind)?),
        }),
        sender: Some(v1.sender.to_hex()),
        gas_payment: v1.gas_payment.iter().map(Into::into).collect(),
    })
}

/// The server's rebuild of the signed `TransactionData` from the proto; the
/// proto `digest` is ignored, as the server does.
pub fn transaction_from_proto(tx: &super::Transaction) -> Result<TransactionData> {
    Ok(TransactionData::new(
        kind_from_proto(tx.kind.as_ref())?,
        parse(tx.sender.as_ref(), "sender")?,
        tx.gas_payment
            .iter()
            .map(|r| object_ref(Some(r), "gas_payment"))
            .collect::<Result<_>>()?,
    ))
}

/// A proto user signature as the flat 97 bytes: `scheme` and the simple
/// signature's `scheme` must be present and ED25519.
pub fn signature_from_proto(sig: &super::UserSignature) -> Result<UserSignature> {
    let ed25519 = SignatureScheme::Ed25519 as i32;
    if required(sig.scheme, "signature.scheme")? != ed25519 {
        return Err(invalid("signature.scheme", "only ED25519 is supported"));
    }
    let Some(user_signature::Signature::Simple(simple)) = &sig.signature else {
        return Err(invalid("signature.simple", "missing"));
    };
    if required(simple.scheme, "signature.simple.scheme")? != ed25519 {
        return Err(invalid("signature.simple.scheme", "must be ED25519"));
    }
    let signature = required(simple.signature.as_ref(), "signature.simple.signature")?;
    let signature: [u8; 64] = signature.as_slice().try_into().map_err(|_| {
        invalid(
            "signature.simple.signature",
            format!("expected 64 bytes, got {}", signature.len()),
        )
    })?;
    let public_key = bytes32(simple.public_key.as_ref(), "signature.simple.public_key")?;
    Ok(UserSignature::from_parts(
        &signature,
        &crate::identity::PublicKey(public_key),
    ))
}

// ---- objects ------------------------------------------------------------------

impl From<&Owner> for super::Owner {
    fn from(owner: &Owner) -> Self {
        match owner {
            Owner::AddressOwner(address) => Self {
                kind: Some(OwnerKind::Address as i32),
                address: Some(address.to_hex()),
                version: None,
            },
            Owner::Shared {
                initial_shared_version,
            } => Self {
                kind: Some(OwnerKind::Shared as i32),
                address: None,
                version: Some(*initial_shared_version),
            },
            Owner::Immutable => Self {
                kind: Some(OwnerKind::Immutable as i32),
                address: None,
                version: None,
            },
        }
    }
}

fn owner(value: Option<&super::Owner>, field: &str) -> Result<Owner> {
    let owner = required(value, field)?;
    match OwnerKind::try_from(required(owner.kind, &format!("{field}.kind"))?) {
        Ok(OwnerKind::Address) => Ok(Owner::AddressOwner(parse(
            owner.address.as_ref(),
            &format!("{field}.address"),
        )?)),
        Ok(OwnerKind::Shared) => Ok(Owner::Shared {
            initial_shared_version: required(owner.version, &format!("{field}.version"))?,
        }),
        Ok(OwnerKind::Immutable) => Ok(Owner::Immutable),
        _ => Err(invalid(&format!("{field}.kind"), "unknown owner kind")),
    }
}

/// The full proto object (all 7 fields): id as 64 hex without `0x`, contents
/// without the id prefix, the digest computed from the object.
pub fn object_to_proto(object: &ObjectInner) -> Result<super::Object> {
    Ok(super::Object {
        object_id: Some(hex::encode(object.data.id()?.0)),
        version: Some(object.data.version),
        digest: Some(object.digest()?.to_base58()),
        owner: Some((&object.owner).into()),
        object_type: Some(object.data.object_type.as_str().to_owned()),
        contents: Some(object.data.proto_contents()?.to_vec()),
        previous_transaction: Some(object.previous_transaction.to_base58()),
    })
}

/// Rebuilds the object as the SDK does, ignoring the sent digest (§2.4): the
/// digest of a gas ref is recomputed from this.
pub fn object_from_proto(object: &super::Object) -> Result<ObjectInner> {
    let id: ObjectID = parse(object.object_id.as_ref(), "object.object_id")?;
    let object_type = ObjectType::from_proto(required(
        object.object_type.as_deref(),
        "object.object_type",
    )?)
    .map_err(|e| invalid("object.object_type", e.to_string()))?;
    Ok(ObjectInner {
        data: ObjectData::from_proto_contents(
            object_type,
            required(object.version, "object.version")?,
            id,
            required(object.contents.as_ref(), "object.contents")?,
        ),
        owner: owner(object.owner.as_ref(), "object.owner")?,
        previous_transaction: digest(
            object.previous_transaction.as_ref(),
            "object.previous_transaction",
        )?,
    })
}

// ---- targets --------------------------------------------------------------------

/// The proto rendering of a target's raw status (GetTarget; ListTargets may
/// override it with `claimable`).
pub fn target_status_name(status: &TargetStatus) -> &'static str {
    match status {
        TargetStatus::Open => "open",
        TargetStatus::Filled { .. } => "filled",
        TargetStatus::Claimed => "claimed",
    }
}

/// The full proto target (every field of §2.6 that has a value): ids in the
/// `0x`-trimmed form, addresses without `0x`. `status` is the string to show.
pub fn target_to_proto(id: &ObjectID, target: &TargetV1, status: &str) -> super::Target {
    let fill_epoch = match target.status {
        TargetStatus::Filled { fill_epoch } => Some(fill_epoch),
        _ => None,
    };
    super::Target {
        id: Some(id.to_hex_literal()),
        embedding: target.embedding.values(),
        model_ids: target
            .model_ids
            .iter()
            .map(ObjectID::to_hex_literal)
            .collect(),
        distance_threshold: target.distance_threshold.values().first().copied(),
        reward_pool: Some(target.reward_pool),
        generation_epoch: Some(target.generation_epoch),
        status: Some(status.to_owned()),
        fill_epoch,
        submitter: target.submitter.map(|a| a.to_hex()),
        winning_model_id: target.winning_model_id.map(|m| m.to_hex_literal()),
        winning_model_owner: target.winning_model_owner.map(|a| a.to_hex()),
        bond_amount: Some(target.bond_amount),
        data_url: target
            .winning_data_manifest
            .as_ref()
            .map(|m| m.manifest.url().to_string()),
    }
}

/// What a client reads of a proto target, ids normalised to 32 bytes (§2.0).
#[derive(Clone, Debug, PartialEq)]
pub struct TargetInfo {
    pub id: ObjectID,
    pub status: String,
    pub generation_epoch: u64,
    pub reward_pool: u64,
    /// Empty when the read mask left it out.
    pub embedding: Vec<f32>,
    pub model_ids: Vec<ObjectID>,
    pub distance_threshold: Option<f32>,
    pub fill_epoch: Option<u64>,
    pub submitter: Option<SomaAddress>,
    pub winning_model_id: Option<ObjectID>,
    pub winning_model_owner: Option<SomaAddress>,
    pub bond_amount: Option<u64>,
    pub data_url: Option<String>,
}

fn optional<T: FromStr<Err = Error>>(value: Option<&String>, field: &str) -> Result<Option<T>> {
    value.map(|v| parse(Some(v), field)).transpose()
}

impl TryFrom<&super::Target> for TargetInfo {
    type Error = Error;
    fn try_from(t: &super::Target) -> Result<Self> {
        Ok(Self {
            id: parse(t.id.as_ref(), "target.id")?,
            status: required(t.status.clone(), "target.status")?,
            generation_epoch: required(t.generation_epoch, "target.generation_epoch")?,
            reward_pool: required(t.reward_pool, "target.reward_pool")?,
            embedding: t.embedding.clone(),
            model_ids: t
                .model_ids
                .iter()
                .map(|m| parse(Some(m), "target.model_ids"))
                .collect::<Result<_>>()?,
            distance_threshold: t.distance_threshold,
            fill_epoch: t.fill_epoch,
            submitter: optional(t.submitter.as_ref(), "target.submitter")?,
            winning_model_id: optional(t.winning_model_id.as_ref(), "target.winning_model_id")?,
            winning_model_owner: optional(
                t.winning_model_owner.as_ref(),
                "target.winning_model_owner",
            )?,
            bond_amount: t.bond_amount,
            data_url: t.data_url.clone(),
        })
    }
}

// ---- system state -------------------------------------------------------------

/// The live parameters a client needs, read from `SystemState` (never
/// hard-coded: §2.3).
#[derive(Clone, Debug, PartialEq)]
pub struct ChainParameters {
    pub epoch_duration_ms: u64,
    pub model_min_stake: u64,
    pub model_architecture_version: u64,
    pub target_embedding_dim: u64,
    /// How many models the chain routes each target to (k of its weighted KNN).
    pub target_models_per_target: u64,
    pub base_fee: u64,
    pub write_object_fee: u64,
    pub value_fee_bps: u64,
    pub submission_bond_per_byte: u64,
    pub max_submission_data_size: u64,
    /// The shares of a filled target's reward (§6.3 ClaimRewards), in bps.
    pub target_submitter_reward_share_bps: u64,
    pub target_model_reward_share_bps: u64,
    pub target_claimer_incentive_bps: u64,
}

/// What a ClaimRewards of one target pays, computed as the chain does (§6.3):
/// shares rounded down, the rounding remainder to the submitter, the bond back to
/// the submitter; an expired target pays only the claimer's incentive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClaimSplit {
    /// The submitter's share and the rounding remainder (0 for an expired target).
    pub submitter: u64,
    /// The winning model's owner's share (0 without a winner).
    pub owner: u64,
    /// The claimer's incentive.
    pub incentive: u64,
    /// The submitter's bond, returned.
    pub bond: u64,
    /// The fee the claimer pays: base, written objects, and the value fee on the reward.
    pub fee: u64,
}

impl ClaimSplit {
    /// The split of `target`'s reward under `params`.
    pub fn of(target: &TargetInfo, params: &ChainParameters) -> Self {
        let reward = target.reward_pool;
        let bps = |b: u64| (reward as u128 * b.min(10_000) as u128 / 10_000) as u64;
        let incentive = bps(params.target_claimer_incentive_bps);
        let (submitter, owner, bond) = match target.submitter {
            Some(_) => {
                let submitter = bps(params.target_submitter_reward_share_bps);
                let owner = bps(params.target_model_reward_share_bps);
                let rest = reward.saturating_sub(submitter + owner + incentive);
                let owner = if target.winning_model_owner.is_some() {
                    owner
                } else {
                    0
                };
                (submitter + rest, owner, target.bond_amount.unwrap_or(0))
            }
            None => (0, 0, 0),
        };
        let coins = [submitter, owner, incentive, bond]
            .iter()
            .filter(|&&amount| amount > 0)
            .count() as u64;
        let fee =
            params.base_fee + params.write_object_fee * (2 + coins) + params.value_fee(reward);
        Self {
            submitter,
            owner,
            incentive,
            bond,
            fee,
        }
    }

    /// What the claim pays `claimer` before the fee: the incentive, and the shares
    /// (and bond) of the roles it holds in `target`.
    pub fn paid_to(&self, target: &TargetInfo, claimer: &SomaAddress) -> u64 {
        let mut paid = self.incentive;
        if target.winning_model_owner.as_ref() == Some(claimer) {
            paid += self.owner;
        }
        if target.submitter.as_ref() == Some(claimer) {
            paid += self.submitter + self.bond;
        }
        paid
    }

    /// Whether the claim pays `claimer` at least its fee.
    pub fn pays_for_itself(&self, target: &TargetInfo, claimer: &SomaAddress) -> bool {
        self.paid_to(target, claimer) >= self.fee
    }
}

impl ChainParameters {
    /// The value fee on `amount`: half the value-fee rate, rounded down (§6.2).
    pub fn value_fee(&self, amount: u64) -> u64 {
        (amount as u128 * (self.value_fee_bps / 2) as u128 / 10_000) as u64
    }

    /// What a gas coin must hold to create a model staking `stake`.
    pub fn create_model_cost(&self, stake: u64) -> u64 {
        stake
            .saturating_add(self.value_fee(stake))
            .saturating_add(self.base_fee + 3 * self.write_object_fee)
    }

    /// What a gas coin must hold for a commit: the base fee and a few written
    /// objects.
    pub fn small_cost(&self) -> u64 {
        self.base_fee + 4 * self.write_object_fee
    }

    /// What a gas coin must hold to submit `size` bytes of data: the bond and fees.
    pub fn submit_data_cost(&self, size: u64) -> u64 {
        size.saturating_mul(self.submission_bond_per_byte)
            .saturating_add(self.small_cost())
    }
}

impl TryFrom<&super::SystemParameters> for ChainParameters {
    type Error = Error;
    fn try_from(p: &super::SystemParameters) -> Result<Self> {
        let f = |v: Option<u64>, name: &str| required(v, &format!("parameters.{name}"));
        Ok(Self {
            epoch_duration_ms: f(p.epoch_duration_ms, "epoch_duration_ms")?,
            model_min_stake: f(p.model_min_stake, "model_min_stake")?,
            model_architecture_version: f(
                p.model_architecture_version,
                "model_architecture_version",
            )?,
            target_embedding_dim: f(p.target_embedding_dim, "target_embedding_dim")?,
            target_models_per_target: f(p.target_models_per_target, "target_models_per_target")?,
            base_fee: f(p.base_fee, "base_fee")?,
            write_object_fee: f(p.write_object_fee, "write_object_fee")?,
            value_fee_bps: f(p.value_fee_bps, "value_fee_bps")?,
            submission_bond_per_byte: f(p.submission_bond_per_byte, "submission_bond_per_byte")?,
            max_submission_data_size: f(p.max_submission_data_size, "max_submission_data_size")?,
            target_submitter_reward_share_bps: f(
                p.target_submitter_reward_share_bps,
                "target_submitter_reward_share_bps",
            )?,
            target_model_reward_share_bps: f(
                p.target_model_reward_share_bps,
                "target_model_reward_share_bps",
            )?,
            target_claimer_incentive_bps: f(
                p.target_claimer_incentive_bps,
                "target_claimer_incentive_bps",
            )?,
        })
    }
}

/// A model registry entry as a client reads it (§2.3); which optional fields
/// are set depends on `state`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub id: ObjectID,
    pub owner: SomaAddress,
    /// `created`, `pending`, `active` or `inactive`.
    pub state: String,
    pub architecture_version: u64,
    pub manifest: Option<Manifest>,
    pub weights_commitment: Option<Digest>,
    pub embedding_commitment: Option<Digest>,
    pub decryption_key_commitment: Option<Digest>,
    pub commit_epoch: Option<u64>,
    pub decryption_key: Option<[u8; 32]>,
    pub embedding: Vec<f32>,
    /// The staking pool's `soma_balance`.
    pub stake: u64,
    /// The epoch the model's pool became active (its first reveal), if it has.
    pub activation_epoch: Option<u64>,
    pub commission_rate: u64,
    /// The rate from the next epoch boundary on (`SetModelCommissionRate`).
    pub next_epoch_commission_rate: u64,
    /// An Active model's commit awaiting its reveal (a later commit overwrites it).
    pub pending_update: Option<PendingUpdate>,
}

/// `PendingModelUpdate`: the manifest and commitments of a commit made while the
/// model was Active.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingUpdate {
    pub manifest: Manifest,
    pub weights_commitment: Digest,
    pub embedding_commitment: Digest,
    pub decryption_key_commitment: Digest,
    pub commit_epoch: u64,
}

impl PendingUpdate {
    fn from_proto(p: &super::PendingModelUpdate, field: &dyn Fn(&str) -> String) -> Result<Self> {
        let digest = |v, name: &str| bytes32(v, &field(name)).map(Digest);
        Ok(Self {
            manifest: manifest(p.manifest.as_ref(), &field("pending_update.manifest"))?,
            weights_commitment: digest(
                p.weights_commitment.as_ref(),
                "pending_update.weights_commitment",
            )?,
            embedding_commitment: digest(
                p.embedding_commitment.as_ref(),
                "pending_update.embedding_commitment",
            )?,
            decryption_key_commitment: digest(
                p.decryption_key_commitment.as_ref(),
                "pending_update.decryption_key_commitment",
            )?,
            commit_epoch: required(p.commit_epoch, &field("pending_update.commit_epoch"))?,
        })
    }
}

fn optional_bytes32(value: Option<&Vec<u8>>, field: &str) -> Result<Option<[u8; 32]>> {
    value.map(|v| bytes32(Some(v), field)).transpose()
}

impl ModelInfo {
    pub fn from_proto(key: &str, m: &super::Model) -> Result<Self> {
        let field = |name: &str| format!("models[{key}].{name}");
        let pool = required(m.staking_pool.as_ref(), &field("staking_pool"))?;
        Ok(Self {
            id: parse(Some(&key.to_owned()), "models key")?,
            owner: parse(m.owner.as_ref(), &field("owner"))?,
            state: required(m.state.clone(), &field("state"))?,
            architecture_version: required(m.architecture_version, &field("architecture_version"))?,
            manifest: m
                .manifest
                .as_ref()
                .map(|x| manifest(Some(x), &field("manifest")))
                .transpose()?,
            weights_commitment: optional_bytes32(
                m.weights_commitment.as_ref(),
                &field("weights_commitment"),
            )?
            .map(Digest),
            embedding_commitment: optional_bytes32(
                m.embedding_commitment.as_ref(),
                &field("embedding_commitment"),
            )?
            .map(Digest),
            decryption_key_commitment: optional_bytes32(
                m.decryption_key_commitment.as_ref(),
                &field("decryption_key_commitment"),
            )?
            .map(Digest),
            commit_epoch: m.commit_epoch,
            decryption_key: optional_bytes32(m.decryption_key.as_ref(), &field("decryption_key"))?,
            embedding: m.embedding.clone(),
            stake: required(pool.soma_balance, &field("staking_pool.soma_balance"))?,
            activation_epoch: pool.activation_epoch,
            commission_rate: required(m.commission_rate, &field("commission_rate"))?,
            next_epoch_commission_rate: m
                .next_epoch_commission_rate
                .or(m.commission_rate)
                .unwrap_or_default(),
            pending_update: m
                .pending_update
                .as_ref()
                .map(|p| PendingUpdate::from_proto(p, &field))
                .transpose()?,
        })
    }
}

/// The pieces of `SystemState` a client reads.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemSummary {
    pub epoch: u64,
    pub epoch_start_timestamp_ms: u64,
    pub protocol_version: u64,
    pub parameters: ChainParameters,
    pub models: Vec<ModelInfo>,
    pub total_model_stake: u64,
    pub emission_balance: u64,
}

impl SystemSummary {
    /// The registry entry of `id`, if any.
    pub fn model(&self, id: &ObjectID) -> Option<&ModelInfo> {
        self.models.iter().find(|m| m.id == *id)
    }
}

impl TryFrom<&super::SystemState> for SystemSummary {
    type Error = Error;
    fn try_from(s: &super::SystemState) -> Result<Self> {
        let registry = s.model_registry.clone().unwrap_or_default();
        Ok(Self {
            epoch: required(s.epoch, "system_state.epoch")?,
            epoch_start_timestamp_ms: required(
                s.epoch_start_timestamp_ms,
                "system_state.epoch_start_timestamp_ms",
            )?,
            protocol_version: required(s.protocol_version, "system_state.protocol_version")?,
            parameters: required(s.parameters.as_ref(), "system_state.parameters")?.try_into()?,
            models: registry
                .models
                .iter()
                .map(|(k, m)| ModelInfo::from_proto(k, m))
                .collect::<Result<_>>()?,
            total_model_stake: registry.total_model_stake.unwrap_or(0),
            emission_balance: required(
                required(s.emission_pool.as_ref(), "system_state.emission_pool")?.balance,
                "system_state.emission_pool.balance",
            )?,
        })
    }
}
