//! Malformed BCS from a server is an error, never a panic.

use soma_flow_chain::{
    Error, ObjectData, ObjectID, ObjectInner, ObjectType, SignedTransaction, SomaTensor, TargetV1,
    TransactionData, UserSignature,
};

use crate::common::{self, unhex};

/// Every strict prefix of every §3.8 transaction, and each with a trailing byte.
#[test]
fn truncated_and_extended_transactions_are_errors() {
    for name in common::BUILT {
        let bcs = common::transaction(name).to_bcs().unwrap();
        for len in 0..bcs.len() {
            assert!(
                TransactionData::from_bcs(&bcs[..len]).is_err(),
                "{name} prefix {len}"
            );
        }
        let mut longer = bcs.clone();
        longer.push(0);
        assert!(
            TransactionData::from_bcs(&longer).is_err(),
            "{name} + trailing byte"
        );
    }
}

/// Deterministic pseudo-random garbage, and single-byte corruptions of a real
/// transaction: decoding may fail or succeed, but must return.
#[test]
fn garbage_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = TransactionData::from_bcs(&bytes);
        let _ = bcs::from_bytes::<ObjectInner>(&bytes);
        let _ = bcs::from_bytes::<TargetV1>(&bytes);
        let _ = SignedTransaction::from_bcs(&bytes);
    }
    let submit = common::transaction("SubmitData").to_bcs().unwrap();
    for i in 0..submit.len() {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bytes = submit.clone();
            bytes[i] = value;
            let _ = TransactionData::from_bcs(&bytes);
        }
    }
}

#[test]
fn huge_length_prefixes_are_errors() {
    // Variant 0 (Genesis) claiming u32::MAX objects, then nothing.
    assert!(TransactionData::from_bcs(&unhex("00 00 ffffffff0f")).is_err());
    // A tensor whose byte vector claims 2^31 bytes.
    assert!(bcs::from_bytes::<SomaTensor>(&unhex("00 8080808008")).is_err());
    // Unknown TransactionKind variant 26.
    assert!(TransactionData::from_bcs(&unhex(&format!("00 1a {}", "00".repeat(120)))).is_err());
}

#[test]
fn inconsistent_tensors_are_errors() {
    for (hex, why) in [
        ("01 04 0000803e 01 0100000000000000", "dtype 1"),
        (
            "00 04 0000803e 01 0200000000000000",
            "4 bytes for shape [2]",
        ),
        (
            "00 08 0000803e0000803e 01 0100000000000000",
            "8 bytes for shape [1]",
        ),
        (
            "00 00 02 ffffffffffffffff ffffffffffffffff",
            "shape overflows",
        ),
    ] {
        let err = bcs::from_bytes::<SomaTensor>(&unhex(hex)).unwrap_err();
        assert!(err.to_string().contains("invalid tensor"), "{why}: {err}");
    }
    assert!(matches!(
        SomaTensor::from_parts(0, vec![0; 3], vec![1]),
        Err(Error::Tensor(_))
    ));
    assert_eq!(
        SomaTensor::from_parts(0, vec![], vec![0]).unwrap().values(),
        Vec::<f32>::new()
    );
}

#[test]
fn short_object_contents_and_bad_signatures_are_errors() {
    let short = ObjectData::from_proto_contents(ObjectType::Coin, 1, ObjectID([1; 32]), &[1, 2]);
    assert!(short.decode::<soma_flow_chain::Coin>().is_err());
    let no_id: ObjectData = bcs::from_bytes(&unhex("01 0100000000000000 03 010203")).unwrap();
    assert!(no_id.id().is_err());
    assert!(UserSignature::from_bytes(&[0; 96]).is_err());
    let mut flagged = [0u8; 97];
    flagged[0] = 1;
    assert!(UserSignature::from_bytes(&flagged).is_err());
}

#[test]
fn verification_rejects_what_the_server_rejects() {
    use soma_flow_chain::{sign_transaction, verify_transaction, SecretKey};
    let key = common::secret_key();
    let tx = common::transaction("CreateModel");
    let good = sign_transaction(&key, &tx).unwrap();
    verify_transaction(&tx, &[good]).unwrap();
    assert!(verify_transaction(&tx, &[]).is_err());
    assert!(verify_transaction(&tx, &[good, good]).is_err());
    // Another signer for the same sender.
    let other = sign_transaction(&SecretKey::from_bytes(&[7; 32]), &tx).unwrap();
    assert!(verify_transaction(&tx, &[other]).is_err());
    // The signature of another transaction.
    let claim = sign_transaction(&key, &common::transaction("ClaimRewards")).unwrap();
    assert!(verify_transaction(&tx, &[claim]).is_err());
    // A flipped signature bit.
    let mut bytes = *good.as_bytes();
    bytes[10] ^= 1;
    let flipped = UserSignature::from_bytes(&bytes).unwrap();
    assert!(verify_transaction(&tx, &[flipped]).is_err());
}
