//! On-chain objects (§3.6): the `ObjectInner` envelope whose BCS is hashed into an
//! `ObjectDigest` (§3.7), and the contents of Coin, StakedSoma and Target objects.
//!
//! The SDK ignores the digest a server sends and recomputes it from these fields,
//! so a client (to build gas refs) and a local server (to hand them out) must
//! both compute it exactly as [`ObjectInner::digest`] does.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::base::{blake2b256, Digest, ObjectDigest, ObjectID, SomaAddress, TransactionDigest};
use crate::error::{Error, Result};
use crate::manifest::SubmissionManifest;
use crate::tensor::SomaTensor;

/// An object: data, owner and the transaction that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Object")]
pub struct ObjectInner {
    pub data: ObjectData,
    pub owner: Owner,
    pub previous_transaction: TransactionDigest,
}

impl ObjectInner {
    /// `Blake2b-256("Object::" ‖ BCS(ObjectInner))`.
    pub fn digest(&self) -> Result<ObjectDigest> {
        let bcs = bcs::to_bytes(self)?;
        Ok(Digest(blake2b256(&[b"Object::", &bcs])))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectType {
    SystemState,
    Coin,
    StakedSoma,
    Target,
}

impl ObjectType {
    /// The proto `Object.object_type` string (case-sensitive).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::SystemState => "SystemState",
            Self::Coin => "Coin",
            Self::StakedSoma => "StakedSoma",
            Self::Target => "Target",
        }
    }

    pub fn from_proto(s: &str) -> Result<Self> {
        match s {
            "SystemState" => Ok(Self::SystemState),
            "Coin" => Ok(Self::Coin),
            "StakedSoma" => Ok(Self::StakedSoma),
            "Target" => Ok(Self::Target),
            _ => Err(Error::Parse {
                what: "object type",
                expected: "SystemState, Coin, StakedSoma or Target",
            }),
        }
    }
}

/// `contents` is `id(32) ‖ BCS(struct)`; proto `Object.contents` omits the id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectData {
    pub object_type: ObjectType,
    pub version: u64,
    contents: Vec<u8>,
}

impl ObjectData {
    /// Data for object `id` holding `value` (a [`Coin`], [`StakedSomaV1`], ...).
    pub fn new<T: Serialize>(
        object_type: ObjectType,
        version: u64,
        id: ObjectID,
        value: &T,
    ) -> Result<Self> {
        let mut contents = id.0.to_vec();
        contents.extend(bcs::to_bytes(value)?);
        Ok(Self {
            object_type,
            version,
            contents,
        })
    }

    /// Data from the proto form: `contents` without the id prefix.
    pub fn from_proto_contents(
        object_type: ObjectType,
        version: u64,
        id: ObjectID,
        contents: &[u8],
    ) -> Self {
        Self {
            object_type,
            version,
            contents: [&id.0[..], contents].concat(),
        }
    }

    pub fn id(&self) -> Result<ObjectID> {
        self.split().map(|(id, _)| id)
    }

    /// The contents without the id, as proto `Object.contents` carries them.
    pub fn proto_contents(&self) -> Result<&[u8]> {
        self.split().map(|(_, rest)| rest)
    }

    /// Decodes the struct after the id.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(bcs::from_bytes(self.proto_contents()?)?)
    }

    fn split(&self) -> Result<(ObjectID, &[u8])> {
        match self.contents.split_first_chunk::<32>() {
            Some((id, rest)) => Ok((ObjectID(*id), rest)),
            None => Err(Error::Parse {
                what: "object contents",
                expected: "a 32-byte object id followed by the object",
            }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Owner {
    AddressOwner(SomaAddress),
    Shared { initial_shared_version: u64 },
    Immutable,
}

/// A coin's contents: its balance in shannons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coin {
    pub balance: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakedSomaV1 {
    pub pool_id: ObjectID,
    pub stake_activation_epoch: u64,
    pub principal: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetStatus {
    Open,
    Filled { fill_epoch: u64 },
    Claimed,
}

/// A target's contents (`GetObject(target_id).contents`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetV1 {
    pub embedding: SomaTensor,
    pub model_ids: Vec<ObjectID>,
    pub distance_threshold: SomaTensor,
    pub reward_pool: u64,
    pub generation_epoch: u64,
    pub status: TargetStatus,
    pub submitter: Option<SomaAddress>,
    pub winning_model_id: Option<ObjectID>,
    pub winning_model_owner: Option<SomaAddress>,
    pub bond_amount: u64,
    pub winning_data_manifest: Option<SubmissionManifest>,
    pub winning_embedding: Option<SomaTensor>,
    pub winning_distance_score: Option<SomaTensor>,
    pub winning_loss_score: Option<SomaTensor>,
    pub submission_reports: BTreeSet<SomaAddress>,
}
