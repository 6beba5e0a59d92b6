//! Live check against the official SDK wheel: Rust builds and signs a
//! transaction, and the wheel's `Keypair.sign` (which BCS-decodes the bytes as the
//! real `TransactionData` and re-encodes them) must produce the same signed bytes.
//!
//! Needs `python3` with `soma-sdk==0.1.15`; `scripts/test.sh` installs it. Without it this
//! test fails; it never skips.

use std::process::Command;

use soma_flow_chain::manifest::SubmissionManifest;
use soma_flow_chain::{
    sign_transaction, Digest, Manifest, ObjectID, ObjectRef, SecretKey, SignedTransaction,
    SomaTensor, TransactionData, TransactionKind,
};

const PYTHON: &str = r#"
import importlib.metadata, sys
version = importlib.metadata.version("soma-sdk")
assert version == "0.1.15", f"soma-sdk {version} is installed; the tests need 0.1.15"
import soma_sdk
key = soma_sdk.Keypair.from_secret_key(sys.argv[1])
print(key.address())
print(key.sign(bytes.fromhex(sys.argv[2])).hex())
"#;

const MISSING: &str = "the official SDK wheel is needed: run the project's test script \
                       (scripts/test.sh, which makes .venv with it), or put .venv/bin first on PATH";

#[test]
fn the_wheel_accepts_and_signs_what_rust_builds() {
    // A key the wheel reads in its Bech32 form, as Rust writes it.
    let key = SecretKey::from_bytes(&[0x5a; 32]);
    let kind = TransactionKind::SubmitData {
        target_id: ObjectID([0xab; 32]),
        data_manifest: SubmissionManifest {
            // Non-canonical on purpose: Rust must sign the canonical form.
            manifest: Manifest::for_bytes("HTTPS://Data.Example.COM:443/x/../batch 7.bin", b"data")
                .unwrap(),
        },
        model_id: ObjectID([0xcd; 32]),
        embedding: SomaTensor::vector(&[0.1, -0.2, 0.3, f32::MIN_POSITIVE, -0.0]),
        distance_score: SomaTensor::scalar(0.875),
        loss_score: SomaTensor::vector(&[2.5, 1.0e-7]),
        bond_coin: ObjectRef {
            object_id: ObjectID([0xef; 32]),
            version: 300,
            digest: Digest([0x01; 32]),
        },
    };
    let gas = ObjectRef {
        object_id: ObjectID([0x12; 32]),
        version: u64::MAX - 1,
        digest: Digest([0x34; 32]),
    };
    let tx = TransactionData::new(kind, key.address(), vec![gas]);
    let signed = SignedTransaction::new(tx.clone(), sign_transaction(&key, &tx).unwrap());

    let output = Command::new("python3")
        .args([
            "-c",
            PYTHON,
            &key.to_bech32(),
            &hex::encode(tx.to_bcs().unwrap()),
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): {MISSING}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("PackageNotFoundError") || stderr.contains("No module named") {
        panic!("{MISSING}\n{stderr}");
    }
    assert!(
        output.status.success(),
        "the wheel rejected the transaction:\n{stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "unexpected output: {stdout}");
    assert_eq!(lines[0], key.address().to_string(), "address");
    assert_eq!(
        lines[1],
        hex::encode(signed.to_bcs().unwrap()),
        "signed transaction"
    );
}
