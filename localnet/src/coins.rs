//! TransferCoin and PayCoins: one transfer rule for both (TransferCoin is a
//! PayCoins of one coin and at most one amount), as the chain's coin executor.
//!
//! With amounts: new coins are created for the recipients in order, the rest
//! stays in the gas coin (when it is among the coins) or the first coin, and
//! the other coins are deleted; when the gas coin pays, the remaining fees must
//! fit too. Without amounts (pay-all, one recipient): everything but the fees
//! moves to a new coin when the gas coin is among the coins; otherwise the
//! coins are merged into the first, which changes owner.

use soma_flow_chain::{Coin, ObjectID, ObjectRef, ObjectType, Owner, SomaAddress};

use crate::effects::{ErrorKind, ExecutionFailure};
use crate::params::SystemParameters;
use crate::store::TxStore;

fn insufficient() -> ExecutionFailure {
    ExecutionFailure::new(
        ErrorKind::InsufficientCoinBalance,
        "the coins cannot pay the amounts (and the fees, when the gas coin is among them)",
    )
}

pub(crate) fn transfer(
    store: &mut TxStore<'_>,
    coins: &[ObjectRef],
    amounts: Option<Vec<u64>>,
    recipients: &[SomaAddress],
    params: &SystemParameters,
) -> Result<(), ExecutionFailure> {
    if coins.is_empty() {
        return Err(ExecutionFailure::invalid_arguments(
            "Must provide at least one coin",
        ));
    }
    if recipients.is_empty() {
        return Err(ExecutionFailure::invalid_arguments(
            "Must provide at least one recipient",
        ));
    }
    let gas = store.gas_id;
    let has_gas = coins.iter().any(|c| Some(c.object_id) == gas);
    // Coins merged into the gas coin by smashing are skipped.
    let live: Vec<ObjectID> = coins
        .iter()
        .map(|c| c.object_id)
        .filter(|id| !store.is_deleted(id))
        .collect();
    let mut available: Vec<(ObjectID, u64)> = Vec::new();
    let mut total: u64 = 0;
    for id in &live {
        let balance = store.owned_coin(id)?;
        total = total
            .checked_add(balance)
            .ok_or_else(ExecutionFailure::overflow)?;
        available.push((*id, balance));
    }
    if available.is_empty() {
        return Err(insufficient());
    }
    match amounts {
        Some(amounts) => {
            if amounts.len() != recipients.len() {
                return Err(ExecutionFailure::invalid_arguments(&format!(
                    "Amounts and recipients must match. Got {} amounts and {} recipients",
                    amounts.len(),
                    recipients.len()
                )));
            }
            let payments = amounts
                .iter()
                .try_fold(0u64, |acc, a| acc.checked_add(*a))
                .ok_or_else(ExecutionFailure::overflow)?;
            let write_fee = params
                .write_object_fee
                .saturating_mul(1 + recipients.len() as u64);
            let required = if has_gas {
                payments
                    .checked_add(write_fee)
                    .ok_or_else(ExecutionFailure::overflow)?
            } else {
                payments
            };
            if total < required {
                return Err(insufficient());
            }
            for (amount, recipient) in amounts.iter().zip(recipients) {
                store.create_coin(*recipient, *amount)?;
            }
            let keeper = match gas.filter(|_| has_gas) {
                Some(gas) => gas,
                None => available[0].0,
            };
            store.set_coin_balance(keeper, total - payments)?;
            for (id, _) in &available {
                if *id != keeper {
                    store.delete(*id);
                }
            }
        }
        None => {
            let [recipient] = recipients else {
                return Err(ExecutionFailure::invalid_arguments(
                    "Pay-all operation only supports a single recipient",
                ));
            };
            if let (Some(gas), true) = (gas, has_gas) {
                let remaining_fee = params.write_object_fee.saturating_mul(2);
                if total <= remaining_fee {
                    return Err(insufficient());
                }
                store.create_coin(*recipient, total - remaining_fee)?;
                store.set_coin_balance(gas, remaining_fee)?;
                for (id, _) in &available {
                    if *id != gas {
                        store.delete(*id);
                    }
                }
            } else {
                let (first, _) = available[0];
                for (id, _) in &available[1..] {
                    store.delete(*id);
                }
                store.put(
                    first,
                    ObjectType::Coin,
                    Owner::AddressOwner(*recipient),
                    &Coin { balance: total },
                )?;
            }
        }
    }
    Ok(())
}
