//! The inputs of SOMA-RPC.md §3.8 (shared by vectors.json), built with the
//! crate's API as a model owner would.

use soma_flow_chain::manifest::SubmissionManifest;
use soma_flow_chain::{
    embedding_commitment, weights_commitment, DecryptionKey, Digest, Manifest, ObjectID, ObjectRef,
    SecretKey, SomaTensor, TransactionData, TransactionKind,
};

pub const EMBEDDING: [f32; 4] = [0.5, -1.25, 2.0, 0.0];
pub const WEIGHTS_CIPHERTEXT: &[u8] = b"encrypted-weights-bytes";
pub const DATA: &[u8] = b"hello soma data";

pub fn secret_key() -> SecretKey {
    let mut sk = [0u8; 32];
    for (i, b) in sk.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    SecretKey::from_bytes(&sk)
}

pub fn gas() -> ObjectRef {
    object_ref(0x11, 7, 0x22)
}

pub fn coin() -> ObjectRef {
    object_ref(0x66, 9, 0x77)
}

fn object_ref(id: u8, version: u64, digest: u8) -> ObjectRef {
    ObjectRef {
        object_id: ObjectID([id; 32]),
        version,
        digest: Digest([digest; 32]),
    }
}

pub fn model() -> ObjectID {
    ObjectID([0x33; 32])
}

pub fn target() -> ObjectID {
    ObjectID([0x55; 32])
}

pub fn key() -> DecryptionKey {
    DecryptionKey::from_bytes([0x44; 32])
}

/// The kinds of §3.8, by the names vectors.json uses.
pub fn kind(name: &str) -> TransactionKind {
    match name {
        "CreateModel" => TransactionKind::CreateModel {
            stake_amount: 1_000_000_000,
            commission_rate: 1000,
            architecture_version: 1,
        },
        "CommitModel" => TransactionKind::CommitModel {
            model_id: model(),
            manifest: Manifest::for_bytes(
                "https://example.com/models/1/w.safetensors.enc",
                WEIGHTS_CIPHERTEXT,
            )
            .unwrap(),
            weights_commitment: weights_commitment(WEIGHTS_CIPHERTEXT),
            embedding_commitment: embedding_commitment(&EMBEDDING).unwrap(),
            decryption_key_commitment: key().commitment(),
        },
        "RevealModel" => TransactionKind::RevealModel {
            model_id: model(),
            decryption_key: key(),
            embedding: SomaTensor::vector(&EMBEDDING),
        },
        "AddStakeToModel" => TransactionKind::AddStakeToModel {
            model_id: model(),
            coin_ref: coin(),
            amount: Some(5_000_000_000),
        },
        "AddStakeToModelWholeCoin" => TransactionKind::AddStakeToModel {
            model_id: model(),
            coin_ref: coin(),
            amount: None,
        },
        "SubmitData" => TransactionKind::SubmitData {
            target_id: target(),
            data_manifest: SubmissionManifest {
                manifest: Manifest::for_bytes("https://example.com/data/1.bin", DATA).unwrap(),
            },
            model_id: model(),
            embedding: SomaTensor::vector(&EMBEDDING),
            distance_score: SomaTensor::scalar(0.25),
            loss_score: SomaTensor::vector(&[1.5]),
            bond_coin: coin(),
        },
        "ClaimRewards" => TransactionKind::ClaimRewards {
            target_id: target(),
        },
        other => panic!("no §3.8 example named {other}"),
    }
}

/// The names of the transactions built by [`kind`].
pub const BUILT: [&str; 7] = [
    "CreateModel",
    "CommitModel",
    "RevealModel",
    "AddStakeToModel",
    "AddStakeToModelWholeCoin",
    "SubmitData",
    "ClaimRewards",
];

pub fn transaction(name: &str) -> TransactionData {
    TransactionData::new(kind(name), secret_key().address(), vec![gas()])
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}
