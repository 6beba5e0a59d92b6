//! The per-transaction view of the ledger: reads fall through to the committed
//! objects, writes stay here until the transaction commits. Reverting a failed
//! transaction is dropping this view (and keeping a snapshot taken after gas
//! preparation, §6.2).

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;
use serde::Serialize;
use soma_flow_chain::{
    derive_id, Coin, ObjectID, ObjectInner, ObjectType, Owner, SomaAddress, TargetV1,
    TransactionDigest,
};

use crate::effects::{ErrorKind, ExecutionFailure};
use crate::state::SystemState;

/// An object's mutable parts; the id is the map key, the version and the
/// previous transaction are set when the transaction commits.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Obj {
    pub object_type: ObjectType,
    pub owner: Owner,
    /// BCS of the struct, without the id prefix.
    pub contents: Vec<u8>,
}

impl Obj {
    pub fn from_inner(inner: &ObjectInner) -> Option<Self> {
        Some(Self {
            object_type: inner.data.object_type,
            owner: inner.owner,
            contents: inner.data.proto_contents().ok()?.to_vec(),
        })
    }

    pub fn decode<T: DeserializeOwned>(&self) -> Option<T> {
        bcs::from_bytes(&self.contents).ok()
    }

    /// The balance, if this is a Coin.
    pub fn coin_balance(&self) -> Option<u64> {
        match self.object_type {
            ObjectType::Coin => self.decode::<Coin>().map(|c| c.balance),
            _ => None,
        }
    }
}

/// What a transaction leaves behind once its view is dropped.
pub(crate) struct TxWrites {
    pub writes: BTreeMap<ObjectID, Write>,
    pub created: BTreeSet<ObjectID>,
    pub system: SystemState,
    pub system_written: bool,
    pub digest: TransactionDigest,
    pub gas_id: Option<ObjectID>,
}

#[derive(Clone, Debug)]
pub(crate) enum Write {
    Put(Obj),
    Delete,
}

/// The working state of one transaction.
#[derive(Clone)]
pub(crate) struct TxStore<'a> {
    objects: &'a BTreeMap<ObjectID, ObjectInner>,
    pub writes: BTreeMap<ObjectID, Write>,
    pub created: BTreeSet<ObjectID>,
    pub system: SystemState,
    /// Whether the SystemState is written (a mutable shared input of every
    /// model and submission transaction).
    pub system_written: bool,
    pub digest: TransactionDigest,
    pub sender: SomaAddress,
    pub gas_id: Option<ObjectID>,
    /// The validators (address, voting power): who may report a submission.
    pub validators: &'a [(SomaAddress, u64)],
    creation_num: u64,
}

impl<'a> TxStore<'a> {
    pub fn new(
        objects: &'a BTreeMap<ObjectID, ObjectInner>,
        system: SystemState,
        digest: TransactionDigest,
        sender: SomaAddress,
    ) -> Self {
        Self {
            objects,
            writes: BTreeMap::new(),
            created: BTreeSet::new(),
            system,
            system_written: false,
            digest,
            sender,
            gas_id: None,
            validators: &[],
            creation_num: 0,
        }
    }

    /// The next id this transaction derives: `derive_id(digest, n)`, n = 0, 1, …
    pub fn next_id(&mut self) -> ObjectID {
        let id = derive_id(&self.digest, self.creation_num);
        self.creation_num += 1;
        id
    }

    /// Takes the next creation number (for a seed, or one consumed unused, §7.5).
    pub fn next_creation_num(&mut self) -> u64 {
        self.creation_num += 1;
        self.creation_num - 1
    }

    pub fn get(&self, id: &ObjectID) -> Option<Obj> {
        match self.writes.get(id) {
            Some(Write::Put(obj)) => Some(obj.clone()),
            Some(Write::Delete) => None,
            None => self.objects.get(id).and_then(Obj::from_inner),
        }
    }

    pub fn is_deleted(&self, id: &ObjectID) -> bool {
        matches!(self.writes.get(id), Some(Write::Delete))
    }

    /// A coin the sender owns: its balance, or the chain's error
    /// (OBJECT_NOT_FOUND, INVALID_OWNERSHIP, INVALID_OBJECT_TYPE).
    pub fn owned_coin(&self, id: &ObjectID) -> Result<u64, ExecutionFailure> {
        let obj = self.get(id).ok_or_else(|| {
            ExecutionFailure::object(
                ErrorKind::ObjectNotFound,
                *id,
                format!("object {id} not found"),
            )
        })?;
        if obj.owner != Owner::AddressOwner(self.sender) {
            return Err(ExecutionFailure::object(
                ErrorKind::InvalidOwnership,
                *id,
                format!("object {id} is not owned by the sender {}", self.sender),
            ));
        }
        obj.coin_balance().ok_or_else(|| {
            ExecutionFailure::object(
                ErrorKind::InvalidObjectType,
                *id,
                format!("object {id} is not a coin"),
            )
        })
    }

    pub fn put<T: Serialize>(
        &mut self,
        id: ObjectID,
        object_type: ObjectType,
        owner: Owner,
        value: &T,
    ) -> Result<(), ExecutionFailure> {
        let contents = bcs::to_bytes(value).map_err(|e| {
            ExecutionFailure::other(
                ErrorKind::OtherError,
                e.to_string(),
                "object encoding failed",
            )
        })?;
        self.writes.insert(
            id,
            Write::Put(Obj {
                object_type,
                owner,
                contents,
            }),
        );
        Ok(())
    }

    /// Sets a coin's balance, keeping its owner.
    pub fn set_coin_balance(&mut self, id: ObjectID, balance: u64) -> Result<(), ExecutionFailure> {
        let owner = self.get(&id).map(|o| o.owner).ok_or_else(|| {
            ExecutionFailure::object(ErrorKind::ObjectNotFound, id, "coin vanished")
        })?;
        self.put(id, ObjectType::Coin, owner, &Coin { balance })
    }

    /// Creates a Coin owned by `owner` at the next derived id.
    pub fn create_coin(
        &mut self,
        owner: SomaAddress,
        balance: u64,
    ) -> Result<ObjectID, ExecutionFailure> {
        let id = self.next_id();
        self.create(
            id,
            ObjectType::Coin,
            Owner::AddressOwner(owner),
            &Coin { balance },
        )?;
        Ok(id)
    }

    pub fn create<T: Serialize>(
        &mut self,
        id: ObjectID,
        object_type: ObjectType,
        owner: Owner,
        value: &T,
    ) -> Result<(), ExecutionFailure> {
        self.created.insert(id);
        self.put(id, object_type, owner, value)
    }

    pub fn delete(&mut self, id: ObjectID) {
        if self.created.remove(&id) {
            self.writes.remove(&id);
        } else {
            self.writes.insert(id, Write::Delete);
        }
    }

    /// Rewrites an input unchanged, so that its version bumps (§6.2: a failed
    /// transaction still writes its mutable owned inputs).
    pub fn touch(&mut self, id: ObjectID) {
        if !self.writes.contains_key(&id) {
            if let Some(obj) = self.get(&id) {
                self.writes.insert(id, Write::Put(obj));
            }
        }
    }

    pub fn target(&self, id: &ObjectID) -> Option<TargetV1> {
        self.get(id)
            .filter(|o| o.object_type == ObjectType::Target)
            .and_then(|o| o.decode())
    }

    pub fn put_target(&mut self, id: ObjectID, target: &TargetV1) -> Result<(), ExecutionFailure> {
        self.put(id, ObjectType::Target, crate::SHARED_OWNER, target)
    }

    pub fn into_writes(self) -> TxWrites {
        TxWrites {
            writes: self.writes,
            created: self.created,
            system: self.system,
            system_written: self.system_written,
            digest: self.digest,
            gas_id: self.gas_id,
        }
    }

    /// The number of written objects (created + mutated, SystemState included):
    /// what the operation fee counts.
    pub fn written_count(&self) -> u64 {
        let puts = self
            .writes
            .values()
            .filter(|w| matches!(w, Write::Put(_)))
            .count() as u64;
        puts + u64::from(self.system_written)
    }
}
