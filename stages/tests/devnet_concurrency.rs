//! Several processes and threads writing one devnet ledger at once: no request may
//! be lost or applied twice.

use std::path::Path;
use std::process::Command;

use soma_flow_stages::crypto::Hash256;
use soma_flow_stages::identity::Signer;
use soma_flow_stages::network::devnet::{Devnet, DevnetOptions};
use soma_flow_stages::network::{Commitments, Manifest, ModelState, Network};

const CHILD_DIR_ENV: &str = "SOMA_FLOW_TEST_HAMMER_DIR";
const CHILD_ROUNDS_ENV: &str = "SOMA_FLOW_TEST_HAMMER_ROUNDS";
const ROUNDS: u64 = 20;

/// Each round: create a model, commit to it, advance the epoch.
fn hammer(dir: &Path, rounds: u64) {
    let devnet = Devnet::open(dir).unwrap();
    let signer = Signer::generate().unwrap();
    for round in 0..rounds {
        let id = devnet.create_model(&signer, round, 100).unwrap();
        let hash = Hash256::of(&round.to_le_bytes());
        let manifest = Manifest {
            url: format!("file:///nowhere/{id}"),
            checksum: hash,
            size: round,
        };
        let commitments = Commitments {
            weights: hash,
            embedding: hash,
            key: hash,
        };
        devnet
            .commit_model(&signer, id, manifest, commitments)
            .unwrap();
        devnet.advance_epoch().unwrap();
    }
}

/// Runs only when re-executed by the test below, as a separate process.
#[test]
fn hammer_child_process() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let rounds = std::env::var(CHILD_ROUNDS_ENV).map_or(ROUNDS, |r| r.parse().unwrap());
        hammer(Path::new(&dir), rounds);
    }
}

#[test]
fn a_process_killed_mid_write_leaves_a_consistent_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    Devnet::init(&dir, &DevnetOptions::default()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["hammer_child_process", "--exact", "--quiet"])
        .env(CHILD_DIR_ENV, &dir)
        .env(CHILD_ROUNDS_ENV, "1000000")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no cleanup) once it is busy writing.
    let devnet = Devnet::open(&dir).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while devnet.models().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let ledger = rusqlite::Connection::open(dir.join("ledger.sqlite3")).unwrap();
    let check: String = ledger
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // Each round is create, commit, advance, each its own transaction: whatever
    // the kill interrupted is either fully there or absent.
    let devnet = Devnet::open(&dir).unwrap();
    let models = devnet.models().unwrap();
    let created = models.len() as u64;
    let committed = models.iter().filter(|m| m.pending.is_some()).count() as u64;
    let epoch = devnet.current_epoch().unwrap();
    assert!(created >= 3);
    assert!(created >= committed && committed >= epoch && epoch + 1 >= created);
    // The ledger stays writable.
    let signer = Signer::generate().unwrap();
    devnet.create_model(&signer, 1, 1).unwrap();
}

#[test]
fn concurrent_processes_and_threads_lose_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("devnet");
    Devnet::init(&dir, &DevnetOptions::default()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args(["hammer_child_process", "--exact", "--quiet"])
                .env(CHILD_DIR_ENV, &dir)
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| hammer(&dir, ROUNDS));
        }
    });
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child process failed");
    }

    let devnet = Devnet::open(&dir).unwrap();
    let models = devnet.models().unwrap();
    assert_eq!(models.len() as u64, 4 * ROUNDS);
    assert!(models.iter().all(|m| m.state == ModelState::Pending));
    assert_eq!(devnet.current_epoch().unwrap(), 4 * ROUNDS);
    let ids: std::collections::BTreeSet<_> = models.iter().map(|m| m.id).collect();
    assert_eq!(ids.len() as u64, 4 * ROUNDS);
}
