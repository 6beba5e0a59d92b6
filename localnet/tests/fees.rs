//! Gas and fees (§6.2): the fee examples, revert-on-failure charging only the
//! base fee, gas smashing, insufficient gas, and the value-fee adjustment.

use soma_flow_chain::{ObjectType, TransactionKind};
use soma_flow_localnet::epoch::adjusted_value_fee_bps;
use soma_flow_localnet::{ErrorKind, SystemParameters};

use crate::common::{commit_kind, net, reveal_kind, signed, SOMA};

const EMB: [f32; 4] = [0.5, -1.25, 2.0, 0.0];

#[test]
fn create_model_of_one_soma_costs_501_900() {
    let mut n = net();
    let alice = n.alice.clone();
    let before = n.balance(&alice);
    let effects = n.ok(
        &alice,
        TransactionKind::CreateModel {
            stake_amount: SOMA,
            commission_rate: 0,
            architecture_version: 1,
        },
    );
    assert_eq!(
        (
            effects.fee.base_fee,
            effects.fee.operation_fee,
            effects.fee.value_fee
        ),
        (1000, 900, 500_000)
    );
    assert_eq!(effects.fee.total(), 501_900);
    assert_eq!(n.balance(&alice), before - SOMA as u128 - 501_900);
    // Written: the gas coin, the SystemState and the StakedSoma.
    assert_eq!(effects.created().len(), 1);
    assert_eq!(effects.mutated().len(), 2);
}

#[test]
fn commit_and_reveal_cost_1600() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, SOMA);
    let before = n.balance(&alice);
    assert_eq!(n.ok(&alice, commit_kind(id, 7, &EMB)).fee.total(), 1600);
    n.advance();
    assert_eq!(n.ok(&alice, reveal_kind(id, 7, &EMB)).fee.total(), 1600);
    assert_eq!(n.balance(&alice), before - 3200);
}

#[test]
fn a_failure_charges_only_the_base_fee_and_bumps_the_gas_version() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, SOMA);
    let gas_before = n.gas(&bob.address());
    let before = n.balance(&bob);
    let (kind, effects) = n.fails(&bob, commit_kind(id, 7, &EMB));
    assert_eq!(kind, ErrorKind::NotModelOwner);
    assert_eq!(effects.fee.total(), 1000);
    assert_eq!(n.balance(&bob), before - 1000);
    let gas_after = effects.gas_object().unwrap();
    assert_eq!(gas_after.object_id, gas_before.object_id);
    assert!(gas_after.version > gas_before.version);
    // Nothing else changed: the SystemState is not written.
    assert_eq!(effects.changed_objects.len(), 1);
    assert_eq!(
        n.ledger.model(&id).unwrap().state,
        soma_flow_localnet::ModelState::Created
    );
}

#[test]
fn transfer_fees_and_a_failed_transfer_bumps_its_owned_coin() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    // Gas pays 5 SOMA to bob: gas + the new coin are written.
    let gas = n.gas(&alice.address());
    let effects = n.ok(
        &alice,
        TransactionKind::TransferCoin {
            coin: gas,
            amount: Some(5 * SOMA),
            recipient: bob.address(),
        },
    );
    assert_eq!(effects.fee.total(), 1600);
    assert_eq!(n.balance(&bob), 105 * SOMA as u128);
    let new_coin = effects.created_of(ObjectType::Coin)[0];
    // Bob moves that whole coin back without amount, paying with his other coin.
    let bob_gas = n
        .ledger
        .coins(&bob.address())
        .into_iter()
        .find(|(r, _)| r.object_id != new_coin.object_id)
        .unwrap()
        .0;
    let (tx, sig) = signed(
        &bob,
        TransactionKind::TransferCoin {
            coin: new_coin,
            amount: None,
            recipient: alice.address(),
        },
        vec![bob_gas],
    );
    let effects = n.ledger.execute(&tx, &[sig]).unwrap();
    assert!(effects.is_success());
    assert_eq!(effects.fee.total(), 1000 + 2 * 300);
    let moved = n.ledger.object(&new_coin.object_id).unwrap();
    assert_eq!(
        moved.owner,
        soma_flow_chain::Owner::AddressOwner(alice.address())
    );

    // A failing transfer (too much) still bumps the transferred coin's version.
    let coin = n.ledger.object_ref(&new_coin.object_id).unwrap();
    let alice_gas = n
        .ledger
        .coins(&alice.address())
        .into_iter()
        .find(|(r, _)| r.object_id != coin.object_id)
        .unwrap()
        .0;
    let (tx, sig) = signed(
        &alice,
        TransactionKind::TransferCoin {
            coin,
            amount: Some(6 * SOMA),
            recipient: bob.address(),
        },
        vec![alice_gas],
    );
    let effects = n.ledger.execute(&tx, &[sig]).unwrap();
    assert_eq!(
        effects.failure().unwrap().kind,
        ErrorKind::InsufficientCoinBalance
    );
    assert_eq!(effects.fee.total(), 1000);
    let after = n.ledger.object_ref(&coin.object_id).unwrap();
    assert!(after.version > coin.version);
    assert_eq!(
        n.ledger
            .object(&coin.object_id)
            .unwrap()
            .data
            .decode::<soma_flow_chain::Coin>()
            .unwrap()
            .balance,
        5 * SOMA
    );
}

#[test]
fn gas_coins_are_smashed_into_the_first() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    n.ledger.faucet(alice.address(), 3 * SOMA).unwrap();
    let coins = n.ledger.coins(&alice.address());
    assert_eq!(coins.len(), 2);
    let gas: Vec<_> = coins.iter().map(|(r, _)| *r).collect();
    let (tx, sig) = signed(
        &alice,
        TransactionKind::PayCoins {
            coins: vec![gas[0]],
            amounts: Some(vec![SOMA]),
            recipients: vec![bob.address()],
        },
        gas.clone(),
    );
    let effects = n.ledger.execute(&tx, &[sig]).unwrap();
    assert!(effects.is_success());
    assert_eq!(effects.deleted(), vec![gas[1].object_id]);
    let left = n.ledger.coins(&alice.address());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, 103 * SOMA - SOMA - effects.fee.total());
}

#[test]
fn gas_below_the_fees_is_insufficient_gas_and_a_zero_coin_is_deleted() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let carol = crate::common::key(3);
    // Carol gets 1500: the base fee passes, the operation fee (2 × 300) does not.
    n.ok(
        &alice,
        TransactionKind::TransferCoin {
            coin: n.gas(&alice.address()),
            amount: Some(1500),
            recipient: carol.address(),
        },
    );
    let coin = n.gas(&carol.address());
    let (tx, sig) = signed(
        &carol,
        TransactionKind::TransferCoin {
            coin,
            amount: Some(1),
            recipient: bob.address(),
        },
        vec![coin],
    );
    let effects = n.ledger.execute(&tx, &[sig]).unwrap();
    assert_eq!(
        effects.failure().unwrap().kind,
        ErrorKind::InsufficientCoinBalance
    );
    assert_eq!(n.balance(&carol), 500);
    // Now 500 < base fee: all of it is taken and the coin deleted.
    let coin = n.gas(&carol.address());
    let (tx, sig) = signed(
        &carol,
        TransactionKind::TransferCoin {
            coin,
            amount: Some(1),
            recipient: bob.address(),
        },
        vec![coin],
    );
    let effects = n.ledger.execute(&tx, &[sig]).unwrap();
    assert_eq!(effects.failure().unwrap().kind, ErrorKind::InsufficientGas);
    assert_eq!(effects.fee.total(), 500);
    assert_eq!(effects.deleted(), vec![coin.object_id]);
    assert!(n.ledger.coins(&carol.address()).is_empty());
}

#[test]
fn insufficient_gas_after_execution_reverts_to_the_base_fee() {
    let mut n = net();
    let alice = n.alice.clone();
    let carol = crate::common::key(3);
    let id = n.create_model(&alice, SOMA);
    n.ok(
        &alice,
        TransactionKind::TransferCoin {
            coin: n.gas(&alice.address()),
            amount: Some(2 * SOMA),
            recipient: carol.address(),
        },
    );
    // Staking the whole gas coin holds back only the value fee and one write
    // fee; the three writes then cannot be paid (the fragile case of §6.3).
    let coin = n.gas(&carol.address());
    let (kind, effects) = n.fails(
        &carol,
        TransactionKind::AddStakeToModel {
            model_id: id,
            coin_ref: coin,
            amount: None,
        },
    );
    assert_eq!(kind, ErrorKind::InsufficientGas);
    assert_eq!(effects.fee.total(), 1000);
    assert_eq!(n.balance(&carol), 2 * SOMA as u128 - 1000);
    assert_eq!(n.ledger.model(&id).unwrap().staking_pool.soma_balance, SOMA);
    assert!(effects.created().is_empty());
}

#[test]
fn value_fee_bps_moves_by_at_most_an_eighth_within_bounds() {
    let p = SystemParameters::v5(4);
    // No fees: down by min(10 × 100%, 10 × 12.5%) = 1.
    assert_eq!(adjusted_value_fee_bps(&p, 0), 9);
    // Exactly the target: unchanged.
    assert_eq!(
        adjusted_value_fee_bps(&p, p.target_epoch_fee_collection),
        10
    );
    // Double the target: up by min(10, 1.25) = 1.
    assert_eq!(
        adjusted_value_fee_bps(&p, 2 * p.target_epoch_fee_collection),
        11
    );
    let mut high = p.clone();
    high.value_fee_bps = 50;
    assert_eq!(adjusted_value_fee_bps(&high, u64::MAX), 50);
    let mut low = p.clone();
    low.value_fee_bps = 1;
    assert_eq!(adjusted_value_fee_bps(&low, 0), 1);
    let mut n = net();
    n.advance();
    assert_eq!(n.ledger.system_state().parameters.value_fee_bps, 9);
}

#[test]
fn pay_all_with_the_gas_coin_keeps_only_the_fees() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let gas = n.gas(&alice.address());
    let (tx, sig) = signed(
        &alice,
        TransactionKind::PayCoins {
            coins: vec![gas],
            amounts: None,
            recipients: vec![bob.address()],
        },
        vec![gas],
    );
    let effects = n.ledger.execute(&tx, &[sig]).unwrap();
    assert!(effects.is_success(), "{:?}", effects.status);
    // Gas keeps exactly the two write fees it then pays: it reaches 0 and is deleted.
    assert_eq!(effects.fee.total(), 1600);
    assert_eq!(effects.deleted(), vec![gas.object_id]);
    assert_eq!(n.balance(&alice), 0);
    assert_eq!(n.balance(&bob), (200 * SOMA - 1600) as u128);
    let balance_changes: Vec<i128> = effects.balance_changes.iter().map(|c| c.amount).collect();
    assert_eq!(balance_changes.iter().sum::<i128>(), -1600);
}
