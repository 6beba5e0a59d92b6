//! Signing and verification (§4): the intent message, the signing digest, the
//! 97-byte Ed25519 user signature, and the checks a SOMA server makes.
//!
//! The signature is pure Ed25519 over `Blake2b-256(00 00 01 ‖ BCS(tx))`, not over
//! the BCS itself. [`SignedTransaction`] is the `SenderSignedData` BCS form that
//! the SDK's `Keypair.sign` returns; the wire uses proto instead.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::base::blake2b256;
use crate::error::{Error, Result};
use crate::identity::{PublicKey, SecretKey, ED25519_FLAG};
use crate::transaction::TransactionData;

/// Intent scope TransactionData (0), version V0 (0), app id Soma (1).
pub const TRANSACTION_INTENT: Intent = Intent {
    scope: 0,
    version: 0,
    app_id: 1,
};

/// The length of a flat user signature: flag ‖ signature ‖ public key.
pub const USER_SIGNATURE_LEN: usize = 1 + 64 + 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub scope: u8,
    pub version: u8,
    pub app_id: u8,
}

/// What is signed: the intent followed by the transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentMessage {
    pub intent: Intent,
    pub value: TransactionData,
}

/// `Blake2b-256(00 00 01 ‖ tx_bcs)`: the 32 bytes Ed25519 signs.
pub fn signing_digest(tx_bcs: &[u8]) -> [u8; 32] {
    let intent = TRANSACTION_INTENT;
    blake2b256(&[&[intent.scope, intent.version, intent.app_id], tx_bcs])
}

/// A flat Ed25519 user signature: `00 ‖ sig(64) ‖ pk(32)`. BCS: serde bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserSignature([u8; USER_SIGNATURE_LEN]);

impl UserSignature {
    /// Accepts 97 bytes with the Ed25519 flag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let flat: [u8; USER_SIGNATURE_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Signature("a user signature is 97 bytes"))?;
        if flat[0] != ED25519_FLAG {
            return Err(Error::Signature(
                "only the Ed25519 scheme (flag 0) is accepted",
            ));
        }
        Ok(Self(flat))
    }

    pub fn from_parts(signature: &[u8; 64], public_key: &PublicKey) -> Self {
        let mut flat = [0u8; USER_SIGNATURE_LEN];
        flat[0] = ED25519_FLAG;
        flat[1..65].copy_from_slice(signature);
        flat[65..].copy_from_slice(&public_key.0);
        Self(flat)
    }

    pub fn as_bytes(&self) -> &[u8; USER_SIGNATURE_LEN] {
        &self.0
    }

    /// The 64-byte Ed25519 signature (proto `SimpleSignature.signature`).
    pub fn signature(&self) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&self.0[1..65]);
        sig
    }

    /// The signer's key (proto `SimpleSignature.public_key`).
    pub fn public_key(&self) -> PublicKey {
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&self.0[65..]);
        PublicKey(pk)
    }
}

impl fmt::Debug for UserSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserSignature({})", hex::encode(self.0))
    }
}

impl Serialize for UserSignature {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserSignature {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(deserializer)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// Signs `tx` as its sender would.
pub fn sign_transaction(key: &SecretKey, tx: &TransactionData) -> Result<UserSignature> {
    let digest = signing_digest(&tx.to_bcs()?);
    let signature = key.signing_key().sign(&digest).to_bytes();
    Ok(UserSignature::from_parts(&signature, &key.public_key()))
}

/// The server's checks: exactly one signature, from the sender's key, valid over
/// this transaction's signing digest.
pub fn verify_transaction(tx: &TransactionData, signatures: &[UserSignature]) -> Result<()> {
    let [signature] = signatures else {
        return Err(Error::Signature(
            "expected exactly one signature (one signer)",
        ));
    };
    let public_key = signature.public_key();
    if public_key.address() != tx.v1().sender {
        return Err(Error::Signature("the public key is not the sender's"));
    }
    let key = VerifyingKey::from_bytes(&public_key.0)
        .map_err(|_| Error::Signature("the public key is not a valid Ed25519 point"))?;
    key.verify_strict(
        &signing_digest(&tx.to_bcs()?),
        &Signature::from_bytes(&signature.signature()),
    )
    .map_err(|_| Error::Signature("the signature does not verify over the transaction"))
}

/// `SenderSignedData`: `01 ‖ IntentMessage ‖ signatures`, the BCS the SDK's
/// `Keypair.sign` returns. Useful for offline comparison; the wire uses proto.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub intent_message: IntentMessage,
    pub tx_signatures: Vec<UserSignature>,
}

impl SignedTransaction {
    pub fn new(tx: TransactionData, signature: UserSignature) -> Self {
        Self {
            intent_message: IntentMessage {
                intent: TRANSACTION_INTENT,
                value: tx,
            },
            tx_signatures: vec![signature],
        }
    }

    /// BCS of `SenderSignedData`, a one-element vector of this.
    pub fn to_bcs(&self) -> Result<Vec<u8>> {
        Ok(bcs::to_bytes(std::slice::from_ref(self))?)
    }

    pub fn from_bcs(bytes: &[u8]) -> Result<Self> {
        let mut all: Vec<Self> = bcs::from_bytes(bytes)?;
        match (all.pop(), all.is_empty()) {
            (Some(one), true) => Ok(one),
            _ => Err(Error::Signature(
                "SenderSignedData holds exactly one transaction",
            )),
        }
    }
}
