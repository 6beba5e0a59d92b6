//! Hostile transactions: extreme amounts, empty tensors, unknown ids. Every
//! one is refused or fails with an error; none panics or corrupts balances.

use soma_flow_chain::{
    Checksum, Manifest, ObjectID, ObjectRef, SomaTensor, SubmissionManifest, TransactionKind,
};
use soma_flow_localnet::ErrorKind;

use crate::common::{net, SOMA};

#[test]
fn extreme_values_fail_cleanly() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let total_before = n.balance(&alice) + n.balance(&bob);
    let (a, b) = (alice.address(), bob.address());
    // Each kind is built with the gas ref current at its turn.
    type Build = Box<dyn Fn(ObjectRef) -> TransactionKind>;
    let kinds: Vec<Build> = vec![
        Box::new(move |gas| TransactionKind::PayCoins {
            coins: vec![gas],
            amounts: Some(vec![u64::MAX, u64::MAX]),
            recipients: vec![b, b],
        }),
        Box::new(move |gas| TransactionKind::PayCoins {
            coins: vec![gas],
            amounts: Some(vec![1]),
            recipients: vec![],
        }),
        Box::new(move |gas| TransactionKind::PayCoins {
            coins: vec![gas],
            amounts: None,
            recipients: vec![b, a],
        }),
        Box::new(move |_gas| TransactionKind::CreateModel {
            stake_amount: u64::MAX,
            commission_rate: u64::MAX,
            architecture_version: 1,
        }),
        Box::new(move |gas| TransactionKind::AddStakeToModel {
            model_id: ObjectID([4; 32]),
            coin_ref: gas,
            amount: Some(u64::MAX),
        }),
        Box::new(move |gas| TransactionKind::SubmitData {
            target_id: ObjectID([5; 32]),
            data_manifest: SubmissionManifest {
                manifest: Manifest::new("https://x.org/", Checksum::of(b""), u64::MAX).unwrap(),
            },
            model_id: ObjectID([4; 32]),
            embedding: SomaTensor::vector(&[]),
            distance_score: SomaTensor::vector(&[]),
            loss_score: SomaTensor::vector(&[]),
            bond_coin: gas,
        }),
        Box::new(move |_gas| TransactionKind::ClaimRewards {
            target_id: ObjectID::SYSTEM_STATE,
        }),
        Box::new(move |_gas| TransactionKind::RevealModel {
            model_id: ObjectID([4; 32]),
            decryption_key: crate::common::weights_key(0),
            embedding: SomaTensor::vector(&[f32::NAN]),
        }),
    ];
    let expected = [
        ErrorKind::OtherError,
        ErrorKind::InvalidArguments,
        ErrorKind::InvalidArguments,
        ErrorKind::ModelCommissionRateTooHigh,
        ErrorKind::InsufficientCoinBalance,
        ErrorKind::TargetNotFound,
        ErrorKind::TargetNotFound,
        ErrorKind::ModelNotFound,
    ];
    let mut fees = 0u128;
    for (build, expected) in kinds.into_iter().zip(expected) {
        let kind = build(n.gas(&a));
        let (got, effects) = n.fails(&alice, kind);
        assert_eq!(got, expected);
        fees += effects.fee.total() as u128;
    }
    assert_eq!(fees, 8 * 1000);
    assert_eq!(n.balance(&alice) + n.balance(&bob), total_before - fees);
    assert_eq!(n.balance(&alice), 100 * SOMA as u128 - fees);
}
