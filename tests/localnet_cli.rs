//! `soma-flow localnet serve` through the real binary, driven by the official Python
//! SDK (`soma-sdk` 0.1.15): the faucet funds an address, the architecture setting
//! decides the embedding dimension, timed epochs advance by themselves, SIGTERM stops
//! the server, and a restart serves the same ledger.
//!
//! Needs `python3` with `soma-sdk==0.1.15` (`scripts/test.sh` installs it); without
//! it the test fails, never skips.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{publish_stages, Project, FIXTURE};

pub(crate) const MISSING: &str = "the official SDK wheel is needed: run the project's test script \
                       (scripts/test.sh, which makes .venv with it), or put .venv/bin first on PATH";

const SCRIPT: &str = r#"
import asyncio, json, os, sys
from soma_sdk import Keypair, SomaClient

async def main(rpc, faucet, admin, fund):
    client = await SomaClient(rpc_url=rpc, faucet_url=faucet, admin_url=admin)
    me = Keypair.from_secret_key("5a" * 32).address()
    if fund == "yes":
        await client.request_faucet(me)
    state = await client.get_latest_system_state()
    print(json.dumps({
        "chain": await client.get_chain_identifier(),
        "balance": await client.get_balance(me),
        "dim": await client.get_embedding_dim(),
        "epoch": state.epoch,
    }))

asyncio.run(main(*sys.argv[1:]))
sys.stdout.flush()
# soma-sdk 0.1.15's runtime threads can abort the interpreter's shutdown when the
# server announces a checkpoint (an epoch change) just then; the answers are printed.
os._exit(0)
"#;

/// A running `localnet serve` and its three URLs (fullnode, faucet, admin).
pub(crate) struct Served {
    child: Child,
    pub(crate) urls: Vec<String>,
}

/// A failing test must not leave its server running (it would hold the test
/// harness's output pipe open).
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn serve(p: &Project, extra: &[&str]) -> Served {
    let mut args = vec![
        "localnet",
        "serve",
        "--port",
        "0",
        "--faucet-port",
        "0",
        "--admin-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let mut child = p
        .cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    let t = Instant::now();
    while urls.len() < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the server never said where it listens"
        );
        let line = lines.next().expect("the server printed its URLs").unwrap();
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            urls.push(url.to_string());
        }
    }
    // Keep reading so that epoch lines never block the server on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, urls }
}

fn sdk(served: &Served, fund: bool) -> serde_json::Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(&served.urls)
        .arg(if fund { "yes" } else { "no" })
        .output()
        .expect(MISSING);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("No module named"), "{MISSING}\n{stderr}");
    assert!(out.status.success(), "the SDK run failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn stop(mut served: Served) {
    let ok = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let t = Instant::now();
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(
                status.success(),
                "SIGTERM ends the server cleanly: {status}"
            );
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the server ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn localnet_serve_speaks_the_sdk_protocol_and_keeps_its_ledger() {
    let p = Project::new();
    let dir = p.path().join("net");
    let dir = dir.to_str().unwrap();
    let served = serve(
        &p,
        &["--dir", dir, "--arch", "v1-small", "--epoch-duration", "1s"],
    );
    let first = sdk(&served, true);
    assert_eq!(first["chain"], "localnet");
    assert_eq!(first["dim"], 256, "v1-small's embedding dimension");
    assert_eq!(
        first["balance"], 2.0,
        "one faucet request: 2 SOMA (the SDK shows SOMA)"
    );
    std::thread::sleep(Duration::from_millis(3500));
    let later = sdk(&served, false);
    assert!(
        later["epoch"].as_u64().unwrap() > first["epoch"].as_u64().unwrap(),
        "timed epochs advance: {first} then {later}"
    );
    stop(served);

    let again = serve(&p, &["--dir", dir]);
    let after = sdk(&again, false);
    assert_eq!(after["balance"], 2.0, "the ledger survived the restart");
    assert_eq!(after["dim"], 256);
    stop(again);

    let bad = p.run(&["localnet", "serve", "--arch", "v2"]);
    assert_eq!(bad.code(), 2, "{}", bad.all());
    assert!(
        bad.stderr()
            .contains("expected one of v1, v1-small, v1-tiny"),
        "{}",
        bad.all()
    );
}

const SDK_VIEW: &str = r#"
import asyncio, json, os, sys
from soma_sdk import SomaClient

async def main(rpc, model_id):
    client = await SomaClient(rpc_url=rpc)
    active = await client.get_active_models()
    print(json.dumps({
        "active": [{"model_id": m.model_id, "embedding": list(m.embedding)} for m in active],
        "fetched": (await client.fetch_model(model_id)).hex(),
        "open": len(await client.get_targets(status="open")),
    }))

asyncio.run(main(*sys.argv[1:]))
sys.stdout.flush()
os._exit(0)  # as in SCRIPT
"#;

/// The network stages against a `localnet serve` in another process, reached by URL
/// as testnet would be; the official SDK sees what soma-flow committed and revealed.
#[test]
fn pipelines_and_the_sdk_share_a_served_local_network() {
    let p = Project::new();
    let served = serve(&p, &["--dir", p.path().join("net").to_str().unwrap()]);
    let (rpc, faucet, admin) = (&served.urls[0], &served.urls[1], &served.urls[2]);
    let bucket = p.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let network = format!(r#"network: {{ rpc: "{rpc}", key_file: me.key }}"#);
    let stages = publish_stages(
        "0.5",
        &format!(
            r#"network: {{ rpc: "{rpc}", faucet: "{faucet}", key_file: me.key }}, storage: "file://{}""#,
            bucket.display()
        ),
        Some(&network),
    );
    let fetch = format!(
        "  fetch:\n    kind: fetch-competitors\n    needs: [reveal]\n    \
         with: {{ {network}, own: true, heads: 4, strict: true }}\n"
    );
    p.write(
        "publish.yaml",
        &format!("name: publish\nstages:\n{stages}{fetch}"),
    );
    assert_eq!(p.run(&["keygen", "--out", "me.key"]).code(), 0);
    let net = ["--network", rpc.as_str(), "--faucet", faucet.as_str()];
    let funded = p.run(&[&["faucet", "--key-file", "me.key"][..], &net].concat());
    assert_eq!(funded.code(), 0, "{}", funded.all());
    let first = p.run(&["run", "publish.yaml"]);
    assert_eq!(first.code(), 3, "{}", first.all());
    let advanced = p.run(&[
        "localnet",
        "advance-epoch",
        "--network",
        rpc,
        "--admin",
        admin,
    ]);
    assert_eq!(advanced.code(), 0, "{}", advanced.all());
    let second = p.run(&["run", "publish.yaml"]);
    assert_eq!(second.code(), 0, "{}", second.all());
    let record = p.output_json("publish.yaml", "commit.record");
    let model_id = record["model_id"].as_str().unwrap();
    let dir = p.output_path("publish.yaml", "fetch.models");
    let fetched = std::fs::read(format!("{dir}/{model_id}.safetensors")).unwrap();
    assert!(
        fetched == std::fs::read(FIXTURE).unwrap(),
        "fetched back and decrypted"
    );

    // Targets come with the next epoch change, now that a model is Active.
    assert_eq!(
        p.run(&[
            "localnet",
            "advance-epoch",
            "--network",
            rpc,
            "--admin",
            admin
        ])
        .code(),
        0
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(SDK_VIEW)
        .args([rpc.as_str(), model_id])
        .output()
        .expect(MISSING);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{MISSING}\n{stderr}");
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ciphertext = std::fs::read(common::file_url_path(record["url"].as_str().unwrap())).unwrap();
    assert_eq!(
        py["fetched"],
        hex(&ciphertext),
        "the SDK fetches our ciphertext"
    );
    let mine = py["active"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["model_id"]
                .as_str()
                .unwrap()
                .parse::<soma_flow_chain::ObjectID>()
                .unwrap()
                == model_id.parse().unwrap()
        })
        .expect("the SDK lists our model as active")
        .clone();
    assert_eq!(mine["embedding"], serde_json::json!([0.5, -0.5].repeat(64)));
    let listed = p.run(&[
        "localnet",
        "targets",
        "--network",
        rpc,
        "--status",
        "open",
        "--json",
    ]);
    assert_eq!(listed.code(), 0, "{}", listed.all());
    let ours: serde_json::Value = serde_json::from_str(&listed.stdout()).unwrap();
    assert_eq!(py["open"], ours["targets"].as_array().unwrap().len());
    stop(served);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store's local network keeps the epoch length it was made with; `localnet
/// set-epoch` changes it, and `localnet submit` refuses epochs too short for a
/// submission before scoring anything, saying how to change them.
#[test]
fn the_epoch_length_can_be_changed_and_submit_checks_it_first() {
    let p = Project::new();
    // A network made with 2 s epochs, as the main job makes it.
    p.write(
        "f.yaml",
        "name: f\nstages:\n  r:\n    kind: reveal\n    with: { network: { epoch_duration: 2s } }\n",
    );
    let out = p.run(&["run", "f.yaml"]);
    assert_eq!(out.code(), 0, "{}", out.all());
    p.write("blob.txt", "a blob of data a submitter would send\n");
    let refused = p.run(&["localnet", "submit", "--data", "blob.txt"]);
    assert_eq!(refused.code(), 1, "{}", refused.all());
    assert!(
        refused.stderr().contains("last 2000 ms: too short")
            && refused
                .stderr()
                .contains("soma-flow localnet set-epoch 10m"),
        "{}",
        refused.all()
    );
    let bad = p.run(&["localnet", "set-epoch", "soon"]);
    assert_eq!(bad.code(), 1, "{}", bad.all());
    assert!(
        bad.stderr().contains("`soon` is not an epoch length"),
        "{}",
        bad.all()
    );

    let set = p.run(&["localnet", "set-epoch", "10m"]);
    assert_eq!(set.code(), 0, "{}", set.all());
    let settings = p.store().join("state/network/localnet/settings.json");
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap()
    };
    assert_eq!(read()["epoch_duration_ms"], 600_000);
    let models = p.run(&["localnet", "models", "--json"]);
    assert_eq!(models.code(), 0, "{}", models.all());
    let manual = p.run(&["localnet", "set-epoch", "manual"]);
    assert_eq!(manual.code(), 0, "{}", manual.all());
    assert!(read().get("epoch_duration_ms").is_none(), "{}", read());
    let submit = p.run(&["localnet", "submit", "--data", "blob.txt"]);
    assert!(!submit.stderr().contains("too short"), "{}", submit.all());
}

/// Durability under load: 24 official-SDK senders transfer at once
/// (`benches/localnet_senders.py --acks` prints each transfer the SDK reports
/// final), `localnet serve` is killed with SIGKILL mid-stream, and the ledger,
/// served again (which replays its log), holds every acknowledged transfer in a
/// checkpoint.
#[test]
fn transfers_acknowledged_before_a_sigkill_survive_it() {
    let p = Project::new();
    let dir = p.path().join("net");
    let dir_arg = dir.to_str().unwrap();
    let mut served = serve(&p, &["--dir", dir_arg]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/localnet_senders.py");
    let mut senders = Command::new("python3")
        .arg(script)
        .args(&served.urls)
        .args(["24", "0", "7", "--acks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(MISSING);
    let mut lines = BufReader::new(senders.stdout.take().unwrap()).lines();
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 200 {
        match lines.next() {
            Some(line) => acknowledged.push(line.unwrap()),
            None => {
                let out = senders.wait_with_output().unwrap();
                panic!(
                    "{MISSING}\nthe senders stopped: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    // What the SDK acknowledged before it saw the server die.
    acknowledged.extend(lines.map_while(Result::ok));
    let _ = senders.kill();
    let _ = senders.wait();

    let again = serve(&p, &["--dir", dir_arg]);
    stop(again);
    let ledger = soma_flow_localnet::Ledger::open(&dir).unwrap();
    for digest in &acknowledged {
        let digest: soma_flow_chain::Digest = digest.parse().unwrap();
        assert!(
            ledger.transaction_checkpoint(&digest).is_some(),
            "{digest} was acknowledged final, then lost to SIGKILL ({} acknowledged)",
            acknowledged.len()
        );
    }
}
