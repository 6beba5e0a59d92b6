//! The local network's genesis competitors: two small `v1-tiny` models that every
//! new local network starts with, revealed, so that `fetch-competitors` finds
//! competitors on a fresh machine.
//!
//! They enter the ledger as any model does, through real signed transactions
//! (CreateModel and CommitModel in epoch 0, RevealModel in epoch 1), so the local
//! network's state machine checks them like the user's own. Their weights are
//! trained by `stages/assets/genesis/genesis.yaml` (regenerate with `make.sh`
//! there) and embedded in the binary; their owner keys and content keys are
//! derived from their names, which is harmless for models revealed from the start.

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use soma_flow_chain::{
    sign_transaction, DecryptionKey, Manifest, ObjectID, SecretKey, SomaAddress, SomaTensor,
    TransactionData, TransactionKind,
};
use soma_flow_localnet::server::store_blob;
use soma_flow_localnet::Ledger;
use std::path::Path;

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

/// The architecture of the genesis models; a local network of another size starts
/// without them.
pub const ARCH: &str = "v1-tiny";

/// Genesis models are `v1-tiny`, whose head count the weights do not show.
pub const HEADS: usize = 4;

/// What each genesis owner is funded with: its stake and fees.
pub const OWNER_FUNDS: u64 = 10 * soma_flow_chain::SHANNONS_PER_SOMA;

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
            &format!("soma-flow localnet genesis {purpose} v2"),
            self.name.as_bytes(),
        )
    }

    pub fn key(&self) -> DecryptionKey {
        DecryptionKey::from_bytes(self.derive("content key"))
    }

    pub fn owner(&self) -> SecretKey {
        SecretKey::from_bytes(&self.derive("owner"))
    }
}

/// Signs and executes one transaction of `key`'s, paid by its richest coin.
fn execute(
    ledger: &mut Ledger,
    key: &SecretKey,
    kind: TransactionKind,
) -> Result<soma_flow_chain::TransactionDigest> {
    let sender = key.address();
    let (gas, _) = ledger
        .coins(&sender)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("genesis owner {sender} has no coin"))?;
    let tx = TransactionData::new(kind, sender, vec![gas]);
    let signature = sign_transaction(key, &tx)?;
    let effects = ledger
        .execute(&tx, &[signature])
        .map_err(|e| anyhow!("genesis transaction refused: {e}"))?;
    if let Some(failure) = effects.failure() {
        return Err(anyhow!("genesis transaction failed: {failure:?}"));
    }
    Ok(tx.digest()?)
}

/// The addresses genesis funds.
pub fn owners() -> Vec<SomaAddress> {
    MODELS.iter().map(|m| m.owner().address()).collect()
}

/// Creates and commits every genesis model in epoch 0 (ciphertexts stored where
/// the fullnode's `/model/{id}` serves them from `data_dir`), ends the epoch at
/// `now_ms`, and reveals them in epoch 1.
pub fn seed(ledger: &mut Ledger, data_dir: &Path, now_ms: u64) -> Result<()> {
    let params = ledger.system_state().parameters.clone();
    let mut created: Vec<(ObjectID, &GenesisModel)> = Vec::new();
    for model in &MODELS {
        let owner = model.owner();
        let digest = execute(
            ledger,
            &owner,
            TransactionKind::CreateModel {
                stake_amount: params.model_min_stake,
                commission_rate: 0,
                architecture_version: params.model_architecture_version,
            },
        )?;
        let model_id = soma_flow_chain::derive_id(&digest, 0);
        let key = model.key();
        let mut ciphertext = model.weights.to_vec();
        key.cipher().apply(&mut ciphertext);
        let blob = store_blob(data_dir, &ciphertext)
            .with_context(|| format!("cannot store genesis model {}", model.name))?;
        let url = url::Url::from_file_path(&blob)
            .map_err(|()| anyhow!("{} is not an absolute path", blob.display()))?;
        let manifest = Manifest::for_bytes(url.as_str(), &ciphertext)?;
        execute(
            ledger,
            &owner,
            TransactionKind::CommitModel {
                model_id,
                manifest,
                weights_commitment: soma_flow_chain::weights_commitment(&ciphertext),
                embedding_commitment: soma_flow_chain::embedding_commitment(&model.embedding())?,
                decryption_key_commitment: key.commitment(),
            },
        )?;
        created.push((model_id, model));
    }
    ledger.advance_epoch(now_ms)?;
    for (model_id, model) in created {
        execute(
            ledger,
            &model.owner(),
            TransactionKind::RevealModel {
                model_id,
                decryption_key: model.key(),
                embedding: SomaTensor::vector(&model.embedding()),
            },
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
        let tiny: ArchConfig = ARCH.parse().unwrap();
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
        assert_ne!(a.owner().address(), b.owner().address());
        assert_ne!(a.weights, b.weights, "two different models");
    }
}
