//! The faucet: like localnet's, it sends a new coin with a real, signed
//! PayCoins from a funded faucet account (created at genesis), so the coin
//! has an ordinary transaction, checkpoint and effects behind it.

use soma_flow_chain::{
    sign_transaction, ObjectRef, ObjectType, SecretKey, SomaAddress, TransactionData,
    TransactionDigest, TransactionKind,
};

use crate::effects::Effects;
use crate::ledger::Ledger;
use crate::LedgerError;

/// What the localnet faucet sends per request by default: one coin of 2 SOMA
/// (§1.5).
pub const FAUCET_DEFAULT_AMOUNT: u64 = 2 * soma_flow_chain::SHANNONS_PER_SOMA;

/// What `faucet` sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaucetReceipt {
    pub coin: ObjectRef,
    pub amount: u64,
    pub transaction_digest: TransactionDigest,
    pub effects: Effects,
}

impl Ledger {
    /// The faucet account's address.
    pub fn faucet_address(&self) -> SomaAddress {
        SecretKey::from_bytes(&self.data.faucet_secret_key).address()
    }

    /// Sends a new Coin of `amount` to `recipient`, paid from the faucet's
    /// largest coin (which also pays the fees).
    pub fn faucet(
        &mut self,
        recipient: SomaAddress,
        amount: u64,
    ) -> Result<FaucetReceipt, LedgerError> {
        let key = SecretKey::from_bytes(&self.data.faucet_secret_key);
        let sender = key.address();
        let (gas, _) = self
            .coins(&sender)
            .into_iter()
            .max_by_key(|(r, balance)| (*balance, std::cmp::Reverse(r.object_id)))
            .ok_or_else(|| LedgerError::Faucet("the faucet has no coins left".to_owned()))?;
        let tx = TransactionData::new(
            TransactionKind::PayCoins {
                coins: vec![gas],
                amounts: Some(vec![amount]),
                recipients: vec![recipient],
            },
            sender,
            vec![gas],
        );
        let signature = sign_transaction(&key, &tx)?;
        let effects = self
            .execute(&tx, &[signature])
            .map_err(|e| LedgerError::Faucet(e.to_string()))?;
        if let Some(failure) = effects.failure() {
            return Err(LedgerError::Faucet(failure.to_string()));
        }
        let coin = effects
            .created_of(ObjectType::Coin)
            .into_iter()
            .next()
            .ok_or_else(|| LedgerError::Faucet("no coin was created".to_owned()))?;
        Ok(FaucetReceipt {
            coin,
            amount,
            transaction_digest: effects.transaction_digest,
            effects,
        })
    }
}
