//! Proto ⇄ BCS conversions (§2.7): the proto a client sends rebuilds, on the
//! server's side, exactly the BCS of §3.8; malformed protos are errors naming
//! the field, never panics.

use prost::Message;
use soma_flow_chain::proto::{self, convert, transaction_kind::Kind};
use soma_flow_chain::{
    sign_transaction, verify_transaction, Coin, Digest, ObjectData, ObjectID, ObjectInner,
    ObjectType, Owner, SomaTensor, TargetStatus, TargetV1, TransactionData,
};

use crate::common;
use crate::vectors::{s, tx_vector};

/// Encodes and decodes as the wire would, then rebuilds like the server.
fn through_the_wire(tx: &TransactionData) -> TransactionData {
    let sent = convert::transaction_to_proto(tx).unwrap();
    let received = proto::Transaction::decode(sent.encode_to_vec().as_slice()).unwrap();
    convert::transaction_from_proto(&received).unwrap()
}

#[test]
fn section_3_8_transactions_rebuild_their_exact_bcs() {
    for name in common::BUILT {
        let tx = common::transaction(name);
        let rebuilt = through_the_wire(&tx);
        assert_eq!(
            hex::encode(rebuilt.to_bcs().unwrap()),
            s(&tx_vector(name)["tx_bcs"]),
            "{name}"
        );
        let sent = convert::transaction_to_proto(&tx).unwrap();
        assert_eq!(sent.digest.as_deref(), Some(s(&tx_vector(name)["digest"])));
        // The SDK's renderings: sender and gas ids bare hex, model ids 0x + 64.
        assert_eq!(
            sent.sender.as_deref(),
            Some(&*common::secret_key().address().to_hex())
        );
        assert_eq!(
            sent.gas_payment[0].object_id.as_deref(),
            Some(&*"11".repeat(32))
        );
    }
}

#[test]
fn a_signature_survives_the_wire_and_verifies_on_the_rebuilt_transaction() {
    let key = common::secret_key();
    let tx = common::transaction("CommitModel");
    let flat = sign_transaction(&key, &tx).unwrap();
    let wire =
        proto::UserSignature::decode(proto::UserSignature::from(&flat).encode_to_vec().as_slice())
            .unwrap();
    let back = convert::signature_from_proto(&wire).unwrap();
    assert_eq!(back, flat);
    verify_transaction(&through_the_wire(&tx), &[back]).unwrap();
}

#[test]
fn transfer_and_pay_round_trip() {
    let key = common::secret_key();
    for kind in [
        soma_flow_chain::TransactionKind::TransferCoin {
            coin: common::coin(),
            amount: Some(5),
            recipient: key.address(),
        },
        soma_flow_chain::TransactionKind::TransferCoin {
            coin: common::coin(),
            amount: None,
            recipient: key.address(),
        },
        soma_flow_chain::TransactionKind::PayCoins {
            coins: vec![common::coin(), common::gas()],
            amounts: Some(vec![1, 2]),
            recipients: vec![key.address(), key.address()],
        },
    ] {
        let tx = TransactionData::new(kind, key.address(), vec![common::gas()]);
        assert_eq!(through_the_wire(&tx), tx);
    }
}

#[test]
fn urls_are_canonicalised_as_the_server_does() {
    let mut sent = convert::transaction_to_proto(&common::transaction("CommitModel")).unwrap();
    let Some(Kind::CommitModel(commit)) = sent.kind.as_mut().and_then(|k| k.kind.as_mut()) else {
        panic!("a commit");
    };
    let Some(proto::manifest::Version::V1(v1)) =
        commit.manifest.as_mut().and_then(|m| m.version.as_mut())
    else {
        panic!("a v1 manifest");
    };
    v1.url = Some("https://Example.COM:443/models/x/../1/w.safetensors.enc".into());
    let rebuilt = convert::transaction_from_proto(&sent).unwrap();
    assert_eq!(
        hex::encode(rebuilt.to_bcs().unwrap()),
        s(&tx_vector("CommitModel")["tx_bcs"])
    );
}

#[test]
fn malformed_transactions_are_errors_naming_the_field() {
    let good = convert::transaction_to_proto(&common::transaction("RevealModel")).unwrap();
    let mutate = |f: &dyn Fn(&mut proto::Transaction)| {
        let mut tx = good.clone();
        f(&mut tx);
        convert::transaction_from_proto(&tx)
            .unwrap_err()
            .to_string()
    };
    assert!(mutate(&|tx| tx.sender = None).contains("`sender`"));
    assert!(mutate(&|tx| tx.sender = Some("7573".into())).contains("`sender`"));
    assert!(mutate(&|tx| tx.kind = None).contains("`kind`"));
    assert!(mutate(&|tx| tx.gas_payment[0].digest = Some("0OIl".into())).contains("gas_payment"));
    assert!(mutate(&|tx| tx.gas_payment[0].version = None).contains("gas_payment.version"));
    let reveal = |f: &dyn Fn(&mut proto::RevealModel)| {
        mutate(&|tx| {
            if let Some(Kind::RevealModel(r)) = tx.kind.as_mut().and_then(|k| k.kind.as_mut()) {
                f(r)
            }
        })
    };
    assert!(reveal(&|r| r.decryption_key = Some(vec![1; 31])).contains("decryption_key"));
    assert!(reveal(&|r| r.model_id = None).contains("reveal_model.model_id"));
    // A kind soma-flow never accepts from users.
    let mut change_epoch = good.clone();
    change_epoch.kind = Some(proto::TransactionKind {
        kind: Some(Kind::ChangeEpoch(vec![])),
    });
    assert!(convert::transaction_from_proto(&change_epoch).is_err());
}

#[test]
fn malformed_signatures_are_errors() {
    let flat =
        sign_transaction(&common::secret_key(), &common::transaction("ClaimRewards")).unwrap();
    let good = proto::UserSignature::from(&flat);
    let mut no_scheme = good.clone();
    no_scheme.scheme = None;
    assert!(convert::signature_from_proto(&no_scheme).is_err());
    let mut bls = good.clone();
    bls.scheme = Some(proto::SignatureScheme::Bls12381 as i32);
    assert!(convert::signature_from_proto(&bls).is_err());
    let mut short = good.clone();
    if let Some(proto::user_signature::Signature::Simple(simple)) = short.signature.as_mut() {
        simple.signature = Some(vec![0; 63]);
    }
    assert!(convert::signature_from_proto(&short).is_err());
}

#[test]
fn objects_round_trip_and_keep_their_digest() {
    // The VERIFIED example of §3.7.
    let owner = common::secret_key().address();
    let object = ObjectInner {
        data: ObjectData::new(
            ObjectType::Coin,
            7,
            ObjectID([0x11; 32]),
            &Coin {
                balance: 5_000_000_000,
            },
        )
        .unwrap(),
        owner: Owner::AddressOwner(owner),
        previous_transaction: Digest([0x99; 32]),
    };
    let wire = convert::object_to_proto(&object).unwrap();
    assert_eq!(
        wire.digest.as_deref(),
        Some("HMSxc44SLzXKU8XKvNy2GLxhrZgc9iWKCQrYf4uYBsKr")
    );
    assert_eq!(wire.object_id.as_deref(), Some(&*"11".repeat(32)));
    assert_eq!(
        wire.contents.as_deref(),
        Some(&5_000_000_000u64.to_le_bytes()[..])
    );
    assert_eq!(convert::object_from_proto(&wire).unwrap(), object);
    for owner in [
        Owner::Shared {
            initial_shared_version: 1,
        },
        Owner::Immutable,
    ] {
        let object = ObjectInner {
            owner,
            ..object.clone()
        };
        let wire = convert::object_to_proto(&object).unwrap();
        assert_eq!(convert::object_from_proto(&wire).unwrap(), object);
    }
    let mut bad = wire.clone();
    bad.object_type = Some("coin".into());
    assert!(convert::object_from_proto(&bad).is_err());
    let mut unknown_owner = wire;
    unknown_owner.owner = Some(proto::Owner {
        kind: Some(0),
        address: None,
        version: None,
    });
    assert!(convert::object_from_proto(&unknown_owner).is_err());
}

#[test]
fn targets_render_trimmed_ids_and_read_back_normalised() {
    let mut id = [0u8; 32];
    id[31] = 0xab;
    let model = ObjectID([0x0c; 32]);
    let target = TargetV1 {
        embedding: SomaTensor::vector(&[1.0, 2.0]),
        model_ids: vec![model],
        distance_threshold: SomaTensor::scalar(1.05),
        reward_pool: 0,
        generation_epoch: 3,
        status: TargetStatus::Filled { fill_epoch: 3 },
        submitter: Some(common::secret_key().address()),
        winning_model_id: Some(model),
        winning_model_owner: Some(common::secret_key().address()),
        bond_amount: 0,
        winning_data_manifest: None,
        winning_embedding: None,
        winning_distance_score: None,
        winning_loss_score: None,
        submission_reports: Default::default(),
    };
    let wire = convert::target_to_proto(&ObjectID(id), &target, "claimable");
    assert_eq!(wire.id.as_deref(), Some("0xab"));
    assert_eq!(
        wire.model_ids,
        vec![format!("0x{}", &hex::encode(model.0)[1..])]
    );
    // Zeros are present (§2.0).
    assert_eq!(wire.reward_pool, Some(0));
    assert_eq!(wire.bond_amount, Some(0));
    assert_eq!(wire.fill_epoch, Some(3));
    let info = convert::TargetInfo::try_from(&wire).unwrap();
    assert_eq!(info.id, ObjectID(id));
    assert_eq!(info.model_ids, vec![model]);
    assert_eq!(info.status, "claimable");
    assert_eq!(info.distance_threshold, Some(1.05));
}

/// §6.3 ClaimRewards at v5's shares (4975/4975/50 bps) and fees (1000 base, 300 per
/// written object, value fee at ⌊10/2⌋ bps): the split the localnet's claim test
/// checks coin by coin, and the roles a claimer is paid for.
#[test]
fn a_claim_splits_the_reward_as_the_chain_does() {
    use soma_flow_chain::client::{ChainParameters, ClaimSplit, TargetInfo};
    use soma_flow_chain::SomaAddress;
    let params = ChainParameters {
        epoch_duration_ms: 1,
        model_min_stake: 1,
        model_architecture_version: 1,
        target_embedding_dim: 4,
        target_models_per_target: 1,
        base_fee: 1000,
        write_object_fee: 300,
        value_fee_bps: 10,
        submission_bond_per_byte: 65,
        max_submission_data_size: 1 << 20,
        target_submitter_reward_share_bps: 4975,
        target_model_reward_share_bps: 4975,
        target_claimer_incentive_bps: 50,
    };
    let (owner, submitter, other) = (
        SomaAddress([1; 32]),
        SomaAddress([2; 32]),
        SomaAddress([3; 32]),
    );
    let reward = 9_259_259_259;
    let filled = TargetInfo {
        id: ObjectID([5; 32]),
        status: "claimable".into(),
        generation_epoch: 2,
        reward_pool: reward,
        embedding: Vec::new(),
        model_ids: vec![ObjectID([6; 32])],
        distance_threshold: None,
        fill_epoch: Some(2),
        submitter: Some(submitter),
        winning_model_id: Some(ObjectID([6; 32])),
        winning_model_owner: Some(owner),
        bond_amount: Some(975),
        data_url: None,
    };
    let split = ClaimSplit::of(&filled, &params);
    assert_eq!(
        split,
        ClaimSplit {
            submitter: 4_606_481_481 + 1,
            owner: 4_606_481_481,
            incentive: 46_296_296,
            bond: 975,
            fee: 1000 + 6 * 300 + reward * 5 / 10_000,
        }
    );
    assert_eq!(
        split.paid_to(&filled, &owner),
        split.owner + split.incentive
    );
    assert_eq!(
        split.paid_to(&filled, &submitter),
        split.submitter + split.bond + split.incentive
    );
    assert_eq!(split.paid_to(&filled, &other), split.incentive);
    assert!(split.pays_for_itself(&filled, &owner));
    // The incentive (0.5 %) alone outweighs the value fee (0.05 %) and the rest.
    assert!(split.pays_for_itself(&filled, &other));
    // A tiny reward does not pay for its own claim, even to its owner.
    let tiny = TargetInfo {
        reward_pool: 1000,
        ..filled.clone()
    };
    let split_tiny = ClaimSplit::of(&tiny, &params);
    assert_eq!((split_tiny.owner, split_tiny.incentive), (497, 5));
    assert!(!split_tiny.pays_for_itself(&tiny, &owner));
    // An expired target pays only the incentive; one coin is created.
    let expired = TargetInfo {
        submitter: None,
        winning_model_id: None,
        winning_model_owner: None,
        bond_amount: None,
        fill_epoch: None,
        ..filled
    };
    let split = ClaimSplit::of(&expired, &params);
    assert_eq!((split.submitter, split.owner, split.bond), (0, 0, 0));
    assert_eq!(split.fee, 1000 + 3 * 300 + reward * 5 / 10_000);
}
