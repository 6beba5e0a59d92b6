//! The protobuf messages: field numbers as §2 gives them (checked on the wire),
//! explicit presence, and lossless round trips.

use std::collections::BTreeMap;
use std::fmt::Debug;

use prost::Message;
use soma_flow_chain::proto::{self, transaction_kind::Kind};
use soma_flow_chain::sign_transaction;

use crate::common::{self, unhex};

fn round_trip<M: Message + Default + PartialEq + Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    assert!(!bytes.is_empty());
    assert_eq!(&M::decode(bytes.as_slice()).unwrap(), message);
}

fn kind(kind: Kind) -> Vec<u8> {
    proto::TransactionKind { kind: Some(kind) }.encode_to_vec()
}

fn object_ref(id: &str, version: u64, digest: &str) -> proto::ObjectReference {
    proto::ObjectReference {
        object_id: Some(id.into()),
        version: Some(version),
        digest: Some(digest.into()),
    }
}

fn manifest(url: &str, checksum: [u8; 32], size: u64) -> proto::Manifest {
    proto::Manifest {
        version: Some(proto::manifest::Version::V1(proto::ManifestV1 {
            url: Some(url.into()),
            metadata: Some(proto::Metadata {
                version: Some(proto::metadata::Version::V1(proto::MetadataV1 {
                    checksum: Some(checksum.to_vec()),
                    size: Some(size),
                })),
            }),
        })),
    }
}

#[test]
fn transaction_kind_arms_use_the_proto_numbers() {
    let create = Kind::CreateModel(proto::CreateModel {
        stake_amount: Some(1_000_000_000),
        commission_rate: Some(1000),
        architecture_version: Some(1),
    });
    // Field 33, length-delimited: key (33 << 3) | 2 = 266 = 8a 02.
    assert_eq!(kind(create), unhex("8a02 0b 08 8094ebdc03 10 e807 18 01"));
    // Explicit presence: a zero is still sent.
    let zero = Kind::CreateModel(proto::CreateModel {
        stake_amount: Some(0),
        ..Default::default()
    });
    assert_eq!(kind(zero), unhex("8a02 02 0800"));

    let reveal = Kind::RevealModel(proto::RevealModel {
        model_id: Some("0x33".into()),
        decryption_key: Some(vec![0x44; 2]),
        embedding: vec![0.5, -1.25],
    });
    // Field 16 = 82 01; embedding is packed.
    assert_eq!(
        kind(reveal),
        unhex("8201 14 0a 04 30783333 12 02 4444 1a 08 0000003f 0000a0bf")
    );

    let submit = Kind::SubmitData(proto::SubmitData {
        target_id: Some("t".into()),
        data_manifest: Some(proto::SubmissionManifest {
            manifest: Some(manifest("u", [0; 32], 1)),
        }),
        model_id: Some("m".into()),
        embedding: vec![0.25],
        distance_score: Some(0.25),
        bond_coin: Some(object_ref("c", 2, "d")),
        loss_score: vec![1.5],
    });
    let bytes = kind(submit);
    assert_eq!(bytes[..2], unhex("c201"), "field 24");
    let body = &bytes[3..];
    assert_eq!(body[..3], unhex("0a0174"), "1 target_id");
    let after_manifest = 3 + 2 + body[4] as usize;
    assert_eq!(body[3], 0x1a, "3 data_manifest");
    assert_eq!(
        body[after_manifest..],
        unhex("22016d 2a040000803e 350000803e 3a08 0a0163 1002 1a0164 42040000c03f")
    );

    for (arm, key) in [
        (
            Kind::ClaimRewards(proto::ClaimRewards {
                target_id: Some("t".into()),
            }),
            "ca01",
        ),
        (
            Kind::AddStakeToModel(proto::AddStakeToModel::default()),
            "9a01",
        ),
        (Kind::CommitModel(proto::CommitModel::default()), "7a"),
        (Kind::TransferCoin(proto::TransferCoin::default()), "52"),
        (Kind::PayCoins(proto::PayCoins::default()), "5a"),
        (
            Kind::SetModelCommissionRate(proto::SetModelCommissionRate::default()),
            "a201",
        ),
        (
            Kind::DeactivateModel(proto::DeactivateModel::default()),
            "aa01",
        ),
        (Kind::Genesis(vec![]), "0a"),
        (Kind::ClaimChallengeBond(vec![]), "8202"),
    ] {
        assert!(hex::encode(kind(arm)).starts_with(key), "{key}");
    }
}

#[test]
fn signatures_in_wire_form() {
    let key = common::secret_key();
    let flat = sign_transaction(&key, &common::transaction("ClaimRewards")).unwrap();
    let wire = proto::UserSignature::from(&flat);
    let expected = format!(
        "0800 1266 0800 1240{} 1a20{}",
        hex::encode(flat.signature()),
        key.public_key()
    );
    assert_eq!(wire.encode_to_vec(), unhex(&expected));
    round_trip(&wire);
}

#[test]
fn execute_request_round_trips() {
    let key = common::secret_key();
    let tx = common::transaction("SubmitData");
    let flat = sign_transaction(&key, &tx).unwrap();
    let request = proto::ExecuteTransactionRequest {
        transaction: Some(proto::Transaction {
            digest: Some(tx.digest().unwrap().to_string()),
            kind: Some(proto::TransactionKind {
                kind: Some(Kind::SubmitData(proto::SubmitData {
                    target_id: Some(common::target().to_string()),
                    data_manifest: Some(proto::SubmissionManifest {
                        manifest: Some(manifest("https://example.com/data/1.bin", [7; 32], 15)),
                    }),
                    model_id: Some(common::model().to_string()),
                    embedding: common::EMBEDDING.to_vec(),
                    distance_score: Some(0.25),
                    bond_coin: Some(object_ref("66", 9, "9Ao")),
                    loss_score: vec![1.5],
                })),
            }),
            sender: Some(key.address().to_string()),
            gas_payment: vec![object_ref("11", 7, "3xR")],
        }),
        signatures: vec![(&flat).into()],
        read_mask: Some(proto::FieldMask::from_paths(
            "effects,balance_changes,objects",
        )),
    };
    round_trip(&request);
    // An arm carried as bytes keeps its contents.
    round_trip(&proto::TransactionKind {
        kind: Some(Kind::ChangeEpoch(vec![8, 3, 16, 1])),
    });
}

#[test]
fn responses_round_trip() {
    let object = proto::Object {
        object_id: Some("11".repeat(32)),
        version: Some(7),
        digest: Some("HMSxc44SLzXKU8XKvNy2GLxhrZgc9iWKCQrYf4uYBsKr".into()),
        owner: Some(proto::Owner {
            kind: Some(proto::OwnerKind::Address as i32),
            address: Some("7573".into()),
            version: None,
        }),
        object_type: Some("Coin".into()),
        contents: Some(5_000_000_000u64.to_le_bytes().to_vec()),
        previous_transaction: Some("B".into()),
    };
    round_trip(&proto::GetObjectResponse {
        object: Some(object.clone()),
    });
    round_trip(&proto::ListOwnedObjectsResponse {
        objects: vec![object.clone(), object.clone()],
        next_page_token: Some(vec![1, 2]),
    });
    round_trip(&proto::GetBalanceResponse { balance: Some(0) });
    round_trip(&proto::GetServiceInfoResponse {
        chain_id: Some("964EDrEzfvQT7HjVsjfXYcM1ubi3qhqB41zV7LLbCxxd".into()),
        chain: Some("testnet".into()),
        epoch: Some(3),
        checkpoint_height: Some(99),
        timestamp: Some(proto::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }),
        lowest_available_checkpoint: Some(0),
        lowest_available_checkpoint_objects: Some(0),
        server: Some("soma-node/0.1.21".into()),
    });
    round_trip(&proto::ListTargetsResponse {
        targets: vec![proto::Target {
            id: Some("0xab".into()),
            embedding: vec![1.0, -2.0],
            model_ids: vec!["0x33".into()],
            distance_threshold: Some(1.05),
            reward_pool: Some(10),
            generation_epoch: Some(4),
            status: Some("filled".into()),
            fill_epoch: Some(4),
            submitter: Some("aa".into()),
            winning_model_id: Some("0x33".into()),
            winning_model_owner: Some("bb".into()),
            bond_amount: Some(975),
            data_url: Some("https://d/".into()),
        }],
        next_page_token: None,
    });
    let effects = proto::TransactionEffects {
        status: Some(proto::ExecutionStatus {
            success: Some(false),
            error: Some(proto::ExecutionError {
                description: Some("ModelInvalidState".into()),
                kind: Some(proto::ExecutionErrorKind::OtherError as i32),
                error_details: Some(proto::execution_error::ErrorDetails::OtherError(
                    "Model in invalid state for this operation".into(),
                )),
            }),
        }),
        epoch: Some(1),
        fee: Some(proto::TransactionFee {
            base_fee: Some(1000),
            operation_fee: Some(600),
            value_fee: Some(0),
            total_fee: Some(1600),
        }),
        transaction_digest: Some("C4j1".into()),
        gas_object_index: Some(0),
        dependencies: vec!["x".into()],
        lamport_version: Some(8),
        changed_objects: vec![proto::ChangedObject {
            object_id: Some("0x11".into()),
            input_state: Some(proto::changed_object::InputObjectState::Exists as i32),
            output_state: Some(proto::changed_object::OutputObjectState::ObjectWrite as i32),
            id_operation: Some(proto::changed_object::IdOperation::None as i32),
            output_version: Some(8),
            ..Default::default()
        }],
        unchanged_shared_objects: vec![proto::UnchangedSharedObject {
            kind: Some(proto::unchanged_shared_object::Kind::ReadOnlyRoot as i32),
            ..Default::default()
        }],
    };
    let executed = proto::ExecutedTransaction {
        digest: Some("C4j1".into()),
        effects: Some(effects),
        checkpoint: Some(12),
        balance_changes: vec![proto::BalanceChange {
            address: Some("aa".into()),
            amount: Some("-1600".into()),
        }],
        objects: Some(proto::ObjectSet {
            objects: vec![object],
        }),
        ..Default::default()
    };
    round_trip(&proto::ExecuteTransactionResponse {
        transaction: Some(executed.clone()),
    });
    round_trip(&proto::SubscribeCheckpointsResponse {
        cursor: Some(12),
        checkpoint: Some(proto::Checkpoint {
            sequence_number: Some(12),
            transactions: vec![executed],
            summary: Some(proto::CheckpointSummary {
                epoch: Some(1),
                end_of_epoch_data: Some(proto::EndOfEpochData {
                    next_epoch_protocol_version: Some(5),
                    epoch_commitments: vec![vec![1]],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
}

#[test]
fn epoch_with_system_state_round_trips() {
    let pool = proto::StakingPool {
        id: Some("0x1e".into()),
        activation_epoch: Some(2),
        soma_balance: Some(1_000_000_000),
        exchange_rates: BTreeMap::from([(
            2,
            proto::PoolTokenExchangeRate {
                soma_amount: Some(1),
                pool_token_amount: Some(1),
            },
        )]),
        ..Default::default()
    };
    let model = proto::Model {
        owner: Some("7573".into()),
        architecture_version: Some(1),
        manifest: Some(manifest("https://example.com/w", [1; 32], 23)),
        weights_commitment: Some(vec![1; 32]),
        embedding_commitment: Some(vec![2; 32]),
        decryption_key_commitment: Some(vec![3; 32]),
        decryption_key: Some(vec![0x44; 32]),
        embedding: vec![0.5, -1.25],
        staking_pool: Some(pool.clone()),
        commission_rate: Some(1000),
        next_epoch_commission_rate: Some(1000),
        state: Some("active".into()),
        ..Default::default()
    };
    let state = proto::SystemState {
        epoch: Some(3),
        epoch_start_timestamp_ms: Some(1),
        protocol_version: Some(5),
        parameters: Some(proto::SystemParameters {
            target_embedding_dim: Some(2048),
            target_initial_distance_threshold: Some(1.05),
            max_submission_data_size: Some(1_048_576),
            ..Default::default()
        }),
        validators: Some(proto::ValidatorSet {
            total_stake: Some(0),
            pending_removals: vec![1, 2],
            at_risk_validators: BTreeMap::from([("v".into(), 1)]),
            validators: vec![proto::Validator {
                proxy_address: Some("/dns/x".into()),
                staking_pool: Some(pool),
                next_epoch_proof_of_possession: Some(vec![9]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        emission_pool: Some(proto::EmissionPool {
            balance: Some(10),
            emission_per_epoch: Some(1),
        }),
        model_registry: Some(proto::ModelRegistry {
            models: BTreeMap::from([(format!("0x{}", "27".repeat(32)), model)]),
            staking_pool_mappings: BTreeMap::from([("0x1e".into(), "0x27".into())]),
            total_model_stake: Some(1_000_000_000),
            ..Default::default()
        }),
        target_state: Some(proto::TargetState {
            distance_threshold: Some(1.05),
            reward_per_target: Some(5),
            ..Default::default()
        }),
        safe_mode: Some(false),
        ..Default::default()
    };
    let epoch = proto::GetEpochResponse {
        epoch: Some(proto::Epoch {
            epoch: Some(3),
            system_state: Some(state.clone()),
            protocol_config: Some(proto::ProtocolConfig {
                protocol_version: Some(5),
                attributes: BTreeMap::from([("model_architecture_version".into(), "1".into())]),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    round_trip(&epoch);

    // Field numbers of §2.3 on the wire: SystemParameters 15, 16 (float), 30.
    let params = state.parameters.unwrap().encode_to_vec();
    assert_eq!(params, unhex("78 8010 8501 6666863f f001 808040"));
    // ModelRegistry.models is field 7, total_model_stake 5.
    let registry = state.model_registry.unwrap().encode_to_vec();
    assert!(registry.windows(6).any(|w| w == unhex("28 8094ebdc03")));
    let one = proto::ModelRegistry {
        models: BTreeMap::from([(
            "k".into(),
            proto::Model {
                owner: Some("o".into()),
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    assert_eq!(one.encode_to_vec(), unhex("3a08 0a016b 1203 0a016f"));
}

#[test]
fn enum_values_follow_section_2() {
    use proto::ExecutionErrorKind as K;
    assert_eq!(K::StakingPoolNotFound as i32, 18);
    assert_eq!(K::OtherError as i32, 24);
    assert_eq!(K::ModelDecryptionKeyCommitmentMismatch as i32, 57);
    assert!(K::try_from(17).is_err());
    assert_eq!(proto::OwnerKind::Immutable as i32, 3);
    assert_eq!(proto::SignatureScheme::Multisig as i32, 2);
    assert_eq!(proto::TransactionChecks::Disabled as i32, 1);
}

#[test]
fn garbage_protobuf_is_an_error_or_a_value_never_a_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let len = (state % 200) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = proto::ExecuteTransactionRequest::decode(bytes.as_slice());
        let _ = proto::GetEpochResponse::decode(bytes.as_slice());
        let _ = proto::SubscribeCheckpointsResponse::decode(bytes.as_slice());
    }
    assert!(proto::Transaction::decode(&unhex("0a05 6162")[..]).is_err());
}
