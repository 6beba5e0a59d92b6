//! What the client and a server share about the wire (§1): the gRPC method
//! paths of §1.3, the BCS-codec services of §1.5 (faucet, admin) with their
//! messages, and the tonic codec that frames BCS instead of protobuf.
//!
//! There is no protoc and no generated code: the client calls
//! `tonic::client::Grpc` with these paths and the server dispatches on them, so
//! the paths are written once, here.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Full method paths (§1.3, §1.5).
pub mod paths {
    pub const GET_SERVICE_INFO: &str = "/soma.rpc.LedgerService/GetServiceInfo";
    pub const GET_OBJECT: &str = "/soma.rpc.LedgerService/GetObject";
    pub const GET_EPOCH: &str = "/soma.rpc.LedgerService/GetEpoch";
    pub const LIST_OWNED_OBJECTS: &str = "/soma.rpc.StateService/ListOwnedObjects";
    pub const GET_BALANCE: &str = "/soma.rpc.StateService/GetBalance";
    pub const GET_TARGET: &str = "/soma.rpc.StateService/GetTarget";
    pub const LIST_TARGETS: &str = "/soma.rpc.StateService/ListTargets";
    pub const EXECUTE_TRANSACTION: &str =
        "/soma.rpc.TransactionExecutionService/ExecuteTransaction";
    pub const SUBSCRIBE_CHECKPOINTS: &str = "/soma.rpc.SubscriptionService/SubscribeCheckpoints";
    pub const REQUEST_GAS: &str = "/faucet.Faucet/RequestGas";
    pub const ADVANCE_EPOCH: &str = "/admin.Admin/AdvanceEpoch";
}

/// Default localnet ports (§1.2).
pub const DEFAULT_RPC_PORT: u16 = 9000;
pub const DEFAULT_FAUCET_PORT: u16 = 9123;
pub const DEFAULT_ADMIN_PORT: u16 = 9125;

/// The server name a SOMA node reports (§1.1, §2.1).
pub const SERVER_NAME: &str = "soma-node/0.1.21";

/// Faucet request: the recipient address as hex, `0x` optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GasRequest {
    pub recipient: String,
}

/// Faucet response; `status` is `"Success"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GasResponse {
    pub status: String,
    pub coins_sent: Vec<GasCoinInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GasCoinInfo {
    pub amount: u64,
    pub id: String,
    pub transfer_tx_digest: String,
}

/// Empty: encoded as 0 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceEpochRequest {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceEpochResponse {
    /// The new epoch.
    pub epoch: u64,
}

/// A tonic codec that encodes `E` and decodes `D` as BCS (§1.5).
pub struct BcsCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for BcsCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Codec for BcsCodec<E, D>
where
    E: Serialize + Send + 'static,
    D: DeserializeOwned + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = BcsEncoder<E>;
    type Decoder = BcsDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        BcsEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        BcsDecoder(PhantomData)
    }
}

pub struct BcsEncoder<E>(PhantomData<fn(E)>);

impl<E: Serialize> Encoder for BcsEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let bytes = bcs::to_bytes(&item)
            .map_err(|e| Status::internal(format!("BCS encoding failed: {e}")))?;
        dst.put_slice(&bytes);
        Ok(())
    }
}

pub struct BcsDecoder<D>(PhantomData<fn() -> D>);

impl<D: DeserializeOwned> Decoder for BcsDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        bcs::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed BCS message: {e}")))
    }
}
