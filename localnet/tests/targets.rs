//! Targets (§7): generation at epoch change only with an Active model,
//! arrgen embeddings, weighted-KNN routing, SubmitData rules and
//! spawn-on-fill, ClaimRewards splits and window, listing.

use soma_flow_chain::{
    arrgen, derive_id, target_seed, Checksum, Coin, Manifest, ObjectID, ObjectRef, ObjectType,
    SomaTensor, SubmissionManifest, TargetStatus, TargetV1, TransactionKind,
};
use soma_flow_localnet::{ErrorDetails, ErrorKind, StatusFilter, TargetQuery, SHARED_OWNER};

use crate::common::{config, key, net_with, Net, DIM, SOMA};

const A_EMB: [f32; 4] = [1.0, 0.0, 0.0, 0.0];
const B_EMB: [f32; 4] = [-1.0, 0.0, 0.0, 0.0];
/// `⌊10^15 × 8000 / 10000⌋ / 86400` with the default emission.
const REWARD: u64 = 9_259_259_259;

struct World {
    n: Net,
    model_a: ObjectID,
    model_b: ObjectID,
    /// The epoch-2 ChangeEpoch digest and its targets, in creation order.
    change: soma_flow_chain::TransactionDigest,
    targets: Vec<ObjectID>,
}

/// Alice's model A at (1,0,0,0) and Bob's B at (-1,0,0,0), equal stakes,
/// one model per target; Active in epoch 1, targets generated into epoch 2.
fn world() -> World {
    world_with(config())
}

fn world_with(mut cfg: soma_flow_localnet::GenesisConfig) -> World {
    cfg.parameters.target_models_per_target = 1;
    let mut n = net_with(cfg);
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let model_a = n.create_model(&alice, SOMA);
    let model_b = n.create_model(&bob, SOMA);
    n.ok(&alice, crate::common::commit_kind(model_a, 1, &A_EMB));
    n.ok(&bob, crate::common::commit_kind(model_b, 2, &B_EMB));
    let first = n.advance();
    assert!(
        first.created_of(ObjectType::Target).is_empty(),
        "no Active model, no targets"
    );
    n.ok(&alice, crate::common::reveal_kind(model_a, 1, &A_EMB));
    n.ok(&bob, crate::common::reveal_kind(model_b, 2, &B_EMB));
    let change = n.advance();
    let targets = change
        .created_of(ObjectType::Target)
        .iter()
        .map(|r| r.object_id)
        .collect();
    World {
        n,
        model_a,
        model_b,
        change: change.transaction_digest,
        targets,
    }
}

fn target(n: &Net, id: &ObjectID) -> TargetV1 {
    n.ledger.target(id).expect("the target exists")
}

/// The model a target at `embedding` goes to: A iff cos(t, A) > 0 (equal stakes).
fn expected_model(w: &World, embedding: &[f32]) -> ObjectID {
    if embedding[0] > 0.0 {
        w.model_a
    } else {
        w.model_b
    }
}

#[test]
fn targets_are_generated_with_arrgen_embeddings_and_knn_routing() {
    let w = world();
    let state = w.n.ledger.system_state();
    assert_eq!(state.target_state.reward_per_target, REWARD);
    assert_eq!(w.targets.len(), 100);
    assert_eq!(state.target_state.targets_generated_this_epoch, 100);
    assert_eq!(
        state.emission_pool.balance,
        1_000_000_000 * SOMA - 100 * REWARD
    );
    let mut ids: Vec<ObjectID> = (0..100).map(|n| derive_id(&w.change, n)).collect();
    ids.sort();
    assert_eq!(w.targets, ids);
    let (mut to_a, mut to_b) = (0, 0);
    for num in 0..100u64 {
        let id = derive_id(&w.change, num);
        let t = target(&w.n, &id);
        let expected = arrgen::normal_array(target_seed(&w.change, num), DIM as usize);
        assert_eq!(t.embedding, SomaTensor::vector(&expected));
        let routed = expected_model(&w, &expected);
        assert_eq!(t.model_ids, vec![routed]);
        if routed == w.model_a {
            to_a += 1
        } else {
            to_b += 1
        }
        assert_eq!(t.reward_pool, REWARD);
        assert_eq!(t.generation_epoch, 2);
        assert_eq!(t.status, TargetStatus::Open);
        assert_eq!(t.distance_threshold, SomaTensor::scalar(1.05));
        let obj = w.n.ledger.object(&id).unwrap();
        assert_eq!(obj.owner, SHARED_OWNER);
    }
    assert!(
        to_a > 20 && to_b > 20,
        "both models get targets: {to_a} / {to_b}"
    );
}

/// With k = 3 (the default) both models are assigned, the closer one first.
#[test]
fn routing_orders_all_models_when_k_exceeds_them() {
    let mut n = net_with(config());
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let a = n.create_model(&alice, SOMA);
    let b = n.create_model(&bob, 4 * SOMA);
    n.ok(&alice, crate::common::commit_kind(a, 1, &A_EMB));
    n.ok(&bob, crate::common::commit_kind(b, 2, &B_EMB));
    n.advance();
    n.ok(&alice, crate::common::reveal_kind(a, 1, &A_EMB));
    n.ok(&bob, crate::common::reveal_kind(b, 2, &B_EMB));
    let change = n.advance();
    for r in change.created_of(ObjectType::Target) {
        let t = target(&n, &r.object_id);
        let x = t.embedding.values()[0];
        let norm = t
            .embedding
            .values()
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt();
        let cos = x / norm;
        // vp: sqrt(1)/(1+2) = 1/3 for A, 2/3 for B; A wins iff (1-cos)·3 < (1+cos)·1.5.
        let a_first = (1.0 - cos) * 3.0 < (1.0 + cos) * 1.5;
        let expected = if a_first { vec![a, b] } else { vec![b, a] };
        assert_eq!(t.model_ids, expected, "cos {cos}");
    }
}

fn submit(
    target: ObjectID,
    model: ObjectID,
    embedding_len: usize,
    distance: f32,
    size: u64,
    bond_coin: ObjectRef,
) -> TransactionKind {
    TransactionKind::SubmitData {
        target_id: target,
        data_manifest: SubmissionManifest {
            manifest: Manifest::new("https://example.com/data/1.bin", Checksum::of(b"d"), size)
                .unwrap(),
        },
        model_id: model,
        embedding: SomaTensor::vector(&vec![0.25; embedding_len]),
        distance_score: SomaTensor::scalar(distance),
        loss_score: SomaTensor::vector(&[1.5]),
        bond_coin,
    }
}

/// Bob's coin of `amount` from the faucet, to use as a bond.
fn bond_coin(n: &mut Net, amount: u64) -> ObjectRef {
    let bob = n.bob.address();
    n.ledger.faucet(bob, amount).unwrap().coin
}

fn detail(effects: &soma_flow_localnet::Effects) -> Option<ErrorDetails> {
    effects.failure().unwrap().details.clone()
}

#[test]
fn submit_data_rules_fill_and_spawn_on_fill() {
    let mut w = world();
    let bob = w.n.bob.clone();
    let tid = w.targets[0];
    let t = target(&w.n, &tid);
    let routed = t.model_ids[0];
    let other = if routed == w.model_a {
        w.model_b
    } else {
        w.model_a
    };
    let small = bond_coin(&mut w.n, 900);
    let (kind, e) = w.n.fails(&bob, submit(tid, other, 4, 0.5, 15, small));
    assert_eq!(kind, ErrorKind::ModelNotInTarget);
    assert_eq!(
        detail(&e),
        Some(ErrorDetails::Other(format!(
            "model_id={other}, target_id={tid}"
        )))
    );
    let small = w.n.ledger.object_ref(&small.object_id).unwrap();
    let (kind, e) = w.n.fails(&bob, submit(tid, routed, 3, 0.5, 15, small));
    assert_eq!(kind, ErrorKind::EmbeddingDimensionMismatch);
    assert_eq!(
        detail(&e),
        Some(ErrorDetails::Other("expected=4, actual=3".into()))
    );
    let small = w.n.ledger.object_ref(&small.object_id).unwrap();
    assert_eq!(
        w.n.fails(&bob, submit(tid, routed, 4, 1.06, 15, small)).0,
        ErrorKind::DistanceExceedsThreshold
    );
    let small = w.n.ledger.object_ref(&small.object_id).unwrap();
    assert_eq!(
        w.n.fails(&bob, submit(tid, routed, 4, 0.5, 1_048_577, small))
            .0,
        ErrorKind::DataExceedsMaxSize
    );
    let small = w.n.ledger.object_ref(&small.object_id).unwrap();
    let (kind, e) = w.n.fails(&bob, submit(tid, routed, 4, 0.5, 15, small));
    assert_eq!(kind, ErrorKind::InsufficientBond);
    assert_eq!(
        detail(&e),
        Some(ErrorDetails::Other("required=975, provided=900".into()))
    );
    // The failures bumped the bond coin each time; its balance is untouched.
    let small_now = w.n.ledger.object_ref(&small.object_id).unwrap();
    assert!(small_now.version > small.version);

    let bond = bond_coin(&mut w.n, SOMA);
    let effects = w.n.ok(&bob, submit(tid, routed, 4, 1.05, 15, bond));
    // Gas, bond coin, SystemState, target, replacement.
    assert_eq!(effects.fee.total(), 1000 + 5 * 300);
    let d = effects.transaction_digest;
    let filled = target(&w.n, &tid);
    assert_eq!(filled.status, TargetStatus::Filled { fill_epoch: 2 });
    assert_eq!(filled.submitter, Some(bob.address()));
    assert_eq!(filled.winning_model_id, Some(routed));
    let owner = w.n.ledger.model(&routed).unwrap().owner;
    assert_eq!(filled.winning_model_owner, Some(owner));
    assert_eq!(filled.bond_amount, 975);
    assert_eq!(
        filled.winning_distance_score,
        Some(SomaTensor::scalar(1.05))
    );
    let coin: Coin =
        w.n.ledger
            .object(&bond.object_id)
            .unwrap()
            .data
            .decode()
            .unwrap();
    assert_eq!(coin.balance, SOMA - 975);
    // Spawn-on-fill: id from creation number 2, seed from number 1.
    let spawned = derive_id(&d, 2);
    assert_eq!(
        effects.created_of(ObjectType::Target),
        vec![w.n.ledger.object_ref(&spawned).unwrap()]
    );
    let s = target(&w.n, &spawned);
    let emb = arrgen::normal_array(target_seed(&d, 1), DIM as usize);
    assert_eq!(s.embedding.values(), emb);
    assert_eq!(s.model_ids, vec![expected_model(&w, &emb)]);
    assert_eq!((s.generation_epoch, s.status), (2, TargetStatus::Open));
    let ts = w.n.ledger.system_state().target_state;
    assert_eq!(
        (ts.hits_this_epoch, ts.targets_generated_this_epoch),
        (1, 101)
    );

    let bond = w.n.ledger.object_ref(&bond.object_id).unwrap();
    assert_eq!(
        w.n.fails(&bob, submit(tid, routed, 4, 0.5, 15, bond)).0,
        ErrorKind::TargetNotOpen
    );
    // Next epoch the other targets of epoch 2 have expired.
    w.n.advance();
    let late = w.targets[1];
    let routed = target(&w.n, &late).model_ids[0];
    let bond = w.n.ledger.object_ref(&bond.object_id).unwrap();
    let (kind, e) = w.n.fails(&bob, submit(late, routed, 4, 0.5, 15, bond));
    assert_eq!(kind, ErrorKind::TargetExpired);
    assert_eq!(
        detail(&e),
        Some(ErrorDetails::Other(
            "generation_epoch=2, current_epoch=3".into()
        ))
    );
}

#[test]
fn an_exactly_consumed_bond_coin_is_deleted() {
    let mut w = world();
    let bob = w.n.bob.clone();
    let tid = w.targets[0];
    let routed = target(&w.n, &tid).model_ids[0];
    let bond = bond_coin(&mut w.n, 975);
    let effects = w.n.ok(&bob, submit(tid, routed, 4, 0.5, 15, bond));
    assert_eq!(effects.deleted(), vec![bond.object_id]);
    assert_eq!(effects.fee.total(), 1000 + 4 * 300);
}

#[test]
fn claims_split_the_reward_after_the_window_and_delete_the_target() {
    let mut w = world();
    let (alice, bob, carol) = (w.n.alice.clone(), w.n.bob.clone(), key(3));
    w.n.ledger.faucet(carol.address(), SOMA).unwrap();
    let tid = w.targets[0];
    let routed = target(&w.n, &tid).model_ids[0];
    let bond = bond_coin(&mut w.n, SOMA);
    w.n.ok(&bob, submit(tid, routed, 4, 0.5, 15, bond));
    let claim = TransactionKind::ClaimRewards { target_id: tid };
    let (kind, e) = w.n.fails(&carol, claim.clone());
    assert_eq!(kind, ErrorKind::ChallengeWindowOpen);
    assert_eq!(
        detail(&e),
        Some(ErrorDetails::Other("fill_epoch=2, current_epoch=2".into()))
    );
    w.n.advance();
    assert_eq!(
        w.n.fails(&carol, claim.clone()).0,
        ErrorKind::ChallengeWindowOpen
    );
    w.n.advance();
    let model_owner = w.n.ledger.model(&routed).unwrap().owner;
    let bps = w.n.ledger.system_state().parameters.value_fee_bps;
    let effects = w.n.ok(&carol, claim.clone());
    let (s, m, c) = (4_606_481_481u64, 4_606_481_481u64, 46_296_296u64);
    assert_eq!(REWARD - s - m - c, 1);
    let created: Vec<(soma_flow_chain::Owner, u64)> = effects
        .created_of(ObjectType::Coin)
        .iter()
        .map(|r| {
            let o = w.n.ledger.object(&r.object_id).unwrap();
            (o.owner, o.data.decode::<Coin>().unwrap().balance)
        })
        .collect();
    let d = effects.transaction_digest;
    let by_num: Vec<(soma_flow_chain::Owner, u64)> = (0..4)
        .map(|i| {
            let o = w.n.ledger.object(&derive_id(&d, i)).unwrap();
            (o.owner, o.data.decode::<Coin>().unwrap().balance)
        })
        .collect();
    let addr = soma_flow_chain::Owner::AddressOwner;
    assert_eq!(
        by_num,
        vec![
            (addr(bob.address()), s + 1),
            (addr(model_owner), m),
            (addr(carol.address()), c),
            (addr(bob.address()), 975),
        ]
    );
    assert_eq!(created.len(), 4);
    assert_eq!(
        effects.fee.value_fee,
        (REWARD as u128 * (bps / 2) as u128 / 10_000) as u64
    );
    // Written: the gas coin, the system state and the four new coins.
    assert_eq!(effects.fee.total(), 1000 + 6 * 300 + effects.fee.value_fee);
    assert!(w.n.ledger.target(&tid).is_none());
    assert_eq!(effects.deleted(), vec![tid]);
    assert_eq!(w.n.fails(&carol, claim).0, ErrorKind::TargetNotFound);
    let _ = alice;
}

#[test]
fn an_open_target_is_claimable_after_its_epoch() {
    let mut w = world();
    let carol = key(3);
    w.n.ledger.faucet(carol.address(), SOMA).unwrap();
    let tid = w.targets[5];
    let claim = TransactionKind::ClaimRewards { target_id: tid };
    assert_eq!(
        w.n.fails(&carol, claim.clone()).0,
        ErrorKind::TargetNotFilled
    );
    w.n.advance();
    let pool_before = w.n.ledger.system_state().emission_pool.balance;
    let effects = w.n.ok(&carol, claim);
    let c = 46_296_296u64;
    let coins = effects.created_of(ObjectType::Coin);
    assert_eq!(coins.len(), 1);
    let coin: Coin =
        w.n.ledger
            .object(&coins[0].object_id)
            .unwrap()
            .data
            .decode()
            .unwrap();
    assert_eq!(coin.balance, c);
    assert_eq!(
        w.n.ledger.system_state().emission_pool.balance,
        pool_before + REWARD - c
    );
}

#[test]
fn listing_filters_statuses_and_pages() {
    let mut w = world();
    let bob = w.n.bob.clone();
    let tid = w.targets[0];
    let routed = target(&w.n, &tid).model_ids[0];
    let bond = bond_coin(&mut w.n, SOMA);
    w.n.ok(&bob, submit(tid, routed, 4, 0.5, 15, bond));
    let list = |n: &Net, status: Option<StatusFilter>, epoch: Option<u64>| {
        n.ledger.list_targets(&TargetQuery {
            status,
            epoch,
            page_size: Some(1000),
            ..TargetQuery::default()
        })
    };
    let open = list(&w.n, Some(StatusFilter::Open), None);
    assert_eq!(open.targets.len(), 100);
    assert!(open.targets.iter().all(|t| t.status == "open"));
    let filled = list(&w.n, Some(StatusFilter::Filled), None);
    assert_eq!(
        filled
            .targets
            .iter()
            .map(|t| (t.id, t.status))
            .collect::<Vec<_>>(),
        vec![(tid, "filled")]
    );
    // Epoch 3 generates 100 new open targets; those of epoch 2 have expired.
    w.n.advance();
    let open = list(&w.n, Some(StatusFilter::Open), None);
    assert_eq!(open.targets.len(), 100);
    assert!(open.targets.iter().all(|t| t.target.generation_epoch == 3));
    let expired = list(&w.n, Some(StatusFilter::Expired), None);
    assert_eq!(expired.targets.len(), 100);
    assert!(expired
        .targets
        .iter()
        .all(|t| t.status == "claimable" && t.target.generation_epoch == 2));
    assert_eq!(
        list(&w.n, Some(StatusFilter::Filled), None).targets[0].status,
        "filled"
    );
    assert_eq!(
        list(&w.n, Some(StatusFilter::Claimable), None)
            .targets
            .len(),
        100
    );
    w.n.advance();
    assert_eq!(
        list(&w.n, Some(StatusFilter::Filled), None).targets[0].status,
        "claimable"
    );
    assert_eq!(
        list(&w.n, Some(StatusFilter::Claimable), None)
            .targets
            .len(),
        201
    );
    assert_eq!(list(&w.n, None, Some(2)).targets.len(), 101);
    assert_eq!(list(&w.n, None, Some(3)).targets.len(), 100);
    assert!(list(&w.n, None, Some(5)).targets.is_empty());
    let by_bob = w.n.ledger.list_targets(&TargetQuery {
        submitter: Some(bob.address()),
        ..TargetQuery::default()
    });
    assert_eq!(by_bob.targets.len(), 1);
    // Pages of 30 cover every target once, in (status, epoch, id) order.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = w.n.ledger.list_targets(&TargetQuery {
            page_size: Some(30),
            cursor: cursor.clone(),
            ..TargetQuery::default()
        });
        seen.extend(page.targets.iter().map(|t| {
            let status = soma_flow_localnet::targets::raw_status(&t.target.status);
            (status, t.target.generation_epoch, t.id)
        }));
        match page.next_cursor {
            Some(c) => {
                cursor = Some(soma_flow_localnet::TargetCursor::from_bytes(&c.to_bytes()).unwrap())
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 301);
    let mut sorted = seen.clone();
    sorted.sort();
    assert!(seen == sorted, "pages are in (status, epoch, id) order");
    assert_eq!(seen[0].0, "filled");
    assert!("bogus".parse::<StatusFilter>().is_err());
    assert_eq!(
        "CLAIMABLE".parse::<StatusFilter>().unwrap(),
        StatusFilter::Claimable
    );
}

/// §6.3 ClaimRewards when validators holding 2f+1 of the voting power reported the
/// submission in the epoch after its fill: the bond goes to the reporters (split
/// evenly, the first in address order taking the remainder), the reward back to the
/// emission pool, the claimer still gets its incentive; the submitter and the model's
/// owner get nothing. Below the quorum the claim pays as usual.
#[test]
fn a_submission_reported_by_a_quorum_pays_its_bond_to_the_reporters() {
    let validators = [key(7), key(8), key(9)];
    let mut cfg = config();
    cfg.validators = vec![
        (validators[0].address(), 3334),
        (validators[1].address(), 3333),
        (validators[2].address(), 3333),
    ];
    for v in &validators {
        cfg = cfg.with_account(v.address(), SOMA);
    }
    let mut w = world_with(cfg);
    let (bob, carol) = (w.n.bob.clone(), key(3));
    w.n.ledger.faucet(carol.address(), SOMA).unwrap();
    let (reported, kept) = (w.targets[0], w.targets[1]);
    for tid in [reported, kept] {
        let routed = target(&w.n, &tid).model_ids[0];
        let bond = bond_coin(&mut w.n, SOMA);
        w.n.ok(&bob, submit(tid, routed, 4, 0.5, 15, bond));
    }
    let report = |tid| TransactionKind::ReportSubmission { target_id: tid };
    // Only validators, only in the epoch after the fill.
    assert_eq!(
        w.n.fails(&carol, report(reported)).0,
        ErrorKind::NotAValidator
    );
    assert_eq!(
        w.n.fails(&validators[0], report(reported)).0,
        ErrorKind::ChallengeWindowClosed
    );
    w.n.advance();
    w.n.ok(&validators[0], report(reported));
    w.n.ok(&validators[2], report(reported));
    w.n.ok(&validators[1], report(kept));
    let undo = TransactionKind::UndoReportSubmission { target_id: kept };
    assert_eq!(
        w.n.fails(&validators[0], undo).0,
        ErrorKind::ReportRecordNotFound
    );
    assert_eq!(target(&w.n, &reported).submission_reports.len(), 2);
    w.n.advance();

    let pool_before = w.n.ledger.system_state().emission_pool.balance;
    let effects = w.n.ok(
        &carol,
        TransactionKind::ClaimRewards {
            target_id: reported,
        },
    );
    let d = effects.transaction_digest;
    let coin = |i| {
        let o = w.n.ledger.object(&derive_id(&d, i)).unwrap();
        (o.owner, o.data.decode::<Coin>().unwrap().balance)
    };
    let mut reporters = [validators[0].address(), validators[2].address()];
    reporters.sort();
    let addr = soma_flow_chain::Owner::AddressOwner;
    let c = 46_296_296u64;
    assert_eq!(
        [coin(0), coin(1), coin(2)],
        [
            (addr(reporters[0]), 488),
            (addr(reporters[1]), 487),
            (addr(carol.address()), c)
        ]
    );
    assert_eq!(effects.created_of(ObjectType::Coin).len(), 3);
    assert_eq!(
        w.n.ledger.system_state().emission_pool.balance,
        pool_before + REWARD
    );
    // 3 333 of 10 000 is no quorum: the submitter is paid and gets its bond back.
    let effects =
        w.n.ok(&carol, TransactionKind::ClaimRewards { target_id: kept });
    let paid: Vec<_> = effects
        .created_of(ObjectType::Coin)
        .iter()
        .map(|r| w.n.ledger.object(&r.object_id).unwrap().owner)
        .collect();
    assert_eq!(
        paid.iter().filter(|o| **o == addr(bob.address())).count(),
        2
    );
}
