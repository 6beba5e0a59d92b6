//! `Ledger::execute`: after the input checks of §6.1 (`inputs`), gas smashing,
//! the base fee, the transaction's own rules, the operation and value fees, and
//! revert-on-failure charging only the base fee (§6.2).

use soma_flow_chain::{verify_transaction, TransactionData, TransactionKind, UserSignature};

use crate::coins;
use crate::effects::{
    Effects, ErrorKind, ExecutionFailure, ExecutionStatus, Rejection, TransactionFee,
};
use crate::inputs::{kind_inputs, KindInputs};
use crate::ledger::Ledger;
use crate::models;
use crate::store::TxStore;
use crate::submission;

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
        self.apply(tx, signatures.to_vec())
    }

    /// [`Ledger::execute`] with signatures in their flat 97-byte form
    /// (`00 ‖ sig ‖ pk`); a malformed one is an invalid signature.
    pub fn execute_flat(
        &mut self,
        tx: &TransactionData,
        signatures: &[&[u8]],
    ) -> Result<Effects, Rejection> {
        let parsed = signatures
            .iter()
            .map(|bytes| UserSignature::from_bytes(bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Rejection::InvalidSignature(e.to_string()))?;
        self.execute(tx, &parsed)
    }

    /// `SimulateTransaction`: the effects `tx` would have now, without
    /// signatures and without changing the ledger.
    pub fn simulate(&self, tx: &TransactionData) -> Result<Effects, Rejection> {
        self.clone().apply(tx, Vec::new())
    }

    fn apply(
        &mut self,
        tx: &TransactionData,
        signatures: Vec<UserSignature>,
    ) -> Result<Effects, Rejection> {
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
        self.record(tx.clone(), signatures, effects)
            .map_err(|e| Rejection::Internal(e.to_string()))
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
        store.validators = &self.data.validators;

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
        K::SetModelCommissionRate { model_id, new_rate } => {
            models::set_commission_rate(store, *model_id, *new_rate)
        }
        K::DeactivateModel { model_id } => models::deactivate(store, *model_id),
        K::ClaimRewards { target_id } => submission::claim(store, *target_id),
        K::ReportSubmission { target_id } => submission::report(store, *target_id, true),
        K::UndoReportSubmission { target_id } => submission::report(store, *target_id, false),
        _ => Err(ExecutionFailure::new(
            ErrorKind::OtherError,
            "not supported by the local network",
        )),
    }
}
