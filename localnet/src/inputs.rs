//! The input checks of §6.1, before anything executes: which inputs a kind
//! declares, and whether the gas and owned inputs are current, the sender's and
//! distinct. A refusal is a [`Rejection`]: nothing changes and nothing is
//! charged.

use std::collections::BTreeSet;

use soma_flow_chain::{ObjectID, ObjectRef, ObjectType, Owner, TransactionData, TransactionKind};

use crate::effects::Rejection;
use crate::ledger::Ledger;

/// The inputs a supported kind declares besides its gas.
pub(crate) struct KindInputs {
    /// Mutable owned inputs (coins); they may repeat a gas coin.
    pub owned: Vec<ObjectRef>,
    /// The SystemState is a mutable shared input.
    pub system: bool,
    /// A target is a mutable shared input.
    pub target: Option<ObjectID>,
}

pub(crate) fn kind_inputs(kind: &TransactionKind) -> Result<KindInputs, Rejection> {
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
        K::CreateModel { .. }
        | K::CommitModel { .. }
        | K::RevealModel { .. }
        | K::SetModelCommissionRate { .. }
        | K::DeactivateModel { .. } => model(Vec::new()),
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
        K::ClaimRewards { target_id }
        | K::ReportSubmission { target_id }
        | K::UndoReportSubmission { target_id } => KindInputs {
            owned: Vec::new(),
            system: true,
            target: Some(*target_id),
        },
        K::Genesis { .. } => return Err(Rejection::SystemTransaction("Genesis")),
        K::ConsensusCommitPrologueV1 { .. } => {
            return Err(Rejection::SystemTransaction("ConsensusCommitPrologueV1"))
        }
        K::ChangeEpoch { .. } => return Err(Rejection::SystemTransaction("ChangeEpoch")),
        other => return Err(Rejection::Unsupported(other.name())),
    })
}

impl Ledger {
    /// §6.1; returns the lamport version `1 + max(input versions)`.
    pub(crate) fn check_inputs(
        &self,
        tx: &TransactionData,
        inputs: &KindInputs,
    ) -> Result<u64, Rejection> {
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
}
