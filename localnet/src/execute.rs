//! `Ledger::execute`: the input checks of §6.1 (a refusal is a [`Rejection`]),
//! then gas smashing, the base fee, the transaction's own rules, the operation
//! and value fees, and revert-on-failure charging only the base fee (§6.2).

use std::collections::BTreeSet;

use soma_flow_chain::{
    verify_transaction, ObjectID, ObjectRef, ObjectType, Owner, TransactionData, TransactionKind,
    UserSignature,
};

use crate::coins;
use crate::effects::{
    Effects, ErrorKind, ExecutionFailure, ExecutionStatus, Rejection, TransactionFee,
};
use crate::ledger::Ledger;
use crate::models;
use crate::store::TxStore;
use crate::submission;

/// The inputs a supported kind declares besides its gas.
struct KindInputs {
    /// Mutable owned inputs (coins); they may repeat a gas coin.
    owned: Vec<ObjectRef>,
    /// The SystemState is a mutable shared input.
    system: bool,
    /// A target is a mutable shared input.
    target: Option<ObjectID>,
}

fn kind_inputs(kind: &TransactionKind) -> Result<KindInputs, Rejection> {
    use TransactionKind as K;
    let model = |owned: Vec<ObjectRef>| KindInputs {
        owned,
        system: true,
        target: None,
    };
    Ok(match kind {
        K::TransferCoin { coin, .. } => KindInputs {
            owned: vec![*coin],
            system: false,
            target: None,
        },
        K::PayCoins { coins, .. } => KindInputs {
            owned: coins.clone(),
            system: false,
            target: None,
        },
        K::CreateModel { .. } | K::CommitModel { .. } | K::RevealModel { .. } => model(Vec::new()),
        K::AddStakeToModel { coin_ref, .. } => model(vec![*coin_ref]),
        K::SubmitData {
            target_id,
            bond_coin,
            ..
        } => KindInputs {
            owned: vec![*bond_coin],
            system: true,
            target: Some(*target_id),
        },
        K::ClaimRewards { target_id } => KindInputs {
            owned: Vec::new(),
            system: true,
            target: Some(*target_id),
        },
        K::Genesis { .. } => return Err(Rejection::SystemTransaction("Genesis")),
        K::ConsensusCommitPrologueV1 { .. } => {
            return Err(Rejection::SystemTransaction("ConsensusCommitPrologueV1"))
        }
        K::ChangeEpoch { .. } => return Err(Rejection::SystemTransaction("ChangeEpoch")),
        other => return Err(Rejection::Unsupported(kind_name(other))),
    })
}

/// The variant name of a kind, for messages.
pub fn kind_name(kind: &TransactionKind) -> &'static str {
    use TransactionKind as K;
    match kind {
        K::Genesis { .. } => "Genesis",
        K::ConsensusCommitPrologueV1 { .. } => "ConsensusCommitPrologueV1",
        K::ChangeEpoch { .. } => "ChangeEpoch",
        K::AddValidator { .. } => "AddValidator",
        K::RemoveValidator { .. } => "RemoveValidator",
        K::ReportValidator { .. } => "ReportValidator",
        K::UndoReportValidator { .. } => "UndoReportValidator",
        K::UpdateValidatorMetadata { .. } => "UpdateValidatorMetadata",
        K::SetCommissionRate { .. } => "SetCommissionRate",
        K::TransferCoin { .. } => "TransferCoin",
        K::PayCoins { .. } => "PayCoins",
        K::TransferObjects { .. } => "TransferObjects",
        K::AddStake { .. } => "AddStake",
        K::WithdrawStake { .. } => "WithdrawStake",
        K::CreateModel { .. } => "CreateModel",
        K::CommitModel { .. } => "CommitModel",
        K::RevealModel { .. } => "RevealModel",
        K::AddStakeToModel { .. } => "AddStakeToModel",
        K::SetModelCommissionRate { .. } => "SetModelCommissionRate",
        K::DeactivateModel { .. } => "DeactivateModel",
        K::ReportModel { .. } => "ReportModel",
        K::UndoReportModel { .. } => "UndoReportModel",
        K::SubmitData { .. } => "SubmitData",
        K::ClaimRewards { .. } => "ClaimRewards",
        K::ReportSubmission { .. } => "ReportSubmission",
        K::UndoReportSubmission { .. } => "UndoReportSubmission",
    }
}

impl Ledger {
    /// Executes a signed transaction.
    ///
    /// `Err` is a refusal before execution (bad signature, stale or foreign
    /// input, unsupported kind): nothing changes. `Ok` holds the effects of an
    /// executed transaction, which may be a failure (then only the base fee is
    /// charged). A transaction executed before returns its recorded effects.
    pub fn execute(
        &mut self,
        tx: &TransactionData,
        signatures: &[UserSignature],
    ) -> Result<Effects, Rejection> {
        verify_transaction(tx, signatures)
            .map_err(|e| Rejection::InvalidSignature(e.to_string()))?;
        let digest = tx
            .digest()
            .map_err(|e| Rejection::Internal(e.to_string()))?;
        if let Some(done) = self.data.transactions.get(&digest) {
            return Ok(done.effects.clone());
        }
        let v1 = tx.v1();
        let inputs = kind_inputs(&v1.kind)?;
        let lamport = self.check_inputs(tx, &inputs)?;
        let effects = self.run(tx, &inputs, lamport, digest)?;
        self.record(tx.clone(), signatures.to_vec(), effects, false)
            .map_err(|e| Rejection::Internal(e.to_string()))
    }

    /// §6.1; returns the lamport version `1 + max(input versions)`.
    fn check_inputs(&self, tx: &TransactionData, inputs: &KindInputs) -> Result<u64, Rejection> {
        let v1 = tx.v1();
        if v1.gas_payment.is_empty() {
            return Err(Rejection::EmptyGas);
        }
        let mut gas_ids = BTreeSet::new();
        for gas in &v1.gas_payment {
            if !gas_ids.insert(gas.object_id) {
                return Err(Rejection::DuplicateInput(gas.object_id));
            }
        }
        let mut owned_ids = BTreeSet::new();
        for r in &inputs.owned {
            if !owned_ids.insert(r.object_id) {
                return Err(Rejection::DuplicateInput(r.object_id));
            }
        }
        let mut max_version = 0;
        for r in v1.gas_payment.iter().chain(&inputs.owned) {
            let current = self
                .object(&r.object_id)
                .ok_or(Rejection::ObjectNotFound(r.object_id))?;
            if current.data.version != r.version {
                return Err(Rejection::NotAvailableForConsumption {
                    requested: *r,
                    current_version: current.data.version,
                });
            }
            let actual = current
                .digest()
                .map_err(|e| Rejection::Internal(e.to_string()))?;
            if actual != r.digest {
                return Err(Rejection::InvalidObjectDigest {
                    object_id: r.object_id,
                    expected: r.digest,
                    actual,
                });
            }
            if current.owner != Owner::AddressOwner(v1.sender) {
                return Err(Rejection::NotOwnedBySender {
                    object_id: r.object_id,
                    sender: v1.sender,
                    owner: current.owner,
                });
            }
            max_version = max_version.max(r.version);
        }
        for gas in &v1.gas_payment {
            if self.object(&gas.object_id).map(|o| o.data.object_type) != Some(ObjectType::Coin) {
                return Err(Rejection::GasNotCoin(gas.object_id));
            }
        }
        if inputs.system {
            max_version = max_version.max(self.data.system_version);
        }
        if let Some(target) = inputs.target.and_then(|t| self.data.objects.get(&t)) {
            max_version = max_version.max(target.data.version);
        }
        Ok(max_version + 1)
    }

    fn run(
        &mut self,
        tx: &TransactionData,
        inputs: &KindInputs,
        lamport: u64,
        digest: soma_flow_chain::TransactionDigest,
    ) -> Result<Effects, Rejection> {
        let v1 = tx.v1();
        let params = self.data.system.parameters.clone();
        let mut store = TxStore::new(
            &self.data.objects,
            self.data.system.clone(),
            digest,
            v1.sender,
        );
        let primary = v1.gas_payment[0].object_id;
        store.gas_id = Some(primary);

        // Gas smashing: every gas coin's balance moves into the first.
        let mut total: u64 = 0;
        for gas in &v1.gas_payment {
            let balance = store
                .get(&gas.object_id)
                .and_then(|o| o.coin_balance())
                .unwrap_or(0);
            total = total.saturating_add(balance);
        }
        for gas in &v1.gas_payment[1..] {
            store.delete(gas.object_id);
        }

        let base_fee = params.base_fee.min(total);
        let (mut status, mut fee) = (
            ExecutionStatus::Success,
            TransactionFee {
                base_fee,
                ..TransactionFee::default()
            },
        );
        store
            .set_coin_balance(primary, total - base_fee)
            .map_err(|e| Rejection::Internal(e.description))?;
        let after_gas = store.clone();
        let outcome = if total < params.base_fee {
            Err(ExecutionFailure::new(
                ErrorKind::InsufficientGas,
                format!(
                    "gas balance {total} is below the base fee {}",
                    params.base_fee
                ),
            ))
        } else {
            let value_fee = params.value_fee(value_amount(&store, &v1.kind));
            store.system_written = inputs.system;
            let result = execute_kind(&mut store, &v1.kind, value_fee, &params);
            result.and_then(|()| {
                let operation_fee = params
                    .write_object_fee
                    .saturating_mul(store.written_count());
                let gas = store
                    .get(&primary)
                    .and_then(|o| o.coin_balance())
                    .unwrap_or(0);
                let due = operation_fee.saturating_add(value_fee);
                if gas < due {
                    return Err(ExecutionFailure::new(
                        ErrorKind::InsufficientGas,
                        format!("gas balance {gas} cannot pay the operation and value fees {due}"),
                    ));
                }
                fee.operation_fee = operation_fee;
                fee.value_fee = value_fee;
                store.set_coin_balance(primary, gas - due)
            })
        };
        if let Err(failure) = outcome {
            status = ExecutionStatus::Failure(failure);
            fee.operation_fee = 0;
            fee.value_fee = 0;
            store = after_gas;
            for r in &inputs.owned {
                if !store.is_deleted(&r.object_id) {
                    store.touch(r.object_id);
                }
            }
        }
        if store.get(&primary).and_then(|o| o.coin_balance()) == Some(0) {
            store.delete(primary);
        }
        let writes = store.into_writes();
        self.commit(writes, lamport, status, fee)
            .map_err(|e| Rejection::Internal(e.to_string()))
    }
}

/// The amount the value fee is taken on (§6.2).
fn value_amount(store: &TxStore<'_>, kind: &TransactionKind) -> u64 {
    match kind {
        TransactionKind::CreateModel { stake_amount, .. } => *stake_amount,
        TransactionKind::AddStakeToModel {
            coin_ref, amount, ..
        } => amount.unwrap_or_else(|| {
            store
                .get(&coin_ref.object_id)
                .and_then(|o| o.coin_balance())
                .unwrap_or(0)
        }),
        TransactionKind::ClaimRewards { target_id } => {
            store.target(target_id).map(|t| t.reward_pool).unwrap_or(0)
        }
        _ => 0,
    }
}

fn execute_kind(
    store: &mut TxStore<'_>,
    kind: &TransactionKind,
    value_fee: u64,
    params: &crate::params::SystemParameters,
) -> Result<(), ExecutionFailure> {
    use TransactionKind as K;
    match kind {
        K::TransferCoin {
            coin,
            amount,
            recipient,
        } => coins::transfer(
            store,
            &[*coin],
            amount.map(|a| vec![a]),
            &[*recipient],
            params,
        ),
        K::PayCoins {
            coins: refs,
            amounts,
            recipients,
        } => coins::transfer(store, refs, amounts.clone(), recipients, params),
        K::CreateModel {
            stake_amount,
            commission_rate,
            architecture_version,
        } => models::create(
            store,
            *stake_amount,
            *commission_rate,
            *architecture_version,
            value_fee,
        ),
        K::CommitModel {
            model_id,
            manifest,
            weights_commitment,
            embedding_commitment,
            decryption_key_commitment,
        } => models::commit(
            store,
            *model_id,
            crate::state::ModelCommit {
                manifest: manifest.clone(),
                weights_commitment: *weights_commitment,
                embedding_commitment: *embedding_commitment,
                decryption_key_commitment: *decryption_key_commitment,
                commit_epoch: 0,
            },
        ),
        K::RevealModel {
            model_id,
            decryption_key,
            embedding,
        } => models::reveal(store, *model_id, decryption_key, embedding),
        K::AddStakeToModel {
            model_id,
            coin_ref,
            amount,
        } => models::add_stake(store, *model_id, coin_ref.object_id, *amount, value_fee),
        K::SubmitData {
            target_id,
            data_manifest,
            model_id,
            embedding,
            distance_score,
            loss_score,
            bond_coin,
        } => submission::submit(
            store,
            submission::Submission {
                target_id: *target_id,
                data_manifest,
                model_id: *model_id,
                embedding,
                distance_score,
                loss_score,
                bond_coin: bond_coin.object_id,
            },
        ),
        K::ClaimRewards { target_id } => submission::claim(store, *target_id),
        _ => Err(ExecutionFailure::new(
            ErrorKind::OtherError,
            "not supported by the local network",
        )),
    }
}
