//! The worked examples of SOMA-RPC.md (§3.5, §3.7, §3.8, §4, §5, §7.2), the second
//! source next to vectors.json, copied here byte for byte from the document.

use soma_flow_chain::{
    derive_id, sign_transaction, signing_digest, target_seed, CanonicalUrl, Coin, DecryptionKey,
    Digest, ObjectData, ObjectID, ObjectInner, ObjectType, Owner, SomaTensor,
};

use crate::common::{self, unhex};

const PK: &str = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664";
const ADDRESS: &str = "7573c697fa68450f04fa0dee2d39dcdc8a5ccf5db547f3e47638a6f8eeeec110";

fn tail() -> String {
    format!(
        "{ADDRESS} 01 {} 0700000000000000 20 {}",
        "11".repeat(32),
        "22".repeat(32)
    )
}

const TENSOR: &str = "00 10 0000003f 0000a0bf 00000040 00000000 01 0400000000000000";

/// (name, KIND bytes, digest, signing message, 64-byte signature) from §3.8.
fn examples() -> Vec<(
    &'static str,
    String,
    &'static str,
    &'static str,
    &'static str,
)> {
    let url = hex::encode("https://example.com/models/1/w.safetensors.enc");
    let data_url = hex::encode("https://example.com/data/1.bin");
    let checksum = "56853c97c5fb6c970f01862a94625534cd1734dfcfeef74ed890e037681a8593";
    vec![
        (
            "CreateModel",
            "0e 00ca9a3b00000000 e803000000000000 0100000000000000".into(),
            "GvxQgXQjpGyuJBrTpMbsuy9N2f5HpENYxWAN9o53dxHN",
            "9024cce1a8d742ca3196e12b1b8d786c3a940e6677d95e669fd6358107e84347",
            "4e86ab6671271b3ec40bf26dc538075dc7e600e0a892a80da2ac15078b36f43c70ec45a1ee1f84f3fddf8cfcac579b496ba1ecbce4edb1303f11667f0d45e802",
        ),
        (
            "CommitModel",
            format!(
                "0f {} 00 2e {url} 00 20 {checksum} 1700000000000000 20 {checksum} \
                 20 499bf57f69840107d4abd43bea5d1b0e7084d9d5c9f271244b49461b051d65fa \
                 20 0395256ce5d90f07504b614b9e70e29a06fdd69cef6b01f6018615164125a5c5",
                "33".repeat(32)
            ),
            "CuXF1mnsjHBrrKC9o9JxNysYYdKwNmENHTKL87QRYJ1h",
            "6b5208c66900cd0c20f8485f0825664adbd40dac72e12f88058a7a80654a7c2a",
            "56b614367754db8872010d9c2715ff4b83ef3fe2bed1a5b06abaa3037d1ecc57a23419d183aa09764abf9c7ffdc060495877451e30a0b03197d0796544d9480e",
        ),
        (
            "RevealModel",
            format!("10 {} 20 {} {TENSOR}", "33".repeat(32), "44".repeat(32)),
            "BvWuPQ4XZwAwjs8cFrwFYXWDhoxVWKsLksTDoo85WU5c",
            "e8c9dee596d835e8ff322b8519928ee59545aff82297fc71cef02c0cc668c4f8",
            "c615de5f56ea1952f69f52dbfc813ccef991acc2313fc7ba800b82b33e87e9603ccc69651420c25c0f5365223249e5268c2c5b7df3fb7d8053bc71c0f6200609",
        ),
        (
            "AddStakeToModel",
            format!(
                "11 {} {} 0900000000000000 20 {} 01 00f2052a01000000",
                "33".repeat(32),
                "66".repeat(32),
                "77".repeat(32)
            ),
            "9AuVSjqNqjmoUq3ip961SJmUMvUxq3138z6jo4vCz23t",
            "45e6e321e9dd7c0cb573a8712049be13abda82d5ce91bea717e699f98b37fe67",
            "8b683c7105a1b592aab073db7f751ea25833306eb5ea411814938f96912fa326658266794197cef35b47f1d054bd8cdf6fa1e7bb862028a2bb3d41efd6300b06",
        ),
        (
            "SubmitData",
            format!(
                "16 {} 00 1e {data_url} 00 20 8dfa9a8dfc6002b8003da7008b63fe177996c5e8fd7becf7b8e58a6edf200c41 \
                 0f00000000000000 {} {TENSOR} 00 04 0000803e 01 0100000000000000 \
                 00 04 0000c03f 01 0100000000000000 {} 0900000000000000 20 {}",
                "55".repeat(32),
                "33".repeat(32),
                "66".repeat(32),
                "77".repeat(32)
            ),
            "7cTzN4m5x4invPMafa1piZqYTxy6BQ1ZgpofDZTF7FoM",
            "c090e7cd6267d786c130cb55bf28486f6b87b86825e46d795b53fa439843887d",
            "02da353f25b4fec4e6280ef4edacd1ff47181b23ff4ccbbcb0e35e82ddb7b967e076a0ea991fb5133d772bfee70238969a228aed7dd5099aacf776e6bbe81908",
        ),
        (
            "ClaimRewards",
            format!("17 {}", "55".repeat(32)),
            "C4j1tgFsz5dedpGqKTEWzDziavNsvP5vzE1CPhLavCNZ",
            "6397e9782f23a5b2b30c0db1ab519e01e0c7cfca36e48394eb5c34b51c97df4a",
            "d399e29d2cc29de1ae333b8a7b6c00c54d66cc05569e351900d118e2dd03afea3985d096133d4c2703e4bba4f992580b4cf839e2d0ac85c7ff8ecadbdc552306",
        ),
    ]
}

#[test]
fn worked_transactions_of_section_3_8() {
    let key = common::secret_key();
    assert_eq!(key.public_key().to_string(), PK);
    assert_eq!(key.address().to_string(), ADDRESS);
    for (name, kind, digest, message, signature) in examples() {
        let expected = unhex(&format!("00 {kind} {}", tail()));
        let tx = common::transaction(name);
        let bcs = tx.to_bcs().unwrap();
        assert_eq!(hex::encode(&bcs), hex::encode(&expected), "{name}: BCS");
        assert_eq!(tx.digest().unwrap().to_string(), digest, "{name}: digest");
        assert_eq!(
            hex::encode(signing_digest(&bcs)),
            message,
            "{name}: signing message"
        );
        let flat = sign_transaction(&key, &tx).unwrap();
        assert_eq!(
            hex::encode(flat.as_bytes()),
            format!("00{signature}{PK}"),
            "{name}"
        );
    }
    // "the None form ends in 00"
    let none = common::transaction("AddStakeToModelWholeCoin")
        .to_bcs()
        .unwrap();
    let some = common::transaction("AddStakeToModel").to_bcs().unwrap();
    let end = 1 + 1 + 32 + 73;
    assert_eq!(none[..end], some[..end]);
    assert_eq!(none[end], 0x00);
    assert_eq!(none[end + 1..], some[end + 9..]);
}

#[test]
fn ids_derived_from_create_model() {
    let digest = common::transaction("CreateModel").digest().unwrap();
    assert_eq!(
        hex::encode(digest.0),
        "ecb1bcb553fc20d788a4a8a8804139609f55741b32655a159cf240c84616e331"
    );
    let ids = [
        "0x27cdbc9fb78625cd05b059170ad2c1dc2dbbb5b1e95126c4684fae9a8fdc1718",
        "0x1ea6ef12fa4efe62245de30022847aca5be5e23bf72ff63b065c70c4c4002e06",
        "0xec737cd09b6bd845e93a262c1f0f8f819fb7ef8c524ec5901a473b54102d6a07",
    ];
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(derive_id(&digest, n as u64).to_string(), *id);
    }
    // §7.2: make_target_seed(d_create, 0).
    assert_eq!(target_seed(&digest, 0), 14782369475130608935);
}

#[test]
fn object_digest_of_section_3_7() {
    let owner = common::secret_key().address();
    let object = ObjectInner {
        data: ObjectData::new(
            ObjectType::Coin,
            7,
            ObjectID([0x11; 32]),
            &Coin {
                balance: 5_000_000_000,
            },
        )
        .unwrap(),
        owner: Owner::AddressOwner(owner),
        previous_transaction: Digest([0x99; 32]),
    };
    let expected = format!(
        "01 0700000000000000 28 {} 00f2052a01000000 00 {ADDRESS} 20 {}",
        "11".repeat(32),
        "99".repeat(32)
    );
    assert_eq!(
        hex::encode(bcs::to_bytes(&object).unwrap()),
        hex::encode(unhex(&expected))
    );
    assert_eq!(
        object.digest().unwrap().to_string(),
        "HMSxc44SLzXKU8XKvNy2GLxhrZgc9iWKCQrYf4uYBsKr"
    );
    assert_eq!(object.data.id().unwrap(), ObjectID([0x11; 32]));
    assert_eq!(object.data.decode::<Coin>().unwrap().balance, 5_000_000_000);
    assert_eq!(
        object.data.proto_contents().unwrap(),
        5_000_000_000u64.to_le_bytes()
    );
}

#[test]
fn tensors_of_section_3_5() {
    let vector = SomaTensor::vector(&common::EMBEDDING);
    assert_eq!(bcs::to_bytes(&vector).unwrap(), unhex(TENSOR));
    assert_eq!(
        bcs::to_bytes(&SomaTensor::scalar(0.25)).unwrap(),
        unhex("00 04 0000803e 01 0100000000000000")
    );
    let decoded: SomaTensor = bcs::from_bytes(&unhex(TENSOR)).unwrap();
    assert_eq!(decoded.values(), common::EMBEDDING);
    assert_eq!(decoded.shape(), [4]);
}

#[test]
fn encryption_and_commitments_of_section_5() {
    let key = DecryptionKey::from_bytes([0x44; 32]);
    let mut text = *b"hello world";
    key.cipher().apply(&mut text);
    assert_eq!(hex::encode(text), "bd4aa1662bd12be7f1318e");
    let mut zeros = [0u8; 40];
    key.cipher().apply(&mut zeros);
    assert_eq!(
        hex::encode(zeros),
        "d52fcd0a44f15c88835dea0f542c44aa992320f46492fb0d3dee14b19c09e35062326a95f24e4804"
    );
    assert_eq!(
        &*key.to_base58(),
        "5bV6jUfhDHCQVA1WfKBUnXUsboJgoKgkzkKcxr3joew5"
    );
    assert_eq!(
        Digest::of(b"hello").to_string(),
        "4PNCZERNLKAqwSYHhZpb7B4GE34eiYDPXGgeNKWNNaBp"
    );
    assert_eq!(
        hex::encode(key.commitment().0),
        "0395256ce5d90f07504b614b9e70e29a06fdd69cef6b01f6018615164125a5c5"
    );
}

#[test]
fn urls_are_canonicalised_as_section_2_7() {
    for (given, canonical) in [
        ("https://Example.COM", "https://example.com/"),
        (
            "https://example.com:443/a/./b/../w.bin",
            "https://example.com/a/w.bin",
        ),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
    ] {
        assert_eq!(CanonicalUrl::parse(given).unwrap().as_str(), canonical);
    }
    assert!(CanonicalUrl::parse("not a url").is_err());
}

/// §3.6 gives the layouts but no bytes: this pins the field order written there.
#[test]
fn object_contents_follow_section_3_6() {
    use soma_flow_chain::manifest::SubmissionManifest;
    use soma_flow_chain::{Manifest, SomaAddress, StakedSomaV1, TargetStatus, TargetV1};

    let staked = StakedSomaV1 {
        pool_id: ObjectID([0x1e; 32]),
        stake_activation_epoch: 2,
        principal: 1_000_000_000,
    };
    let expected = format!("{} 0200000000000000 00ca9a3b00000000", "1e".repeat(32));
    assert_eq!(bcs::to_bytes(&staked).unwrap(), unhex(&expected));

    let submitter = SomaAddress([0xaa; 32]);
    let target = TargetV1 {
        embedding: SomaTensor::vector(&[0.25]),
        model_ids: vec![ObjectID([0x33; 32])],
        distance_threshold: SomaTensor::scalar(1.5),
        reward_pool: 7,
        generation_epoch: 3,
        status: TargetStatus::Filled { fill_epoch: 3 },
        submitter: Some(submitter),
        winning_model_id: Some(ObjectID([0x33; 32])),
        winning_model_owner: None,
        bond_amount: 150,
        winning_data_manifest: Some(SubmissionManifest {
            manifest: Manifest::new("https://d.example/x", Digest([0x0c; 32]), 15).unwrap(),
        }),
        winning_embedding: None,
        winning_distance_score: Some(SomaTensor::scalar(0.25)),
        winning_loss_score: None,
        submission_reports: [submitter].into(),
    };
    let expected = format!(
        "00 04 0000803e 01 0100000000000000 \
         01 {model} \
         00 04 0000c03f 01 0100000000000000 \
         0700000000000000 0300000000000000 \
         01 0300000000000000 \
         01 {sub} 01 {model} 00 \
         9600000000000000 \
         01 00 13 {url} 00 20 {checksum} 0f00000000000000 \
         00 \
         01 00 04 0000803e 01 0100000000000000 \
         00 \
         01 {sub}",
        model = "33".repeat(32),
        sub = "aa".repeat(32),
        url = hex::encode("https://d.example/x"),
        checksum = "0c".repeat(32),
    );
    let bytes = bcs::to_bytes(&target).unwrap();
    assert_eq!(hex::encode(&bytes), hex::encode(unhex(&expected)));
    assert_eq!(bcs::from_bytes::<TargetV1>(&bytes).unwrap(), target);

    let shared = bcs::to_bytes(&Owner::Shared {
        initial_shared_version: 1,
    })
    .unwrap();
    assert_eq!(shared, unhex("01 0100000000000000"));
    assert_eq!(bcs::to_bytes(&Owner::Immutable).unwrap(), [2]);
}
