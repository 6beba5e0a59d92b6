//! `soma-flow localnet serve` through the real binary, driven by the official Python
//! SDK (`soma-sdk` 0.1.15): the faucet funds an address, the architecture setting
//! decides the embedding dimension, timed epochs advance by themselves, SIGTERM stops
//! the server, and a restart serves the same ledger.
//!
//! Needs `python3` with `soma-sdk==0.1.15` (`scripts/test.sh` installs it); without
//! it the test fails, never skips.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Project;

const MISSING: &str = "the official SDK wheel is needed: run the project's test script \
                       (scripts/test.sh), or `python3 -m pip install soma-sdk==0.1.15`";

const SCRIPT: &str = r#"
import asyncio, json, sys
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
"#;

/// A running `localnet serve` and its three URLs (fullnode, faucet, admin).
struct Served {
    child: Child,
    urls: Vec<String>,
}

fn serve(p: &Project, extra: &[&str]) -> Served {
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
