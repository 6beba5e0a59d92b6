//! The epoch boundary (§6.4, §7.6), epochs and checkpoints, safe mode.

use soma_flow_chain::{ObjectType, TransactionKind};
use soma_flow_localnet::epoch::adjust_difficulty;
use soma_flow_localnet::{Ledger, LedgerError};

use crate::common::{commit_kind, config, net, reveal_kind, SOMA};

#[test]
fn epochs_and_checkpoints_answer_finality() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    assert_eq!(n.ledger.latest_checkpoint().sequence_number, 0);
    let ok = n.ok(
        &alice,
        TransactionKind::TransferCoin {
            coin: n.gas(&alice.address()),
            amount: Some(SOMA),
            recipient: bob.address(),
        },
    );
    let (_, failed) = n.fails(
        &bob,
        commit_kind(soma_flow_chain::ObjectID([1; 32]), 1, &[0.0]),
    );
    // Both wait in the open checkpoint: not final until it is closed.
    assert_eq!((ok.checkpoint, failed.checkpoint), (1, 1));
    assert_eq!(
        n.ledger.transaction_checkpoint(&failed.transaction_digest),
        None
    );
    assert_eq!(n.ledger.latest_checkpoint().sequence_number, 0);
    assert_eq!(n.ledger.close_checkpoint().unwrap(), Some(1));
    assert_eq!(
        n.ledger.close_checkpoint().unwrap(),
        None,
        "nothing is open"
    );
    assert_eq!(
        n.ledger.transaction_checkpoint(&failed.transaction_digest),
        Some(1)
    );
    let cp = n.ledger.checkpoint(1).unwrap();
    assert_eq!(
        cp.transactions,
        vec![ok.transaction_digest, failed.transaction_digest]
    );
    assert_eq!(cp.total_network_transactions, 3);
    assert_eq!(
        cp.previous_digest,
        Some(n.ledger.checkpoint(0).unwrap().digest)
    );

    // A transaction left open goes into a checkpoint before the epoch change,
    // which gets its own, the epoch's last.
    let pay = TransactionKind::TransferCoin {
        coin: n.gas(&alice.address()),
        amount: Some(SOMA),
        recipient: bob.address(),
    };
    let open = n.ok(&alice, pay);
    assert_eq!(open.checkpoint, 2);
    let change = n.advance();
    assert_eq!(
        n.ledger.transaction_checkpoint(&open.transaction_digest),
        Some(2)
    );
    assert_eq!(n.ledger.checkpoints_after(0).len(), 3);
    assert_eq!(change.checkpoint, 3);
    assert!(n.ledger.checkpoint(3).unwrap().end_of_epoch);
    assert!(!n.ledger.checkpoint(2).unwrap().end_of_epoch);
    let past = n.ledger.epoch_info(Some(0)).unwrap();
    assert_eq!((past.first_checkpoint, past.last_checkpoint), (0, Some(3)));
    assert_eq!(past.end_timestamp_ms, Some(86_400_000));
    assert_eq!(past.system_state.epoch, 0);
    let now = n.ledger.epoch_info(None).unwrap();
    assert_eq!(
        (
            now.epoch,
            now.start_timestamp_ms,
            now.first_checkpoint,
            now.last_checkpoint
        ),
        (1, 86_400_000, 4, None)
    );
    assert_eq!(n.ledger.system_state().epoch_start_timestamp_ms, 86_400_000);
    assert!(matches!(
        n.ledger.advance_epoch(5),
        Err(LedgerError::TimestampBeforeEpochStart { .. })
    ));
}

#[test]
fn genesis_is_deterministic_and_the_chain_id_depends_on_it() {
    let a = Ledger::genesis(config()).unwrap();
    let b = Ledger::genesis(config()).unwrap();
    assert_eq!(a.chain_id(), b.chain_id());
    assert_eq!(
        a.coins(&crate::common::key(1).address()),
        b.coins(&crate::common::key(1).address())
    );
    let mut other = config();
    other.accounts[0].1 += 1;
    assert_ne!(Ledger::genesis(other).unwrap().chain_id(), a.chain_id());
    // The system state object: 0x…05, Shared{1}, version 1.
    let system = a.object(&soma_flow_chain::ObjectID::SYSTEM_STATE).unwrap();
    assert_eq!(system.data.object_type, ObjectType::SystemState);
    assert_eq!(system.data.version, 1);
    assert_eq!(
        a.balance(&crate::common::key(1).address()),
        100 * SOMA as u128
    );
}

#[test]
fn difficulty_follows_the_hit_ema() {
    let n = net();
    let base = n.ledger.system_state().clone();
    // More hits than the target: z goes from (1-1.05)/0.022 up by max(|z|, 2).
    let mut s = base.clone();
    s.target_state.hits_this_epoch = 100_000;
    adjust_difficulty(&mut s);
    assert_eq!(s.target_state.hits_ema, 100_000);
    let z0 = (1.0f32 - 1.05) / 0.022;
    let z1 = z0 + z0.abs().max(2.0);
    assert_eq!(s.target_state.distance_threshold, 1.0 - 0.022 * z1);
    // Again: the EMA decays 90/10; z moves by the minimum step 2.0 …
    s.target_state.hits_this_epoch = 90_000;
    adjust_difficulty(&mut s);
    assert_eq!(
        s.target_state.hits_ema,
        (9000 * 100_000 + 1000 * 90_000) / 10_000
    );
    let z2 = z1 + 2.0;
    assert_eq!(s.target_state.distance_threshold, 1.0 - 0.022 * z2);
    // … and is then clamped at the minimum threshold 0.95.
    adjust_difficulty(&mut s);
    let z_max = (1.0f32 - 0.95) / 0.022;
    assert_eq!(s.target_state.distance_threshold, 1.0 - 0.022 * z_max);
    // Fewer hits: easier by max(|z| × 100%, 2.0) in z.
    let mut s = base.clone();
    s.target_state.hits_this_epoch = 5;
    adjust_difficulty(&mut s);
    assert_eq!(
        s.target_state.distance_threshold,
        1.0 - 0.022 * (z0 - z0.abs().max(2.0))
    );
    // No hits and no history: no adjustment.
    let mut s = base;
    adjust_difficulty(&mut s);
    assert_eq!(s.target_state.distance_threshold, 1.05);
}

/// An Active model whose embedding has another dimension than the targets
/// makes routing impossible: the boundary enters safe mode.
#[test]
fn a_routing_failure_enters_safe_mode() {
    let mut n = net();
    let alice = n.alice.clone();
    let emb = [1.0, 2.0, 3.0];
    let id = n.create_model(&alice, SOMA);
    n.ok(&alice, commit_kind(id, 1, &emb));
    n.advance();
    n.ok(&alice, reveal_kind(id, 1, &emb));
    let change = n.advance();
    assert!(change.created_of(ObjectType::Target).is_empty());
    let state = n.ledger.system_state();
    assert!(state.safe_mode);
    assert_eq!(state.epoch, 2);
    // Safe mode skips the value-fee adjustment: still 9 from the first boundary.
    assert_eq!(state.parameters.value_fee_bps, 9);
}

#[test]
fn the_clock_stamps_checkpoints_and_never_goes_back() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let pay = |n: &crate::common::Net| TransactionKind::TransferCoin {
        coin: n.gas(&alice.address()),
        amount: Some(1),
        recipient: bob.address(),
    };
    n.ledger.set_clock(5_000);
    let kind = pay(&n);
    assert_eq!(n.ok(&alice, kind).timestamp_ms, 5_000);
    n.ledger.set_clock(4_000);
    let kind = pay(&n);
    let effects = n.ok(&alice, kind);
    assert_eq!(effects.timestamp_ms, 5_000);
    n.ledger.close_checkpoint().unwrap();
    assert_eq!(
        n.ledger
            .checkpoint(effects.checkpoint)
            .unwrap()
            .timestamp_ms,
        5_000
    );
}
