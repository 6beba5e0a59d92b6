//! The ledger: every object with its version and digest, the system state,
//! executed transactions, checkpoints and epochs; genesis; committing one
//! transaction's writes; and the owner index.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use soma_flow_chain::{
    derive_id, Coin, Digest, ObjectData, ObjectID, ObjectInner, ObjectRef, ObjectType, Owner,
    SecretKey, SomaAddress, TransactionData, TransactionDigest, TransactionKind, UserSignature,
};

use crate::checkpoint::{Checkpoint, EpochRecord};
use crate::effects::{
    BalanceChange, ChangedObject, Effects, ExecutionStatus, IdOperation, ObjectState,
    TransactionFee,
};
use crate::params::GenesisConfig;
use crate::state::{EmissionPool, ModelRegistry, SystemState, TargetState};
use crate::store::{Obj, TxWrites, Write};
use crate::LedgerError;

/// The version of the system state object and every genesis object.
pub const GENESIS_VERSION: u64 = 1;

/// An executed transaction as the API serves it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// System transactions (genesis, epoch change) have the system sender and
    /// no gas.
    pub transaction: TransactionData,
    pub signatures: Vec<UserSignature>,
    pub effects: Effects,
}

/// Everything that is persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LedgerData {
    pub objects: BTreeMap<ObjectID, ObjectInner>,
    pub system: SystemState,
    pub system_version: u64,
    pub system_previous_transaction: TransactionDigest,
    pub transactions: BTreeMap<TransactionDigest, TransactionRecord>,
    pub checkpoints: Vec<Checkpoint>,
    pub epochs: Vec<EpochRecord>,
    /// Fees collected in the current epoch (for the value-fee adjustment).
    pub epoch_fees: u64,
    pub faucet_secret_key: [u8; 32],
    /// The time the next checkpoint is stamped with (never before the last
    /// checkpoint or the epoch start).
    pub clock_ms: u64,
    /// The validators (address, voting power of 10 000), from the genesis; none by
    /// default. After the fields of format 1, so that a ledger of format 1 reads as
    /// one without validators.
    pub validators: Vec<(SomaAddress, u64)>,
    /// Executed transactions not yet in a checkpoint, in execution order (the
    /// open checkpoint). Last, so that a ledger of format 2 reads as one with none.
    pub pending: Vec<TransactionDigest>,
}

/// A deterministic SOMA ledger at protocol version 5.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub(crate) data: LedgerData,
    /// Address → owned object ids; derived from `objects`, never persisted.
    pub(crate) owner_index: BTreeMap<SomaAddress, BTreeSet<ObjectID>>,
}

/// The Genesis transaction's sender and the system sender.
pub const SYSTEM_ADDRESS: SomaAddress = SomaAddress([0; 32]);

impl Ledger {
    /// A new chain: epoch 0, the system state, a Coin per funded account and
    /// the faucet's coin, all at version 1, in the Genesis transaction of
    /// checkpoint 0 (whose digest is the chain id).
    pub fn genesis(config: GenesisConfig) -> Result<Self, LedgerError> {
        let params = config.parameters.clone();
        let faucet = SecretKey::from_bytes(&config.faucet_secret_key).address();
        let seed = Digest::of(&bcs::to_bytes(&config)?);
        let marker = Digest([0; 32]);
        let mut objects = BTreeMap::new();
        let faucet_account = [(faucet, config.faucet_balance)];
        let accounts = config.accounts.iter().chain(faucet_account.iter());
        for (n, (owner, balance)) in accounts.enumerate() {
            let id = derive_id(&seed, n as u64);
            let data = ObjectData::new(
                ObjectType::Coin,
                GENESIS_VERSION,
                id,
                &Coin { balance: *balance },
            )?;
            objects.insert(
                id,
                ObjectInner {
                    data,
                    owner: Owner::AddressOwner(*owner),
                    previous_transaction: marker,
                },
            );
        }
        let system = SystemState {
            epoch: 0,
            epoch_start_timestamp_ms: config.genesis_timestamp_ms,
            protocol_version: config.protocol_version,
            validators_total_stake: 0,
            emission_pool: EmissionPool {
                balance: config.emission_pool_balance,
                emission_per_epoch: config.emission_per_epoch,
            },
            model_registry: ModelRegistry::default(),
            target_state: TargetState {
                distance_threshold: params.target_initial_distance_threshold,
                targets_generated_this_epoch: 0,
                hits_this_epoch: 0,
                hits_ema: 0,
                reward_per_target: params.reward_per_target(config.emission_per_epoch),
            },
            parameters: params,
            safe_mode: false,
            safe_mode_accumulated_fees: 0,
            safe_mode_accumulated_emissions: 0,
        };
        let genesis_tx = TransactionData::new(
            TransactionKind::Genesis {
                objects: objects.values().cloned().collect(),
            },
            SYSTEM_ADDRESS,
            Vec::new(),
        );
        let digest = genesis_tx.digest()?;
        let mut ledger = Self {
            data: LedgerData {
                objects,
                system,
                system_version: GENESIS_VERSION,
                system_previous_transaction: marker,
                transactions: BTreeMap::new(),
                checkpoints: Vec::new(),
                epochs: Vec::new(),
                epoch_fees: 0,
                faucet_secret_key: config.faucet_secret_key,
                clock_ms: config.genesis_timestamp_ms,
                validators: config.validators.clone(),
                pending: Vec::new(),
            },
            owner_index: BTreeMap::new(),
        };
        ledger.rebuild_owner_index();
        let mut changed = Vec::new();
        for (id, inner) in &ledger.data.objects {
            changed.push(ChangedObject {
                object_id: *id,
                object_type: inner.data.object_type,
                input: None,
                output: Some(ObjectState {
                    version: GENESIS_VERSION,
                    digest: inner.digest()?,
                    owner: inner.owner,
                }),
                id_operation: IdOperation::Created,
            });
        }
        let effects = Effects {
            transaction_digest: digest,
            status: ExecutionStatus::Success,
            epoch: 0,
            fee: TransactionFee::default(),
            lamport_version: GENESIS_VERSION,
            changed_objects: changed,
            gas_object_index: None,
            balance_changes: Vec::new(),
            checkpoint: 0,
            timestamp_ms: config.genesis_timestamp_ms,
        };
        ledger.record(genesis_tx, Vec::new(), effects)?;
        ledger.close_checkpoint()?;
        ledger.data.epochs.push(EpochRecord {
            epoch: 0,
            start_timestamp_ms: config.genesis_timestamp_ms,
            end_timestamp_ms: None,
            first_checkpoint: 0,
            last_checkpoint: None,
            system_state: ledger.data.system.clone(),
        });
        Ok(ledger)
    }

    pub(crate) fn rebuild_owner_index(&mut self) {
        self.owner_index.clear();
        for (id, inner) in &self.data.objects {
            if let Owner::AddressOwner(owner) = inner.owner {
                self.owner_index.entry(owner).or_default().insert(*id);
            }
        }
    }

    fn index_remove(&mut self, id: &ObjectID) {
        if let Some(Owner::AddressOwner(owner)) = self.data.objects.get(id).map(|o| o.owner) {
            if let Some(set) = self.owner_index.get_mut(&owner) {
                set.remove(id);
                if set.is_empty() {
                    self.owner_index.remove(&owner);
                }
            }
        }
    }

    /// The time the next transaction and checkpoint get: the clock, never
    /// before the latest checkpoint, a transaction waiting for one, or the epoch
    /// start (times never go back).
    pub(crate) fn now_ms(&self) -> u64 {
        let last = self.data.checkpoints.last().map_or(0, |c| c.timestamp_ms);
        let waiting = self
            .data
            .pending
            .last()
            .and_then(|d| self.data.transactions.get(d))
            .map_or(0, |r| r.effects.timestamp_ms);
        self.data
            .clock_ms
            .max(last)
            .max(waiting)
            .max(self.data.system.epoch_start_timestamp_ms)
    }

    /// The validators and their voting power (of 10 000).
    pub fn validators(&self) -> &[(SomaAddress, u64)] {
        &self.data.validators
    }

    /// Sets the epoch length (`parameters.epoch_duration_ms`): an operator's setting of
    /// a local network, as its genesis would have it, not a transaction. The current
    /// epoch ends at its start plus the new length.
    pub fn set_epoch_duration_ms(&mut self, ms: u64) {
        self.data.system.parameters.epoch_duration_ms = ms.max(1);
    }

    /// Sets the clock that stamps the next checkpoints (a server passes its
    /// wall time). Time never goes back: an earlier value stamps checkpoints
    /// with the latest time already used.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.data.clock_ms = now_ms;
    }

    /// Stores an executed transaction in the open checkpoint (the one that
    /// [`Ledger::close_checkpoint`] seals next, whose number its effects get).
    pub(crate) fn record(
        &mut self,
        transaction: TransactionData,
        signatures: Vec<UserSignature>,
        mut effects: Effects,
    ) -> Result<Effects, LedgerError> {
        effects.checkpoint = self.data.checkpoints.len() as u64;
        self.data.pending.push(effects.transaction_digest);
        self.data.transactions.insert(
            effects.transaction_digest,
            TransactionRecord {
                transaction,
                signatures,
                effects: effects.clone(),
            },
        );
        Ok(effects)
    }

    /// Seals the open checkpoint: the transactions executed since the last one,
    /// stamped with the latest of their times. Returns its sequence number, or
    /// `None` when no transaction was waiting. A server closes one per durable
    /// write, so transactions that arrive together share a checkpoint; a
    /// transaction is final ([`Ledger::transaction_checkpoint`]) once its
    /// checkpoint is closed.
    pub fn close_checkpoint(&mut self) -> Result<Option<u64>, LedgerError> {
        self.seal(false)
    }

    /// [`Ledger::close_checkpoint`], marking the checkpoint as its epoch's last
    /// or not.
    pub(crate) fn seal(&mut self, end_of_epoch: bool) -> Result<Option<u64>, LedgerError> {
        if self.data.pending.is_empty() {
            return Ok(None);
        }
        let transactions = std::mem::take(&mut self.data.pending);
        let sequence_number = self.data.checkpoints.len() as u64;
        let effects = |d: &TransactionDigest| self.data.transactions.get(d).map(|r| &r.effects);
        let timestamp_ms = transactions
            .iter()
            .filter_map(effects)
            .map(|e| e.timestamp_ms)
            .max()
            .unwrap_or_else(|| self.now_ms());
        let epoch = transactions
            .first()
            .and_then(effects)
            .map_or(self.data.system.epoch, |e| e.epoch);
        let checkpoint = Checkpoint::new(
            sequence_number,
            epoch,
            timestamp_ms,
            transactions,
            self.data.checkpoints.last().map(|c| c.digest),
            self.data.transactions.len() as u64,
            end_of_epoch,
        )?;
        self.data.checkpoints.push(checkpoint);
        Ok(Some(sequence_number))
    }

    /// Applies a transaction's writes at `lamport` and builds its effects
    /// (everything but the checkpoint, set by [`Ledger::record`]).
    pub(crate) fn commit(
        &mut self,
        store: TxWrites,
        lamport: u64,
        status: ExecutionStatus,
        fee: TransactionFee,
    ) -> Result<Effects, LedgerError> {
        let digest = store.digest;
        let gas_id = store.gas_id;
        let mut changed = Vec::new();
        let mut balances: BTreeMap<SomaAddress, i128> = BTreeMap::new();
        let TxWrites {
            writes,
            created,
            system,
            system_written,
            ..
        } = store;
        let mut new_objects = Vec::new();
        for (id, write) in writes {
            let input = self.data.objects.get(&id).cloned();
            let input_state = match &input {
                Some(inner) => Some(ObjectState {
                    version: inner.data.version,
                    digest: inner.digest()?,
                    owner: inner.owner,
                }),
                None => None,
            };
            if let Some(inner) = &input {
                let obj = Obj::from_inner(inner);
                if let (Owner::AddressOwner(a), Some(b)) =
                    (inner.owner, obj.and_then(|o| o.coin_balance()))
                {
                    *balances.entry(a).or_default() -= b as i128;
                }
            }
            let (object_type, output) = match write {
                Write::Put(obj) => {
                    if let (Owner::AddressOwner(a), Some(b)) = (obj.owner, obj.coin_balance()) {
                        *balances.entry(a).or_default() += b as i128;
                    }
                    let inner = ObjectInner {
                        data: ObjectData::from_proto_contents(
                            obj.object_type,
                            lamport,
                            id,
                            &obj.contents,
                        ),
                        owner: obj.owner,
                        previous_transaction: digest,
                    };
                    let state = ObjectState {
                        version: lamport,
                        digest: inner.digest()?,
                        owner: inner.owner,
                    };
                    new_objects.push((id, Some(inner)));
                    (obj.object_type, Some(state))
                }
                Write::Delete => {
                    new_objects.push((id, None));
                    let object_type = input
                        .as_ref()
                        .map(|i| i.data.object_type)
                        .unwrap_or(ObjectType::Coin);
                    (object_type, None)
                }
            };
            let id_operation = if created.contains(&id) {
                IdOperation::Created
            } else if output.is_none() {
                IdOperation::Deleted
            } else {
                IdOperation::None
            };
            changed.push(ChangedObject {
                object_id: id,
                object_type,
                input: input_state,
                output,
                id_operation,
            });
        }
        for (id, inner) in new_objects {
            self.index_remove(&id);
            match inner {
                Some(inner) => {
                    if let Owner::AddressOwner(owner) = inner.owner {
                        self.owner_index.entry(owner).or_default().insert(id);
                    }
                    self.data.objects.insert(id, inner);
                }
                None => {
                    self.data.objects.remove(&id);
                }
            }
        }
        if system_written {
            let input = self.system_object()?;
            let input_state = ObjectState {
                version: input.data.version,
                digest: input.digest()?,
                owner: input.owner,
            };
            self.data.system = system;
            self.data.system_version = lamport;
            self.data.system_previous_transaction = digest;
            let output = self.system_object()?;
            changed.push(ChangedObject {
                object_id: ObjectID::SYSTEM_STATE,
                object_type: ObjectType::SystemState,
                input: Some(input_state),
                output: Some(ObjectState {
                    version: lamport,
                    digest: output.digest()?,
                    owner: output.owner,
                }),
                id_operation: IdOperation::None,
            });
            changed.sort_by_key(|c| c.object_id);
        }
        let gas_object_index = gas_id.and_then(|g| changed.iter().position(|c| c.object_id == g));
        self.data.epoch_fees = self.data.epoch_fees.saturating_add(fee.total());
        Ok(Effects {
            transaction_digest: digest,
            status,
            epoch: self.data.system.epoch,
            fee,
            lamport_version: lamport,
            changed_objects: changed,
            gas_object_index,
            balance_changes: balances
                .into_iter()
                .filter(|(_, v)| *v != 0)
                .map(|(address, amount)| BalanceChange { address, amount })
                .collect(),
            checkpoint: 0,
            timestamp_ms: self.now_ms(),
        })
    }

    /// The SystemState object (`0x…05`, Shared{1}).
    pub fn system_object(&self) -> Result<ObjectInner, LedgerError> {
        Ok(ObjectInner {
            data: ObjectData::new(
                ObjectType::SystemState,
                self.data.system_version,
                ObjectID::SYSTEM_STATE,
                &self.data.system,
            )?,
            owner: crate::SHARED_OWNER,
            previous_transaction: self.data.system_previous_transaction,
        })
    }

    /// An object by id: the system state, a coin, a StakedSoma or a target.
    pub fn object(&self, id: &ObjectID) -> Option<ObjectInner> {
        if *id == ObjectID::SYSTEM_STATE {
            return self.system_object().ok();
        }
        self.data.objects.get(id).cloned()
    }

    /// An object's current reference (what a client puts in `gas_payment`).
    pub fn object_ref(&self, id: &ObjectID) -> Option<ObjectRef> {
        let inner = self.object(id)?;
        Some(ObjectRef {
            object_id: *id,
            version: inner.data.version,
            digest: inner.digest().ok()?,
        })
    }

    /// The objects an address owns, optionally of one type, in id order,
    /// starting after `cursor`; at most `limit`. Returns the page and the
    /// cursor of the next page, if any.
    pub fn owned_objects(
        &self,
        owner: &SomaAddress,
        object_type: Option<ObjectType>,
        cursor: Option<ObjectID>,
        limit: usize,
    ) -> (Vec<(ObjectID, ObjectInner)>, Option<ObjectID>) {
        let Some(ids) = self.owner_index.get(owner) else {
            return (Vec::new(), None);
        };
        let mut page = Vec::new();
        let start = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        for id in ids.range((start, std::ops::Bound::Unbounded)) {
            let Some(inner) = self.data.objects.get(id) else {
                continue;
            };
            if object_type.is_some_and(|t| t != inner.data.object_type) {
                continue;
            }
            if page.len() == limit.max(1) {
                let next = page_last(&page);
                return (page, Some(next));
            }
            page.push((*id, inner.clone()));
        }
        (page, None)
    }

    /// The address's coins with their balances, in id order.
    pub fn coins(&self, owner: &SomaAddress) -> Vec<(ObjectRef, u64)> {
        let Some(ids) = self.owner_index.get(owner) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| {
                let inner = self.data.objects.get(id)?;
                let balance = Obj::from_inner(inner)?.coin_balance()?;
                Some((self.object_ref(id)?, balance))
            })
            .collect()
    }

    /// The sum of the address's Coin balances (0 if none).
    pub fn balance(&self, owner: &SomaAddress) -> u128 {
        self.coins(owner).iter().map(|(_, b)| *b as u128).sum()
    }

    pub fn system_state(&self) -> &SystemState {
        &self.data.system
    }

    /// An executed transaction by digest.
    pub fn transaction(&self, digest: &TransactionDigest) -> Option<&TransactionRecord> {
        self.data.transactions.get(digest)
    }

    /// The checkpoint holding a transaction: `Some` means it is final (its
    /// checkpoint is closed).
    pub fn transaction_checkpoint(&self, digest: &TransactionDigest) -> Option<u64> {
        self.transaction(digest)
            .map(|r| r.effects.checkpoint)
            .filter(|&c| c < self.data.checkpoints.len() as u64)
    }

    pub fn checkpoint(&self, sequence_number: u64) -> Option<&Checkpoint> {
        self.data
            .checkpoints
            .get(usize::try_from(sequence_number).ok()?)
    }

    pub fn latest_checkpoint(&self) -> &Checkpoint {
        // Genesis always records checkpoint 0.
        let Some(last) = self.data.checkpoints.last() else {
            unreachable!("a ledger always holds the genesis checkpoint")
        };
        last
    }

    /// Checkpoints after `sequence_number`, in order (for a subscription).
    pub fn checkpoints_after(&self, sequence_number: u64) -> &[Checkpoint] {
        let start = usize::try_from(sequence_number.saturating_add(1)).unwrap_or(usize::MAX);
        self.data.checkpoints.get(start..).unwrap_or(&[])
    }

    /// The chain id: the genesis checkpoint digest.
    pub fn chain_id(&self) -> Digest {
        self.data
            .checkpoints
            .first()
            .map(|c| c.digest)
            .unwrap_or(Digest([0; 32]))
    }
}

fn page_last(page: &[(ObjectID, ObjectInner)]) -> ObjectID {
    page.last().map(|(id, _)| *id).unwrap_or(ObjectID([0; 32]))
}

/// `GetEpoch`'s view of one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochInfo {
    pub epoch: u64,
    pub start_timestamp_ms: u64,
    pub end_timestamp_ms: Option<u64>,
    pub first_checkpoint: u64,
    pub last_checkpoint: Option<u64>,
    pub protocol_version: u64,
    /// Live for the current epoch; the snapshot taken at its start otherwise.
    pub system_state: SystemState,
}

impl Ledger {
    /// An epoch (`None` = the current one).
    pub fn epoch_info(&self, epoch: Option<u64>) -> Option<EpochInfo> {
        let current = self.data.system.epoch;
        let epoch = epoch.unwrap_or(current);
        let record = self.data.epochs.iter().find(|r| r.epoch == epoch)?;
        let system_state = if epoch == current {
            self.data.system.clone()
        } else {
            record.system_state.clone()
        };
        Some(EpochInfo {
            epoch,
            start_timestamp_ms: record.start_timestamp_ms,
            end_timestamp_ms: record.end_timestamp_ms,
            first_checkpoint: record.first_checkpoint,
            last_checkpoint: record.last_checkpoint,
            protocol_version: system_state.protocol_version,
            system_state,
        })
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.data.system.epoch
    }

    /// A model by id (models are registry entries, not objects).
    pub fn model(&self, id: &ObjectID) -> Option<&crate::state::Model> {
        self.data.system.model_registry.models.get(id)
    }
}
