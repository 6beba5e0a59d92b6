//! The Rust client against the in-process server, end to end: faucet → create
//! → commit → epoch → reveal → the model reads back Active with its
//! commitments → targets are generated, listed, paged and fetched; weights are
//! served over HTTP with ranges; refusals and failures come back in words; the
//! ledger survives a restart; many senders at once commit together.

use soma_flow_chain::client::{is_lock_conflict, locked_object, ClientError, TargetQuery};
use soma_flow_chain::{
    embedding_commitment, weights_commitment, DecryptionKey, Manifest, ObjectID, SecretKey,
    TransactionKind,
};
use soma_flow_localnet::server::{serve, store_blob, ServerConfig};
use soma_flow_localnet::{GenesisConfig, Ledger};

use crate::served::{self as common, DIM};

const WEIGHTS: &[u8] = b"encrypted weights of a tiny model, served by the localnet";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_lifecycle_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let handle = common::network(dir.path()).await;
    let client = common::client(&handle);
    let key = SecretKey::from_bytes(&[9; 32]);
    let me = key.address();

    let info = client.service_info().await.unwrap();
    assert_eq!(info.chain.as_deref(), Some("localnet"));
    assert_eq!(info.server.as_deref(), Some("soma-node/0.1.21"));

    // Faucet: 2 SOMA per request, as a real coin.
    assert_eq!(client.balance(&me).await.unwrap(), 0);
    for _ in 0..2 {
        let sent = client.request_gas(&me).await.unwrap();
        assert_eq!(sent.coins_sent[0].amount, 2_000_000_000);
    }
    assert_eq!(client.balance(&me).await.unwrap(), 4_000_000_000);
    assert_eq!(client.coins(&me).await.unwrap().len(), 2);

    // Live parameters, not constants.
    let params = client.system_state().await.unwrap().parameters;
    assert_eq!(params.target_embedding_dim, DIM as u64);

    // Too little stake is refused before anything is sent.
    let low = client
        .create_model(&key, params.model_min_stake - 1, 1000)
        .await;
    assert!(matches!(&low, Err(ClientError::Invalid(m)) if m.contains("stake too low")));

    let (model_id, _) = client
        .create_model(&key, params.model_min_stake, 1000)
        .await
        .unwrap();
    let state = client.system_state().await.unwrap();
    let model = state.model(&model_id).expect("the model is registered");
    assert_eq!(model.state, "created");
    assert_eq!(model.owner, me);
    assert_eq!(model.stake, params.model_min_stake);

    // Commit in epoch 0.
    store_blob(dir.path(), WEIGHTS).unwrap();
    let manifest = Manifest::for_bytes("https://Weights.Example/m/1.enc", WEIGHTS).unwrap();
    let decryption_key = DecryptionKey::from_bytes([0x44; 32]);
    let embedding = common::embedding(0.5);
    let embedding_c = embedding_commitment(&embedding).unwrap();
    // Someone else cannot commit to it.
    let other = SecretKey::from_bytes(&[10; 32]);
    client.request_gas(&other.address()).await.unwrap();
    let foreign = client
        .commit_model(
            &other,
            &model_id,
            &manifest,
            weights_commitment(WEIGHTS),
            embedding_c,
            decryption_key.commitment(),
        )
        .await
        .unwrap_err();
    assert!(
        foreign.to_string().contains("not the model's owner"),
        "{foreign}"
    );
    client
        .commit_model(
            &key,
            &model_id,
            &manifest,
            weights_commitment(WEIGHTS),
            embedding_c,
            decryption_key.commitment(),
        )
        .await
        .unwrap();
    let pending = client.system_state().await.unwrap();
    let model = pending.model(&model_id).unwrap();
    assert_eq!(model.state, "pending");
    assert_eq!(model.commit_epoch, Some(0));
    assert_eq!(model.manifest.as_ref(), Some(&manifest));

    // Revealing in the commit epoch is a failed transaction, in words.
    let early = client
        .reveal_model(&key, &model_id, &decryption_key, &embedding)
        .await
        .unwrap_err();
    assert!(
        matches!(&early, ClientError::Failed { reason, .. } if reason.contains("wrong epoch")),
        "{early}"
    );
    // A wrong embedding length is refused locally.
    let short = client
        .reveal_model(&key, &model_id, &decryption_key, &embedding[1..])
        .await;
    assert!(matches!(short, Err(ClientError::Invalid(_))));

    assert_eq!(client.advance_epoch().await.unwrap(), 1);
    // A key that does not match the commitment fails with the reason.
    let wrong_key = DecryptionKey::from_bytes([0x45; 32]);
    let mismatch = client
        .reveal_model(&key, &model_id, &wrong_key, &embedding)
        .await
        .unwrap_err();
    assert!(
        mismatch.to_string().contains("commitment mismatch"),
        "{mismatch}"
    );
    // The failed reveal charged fees but did not end the reveal window.
    client
        .reveal_model(&key, &model_id, &decryption_key, &embedding)
        .await
        .unwrap();
    let active = client.system_state().await.unwrap();
    let model = active.model(&model_id).unwrap();
    assert_eq!(model.state, "active");
    assert_eq!(model.decryption_key, Some([0x44; 32]));
    assert_eq!(model.embedding, embedding);
    assert_eq!(model.embedding_commitment, Some(embedding_c));
    assert_eq!(
        model.decryption_key_commitment,
        Some(decryption_key.commitment())
    );
    assert_eq!(model.weights_commitment, Some(weights_commitment(WEIGHTS)));
    assert_eq!(model.commit_epoch, None, "only pending models show it");

    // Targets come at the next boundary, routed to the only active model.
    assert_eq!(client.advance_epoch().await.unwrap(), 2);
    let open = client
        .list_targets(&TargetQuery {
            status: Some("open".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!open.targets.is_empty(), "targets were generated");
    for target in &open.targets {
        assert_eq!(target.status, "open");
        assert_eq!(target.generation_epoch, 2);
        assert_eq!(target.model_ids, vec![model_id]);
        assert_eq!(target.embedding.len(), DIM);
        assert!(target.reward_pool > 0);
    }
    let first = &open.targets[0];
    assert_eq!(&client.target(&first.id).await.unwrap(), first);
    // Paging returns each target once.
    let mut seen = Vec::new();
    let mut query = TargetQuery {
        status: Some("open".into()),
        page_size: Some(1),
        ..Default::default()
    };
    loop {
        let page = client.list_targets(&query).await.unwrap();
        assert!(page.targets.len() <= 1);
        seen.extend(page.targets.iter().map(|t| t.id));
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => break,
        }
    }
    let all: Vec<ObjectID> = open.targets.iter().map(|t| t.id).collect();
    assert_eq!(seen, all);
    let none = client
        .list_targets(&TargetQuery {
            epoch: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.targets.is_empty());
    let bad = client
        .list_targets(&TargetQuery {
            status: Some("bogus".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(
        bad,
        ClientError::Rpc {
            code: tonic::Code::InvalidArgument,
            ..
        }
    ));

    // The weights over plain HTTP on the fullnode port, whole and ranged.
    let path = format!("/model/{}", model_id.to_hex());
    let (status, head, body) = common::http_get(handle.rpc_addr, &path, None).await;
    assert_eq!((status, body.as_slice()), (200, WEIGHTS), "{head}");
    // The fullnode headers of §1.1 are on every response of the port.
    let head = head.to_ascii_lowercase();
    assert!(head.contains("x-soma-chain: localnet"), "{head}");
    assert!(head.contains("x-soma-epoch: 2"), "{head}");
    assert!(head.contains("server: soma-node/0.1.21"), "{head}");
    let (status, head, body) = common::http_get(handle.rpc_addr, &path, Some("bytes=2-5")).await;
    assert_eq!((status, body.as_slice()), (206, &WEIGHTS[2..=5]));
    assert!(head
        .to_ascii_lowercase()
        .contains(&format!("content-range: bytes 2-5/{}", WEIGHTS.len())));
    assert_eq!(
        common::http_get(handle.rpc_addr, "/model/xyz", None)
            .await
            .0,
        400
    );
    let unknown = format!("/model/{}", "ab".repeat(32));
    assert_eq!(
        common::http_get(handle.rpc_addr, &unknown, None).await.0,
        404
    );

    // A restart serves the same chain from the saved ledger.
    handle.shutdown().await;
    let again = common::network(dir.path()).await;
    let client = common::client(&again);
    let reopened = client.system_state().await.unwrap();
    assert_eq!(reopened.epoch, 2);
    assert_eq!(reopened.model(&model_id).unwrap().state, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_map_to_grpc_codes() {
    let dir = tempfile::tempdir().unwrap();
    let handle = common::network(dir.path()).await;
    let client = common::client(&handle);
    let key = SecretKey::from_bytes(&[3; 32]);
    // No coins: the client says so and names the address.
    let error = client
        .create_model(&key, 1_000_000_000, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::NoGas { address, .. } if *address == key.address().to_hex())
    );
    // Unknown object and target: NOT_FOUND.
    for error in [
        client.object(&ObjectID([1; 32])).await.unwrap_err(),
        client.target(&ObjectID([1; 32])).await.unwrap_err(),
    ] {
        assert!(
            matches!(
                error,
                ClientError::Rpc {
                    code: tonic::Code::NotFound,
                    ..
                }
            ),
            "{error}"
        );
    }
    // A transaction signed by someone else: INVALID_ARGUMENT.
    client.request_gas(&key.address()).await.unwrap();
    let (gas, _) = client.coins(&key.address()).await.unwrap()[0];
    let tx = soma_flow_chain::TransactionData::new(
        soma_flow_chain::TransactionKind::CreateModel {
            stake_amount: 1_000_000_000,
            commission_rate: 0,
            architecture_version: 1,
        },
        key.address(),
        vec![gas],
    );
    let intruder = SecretKey::from_bytes(&[4; 32]);
    let error = client.sign_and_execute(&intruder, &tx).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Rpc { code: tonic::Code::InvalidArgument, message, .. } if message.contains("Invalid user signature")),
        "{error}"
    );
    // The sender's own signature goes through; resending with the now stale
    // gas ref is the refusal the SDK retries with another coin, naming it.
    client.sign_and_execute(&key, &tx).await.unwrap();
    let stale = soma_flow_chain::TransactionData::new(
        soma_flow_chain::TransactionKind::ClaimRewards {
            target_id: ObjectID([1; 32]),
        },
        key.address(),
        vec![gas],
    );
    let error = client.sign_and_execute(&key, &stale).await.unwrap_err();
    let ClientError::Rpc { code, message, .. } = &error else {
        panic!("expected a refusal, got {error}");
    };
    assert_eq!(*code, tonic::Code::InvalidArgument);
    assert!(is_lock_conflict(message), "{message}");
    assert_eq!(locked_object(message), Some(gas.object_id));
    // The system state object is readable by its id.
    let system = client.object(&ObjectID::SYSTEM_STATE).await.unwrap();
    assert_eq!(
        system.data.object_type,
        soma_flow_chain::ObjectType::SystemState
    );
}

/// StateService replies are zstd-compressed for a client that accepts zstd,
/// LedgerService replies never are (§1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_state_service_replies_are_compressed() {
    use soma_flow_chain::proto;
    use soma_flow_chain::rpc::paths;
    use tonic::codec::CompressionEncoding;
    use tonic_prost::ProstCodec;

    let dir = tempfile::tempdir().unwrap();
    let handle = common::network(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(handle.rpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Zstd);
    let encoding = |metadata: &tonic::metadata::MetadataMap| {
        metadata
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    grpc.ready().await.unwrap();
    let balance = grpc
        .unary(
            tonic::Request::new(proto::GetBalanceRequest {
                owner: Some("0x1".into()),
            }),
            http::uri::PathAndQuery::from_static(paths::GET_BALANCE),
            ProstCodec::<proto::GetBalanceRequest, proto::GetBalanceResponse>::default(),
        )
        .await
        .unwrap();
    assert_eq!(encoding(balance.metadata()).as_deref(), Some("zstd"));
    assert_eq!(balance.get_ref().balance, Some(0));
    grpc.ready().await.unwrap();
    let info = grpc
        .unary(
            tonic::Request::new(proto::GetServiceInfoRequest {}),
            http::uri::PathAndQuery::from_static(paths::GET_SERVICE_INFO),
            ProstCodec::<proto::GetServiceInfoRequest, proto::GetServiceInfoResponse>::default(),
        )
        .await
        .unwrap();
    assert_eq!(encoding(info.metadata()), None);
    assert_eq!(
        info.metadata()
            .get("x-soma-chain")
            .and_then(|v| v.to_str().ok()),
        Some("localnet")
    );
}

/// A server on a protocol this client does not speak (upstream's reworked protocol
/// is version 7): nothing is signed or sent, and the error names both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_protocol_version_is_refused_before_signing() {
    use soma_flow_localnet::server::{serve, ServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let mut genesis = soma_flow_localnet::GenesisConfig::new(DIM as u64);
    genesis.protocol_version = 7;
    let handle = serve(ServerConfig::new(dir.path(), genesis).ephemeral_ports())
        .await
        .unwrap();
    let client = common::client(&handle);
    let key = SecretKey::from_bytes(&[9; 32]);
    client.request_gas(&key.address()).await.unwrap();
    let before = client.coins(&key.address()).await.unwrap();
    let refused = client.create_model(&key, 1_000_000_000, 1000).await;
    match &refused {
        Err(e @ ClientError::UnsupportedProtocol { version: 7, .. }) => {
            let text = e.to_string();
            assert!(text.contains("version 7") && text.contains("1–5"), "{text}");
        }
        other => panic!("expected UnsupportedProtocol, got {other:?}"),
    }
    // Nothing executed: the coin is as it was (same version, same balance).
    assert_eq!(client.coins(&key.address()).await.unwrap(), before);
    assert_eq!(client.check_protocol().await.ok(), None);
}

/// Group commit: 24 senders at once, each its own client; every transfer is
/// acknowledged final, transactions that arrived together share checkpoints,
/// snapshots are taken along the way (every 20 changes here), and the ledger
/// reopened after shutdown holds every transaction in the checkpoint its
/// sender was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_commit_together_and_reopen_as_told() {
    const SENDERS: u8 = 24;
    const EACH: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        ServerConfig::new(dir.path(), GenesisConfig::new(common::DIM as u64)).ephemeral_ports();
    config.snapshot_every = 20;
    let handle = serve(config).await.unwrap();
    let recipient = SecretKey::from_bytes(&[200; 32]).address();
    let senders: Vec<_> = (0..SENDERS)
        .map(|i| {
            let client = common::client(&handle);
            tokio::spawn(async move {
                let key = SecretKey::from_bytes(&[100 + i; 32]);
                client.request_gas(&key.address()).await.unwrap();
                let mut told = Vec::new();
                for _ in 0..EACH {
                    let executed = client
                        .execute(&key, 10_000, |gas| TransactionKind::TransferCoin {
                            coin: gas,
                            amount: Some(1),
                            recipient,
                        })
                        .await
                        .unwrap();
                    told.push((executed.digest, executed.checkpoint));
                }
                told
            })
        })
        .collect();
    let mut told = Vec::new();
    for sender in senders {
        told.extend(sender.await.unwrap());
    }
    handle.shutdown().await;

    let ledger = Ledger::open(dir.path()).unwrap();
    for (digest, checkpoint) in &told {
        assert_eq!(ledger.transaction_checkpoint(digest), Some(*checkpoint));
    }
    let checkpoints: std::collections::BTreeSet<_> = told.iter().map(|(_, c)| c).collect();
    assert!(
        checkpoints.len() < told.len(),
        "{} transfers from {SENDERS} senders at once, each in a checkpoint of its own",
        told.len()
    );
    let logs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".log"))
        .collect();
    assert_eq!(
        logs.len(),
        1,
        "older logs are removed after each snapshot: {logs:?}"
    );
    let generation: u64 = logs[0]
        .trim_start_matches("ledger-")
        .trim_end_matches(".log")
        .parse()
        .unwrap();
    assert!(generation > 2, "snapshots were taken: {logs:?}");
}
