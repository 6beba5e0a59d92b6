//! Byte equality with tests/reference/vectors.json, written by make_vectors.py
//! from the official SDK wheel (soma-sdk 0.1.15).

use std::sync::LazyLock;

use serde_json::Value;
use soma_flow_chain::{
    apply_stream, derive_id, embedding_commitment, model_id, sign_transaction, signing_digest,
    verify_transaction, weights_commitment, DecryptionKey, Digest, SecretKey, SignedTransaction,
    SomaTensor, TransactionData,
};

use crate::common::{self, unhex};

static VECTORS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("reference/vectors.json")).expect("vectors.json parses")
});

pub fn s(v: &Value) -> &str {
    v.as_str().expect("a string")
}

pub fn tx_vector(name: &str) -> &'static Value {
    VECTORS["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("vectors.json has no {name}"))
}

#[test]
fn identity_matches_the_wheel() {
    let id = &VECTORS["identity"];
    let key = SecretKey::parse(s(&id["secret_hex"])).unwrap();
    assert_eq!(key.address().to_string(), s(&id["address"]));
    assert_eq!(key.public_key().to_string(), s(&id["public_key"]));
    assert_eq!(&*key.expose_hex(), s(&id["secret_hex_from_wheel"]));
    assert_eq!(&*key.to_bech32(), s(&id["bech32"]));
    let from_bech32 = SecretKey::parse(s(&id["bech32"])).unwrap();
    assert_eq!(from_bech32.address(), key.address());
    let from_mnemonic = SecretKey::parse(s(&id["mnemonic"])).unwrap();
    assert_eq!(&*from_mnemonic.expose_hex(), s(&id["mnemonic_secret_hex"]));
    assert_eq!(
        from_mnemonic.address().to_string(),
        s(&id["mnemonic_address"])
    );
}

#[test]
fn built_transactions_match_the_wheel() {
    let key = common::secret_key();
    for name in common::BUILT {
        let v = tx_vector(name);
        let tx = common::transaction(name);
        let bcs = tx.to_bcs().unwrap();
        assert_eq!(hex::encode(&bcs), s(&v["tx_bcs"]), "{name}: BCS");
        assert_eq!(
            tx.digest().unwrap().to_string(),
            s(&v["digest"]),
            "{name}: digest"
        );
        assert_eq!(
            hex::encode(signing_digest(&bcs)),
            s(&v["signing_digest"]),
            "{name}"
        );
        let signature = sign_transaction(&key, &tx).unwrap();
        assert_eq!(
            hex::encode(signature.as_bytes()),
            s(&v["signature"]),
            "{name}: signature"
        );
        let signed = SignedTransaction::new(tx, signature).to_bcs().unwrap();
        assert_eq!(
            hex::encode(signed),
            s(&v["signed_transaction"]),
            "{name}: signed"
        );
    }
}

/// Every kind the wheel accepted decodes as the same variant, re-encodes to the
/// same bytes, and its wheel signature passes the server's checks.
#[test]
fn every_kind_round_trips_and_verifies() {
    let transactions = VECTORS["transactions"].as_array().unwrap();
    assert_eq!(
        transactions.len(),
        27,
        "26 kinds plus the whole-coin AddStakeToModel"
    );
    let key = common::secret_key();
    for v in transactions {
        let name = s(&v["name"]);
        let bcs = unhex(s(&v["tx_bcs"]));
        let tx = TransactionData::from_bcs(&bcs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let variant = name.trim_end_matches("WholeCoin");
        let shown = format!("{:?}", tx.v1().kind);
        assert!(
            shown.starts_with(&format!("{variant} ")),
            "{name} decoded as {shown}"
        );
        assert_eq!(u64::from(bcs[1]), v["variant_index"].as_u64().unwrap());
        assert_eq!(tx.to_bcs().unwrap(), bcs, "{name}: re-encoding");
        assert_eq!(tx.digest().unwrap().to_string(), s(&v["digest"]), "{name}");

        let signed = SignedTransaction::from_bcs(&unhex(s(&v["signed_transaction"]))).unwrap();
        assert_eq!(signed.intent_message.value, tx);
        verify_transaction(&tx, &signed.tx_signatures).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            sign_transaction(&key, &tx).unwrap(),
            signed.tx_signatures[0],
            "{name}: signature"
        );
    }
}

#[test]
fn derived_ids_match() {
    let d = &VECTORS["derive_id"];
    let digest = Digest(unhex(s(&d["tx_digest_hex"])).try_into().unwrap());
    assert_eq!(common::transaction("CreateModel").digest().unwrap(), digest);
    for (n, id) in d["ids"].as_array().unwrap().iter().enumerate() {
        assert_eq!(hex::encode(derive_id(&digest, n as u64).0), s(id));
    }
    assert_eq!(model_id(&digest), derive_id(&digest, 0));
}

#[test]
fn commitments_match_the_wheel() {
    let c = &VECTORS["commitments"];
    let ciphertext = s(&c["weights_ciphertext_utf8"]).as_bytes();
    assert_eq!(weights_commitment(ciphertext).to_string(), s(&c["weights"]));
    let embedding: Vec<f32> = c["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let tensor = bcs::to_bytes(&SomaTensor::vector(&embedding)).unwrap();
    assert_eq!(hex::encode(tensor), s(&c["embedding_tensor_bcs"]));
    assert_eq!(
        embedding_commitment(&embedding).unwrap().to_string(),
        s(&c["embedding_commitment"])
    );
    let key = DecryptionKey::from_bytes(unhex(s(&c["decryption_key_hex"])).try_into().unwrap());
    assert_eq!(
        key.commitment().to_string(),
        s(&c["decryption_key_commitment"])
    );
    assert_eq!(Digest::of(b"hello").to_string(), s(&c["hello"]));
}

#[test]
fn encryption_matches_the_wheel() {
    let e = &VECTORS["encryption"];
    let key = DecryptionKey::from_bytes(unhex(s(&e["key_hex"])).try_into().unwrap());
    assert_eq!(&*key.to_base58(), s(&e["key_base58"]));
    assert_eq!(
        DecryptionKey::from_base58(s(&e["key_base58"])).unwrap(),
        key
    );

    let mut text = s(&e["plaintext_utf8"]).as_bytes().to_vec();
    key.cipher().apply(&mut text);
    assert_eq!(hex::encode(&text), s(&e["ciphertext_hex"]));
    let mut zeros = [0u8; 40];
    key.cipher().apply(&mut zeros);
    assert_eq!(hex::encode(zeros), s(&e["zeros40_ciphertext_hex"]));

    // The multi-block sample through the streaming path, read in odd-sized pieces.
    let len = e["large_len"].as_u64().unwrap() as usize;
    let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut reader = crate::crypto::Trickle(&plain, 1000);
    let mut out = Vec::new();
    let digests = apply_stream(&key, &mut reader, &mut out).unwrap();
    assert_eq!(digests.size, len as u64);
    assert_eq!(digests.input, Digest::of(&plain));
    assert_eq!(
        digests.output.to_string(),
        s(&e["large_ciphertext_commitment"])
    );
    assert_eq!(digests.output, Digest::of(&out));
}
