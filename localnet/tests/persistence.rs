//! Persistence: a saved ledger reopens identical and continues identically;
//! the file has a magic and a format version; a bad file is an error.

use std::fs;

use soma_flow_chain::TransactionKind;
use soma_flow_localnet::{Ledger, LedgerError, FORMAT_VERSION, LEDGER_FILE};

use crate::common::{commit_kind, net, signed, SOMA};

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

/// A ledger of format 1 (before validators) opens as one without validators and
/// continues as it was.
#[test]
fn a_format_1_ledger_opens_without_validators() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = net();
    let alice = n.alice.clone();
    n.create_model(&alice, SOMA);
    let path = n.ledger.save(dir.path()).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    // Format 2 ends with the validators: an empty list is one byte, 0.
    assert_eq!(bytes.pop(), Some(0));
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let reopened = Ledger::open(dir.path()).unwrap();
    assert!(reopened.validators().is_empty());
    assert_eq!(reopened.system_state(), n.ledger.system_state());
    assert_eq!(
        reopened.coins(&alice.address()),
        n.ledger.coins(&alice.address())
    );
}
