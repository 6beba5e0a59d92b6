//! The input checks of §6.1 and signature verification: refusals are
//! `Rejection`s and change nothing.

use soma_flow_chain::{
    sign_transaction, Digest, ObjectRef, TransactionData, TransactionKind, UserSignature,
};
use soma_flow_localnet::{Rejection, RejectionCode};

use crate::common::{net, signed, SOMA};

fn transfer(
    n: &crate::common::Net,
    to: &soma_flow_chain::SecretKey,
    coin: ObjectRef,
) -> TransactionKind {
    let _ = n;
    TransactionKind::TransferCoin {
        coin,
        amount: Some(SOMA),
        recipient: to.address(),
    }
}

#[test]
fn a_stale_version_is_not_available_for_consumption() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let old = n.gas(&alice.address());
    let (tx, sig) = signed(&alice, transfer(&n, &bob, old), vec![old]);
    assert!(n.ledger.execute(&tx, &[sig]).unwrap().is_success());
    // Another transaction with the consumed ref.
    let kind = TransactionKind::TransferCoin {
        coin: old,
        amount: Some(2 * SOMA),
        recipient: bob.address(),
    };
    let (tx, sig) = signed(&alice, kind, vec![old]);
    let checkpoints = n.ledger.latest_checkpoint().sequence_number;
    let err = n.ledger.execute(&tx, &[sig]).unwrap_err();
    let current = n.gas(&alice.address()).version;
    assert_eq!(
        err,
        Rejection::NotAvailableForConsumption {
            requested: old,
            current_version: current,
        }
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("Object ({}, ", old.object_id)),
        "{text}"
    );
    assert!(
        text.contains("is not available for consumption, its current version"),
        "{text}"
    );
    assert_eq!(err.code(), RejectionCode::InvalidArgument);
    assert_eq!(n.ledger.latest_checkpoint().sequence_number, checkpoints);
}

#[test]
fn a_wrong_digest_unknown_object_or_foreign_coin_is_refused() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let gas = n.gas(&alice.address());
    let wrong = ObjectRef {
        digest: Digest([7; 32]),
        ..gas
    };
    let (tx, sig) = signed(&alice, transfer(&n, &bob, wrong), vec![wrong]);
    assert!(matches!(
        n.ledger.execute(&tx, &[sig]),
        Err(Rejection::InvalidObjectDigest { .. })
    ));

    let missing = ObjectRef {
        object_id: soma_flow_chain::ObjectID([3; 32]),
        ..gas
    };
    let (tx, sig) = signed(&alice, transfer(&n, &bob, missing), vec![missing]);
    let err = n.ledger.execute(&tx, &[sig]).unwrap_err();
    assert_eq!(err, Rejection::ObjectNotFound(missing.object_id));
    assert_eq!(err.code(), RejectionCode::NotFound);

    // Bob's coin as Alice's gas.
    let bobs = n.gas(&bob.address());
    let (tx, sig) = signed(&alice, transfer(&n, &bob, gas), vec![bobs]);
    assert!(matches!(
        n.ledger.execute(&tx, &[sig]),
        Err(Rejection::NotOwnedBySender { .. })
    ));
    // A StakedSoma as gas.
    let model_effects = n.ok(
        &alice,
        TransactionKind::CreateModel {
            stake_amount: SOMA,
            commission_rate: 0,
            architecture_version: 1,
        },
    );
    let staked = model_effects.created_of(soma_flow_chain::ObjectType::StakedSoma)[0];
    let (tx, sig) = signed(&alice, transfer(&n, &bob, staked), vec![staked]);
    assert_eq!(
        n.ledger.execute(&tx, &[sig]).unwrap_err(),
        Rejection::GasNotCoin(staked.object_id)
    );
}

#[test]
fn empty_or_duplicate_gas_and_unsupported_kinds_are_refused() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let gas = n.gas(&alice.address());
    let (tx, sig) = signed(&alice, transfer(&n, &bob, gas), vec![]);
    assert_eq!(
        n.ledger.execute(&tx, &[sig]).unwrap_err(),
        Rejection::EmptyGas
    );
    let (tx, sig) = signed(&alice, transfer(&n, &bob, gas), vec![gas, gas]);
    assert_eq!(
        n.ledger.execute(&tx, &[sig]).unwrap_err(),
        Rejection::DuplicateInput(gas.object_id)
    );
    let pay = TransactionKind::PayCoins {
        coins: vec![gas, gas],
        amounts: None,
        recipients: vec![bob.address()],
    };
    let (tx, sig) = signed(&alice, pay, vec![gas]);
    assert_eq!(
        n.ledger.execute(&tx, &[sig]).unwrap_err(),
        Rejection::DuplicateInput(gas.object_id)
    );
    let (tx, sig) = signed(
        &alice,
        TransactionKind::TransferObjects {
            objects: vec![gas],
            recipient: bob.address(),
        },
        vec![gas],
    );
    let err = n.ledger.execute(&tx, &[sig]).unwrap_err();
    assert_eq!(err, Rejection::Unsupported("TransferObjects"));
    assert!(err
        .to_string()
        .contains("not supported by the local network"));
    let change = TransactionKind::ChangeEpoch {
        epoch: 1,
        epoch_start_timestamp_ms: 0,
        protocol_version: 5,
        fees: 0,
        epoch_randomness: vec![],
    };
    let (tx, sig) = signed(&alice, change, vec![gas]);
    assert_eq!(
        n.ledger.execute(&tx, &[sig]).unwrap_err(),
        Rejection::SystemTransaction("ChangeEpoch")
    );
    assert_eq!(n.ledger.epoch(), 0);
}

#[test]
fn signatures_are_verified_as_the_chain_does() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let gas = n.gas(&alice.address());
    let tx = TransactionData::new(transfer(&n, &bob, gas), alice.address(), vec![gas]);
    // Bob's signature on Alice's transaction; a flipped bit; none; two.
    let by_bob = sign_transaction(&bob, &tx).unwrap();
    assert!(matches!(
        n.ledger.execute(&tx, &[by_bob]),
        Err(Rejection::InvalidSignature(_))
    ));
    let good = sign_transaction(&alice, &tx).unwrap();
    let mut bytes = *good.as_bytes();
    bytes[10] ^= 1;
    let flipped = UserSignature::from_bytes(&bytes).unwrap();
    assert!(matches!(
        n.ledger.execute(&tx, &[flipped]),
        Err(Rejection::InvalidSignature(_))
    ));
    assert!(matches!(
        n.ledger.execute(&tx, &[]),
        Err(Rejection::InvalidSignature(_))
    ));
    assert!(matches!(
        n.ledger.execute(&tx, &[good, good]),
        Err(Rejection::InvalidSignature(_))
    ));
    assert_eq!(n.gas(&alice.address()), gas);
    // Accepted once; the same transaction again returns the same effects.
    let first = n.ledger.execute(&tx, &[good]).unwrap();
    let again = n.ledger.execute(&tx, &[good]).unwrap();
    assert_eq!(first, again);
    assert_eq!(n.balance(&bob), 101 * SOMA as u128);
}

/// §3.8: the document's signed CreateModel passes signature verification (it
/// is then refused only because its gas coin does not exist here).
#[test]
fn doc_3_8_create_model_signature_is_accepted() {
    let n = &mut net();
    let signer = soma_flow_chain::SecretKey::from_bytes(&core::array::from_fn(|i| i as u8 + 1));
    let gas = ObjectRef {
        object_id: soma_flow_chain::ObjectID([0x11; 32]),
        version: 7,
        digest: Digest([0x22; 32]),
    };
    let tx = TransactionData::new(
        TransactionKind::CreateModel {
            stake_amount: 1_000_000_000,
            commission_rate: 1000,
            architecture_version: 1,
        },
        signer.address(),
        vec![gas],
    );
    assert_eq!(
        tx.digest().unwrap().to_base58(),
        "GvxQgXQjpGyuJBrTpMbsuy9N2f5HpENYxWAN9o53dxHN"
    );
    let mut flat = vec![0u8];
    flat.extend(hex::decode("4e86ab6671271b3ec40bf26dc538075dc7e600e0a892a80da2ac15078b36f43c70ec45a1ee1f84f3fddf8cfcac579b496ba1ecbce4edb1303f11667f0d45e802").unwrap());
    flat.extend(
        hex::decode("79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664").unwrap(),
    );
    let sig = UserSignature::from_bytes(&flat).unwrap();
    assert_eq!(
        n.ledger.execute(&tx, &[sig]).unwrap_err(),
        Rejection::ObjectNotFound(gas.object_id)
    );
    flat[20] ^= 1;
    let bad = UserSignature::from_bytes(&flat).unwrap();
    assert!(matches!(
        n.ledger.execute(&tx, &[bad]),
        Err(Rejection::InvalidSignature(_))
    ));
}

#[test]
fn flat_signatures_and_simulation() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let gas = n.gas(&alice.address());
    let tx = TransactionData::new(transfer(&n, &bob, gas), alice.address(), vec![gas]);
    // Simulation needs no signature and changes nothing.
    let simulated = n.ledger.simulate(&tx).unwrap();
    assert!(simulated.is_success());
    assert_eq!(n.gas(&alice.address()), gas);
    assert_eq!(n.ledger.transaction(&simulated.transaction_digest), None);
    let good = sign_transaction(&alice, &tx).unwrap();
    assert!(matches!(
        n.ledger.execute_flat(&tx, &[&good.as_bytes()[..96]]),
        Err(Rejection::InvalidSignature(_))
    ));
    let executed = n.ledger.execute_flat(&tx, &[good.as_bytes()]).unwrap();
    assert_eq!(executed, simulated);
}
