//! Persistence: a saved ledger reopens identical and continues identically;
//! the file has a magic and a format version; a bad file is an error; the
//! changes logged after a snapshot replay onto it.

use std::fs;

use soma_flow_chain::{sign_transaction, SecretKey, TransactionKind};
use soma_flow_localnet::journal::{log_path, Applied, Change, ChangeError};
use soma_flow_localnet::{Ledger, LedgerError, FORMAT_VERSION, LEDGER_FILE};

use crate::common::{commit_kind, net, signed, Net, SOMA};

#[test]
fn a_saved_ledger_reopens_and_continues_identically() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    let id = n.create_model(&alice, SOMA);
    n.ok(&alice, commit_kind(id, 1, &[0.5, 0.25, 0.0, 1.0]));
    n.ledger.faucet(bob.address(), 2 * SOMA).unwrap();
    n.advance();
    let path = n.ledger.save(dir.path()).unwrap();
    assert_eq!(path, dir.path().join(LEDGER_FILE));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from(LEDGER_FILE)],
        "no temporary file is left"
    );

    let mut reopened = Ledger::open(dir.path()).unwrap();
    assert_eq!(reopened.system_state(), n.ledger.system_state());
    assert_eq!(reopened.chain_id(), n.ledger.chain_id());
    assert_eq!(
        reopened.coins(&bob.address()),
        n.ledger.coins(&bob.address())
    );
    assert_eq!(reopened.latest_checkpoint(), n.ledger.latest_checkpoint());

    let gas = n.gas(&alice.address());
    let kind = TransactionKind::TransferCoin {
        coin: gas,
        amount: Some(SOMA),
        recipient: bob.address(),
    };
    let (tx, sig) = signed(&alice, kind, vec![gas]);
    let here = n.ledger.execute(&tx, &[sig]).unwrap();
    let there = reopened.execute(&tx, &[sig]).unwrap();
    assert_eq!(here, there);
    assert_eq!(
        n.ledger.advance_epoch(200_000_000).unwrap(),
        reopened.advance_epoch(200_000_000).unwrap()
    );
}

#[test]
fn bad_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let n = net();
    let path = n.ledger.save(dir.path()).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"SOMALNET");
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        FORMAT_VERSION
    );

    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    fs::write(&path, &newer).unwrap();
    assert!(
        matches!(Ledger::open(dir.path()), Err(LedgerError::UnsupportedVersion { found, .. }) if found == FORMAT_VERSION + 1)
    );

    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Ledger::open(dir.path()),
        Err(LedgerError::Corrupt { .. })
    ));
    fs::write(&path, b"not a ledger at all").unwrap();
    assert!(matches!(
        Ledger::open(dir.path()),
        Err(LedgerError::NotALedger { .. })
    ));
    fs::write(&path, b"SOM").unwrap();
    assert!(matches!(
        Ledger::open(dir.path()),
        Err(LedgerError::Corrupt { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Ledger::open(empty.path()),
        Err(LedgerError::Io { .. })
    ));
    // A save over a damaged file replaces it whole.
    n.ledger.save(dir.path()).unwrap();
    assert_eq!(
        Ledger::open(dir.path()).unwrap().chain_id(),
        n.ledger.chain_id()
    );
}

/// Ledgers of formats 1 (before validators) and 2 (before the open checkpoint
/// and the log's generation) open as ones without validators and with every
/// transaction in a checkpoint, and continue as they were.
#[test]
fn ledgers_of_formats_1_and_2_open_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = net();
    let alice = n.alice.clone();
    n.create_model(&alice, SOMA);
    n.ledger.close_checkpoint().unwrap();
    let path = n.ledger.save(dir.path()).unwrap();
    let current = fs::read(&path).unwrap();
    // Format 3: magic, version, generation (8 bytes), then the body, which ends
    // with the validators and the open checkpoint: two empty lists, one byte each.
    assert_eq!(current[current.len() - 2..], [0, 0]);
    for (version, dropped) in [(2u32, 1), (1u32, 2)] {
        let mut bytes = [&current[..8], &version.to_le_bytes()[..], &current[20..]].concat();
        bytes.truncate(bytes.len() - dropped);
        fs::write(&path, &bytes).unwrap();
        let reopened = Ledger::open(dir.path()).unwrap();
        assert!(reopened.validators().is_empty());
        assert_eq!(reopened.system_state(), n.ledger.system_state());
        assert_eq!(
            reopened.coins(&alice.address()),
            n.ledger.coins(&alice.address())
        );
        assert_eq!(reopened.latest_checkpoint(), n.ledger.latest_checkpoint());
    }
}

/// Applies `change` and logs it as a server does.
fn apply(n: &mut Net, log: &mut Vec<u8>, change: Change) -> Result<Applied, ChangeError> {
    let result = n.ledger.apply_change(&change);
    if change.must_log(&result) {
        change.frame_into(log).unwrap();
    }
    result
}

/// The write-ahead log: changes logged after a snapshot replay onto it to the
/// same ledger, bit for bit (a refused transaction is not logged); a frame cut
/// short at the end of the newest log is a write never finished, and dropped;
/// damage anywhere else is an error.
#[test]
fn logged_changes_replay_to_the_same_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = net();
    let (alice, bob) = (n.alice.clone(), n.bob.clone());
    n.ledger.save(dir.path()).unwrap();
    let mut log = Vec::new();
    let pay = |n: &Net, who: &SecretKey| {
        let gas = n.gas(&who.address());
        let kind = TransactionKind::TransferCoin {
            coin: gas,
            amount: Some(SOMA),
            recipient: bob.address(),
        };
        let (transaction, signature) = signed(who, kind, vec![gas]);
        Change::Execute {
            transaction: Box::new(transaction),
            signatures: vec![signature],
        }
    };
    let first = pay(&n, &alice);
    assert!(matches!(
        apply(&mut n, &mut log, first),
        Ok(Applied::Executed(_))
    ));
    // Signed by the wrong key: refused, nothing logged.
    let Change::Execute { transaction, .. } = pay(&n, &alice) else {
        unreachable!()
    };
    let forged = Change::Execute {
        signatures: vec![sign_transaction(&bob, &transaction).unwrap()],
        transaction,
    };
    assert!(matches!(
        apply(&mut n, &mut log, forged),
        Err(ChangeError::Rejected(_))
    ));
    let logged = log.len();
    let faucet = Change::Faucet {
        recipient: bob.address(),
        amount: 2 * SOMA,
    };
    assert!(matches!(
        apply(&mut n, &mut log, faucet),
        Ok(Applied::Faucet(_))
    ));
    assert!(matches!(
        apply(&mut n, &mut log, Change::CloseCheckpoint),
        Ok(Applied::Checkpoint(Some(1)))
    ));
    let failing = {
        let gas = n.gas(&bob.address());
        let kind = commit_kind(soma_flow_chain::ObjectID([1; 32]), 1, &[0.0]);
        let (transaction, signature) = signed(&bob, kind, vec![gas]);
        Change::Execute {
            transaction: Box::new(transaction),
            signatures: vec![signature],
        }
    };
    assert!(
        matches!(apply(&mut n, &mut log, failing), Ok(Applied::Executed(e)) if !e.is_success())
    );
    let epoch = Change::AdvanceEpoch {
        now_ms: 200_000_000,
    };
    assert!(matches!(
        apply(&mut n, &mut log, epoch),
        Ok(Applied::Epoch(_))
    ));
    let last = pay(&n, &alice);
    assert!(matches!(
        apply(&mut n, &mut log, last),
        Ok(Applied::Executed(_))
    ));
    assert!(log.len() > logged);
    let log_file = log_path(dir.path(), 1);
    fs::write(&log_file, &log).unwrap();

    // The same bytes as the ledger that made the changes, saved alike.
    let saved = |ledger: &Ledger| {
        let fresh = tempfile::tempdir().unwrap();
        fs::read(ledger.save(fresh.path()).unwrap()).unwrap()
    };
    let expected = saved(&n.ledger);
    assert_eq!(saved(&Ledger::open(dir.path()).unwrap()), expected);

    // A frame cut short at the end: a write never finished, dropped.
    let mut torn = log.clone();
    Change::CloseCheckpoint.frame_into(&mut torn).unwrap();
    torn.truncate(torn.len() - 1);
    fs::write(&log_file, &torn).unwrap();
    assert_eq!(saved(&Ledger::open(dir.path()).unwrap()), expected);

    // Once a newer log follows, the same damage is an error, named.
    fs::write(log_path(dir.path(), 2), b"").unwrap();
    let err = Ledger::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, LedgerError::Corrupt { path, .. } if path == &log_file),
        "{err}"
    );
    // And a log missing between the snapshot and a newer one.
    fs::remove_file(&log_file).unwrap();
    assert!(matches!(
        Ledger::open(dir.path()),
        Err(LedgerError::Corrupt { .. })
    ));
    // Saving replaces the snapshot and every log.
    n.ledger.save(dir.path()).unwrap();
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(LEDGER_FILE)]);
}
