//! The model lifecycle and its rules (§6.3, §6.4 6b–6f): create → commit →
//! advance → reveal → Active, each rejection with the chain's error, slashing
//! and the pending-update rules.

use soma_flow_chain::{derive_id, ObjectType, StakedSomaV1, TransactionKind};
use soma_flow_localnet::{ErrorDetails, ErrorKind, ModelState};

use crate::common::{commit_kind, net, reveal_kind, SOMA};

const EMB: [f32; 4] = [0.5, -1.25, 2.0, 0.0];

#[test]
fn create_commit_advance_reveal_makes_a_model_active() {
    let mut n = net();
    let alice = n.alice.clone();
    let effects = n.ok(
        &alice,
        TransactionKind::CreateModel {
            stake_amount: 2 * SOMA,
            commission_rate: 1000,
            architecture_version: 1,
        },
    );
    let d = effects.transaction_digest;
    let id = derive_id(&d, 0);
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(model.state, ModelState::Created);
    assert_eq!(model.owner, alice.address());
    assert_eq!(model.staking_pool.id, derive_id(&d, 1));
    assert_eq!(model.staking_pool.soma_balance, 2 * SOMA);
    assert_eq!(
        (
            model.commission_rate,
            model.next_epoch_commission_rate,
            model.create_epoch
        ),
        (1000, 1000, 0)
    );
    // The StakedSoma at creation number 2, owned by the sender, active next epoch.
    let staked = effects.created_of(ObjectType::StakedSoma);
    assert_eq!(staked.len(), 1);
    assert_eq!(staked[0].object_id, derive_id(&d, 2));
    let obj = n.ledger.object(&staked[0].object_id).unwrap();
    let contents: StakedSomaV1 = obj.data.decode().unwrap();
    assert_eq!(contents.principal, 2 * SOMA);
    assert_eq!(contents.stake_activation_epoch, 1);
    assert_eq!(contents.pool_id, derive_id(&d, 1));

    n.ok(&alice, commit_kind(id, 7, &EMB));
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(model.state, ModelState::Pending);
    assert_eq!(model.commit.as_ref().unwrap().commit_epoch, 0);
    assert_eq!(n.ledger.system_state().model_registry.total_model_stake, 0);

    n.advance();
    n.ok(&alice, reveal_kind(id, 7, &EMB));
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(model.state, ModelState::Active);
    assert_eq!(model.embedding_values(), EMB.to_vec());
    assert_eq!(model.staking_pool.activation_epoch, Some(1));
    assert_eq!(model.staking_pool.exchange_rates[&1].soma_amount, 2 * SOMA);
    assert_eq!(
        n.ledger.system_state().model_registry.total_model_stake,
        2 * SOMA
    );
}

#[test]
fn doc_3_8_create_model_ids_are_creation_numbers_0_1_2() {
    // The document's CreateModel digest and the ids derived from it.
    let d = crate::common::digest_hex(
        "ecb1bcb553fc20d788a4a8a8804139609f55741b32655a159cf240c84616e331",
    );
    assert_eq!(
        derive_id(&d, 0).to_hex(),
        "0x27cdbc9fb78625cd05b059170ad2c1dc2dbbb5b1e95126c4684fae9a8fdc1718"
    );
    assert_eq!(
        derive_id(&d, 1).to_hex(),
        "0x1ea6ef12fa4efe62245de30022847aca5be5e23bf72ff63b065c70c4c4002e06"
    );
    assert_eq!(
        derive_id(&d, 2).to_hex(),
        "0xec737cd09b6bd845e93a262c1f0f8f819fb7ef8c524ec5901a473b54102d6a07"
    );
}

#[test]
fn create_model_rules_in_order() {
    let mut n = net();
    let alice = n.alice.clone();
    let create = |stake, commission, arch| TransactionKind::CreateModel {
        stake_amount: stake,
        commission_rate: commission,
        architecture_version: arch,
    };
    // Every rule broken: the architecture decides.
    assert_eq!(
        n.fails(&alice, create(0, 20_000, 2)).0,
        ErrorKind::ModelArchitectureVersionMismatch
    );
    assert_eq!(
        n.fails(&alice, create(SOMA - 1, 20_000, 1)).0,
        ErrorKind::ModelMinStakeNotMet
    );
    assert_eq!(
        n.fails(&alice, create(SOMA, 10_001, 1)).0,
        ErrorKind::ModelCommissionRateTooHigh
    );
    // 100 SOMA minus three base fees: a 100 SOMA stake cannot be paid.
    assert_eq!(
        n.fails(&alice, create(100 * SOMA, 10_000, 1)).0,
        ErrorKind::InsufficientCoinBalance
    );
    assert!(n.ledger.system_state().model_registry.models.is_empty());
}

#[test]
fn reveal_outside_commit_epoch_plus_one_is_rejected() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, SOMA);
    n.ok(&alice, commit_kind(id, 7, &EMB));
    let (kind, _) = n.fails(&alice, reveal_kind(id, 7, &EMB));
    assert_eq!(kind, ErrorKind::ModelRevealEpochMismatch);
    assert_eq!(n.ledger.model(&id).unwrap().state, ModelState::Pending);
}

#[test]
fn commit_while_pending_is_an_invalid_state() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, SOMA);
    n.ok(&alice, commit_kind(id, 7, &EMB));
    let (kind, effects) = n.fails(&alice, commit_kind(id, 8, &EMB));
    assert_eq!(kind, ErrorKind::OtherError);
    let failure = effects.failure().unwrap();
    assert_eq!(
        failure.details,
        Some(ErrorDetails::Other(
            "Model in invalid state for this operation".into()
        ))
    );
    // The first commit stands.
    let commit = n.ledger.model(&id).unwrap().commit.clone().unwrap();
    assert_eq!(
        commit.decryption_key_commitment,
        crate::common::weights_key(7).commitment()
    );
}

#[test]
fn only_the_owner_commits_and_reveals() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, SOMA);
    assert_eq!(
        n.fails(&bob, commit_kind(id, 7, &EMB)).0,
        ErrorKind::NotModelOwner
    );
    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    assert_eq!(
        n.fails(&bob, reveal_kind(id, 7, &EMB)).0,
        ErrorKind::NotModelOwner
    );
    let unknown = soma_flow_chain::ObjectID([9; 32]);
    assert_eq!(
        n.fails(&alice, commit_kind(unknown, 7, &EMB)).0,
        ErrorKind::ModelNotFound
    );
    assert_eq!(
        n.fails(&alice, reveal_kind(unknown, 7, &EMB)).0,
        ErrorKind::ModelNotFound
    );
}

#[test]
fn commitment_mismatches_key_first_then_embedding() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, SOMA);
    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    let other = [0.5, -1.25, 2.0, 1e-9];
    // Both wrong: the key is checked first.
    assert_eq!(
        n.fails(&alice, reveal_kind(id, 8, &other)).0,
        ErrorKind::ModelDecryptionKeyCommitmentMismatch
    );
    assert_eq!(
        n.fails(&alice, reveal_kind(id, 7, &other)).0,
        ErrorKind::ModelEmbeddingCommitmentMismatch
    );
    // The same values with another shape are another tensor.
    let matrix = soma_flow_chain::SomaTensor::from_parts(
        0,
        EMB.iter().flat_map(|v| v.to_le_bytes()).collect(),
        vec![2, 2],
    )
    .unwrap();
    let kind = TransactionKind::RevealModel {
        model_id: id,
        decryption_key: crate::common::weights_key(7),
        embedding: matrix,
    };
    assert_eq!(
        n.fails(&alice, kind).0,
        ErrorKind::ModelEmbeddingCommitmentMismatch
    );
    n.ok(&alice, reveal_kind(id, 7, &EMB));
}

#[test]
fn unrevealed_pending_is_slashed_at_commit_epoch_plus_two() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, 4 * SOMA);
    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    assert_eq!(n.ledger.model(&id).unwrap().state, ModelState::Pending);
    assert_eq!(
        n.ledger.model(&id).unwrap().staking_pool.soma_balance,
        4 * SOMA
    );
    n.advance();
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(model.state, ModelState::Inactive);
    assert_eq!(model.staking_pool.soma_balance, 2 * SOMA);
    assert_eq!(
        model.decryption_key.as_ref().unwrap().expose_bytes(),
        &[0u8; 32]
    );
    assert_eq!(
        model.embedding.as_ref().unwrap().values(),
        Vec::<f32>::new()
    );
    assert_eq!(
        n.fails(&alice, reveal_kind(id, 7, &EMB)).0,
        ErrorKind::OtherError
    );
}

#[test]
fn stale_created_model_is_slashed_but_stays_created() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, 4 * SOMA);
    n.advance();
    assert_eq!(
        n.ledger.model(&id).unwrap().staking_pool.soma_balance,
        4 * SOMA
    );
    n.advance();
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(model.state, ModelState::Created);
    assert_eq!(model.staking_pool.soma_balance, 2 * SOMA);
    assert_eq!(model.staking_pool.deactivation_epoch, Some(2));
}

#[test]
fn pending_update_is_overwritten_then_revealed_or_silently_dropped() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.active_model(&alice, 3 * SOMA, 7, &EMB);
    // Epoch 1: two updates; the second overwrites the first.
    let first = [1.0, 0.0, 0.0, 0.0];
    let second = [0.0, 1.0, 0.0, 0.0];
    n.ok(&alice, commit_kind(id, 8, &first));
    n.ok(&alice, commit_kind(id, 9, &second));
    let update = n.ledger.model(&id).unwrap().pending_update.clone().unwrap();
    assert_eq!(
        (update.commit_epoch, update.decryption_key_commitment),
        (1, crate::common::weights_key(9).commitment())
    );
    // Not revealable in the commit epoch.
    assert_eq!(
        n.fails(&alice, reveal_kind(id, 9, &second)).0,
        ErrorKind::ModelRevealEpochMismatch
    );
    n.advance();
    assert_eq!(
        n.fails(&alice, reveal_kind(id, 8, &first)).0,
        ErrorKind::ModelDecryptionKeyCommitmentMismatch
    );
    n.ok(&alice, reveal_kind(id, 9, &second));
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(model.embedding_values(), second.to_vec());
    assert!(model.pending_update.is_none());
    assert_eq!(
        n.fails(&alice, reveal_kind(id, 9, &second)).0,
        ErrorKind::ModelNoPendingUpdate
    );

    // Epoch 2: an update never revealed is dropped at the boundary into epoch 4, unslashed.
    n.ok(&alice, commit_kind(id, 10, &first));
    n.advance();
    assert!(n.ledger.model(&id).unwrap().pending_update.is_some());
    n.advance();
    let model = n.ledger.model(&id).unwrap();
    assert!(model.pending_update.is_none());
    assert_eq!(model.state, ModelState::Active);
    assert_eq!(model.staking_pool.soma_balance, 3 * SOMA);
    assert_eq!(model.embedding_values(), second.to_vec());
}

#[test]
fn add_stake_counts_at_once_before_activation_and_next_epoch_after() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, SOMA);
    let stake = |amount| TransactionKind::AddStakeToModel {
        model_id: id,
        coin_ref: soma_flow_chain::ObjectRef {
            object_id: soma_flow_chain::ObjectID([0; 32]),
            version: 0,
            digest: soma_flow_chain::Digest([0; 32]),
        },
        amount,
    };
    // The gas coin doubles as the stake coin.
    let with_gas = |n: &crate::common::Net, amount| {
        let mut kind = stake(amount);
        if let TransactionKind::AddStakeToModel { coin_ref, .. } = &mut kind {
            *coin_ref = n.gas(&bob.address());
        }
        kind
    };
    let kind = with_gas(&n, Some(2 * SOMA));
    n.ok(&bob, kind);
    assert_eq!(
        n.ledger.model(&id).unwrap().staking_pool.soma_balance,
        3 * SOMA
    );
    let kind = with_gas(&n, Some(0));
    assert_eq!(n.fails(&bob, kind).0, ErrorKind::InvalidArguments);

    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    n.ok(&alice, reveal_kind(id, 7, &EMB));
    let kind = with_gas(&n, Some(SOMA));
    n.ok(&bob, kind);
    let pool = &n.ledger.model(&id).unwrap().staking_pool;
    assert_eq!((pool.soma_balance, pool.pending_stake), (3 * SOMA, SOMA));
    n.advance();
    let pool = &n.ledger.model(&id).unwrap().staking_pool;
    assert_eq!((pool.soma_balance, pool.pending_stake), (4 * SOMA, 0));
    assert_eq!(
        n.ledger.system_state().model_registry.total_model_stake,
        4 * SOMA
    );
}

#[test]
fn add_stake_to_an_inactive_model_fails() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, SOMA);
    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    n.advance();
    assert_eq!(n.ledger.model(&id).unwrap().state, ModelState::Inactive);
    let gas = n.gas(&bob.address());
    let kind = TransactionKind::AddStakeToModel {
        model_id: id,
        coin_ref: gas,
        amount: Some(SOMA),
    };
    assert_eq!(n.fails(&bob, kind).0, ErrorKind::ModelAlreadyInactive);
}

#[test]
fn a_stake_coin_that_is_not_a_coin_is_an_invalid_object_type() {
    let mut n = net();
    let alice = n.alice.clone();
    let id = n.create_model(&alice, SOMA);
    let staked = n
        .ledger
        .owned_objects(&alice.address(), Some(ObjectType::StakedSoma), None, 10)
        .0;
    assert_eq!(staked.len(), 1);
    let staked_ref = n.ledger.object_ref(&staked[0].0).unwrap();
    let kind = TransactionKind::AddStakeToModel {
        model_id: id,
        coin_ref: staked_ref,
        amount: Some(SOMA),
    };
    let (kind, effects) = n.fails(&alice, kind);
    assert_eq!(kind, ErrorKind::InvalidObjectType);
    assert_eq!(
        effects.failure().unwrap().details,
        Some(ErrorDetails::ObjectId(staked_ref.object_id))
    );
}

#[test]
fn commission_rate_is_checked_then_staged_for_the_next_epoch() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, SOMA);
    let set = |rate| TransactionKind::SetModelCommissionRate {
        model_id: id,
        new_rate: rate,
    };
    // The rate is checked before the model; a model must be Active.
    assert_eq!(
        n.fails(&alice, set(10_001)).0,
        ErrorKind::ModelCommissionRateTooHigh
    );
    assert_eq!(n.fails(&alice, set(500)).0, ErrorKind::ModelNotActive);
    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    n.ok(&alice, reveal_kind(id, 7, &EMB));
    assert_eq!(n.fails(&bob, set(500)).0, ErrorKind::NotModelOwner);
    let missing = TransactionKind::SetModelCommissionRate {
        model_id: derive_id(&soma_flow_chain::Digest([9; 32]), 0),
        new_rate: 1,
    };
    assert_eq!(n.fails(&alice, missing).0, ErrorKind::ModelNotFound);
    let effects = n.ok(&alice, set(500));
    // Base fee and two written objects (the gas coin and the system state).
    assert_eq!(effects.fee.total(), 1000 + 2 * 300);
    let model = n.ledger.model(&id).unwrap();
    assert_eq!(
        (model.commission_rate, model.next_epoch_commission_rate),
        (1000, 500)
    );
    n.advance();
    assert_eq!(n.ledger.model(&id).unwrap().commission_rate, 500);
}

#[test]
fn deactivate_makes_an_active_model_inactive_at_once() {
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, 2 * SOMA);
    let deactivate = TransactionKind::DeactivateModel { model_id: id };
    assert_eq!(
        n.fails(&alice, deactivate.clone()).0,
        ErrorKind::ModelNotActive
    );
    n.ok(&alice, commit_kind(id, 7, &EMB));
    n.advance();
    n.ok(&alice, reveal_kind(id, 7, &EMB));
    assert_eq!(
        n.ledger.system_state().model_registry.total_model_stake,
        2 * SOMA
    );
    assert_eq!(
        n.fails(&bob, deactivate.clone()).0,
        ErrorKind::NotModelOwner
    );
    n.ok(&alice, deactivate.clone());
    let state = n.ledger.system_state();
    let model = state.model_registry.models.get(&id).unwrap();
    assert_eq!(model.state, ModelState::Inactive);
    assert_eq!(model.staking_pool.deactivation_epoch, Some(state.epoch));
    assert_eq!(state.model_registry.total_model_stake, 0);
    assert_eq!(n.fails(&alice, deactivate).0, ErrorKind::ModelNotActive);
}
