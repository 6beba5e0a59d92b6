//! Shared helpers: a small network with two funded accounts, signing and
//! executing as a client, and the model lifecycle steps.

use soma_flow_chain::SHANNONS_PER_SOMA;
use soma_flow_chain::{
    embedding_commitment, sign_transaction, DecryptionKey, Digest, Manifest, ObjectID, ObjectRef,
    SecretKey, SomaAddress, SomaTensor, TransactionData, TransactionKind,
};
use soma_flow_localnet::{Effects, ErrorKind, GenesisConfig, Ledger, Rejection};

pub const SOMA: u64 = SHANNONS_PER_SOMA;
pub const DIM: u64 = 4;

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

pub struct Net {
    pub ledger: Ledger,
    pub alice: SecretKey,
    pub bob: SecretKey,
}

pub fn config() -> GenesisConfig {
    GenesisConfig::new(DIM)
        .with_account(key(1).address(), 100 * SOMA)
        .with_account(key(2).address(), 100 * SOMA)
}

pub fn net() -> Net {
    net_with(config())
}

pub fn net_with(config: GenesisConfig) -> Net {
    Net {
        ledger: Ledger::genesis(config).unwrap(),
        alice: key(1),
        bob: key(2),
    }
}

/// The signed transaction of `kind` from `who` paying with `gas`.
pub fn signed(
    who: &SecretKey,
    kind: TransactionKind,
    gas: Vec<ObjectRef>,
) -> (TransactionData, soma_flow_chain::UserSignature) {
    let tx = TransactionData::new(kind, who.address(), gas);
    let sig = sign_transaction(who, &tx).unwrap();
    (tx, sig)
}

pub fn weights_key(n: u8) -> DecryptionKey {
    DecryptionKey::from_bytes([n; 32])
}

pub fn manifest(n: u8) -> Manifest {
    Manifest::for_bytes(&format!("https://example.com/models/{n}/w.enc"), &[n; 23]).unwrap()
}

pub fn commit_kind(model: ObjectID, key_n: u8, embedding: &[f32]) -> TransactionKind {
    let m = manifest(key_n);
    TransactionKind::CommitModel {
        model_id: model,
        weights_commitment: m.checksum(),
        manifest: m,
        embedding_commitment: embedding_commitment(embedding).unwrap(),
        decryption_key_commitment: weights_key(key_n).commitment(),
    }
}

pub fn reveal_kind(model: ObjectID, key_n: u8, embedding: &[f32]) -> TransactionKind {
    TransactionKind::RevealModel {
        model_id: model,
        decryption_key: weights_key(key_n),
        embedding: SomaTensor::vector(embedding),
    }
}

impl Net {
    /// The address's largest coin.
    pub fn gas(&self, who: &SomaAddress) -> ObjectRef {
        self.ledger
            .coins(who)
            .into_iter()
            .max_by_key(|(_, b)| *b)
            .map(|(r, _)| r)
            .expect("the account has a coin")
    }

    pub fn balance(&self, who: &SecretKey) -> u128 {
        self.ledger.balance(&who.address())
    }

    pub fn exec(&mut self, who: &SecretKey, kind: TransactionKind) -> Result<Effects, Rejection> {
        let gas = self.gas(&who.address());
        let (tx, sig) = signed(who, kind, vec![gas]);
        self.ledger.execute(&tx, &[sig])
    }

    pub fn ok(&mut self, who: &SecretKey, kind: TransactionKind) -> Effects {
        let effects = self.exec(who, kind).expect("accepted");
        assert!(effects.is_success(), "{:?}", effects.status);
        effects
    }

    /// Executes and returns the failure's kind (panics on success).
    pub fn fails(&mut self, who: &SecretKey, kind: TransactionKind) -> (ErrorKind, Effects) {
        let effects = self.exec(who, kind).expect("accepted");
        let kind = effects.failure().expect("a failure").kind;
        (kind, effects)
    }

    pub fn create_model(&mut self, who: &SecretKey, stake: u64) -> ObjectID {
        let effects = self.ok(
            who,
            TransactionKind::CreateModel {
                stake_amount: stake,
                commission_rate: 1000,
                architecture_version: 1,
            },
        );
        soma_flow_chain::model_id(&effects.transaction_digest)
    }

    pub fn advance(&mut self) -> Effects {
        let state = self.ledger.system_state();
        let next = state.epoch_start_timestamp_ms + state.parameters.epoch_duration_ms;
        self.ledger.advance_epoch(next).unwrap()
    }

    /// Create, commit (key `key_n`), advance, reveal: an Active model.
    pub fn active_model(
        &mut self,
        who: &SecretKey,
        stake: u64,
        key_n: u8,
        embedding: &[f32],
    ) -> ObjectID {
        let id = self.create_model(who, stake);
        self.ok(who, commit_kind(id, key_n, embedding));
        self.advance();
        self.ok(who, reveal_kind(id, key_n, embedding));
        id
    }
}

pub fn digest_hex(hex_text: &str) -> Digest {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).unwrap();
    Digest(out)
}
