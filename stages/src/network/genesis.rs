//! The devnet's genesis: revealed models every new devnet starts with, so that
//! fetch-competitors finds competitors on a fresh machine, as a localnet of the real
//! chain starts from its genesis.
//!
//! The models are small `v1-tiny` networks trained by `stages/assets/genesis/
//! genesis.yaml` (regenerate with `make.sh` there) and embedded in the binary. Their
//! keys and owners are derived from their names: anyone can reproduce them, which is
//! harmless for models whose keys are public from epoch 0.

use std::path::Path;

use rusqlite::{params, Connection};
use serde::Deserialize;
use url::Url;

use super::{Commitments, Manifest, NetworkError, RevealedCommit};
use crate::crypto::{ContentKey, CtrStream, Hash256};
use crate::identity::Signer;

pub struct GenesisModel {
    pub name: &'static str,
    /// Plaintext safetensors.
    pub weights: &'static [u8],
    /// The `embedding.json` the embed stage wrote for it.
    embedding_json: &'static str,
}

macro_rules! genesis_model {
    ($name:literal) => {
        GenesisModel {
            name: $name,
            weights: include_bytes!(concat!("../../assets/genesis/", $name, ".safetensors")),
            embedding_json: include_str!(concat!(
                "../../assets/genesis/",
                $name,
                ".embedding.json"
            )),
        }
    };
}

pub const MODELS: [GenesisModel; 2] = [
    genesis_model!("genesis-code"),
    genesis_model!("genesis-prose"),
];

/// Where genesis ciphertexts live inside the devnet directory.
pub const OBJECTS_DIR: &str = "genesis";

/// Genesis models are `v1-tiny`, whose head count the weights do not show.
pub const HEADS: usize = 4;

impl GenesisModel {
    pub fn embedding(&self) -> Vec<f32> {
        #[derive(Deserialize)]
        struct File {
            embedding: Vec<f32>,
        }
        serde_json::from_str::<File>(self.embedding_json)
            .expect("genesis embeddings are valid JSON, checked by tests")
            .embedding
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(
            &format!("soma-flow devnet genesis {purpose} v1"),
            self.name.as_bytes(),
        )
    }

    pub fn key(&self) -> ContentKey {
        ContentKey::from_bytes(self.derive("content key"))
    }

    pub fn owner(&self) -> Signer {
        Signer::from_seed(&self.derive("owner"))
    }
}

/// Writes the genesis ciphertexts under `building/genesis/` and registers the models
/// as revealed in epoch 0. `published` is where `building` will be moved once
/// complete: the manifests point there.
pub(super) fn seed(
    conn: &Connection,
    building: &Path,
    published: &Path,
) -> Result<(), NetworkError> {
    let fail = |reason: String| NetworkError::Devnet {
        dir: published.display().to_string(),
        reason,
    };
    let objects = building.join(OBJECTS_DIR);
    std::fs::create_dir_all(&objects)
        .map_err(|e| fail(format!("cannot create {}: {e}", objects.display())))?;
    for model in &MODELS {
        let key = model.key();
        let mut stream = CtrStream::keyed(&key);
        let mut ciphertext = model.weights.to_vec();
        stream.process(&mut ciphertext);
        let digests = stream.finish();
        let file = format!("{}.bin", model.name);
        std::fs::write(objects.join(&file), &ciphertext)
            .map_err(|e| fail(format!("cannot write genesis object {file}: {e}")))?;
        let url = Url::from_file_path(published.join(OBJECTS_DIR).join(&file))
            .map_err(|()| fail(format!("{} is not an absolute path", published.display())))?;
        let embedding = model.embedding();
        let revealed = RevealedCommit {
            commit_epoch: 0,
            reveal_epoch: 0,
            manifest: Manifest {
                url: url.into(),
                checksum: digests.output,
                size: digests.size,
            },
            commitments: Commitments {
                weights: digests.input,
                embedding: Hash256::of_embedding(&embedding),
                key: key.commitment(),
            },
            embedding,
            decryption_key: key.expose_hex().to_string(),
        };
        conn.execute(
            "INSERT INTO models (owner, stake, commission_bps, revealed) VALUES (?1, ?2, ?3, ?4)",
            params![
                model.owner().public_key().to_string(),
                1_000_i64,
                0,
                serde_json::to_string(&revealed).expect("records serialise")
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ArchConfig;

    #[test]
    fn genesis_models_are_v1_tiny_with_unit_norm_embeddings_and_distinct_keys() {
        let dir = tempfile::tempdir().unwrap();
        let tiny: ArchConfig = "v1-tiny".parse().unwrap();
        for model in &MODELS {
            let path = dir.path().join(model.name);
            std::fs::write(&path, model.weights).unwrap();
            let arch = ArchConfig::infer_from_weights(&path, Some(HEADS)).unwrap();
            assert_eq!(arch.embedding_dim, tiny.embedding_dim, "{}", model.name);
            assert_eq!(arch.num_layers, tiny.num_layers, "{}", model.name);
            let embedding = model.embedding();
            assert_eq!(embedding.len(), tiny.embedding_dim);
            let norm = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{}: |e| = {norm}", model.name);
        }
        let [a, b] = &MODELS;
        assert_ne!(a.key().commitment(), b.key().commitment());
        assert_ne!(a.owner().public_key(), b.owner().public_key());
        assert_ne!(a.weights, b.weights, "two different models");
    }
}
