//! The independent check: the official Python SDK (`soma-sdk` 0.1.15, the real
//! Rust SDK compiled with PyO3) drives the in-process server through create →
//! commit → epoch → reveal → epoch, reads the system state and targets, and
//! fetches the weights through the `/model/` fallback, idling once past the
//! SDK's 5 s PING interval; the Rust client must see the same chain.
//!
//! Needs `python3` with `soma-sdk==0.1.15` (`scripts/test.sh` installs it). Without
//! it this test fails; it never skips.

use std::process::Command;

use serde_json::Value;
use soma_flow_chain::client::TargetQuery;
use soma_flow_chain::{embedding_commitment, DecryptionKey, Digest, ObjectID, SomaAddress};
use soma_flow_localnet::server::store_blob;

use crate::served as common;

const MISSING: &str = "the official SDK wheel is needed: run the project's test script \
                       (scripts/test.sh, which makes .venv with it), or put .venv/bin first on PATH";

const WEIGHTS: &[u8] = b"python weights for the localnet";
const KEY: [u8; 32] = [0x11; 32];

const SCRIPT: &str = r#"
import asyncio, importlib.metadata, json, sys
version = importlib.metadata.version("soma-sdk")
assert version == "0.1.15", f"soma-sdk {version} is installed; the tests need 0.1.15"
from soma_sdk import Keypair, SomaClient

def plain(x, depth=0):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    if isinstance(x, (list, tuple)):
        return [plain(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {str(k): plain(v, depth + 1) for k, v in x.items()}
    if depth > 6:
        return repr(x)
    out = {}
    for k in dir(x):
        if k.startswith("_"):
            continue
        try:
            v = getattr(x, k)
        except Exception as e:
            out[k] = f"<{e}>"
            continue
        if not callable(v):
            out[k] = plain(v, depth + 1)
    return out

async def main(rpc, faucet, admin, weights_hex, key_hex):
    client = await SomaClient(rpc_url=rpc, faucet_url=faucet, admin_url=admin)
    kp = Keypair.from_secret_key("5a" * 32)
    me = kp.address()
    await client.request_faucet(me)
    model_id = await client.create_model(kp, commission_rate=1000)
    # Idle past the SDK's 5 s PING interval: the server must tolerate PINGs.
    await asyncio.sleep(6)
    dim = await client.get_embedding_dim()
    embedding = [0.25 * (i % 5) - 0.5 for i in range(dim)]
    encrypted, key = SomaClient.encrypt_weights(bytes.fromhex(weights_hex), bytes.fromhex(key_hex))
    # Nothing listens there: fetch_model must fall back to the fullnode's /model/.
    await client.commit_model(kp, model_id, "http://127.0.0.1:9/w.enc", encrypted, key, embedding)
    first = await client.advance_epoch()
    await client.reveal_model(kp, model_id, key, embedding)
    second = await client.advance_epoch()
    state = await client.get_latest_system_state()
    targets = await client.get_targets(status="open")
    fetched = await client.fetch_model(model_id)
    print(json.dumps({
        "address": me,
        "model_id": model_id,
        "key": key,
        "embedding": embedding,
        "epochs": [first, second],
        "chain": await client.get_chain_identifier(),
        "balance": await client.get_balance(me),
        "embedding_dim": dim,
        "min_stake": await client.get_model_min_stake(),
        "epoch": state.epoch,
        "models": plain(state.model_registry.models),
        "active": plain(await client.get_active_models()),
        "targets": plain(targets),
        "fetched": fetched.hex(),
        "encrypted": encrypted.hex(),
    }))

asyncio.run(main(*sys.argv[1:]))
"#;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_drives_the_local_network() {
    let dir = tempfile::tempdir().unwrap();
    let handle = common::network(dir.path()).await;
    // The ciphertext the SDK will commit, stored where /model/ serves it.
    let mut encrypted = WEIGHTS.to_vec();
    DecryptionKey::from_bytes(KEY)
        .cipher()
        .apply(&mut encrypted);
    store_blob(dir.path(), &encrypted).unwrap();

    let args = [
        handle.rpc_url(),
        handle.faucet_url(),
        handle.admin_url(),
        hex::encode(WEIGHTS),
        hex::encode(KEY),
    ];
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .expect(MISSING);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("PackageNotFoundError") && !stderr.contains("No module named"),
        "{MISSING}\n{stderr}"
    );
    assert!(output.status.success(), "the SDK run failed:\n{stderr}");
    let py: Value = serde_json::from_slice(&output.stdout).expect("the script prints JSON");

    assert_eq!(py["chain"], "localnet");
    assert_eq!(py["epochs"], serde_json::json!([1, 2]));
    assert_eq!(py["embedding_dim"], common::DIM);
    assert_eq!(py["encrypted"], hex::encode(&encrypted), "same AES-CTR");
    assert_eq!(
        py["fetched"],
        hex::encode(&encrypted),
        "fetched via /model/"
    );

    // The Rust client sees what the SDK did.
    let client = common::client(&handle);
    let address: SomaAddress = py["address"].as_str().unwrap().parse().unwrap();
    let model_id: ObjectID = py["model_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        py["model_id"].as_str().unwrap(),
        model_id.to_hex(),
        "0x + 64 hex"
    );
    let state = client.system_state().await.unwrap();
    assert_eq!(state.epoch, 2);
    assert_eq!(py["epoch"], 2);
    assert_eq!(py["min_stake"], state.parameters.model_min_stake);
    let model = state
        .model(&model_id)
        .expect("the SDK's model is registered");
    assert_eq!(model.owner, address);
    assert_eq!(model.state, "active");
    let embedding: Vec<f32> = py["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(model.embedding, embedding);
    assert_eq!(
        model.embedding_commitment,
        Some(embedding_commitment(&embedding).unwrap())
    );
    assert_eq!(model.decryption_key, Some(KEY));
    assert_eq!(
        py["key"].as_str().unwrap(),
        DecryptionKey::from_bytes(KEY).to_base58().as_str()
    );
    assert_eq!(model.weights_commitment, Some(Digest::of(&encrypted)));
    let balance = client.balance(&address).await.unwrap() as f64 / 1e9;
    assert!((py["balance"].as_f64().unwrap() - balance).abs() < 1e-9);

    // The same open targets, routed to the SDK's model.
    let rust_targets = client
        .list_targets(&TargetQuery {
            status: Some("open".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .targets;
    assert!(!rust_targets.is_empty());
    let py_targets = py["targets"].as_array().expect("a target list");
    let mut py_ids: Vec<ObjectID> = py_targets
        .iter()
        .map(|t| t["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut rust_ids: Vec<ObjectID> = rust_targets.iter().map(|t| t.id).collect();
    py_ids.sort();
    rust_ids.sort();
    assert_eq!(py_ids, rust_ids);
    for t in py_targets {
        assert_eq!(t["status"], "open");
        assert_eq!(t["generation_epoch"], 2);
        let ids: Vec<ObjectID> = strings(&t["model_ids"])
            .iter()
            .map(|m| m.parse().unwrap())
            .collect();
        assert_eq!(ids, vec![model_id]);
    }
    // get_active_models agrees.
    let active = py["active"].as_array().expect("a model list");
    assert_eq!(active.len(), 1, "{active:?}");
    let active_id: ObjectID = active[0]["model_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(active_id, model_id);
}
