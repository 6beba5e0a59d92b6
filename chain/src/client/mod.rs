//! `SomaClient`: a client of a SOMA fullnode (and of a localnet's faucet and
//! admin services) speaking the real protocol of SOMA-RPC.md.
//!
//! It does what the official SDK does (§9): channels are lazy with HTTP/2 PINGs
//! every 5 s; a transaction pays with one coin picked at random among the
//! sender's 8 richest, is signed, sent as the structured proto, and awaited on
//! the checkpoint stream opened *before* executing; coin-lock conflicts are
//! retried with another coin. Transient gRPC failures are retried with backoff
//! and end in an error naming the URL. Live parameters (minimum stake,
//! architecture version, embedding dimension, fees) are read from `GetEpoch`,
//! never assumed.

mod error;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, Streaming};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};
use tonic_prost::ProstCodec;

pub use error::ClientResult;
pub use error::{
    describe_failure, is_lock_conflict, is_transient, locked_object, sentence, ClientError,
};

use crate::base::{Digest, ObjectID, ObjectRef, SomaAddress};
use crate::crypto::DecryptionKey;
use crate::identity::SecretKey;
use crate::manifest::{Manifest, SubmissionManifest};
use crate::object::{Coin, ObjectInner, ObjectType};
use crate::proto::{self, convert};
use crate::rpc::{self, paths, BcsCodec};
use crate::signing::sign_transaction;
use crate::tensor::SomaTensor;
use crate::transaction::{derive_id, TransactionData, TransactionKind};

pub use convert::{
    ChainParameters, ClaimSplit, ModelInfo, PendingUpdate, SystemSummary, TargetInfo,
};

/// Large enough for `GetEpoch(system_state)` with a big registry (§1.1).
const MAX_DECODE_BYTES: usize = 128 * 1024 * 1024;
/// The Object fields the SDK asks for.
const OBJECT_MASK: &str =
    "object_id,version,digest,object_type,owner,contents,previous_transaction";
/// Every Target field.
const TARGET_MASK: &str = "id,status,generation_epoch,reward_pool,embedding,model_ids,\
    distance_threshold,fill_epoch,submitter,winning_model_id,winning_model_owner,bond_amount,data_url";
/// Coin-lock conflicts are retried this many times (§9.6).
const LOCK_RETRIES: u32 = 5;
/// The protocol versions whose transactions this client builds and signs: those of
/// SOMA's testnet tag that SOMA-RPC.md documents (`MAX_PROTOCOL_VERSION` 5). A later
/// protocol (upstream's `market` branch is 7) renumbers the transaction kinds, so a
/// transaction signed for 5 could mean something else there.
pub const PROTOCOL_VERSIONS: std::ops::RangeInclusive<u64> = 1..=5;

/// How the client retries and waits.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per call on transient gRPC codes.
    pub attempts: u32,
    /// The first backoff; it doubles per attempt.
    pub backoff: Duration,
    /// The limit of one call.
    pub call_timeout: Duration,
    /// The first coin-lock backoff; the SDK uses 1 s, doubled up to 8 s.
    pub lock_backoff: Duration,
    /// How long to wait for a transaction's checkpoint (the SDK: 30 s).
    pub finality_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff: Duration::from_millis(500),
            call_timeout: Duration::from_secs(60),
            lock_backoff: Duration::from_secs(1),
            finality_timeout: Duration::from_secs(30),
        }
    }
}

/// One endpoint: its URL (for errors) and its lazy channel.
#[derive(Clone, Debug)]
struct Conn {
    url: String,
    channel: Channel,
}

impl Conn {
    /// A lazy channel as the SDK builds it: 5 s connect timeout, PING every
    /// 5 s, TLS with webpki roots for `https://`. Needs a tokio runtime.
    fn new(url: &str) -> ClientResult<Self> {
        let bad = |reason: String| ClientError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad("expected http:// or https://".into()));
        }
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_enabled_roots())
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(Self {
            url: url.to_owned(),
            channel: endpoint.connect_lazy(),
        })
    }
}

/// What `GetEpoch` tells about the current epoch.
#[derive(Clone, Debug)]
pub struct EpochInfo {
    pub epoch: u64,
    pub protocol_version: Option<u64>,
    /// Every protocol constant by name (§2.2).
    pub attributes: BTreeMap<String, String>,
    pub system: SystemSummary,
}

/// A ListTargets query; `None` leaves a filter out.
#[derive(Clone, Debug, Default)]
pub struct TargetQuery {
    /// `open`, `expired`, `filled`, `claimable` or `claimed`.
    pub status: Option<String>,
    /// Matches `generation_epoch`.
    pub epoch: Option<u64>,
    pub submitter: Option<SomaAddress>,
    pub page_size: Option<u32>,
    pub page_token: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct TargetPage {
    pub targets: Vec<TargetInfo>,
    /// `None` on the last page.
    pub next_page_token: Option<Vec<u8>>,
}

/// A transaction that executed successfully and reached a checkpoint.
#[derive(Clone, Debug)]
pub struct Executed {
    pub digest: Digest,
    pub checkpoint: u64,
    pub effects: proto::TransactionEffects,
    /// The chain's balance changes (shannons, fees included), by address.
    pub balance_changes: Vec<(SomaAddress, i128)>,
}

impl Executed {
    /// What the transaction changed `address`'s balance by (0 if nothing).
    pub fn balance_change(&self, address: &SomaAddress) -> i128 {
        self.balance_changes
            .iter()
            .filter(|(a, _)| a == address)
            .map(|(_, amount)| amount)
            .sum()
    }

    /// The total fee charged.
    pub fn fee(&self) -> u64 {
        self.effects
            .fee
            .as_ref()
            .and_then(|f| f.total_fee)
            .unwrap_or(0)
    }
}

/// A client of one fullnode, and optionally of a faucet and an admin service.
#[derive(Clone, Debug)]
pub struct SomaClient {
    rpc: Conn,
    faucet: Option<Conn>,
    admin: Option<Conn>,
    retry: RetryPolicy,
}

impl SomaClient {
    /// Lazy: nothing is dialled until the first call. Must be called inside a
    /// tokio runtime.
    pub fn connect(rpc_url: &str, faucet_url: Option<&str>) -> ClientResult<Self> {
        Ok(Self {
            rpc: Conn::new(rpc_url)?,
            faucet: faucet_url.map(Conn::new).transpose()?,
            admin: None,
            retry: RetryPolicy::default(),
        })
    }

    /// Adds a localnet admin service (epoch advance).
    pub fn with_admin(mut self, admin_url: &str) -> ClientResult<Self> {
        self.admin = Some(Conn::new(admin_url)?);
        Ok(self)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn rpc_url(&self) -> &str {
        &self.rpc.url
    }

    // ---- the one retry loop ----------------------------------------------------

    /// Runs `call` on `conn`, retrying transient codes with doubling backoff.
    async fn retrying<T, F, Fut>(
        &self,
        conn: &Conn,
        method: &'static str,
        mut call: F,
    ) -> ClientResult<T>
    where
        F: FnMut(Grpc<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut backoff = self.retry.backoff;
        let attempts = self.retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            // As the SDK: accept zstd (a node compresses StateService replies).
            let mut grpc = Grpc::new(conn.channel.clone())
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(MAX_DECODE_BYTES);
            let result = tokio::time::timeout(self.retry.call_timeout, async {
                grpc.ready()
                    .await
                    .map_err(|e| Status::unavailable(error_chain(&e)))?;
                call(grpc).await
            })
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("the call timed out")));
            let status = match result {
                Ok(value) => return Ok(value),
                Err(status) => status,
            };
            if !is_transient(status.code()) {
                return Err(ClientError::Rpc {
                    url: conn.url.clone(),
                    method,
                    code: status.code(),
                    message: status_text(&status),
                });
            }
            if attempt == attempts {
                return Err(ClientError::Unreachable {
                    url: conn.url.clone(),
                    method,
                    attempts,
                    message: status_text(&status),
                });
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    async fn unary<Req, Resp, C>(
        &self,
        conn: &Conn,
        path: &'static str,
        req: Req,
    ) -> ClientResult<Resp>
    where
        Req: Clone + Send + Sync + 'static,
        Resp: Send + Sync + 'static,
        C: Codec<Encode = Req, Decode = Resp> + Default,
    {
        self.retrying(conn, path, |mut grpc| {
            let req = req.clone();
            async move {
                grpc.unary(
                    Request::new(req),
                    PathAndQuery::from_static(path),
                    C::default(),
                )
                .await
                .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    async fn rpc<Req, Resp>(&self, path: &'static str, req: Req) -> ClientResult<Resp>
    where
        Req: prost::Message + Clone + 'static,
        Resp: prost::Message + Default + 'static,
    {
        self.unary::<Req, Resp, ProstCodec<Req, Resp>>(&self.rpc, path, req)
            .await
    }

    fn malformed(&self, method: &'static str, source: crate::Error) -> ClientError {
        ClientError::Malformed {
            url: self.rpc.url.clone(),
            method,
            source,
        }
    }

    // ---- reads -----------------------------------------------------------------

    pub async fn service_info(&self) -> ClientResult<proto::GetServiceInfoResponse> {
        self.rpc(paths::GET_SERVICE_INFO, proto::GetServiceInfoRequest {})
            .await
    }

    /// `GetEpoch` of the current epoch with the fields `mask` names.
    async fn current_epoch(&self, mask: &str) -> ClientResult<proto::GetEpochResponse> {
        let request = proto::GetEpochRequest {
            epoch: None,
            read_mask: Some(proto::FieldMask::from_paths(mask)),
        };
        self.rpc(paths::GET_EPOCH, request).await
    }

    /// The current epoch with its system state and protocol config.
    pub async fn epoch(&self) -> ClientResult<EpochInfo> {
        let response = self
            .current_epoch("epoch,system_state,protocol_config")
            .await?;
        let bad = |e| self.malformed("GetEpoch", e);
        let epoch = convert::required(response.epoch, "epoch").map_err(bad)?;
        let state =
            convert::required(epoch.system_state.as_ref(), "epoch.system_state").map_err(bad)?;
        let config = epoch.protocol_config.unwrap_or_default();
        Ok(EpochInfo {
            epoch: convert::required(epoch.epoch, "epoch.epoch").map_err(bad)?,
            protocol_version: config.protocol_version,
            attributes: config.attributes,
            system: SystemSummary::try_from(state).map_err(bad)?,
        })
    }

    /// The server's protocol version (`GetEpoch`'s `protocol_config`), refused
    /// unless it is one of [`PROTOCOL_VERSIONS`]: nothing is signed for a protocol
    /// this client does not speak.
    pub async fn check_protocol(&self) -> ClientResult<u64> {
        let response = self
            .current_epoch("epoch,protocol_config.protocol_version")
            .await?;
        let version = convert::required(
            response
                .epoch
                .and_then(|e| e.protocol_config)
                .and_then(|c| c.protocol_version),
            "epoch.protocol_config.protocol_version",
        )
        .map_err(|e| self.malformed("GetEpoch", e))?;
        if !PROTOCOL_VERSIONS.contains(&version) {
            return Err(ClientError::UnsupportedProtocol {
                url: self.rpc.url.clone(),
                version,
                supported: PROTOCOL_VERSIONS,
            });
        }
        Ok(version)
    }

    /// The system state pieces a client reads (parameters, models, epoch).
    pub async fn system_state(&self) -> ClientResult<SystemSummary> {
        Ok(self.epoch().await?.system)
    }

    /// The latest version of an object.
    pub async fn object(&self, id: &ObjectID) -> ClientResult<ObjectInner> {
        let response: proto::GetObjectResponse = self
            .rpc(
                paths::GET_OBJECT,
                proto::GetObjectRequest {
                    object_id: Some(id.to_hex()),
                    version: None,
                    read_mask: Some(proto::FieldMask::from_paths(OBJECT_MASK)),
                },
            )
            .await?;
        let object = convert::required(response.object.as_ref(), "object")
            .and_then(convert::object_from_proto)
            .map_err(|e| self.malformed("GetObject", e))?;
        if object.data.id().ok() != Some(*id) {
            return Err(self.malformed(
                "GetObject",
                convert::invalid("object.object_id", "not the id asked for"),
            ));
        }
        Ok(object)
    }

    /// Every object `owner` owns, of `object_type` if given, across all pages.
    pub async fn owned_objects(
        &self,
        owner: &SomaAddress,
        object_type: Option<ObjectType>,
    ) -> ClientResult<Vec<ObjectInner>> {
        let mut objects = Vec::new();
        let mut page_token = None;
        loop {
            let response: proto::ListOwnedObjectsResponse = self
                .rpc(
                    paths::LIST_OWNED_OBJECTS,
                    proto::ListOwnedObjectsRequest {
                        owner: Some(owner.to_hex()),
                        page_size: Some(256),
                        page_token: page_token.take(),
                        read_mask: Some(proto::FieldMask::from_paths(OBJECT_MASK)),
                        object_type: object_type.map(|t| t.as_str().to_owned()),
                    },
                )
                .await?;
            for object in &response.objects {
                objects.push(
                    convert::object_from_proto(object)
                        .map_err(|e| self.malformed("ListOwnedObjects", e))?,
                );
            }
            match response.next_page_token {
                Some(token) if !response.objects.is_empty() => page_token = Some(token),
                _ => return Ok(objects),
            }
        }
    }

    /// The owner's coins as gas refs (digests recomputed locally, §2.4) with
    /// their balances, richest first.
    pub async fn coins(&self, owner: &SomaAddress) -> ClientResult<Vec<(ObjectRef, u64)>> {
        let mut coins = Vec::new();
        for object in self.owned_objects(owner, Some(ObjectType::Coin)).await? {
            let bad = |e| self.malformed("ListOwnedObjects", e);
            let coin: Coin = object.data.decode().map_err(bad)?;
            let reference = ObjectRef {
                object_id: object.data.id().map_err(bad)?,
                version: object.data.version,
                digest: object.digest().map_err(bad)?,
            };
            coins.push((reference, coin.balance));
        }
        coins.sort_by_key(|c| std::cmp::Reverse(c.1));
        Ok(coins)
    }

    /// The sum of the owner's coin balances.
    pub async fn balance(&self, owner: &SomaAddress) -> ClientResult<u64> {
        let response: proto::GetBalanceResponse = self
            .rpc(
                paths::GET_BALANCE,
                proto::GetBalanceRequest {
                    owner: Some(owner.to_hex()),
                },
            )
            .await?;
        Ok(response.balance.unwrap_or(0))
    }

    /// One page of targets.
    pub async fn list_targets(&self, query: &TargetQuery) -> ClientResult<TargetPage> {
        let response: proto::ListTargetsResponse = self
            .rpc(
                paths::LIST_TARGETS,
                proto::ListTargetsRequest {
                    status_filter: query.status.clone(),
                    epoch_filter: query.epoch,
                    page_size: query.page_size,
                    page_token: query.page_token.clone(),
                    read_mask: Some(proto::FieldMask::from_paths(TARGET_MASK)),
                    submitter_filter: query.submitter.map(|a| format!("0x{a}")),
                },
            )
            .await?;
        Ok(TargetPage {
            targets: response
                .targets
                .iter()
                .map(TargetInfo::try_from)
                .collect::<Result<_, _>>()
                .map_err(|e| self.malformed("ListTargets", e))?,
            next_page_token: response.next_page_token,
        })
    }

    pub async fn target(&self, id: &ObjectID) -> ClientResult<TargetInfo> {
        let response: proto::GetTargetResponse = self
            .rpc(
                paths::GET_TARGET,
                proto::GetTargetRequest {
                    target_id: Some(id.to_hex()),
                    read_mask: Some(proto::FieldMask::from_paths(TARGET_MASK)),
                },
            )
            .await?;
        convert::required(response.target.as_ref(), "target")
            .and_then(TargetInfo::try_from)
            .map_err(|e| self.malformed("GetTarget", e))
    }

    // ---- faucet and admin ------------------------------------------------------

    /// Asks the faucet for gas for `address`.
    pub async fn request_gas(&self, address: &SomaAddress) -> ClientResult<rpc::GasResponse> {
        let conn = self
            .faucet
            .as_ref()
            .ok_or_else(|| ClientError::Invalid("no faucet URL was configured".into()))?;
        let response: rpc::GasResponse = self
            .unary::<_, _, BcsCodec<rpc::GasRequest, rpc::GasResponse>>(
                conn,
                paths::REQUEST_GAS,
                rpc::GasRequest {
                    recipient: format!("0x{address}"),
                },
            )
            .await?;
        if response.status != "Success" {
            return Err(ClientError::Rpc {
                url: conn.url.clone(),
                method: paths::REQUEST_GAS,
                code: tonic::Code::Unknown,
                message: format!("faucet status {:?}", response.status),
            });
        }
        Ok(response)
    }

    /// Advances a localnet to the next epoch; returns the new epoch.
    pub async fn advance_epoch(&self) -> ClientResult<u64> {
        let conn = self
            .admin
            .as_ref()
            .ok_or_else(|| ClientError::Invalid("no admin URL was configured".into()))?;
        let response: rpc::AdvanceEpochResponse = self
            .unary::<_, _, BcsCodec<rpc::AdvanceEpochRequest, rpc::AdvanceEpochResponse>>(
                conn,
                paths::ADVANCE_EPOCH,
                rpc::AdvanceEpochRequest {},
            )
            .await?;
        Ok(response.epoch)
    }

    // ---- transactions ----------------------------------------------------------

    /// Creates a model staking `stake` shannons; returns its id (`derive_id(d, 0)`).
    pub async fn create_model(
        &self,
        key: &SecretKey,
        stake: u64,
        commission_rate: u64,
    ) -> ClientResult<(ObjectID, Executed)> {
        let params = self.system_state().await?.parameters;
        if stake < params.model_min_stake {
            return Err(ClientError::Invalid(format!(
                "stake too low: {stake} shannons is below the chain's minimum model stake of {}",
                params.model_min_stake
            )));
        }
        let needed = params.create_model_cost(stake);
        let kind = TransactionKind::CreateModel {
            stake_amount: stake,
            commission_rate,
            architecture_version: params.model_architecture_version,
        };
        let executed = self.execute(key, needed, |_| kind.clone()).await?;
        Ok((derive_id(&executed.digest, 0), executed))
    }

    /// Commits the manifest and the three commitments of a created (or active)
    /// model.
    pub async fn commit_model(
        &self,
        key: &SecretKey,
        model_id: &ObjectID,
        manifest: &Manifest,
        weights_commitment: Digest,
        embedding_commitment: Digest,
        decryption_key_commitment: Digest,
    ) -> ClientResult<Executed> {
        let kind = TransactionKind::CommitModel {
            model_id: *model_id,
            manifest: manifest.clone(),
            weights_commitment,
            embedding_commitment,
            decryption_key_commitment,
        };
        self.execute(key, self.small_fee().await?, |_| kind.clone())
            .await
    }

    /// Reveals a commit; only valid in the epoch right after it. The embedding
    /// must have the chain's `target_embedding_dim` values.
    pub async fn reveal_model(
        &self,
        key: &SecretKey,
        model_id: &ObjectID,
        decryption_key: &DecryptionKey,
        embedding: &[f32],
    ) -> ClientResult<Executed> {
        let params = self.system_state().await?.parameters;
        if embedding.len() as u64 != params.target_embedding_dim {
            return Err(ClientError::Invalid(format!(
                "the embedding has {} values; the chain's target_embedding_dim is {}",
                embedding.len(),
                params.target_embedding_dim
            )));
        }
        let kind = TransactionKind::RevealModel {
            model_id: *model_id,
            decryption_key: decryption_key.clone(),
            embedding: SomaTensor::vector(embedding),
        };
        let fee = params.base_fee + 2 * params.write_object_fee;
        self.execute(key, fee, |_| kind.clone()).await
    }

    /// Adds `amount` shannons of stake to a model, paid from the gas coin.
    pub async fn add_stake_to_model(
        &self,
        key: &SecretKey,
        model_id: &ObjectID,
        amount: u64,
    ) -> ClientResult<Executed> {
        let params = self.system_state().await?.parameters;
        let needed = amount
            .saturating_add(params.value_fee(amount))
            .saturating_add(params.base_fee + 2 * params.write_object_fee);
        self.execute(key, needed, |gas| TransactionKind::AddStakeToModel {
            model_id: *model_id,
            coin_ref: gas,
            amount: Some(amount),
        })
        .await
    }

    /// Fills an open target with data scored by one of its models. The bond
    /// (`size × submission_bond_per_byte`) is taken from the gas coin.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_data(
        &self,
        key: &SecretKey,
        target_id: &ObjectID,
        data_manifest: &SubmissionManifest,
        model_id: &ObjectID,
        embedding: &[f32],
        distance_score: f32,
        loss_score: &[f32],
    ) -> ClientResult<Executed> {
        let params = self.system_state().await?.parameters;
        let needed = params.submit_data_cost(data_manifest.manifest.size());
        self.execute(key, needed, |gas| TransactionKind::SubmitData {
            target_id: *target_id,
            data_manifest: data_manifest.clone(),
            model_id: *model_id,
            embedding: SomaTensor::vector(embedding),
            distance_score: SomaTensor::vector(&[distance_score]),
            loss_score: SomaTensor::vector(loss_score),
            bond_coin: gas,
        })
        .await
    }

    /// Claims a target's rewards (any sender may); the gas coin must hold `fee`, the
    /// claim's fee ([`ClaimSplit::fee`]).
    pub async fn claim_rewards(
        &self,
        key: &SecretKey,
        target_id: &ObjectID,
        fee: u64,
    ) -> ClientResult<Executed> {
        let kind = TransactionKind::ClaimRewards {
            target_id: *target_id,
        };
        self.execute(key, fee, |_| kind.clone()).await
    }

    /// Stages an Active model's commission rate (bps) for the next epoch.
    pub async fn set_model_commission_rate(
        &self,
        key: &SecretKey,
        model_id: &ObjectID,
        new_rate: u64,
    ) -> ClientResult<Executed> {
        let kind = TransactionKind::SetModelCommissionRate {
            model_id: *model_id,
            new_rate,
        };
        self.execute(key, self.small_fee().await?, |_| kind.clone())
            .await
    }

    /// Withdraws an Active model from the network: it becomes Inactive at once.
    pub async fn deactivate_model(
        &self,
        key: &SecretKey,
        model_id: &ObjectID,
    ) -> ClientResult<Executed> {
        let kind = TransactionKind::DeactivateModel {
            model_id: *model_id,
        };
        self.execute(key, self.small_fee().await?, |_| kind.clone())
            .await
    }

    /// Base fee plus a few written objects: what a commit costs.
    async fn small_fee(&self) -> ClientResult<u64> {
        Ok(self.system_state().await?.parameters.small_cost())
    }

    /// Builds (around a gas coin holding at least `needed`), signs, executes
    /// and awaits a transaction, retrying coin-lock conflicts with another
    /// coin as the SDK does (§9.6).
    pub async fn execute(
        &self,
        key: &SecretKey,
        needed: u64,
        build: impl Fn(ObjectRef) -> TransactionKind,
    ) -> ClientResult<Executed> {
        let sender = key.address();
        let mut excluded = HashSet::new();
        let mut backoff = self.retry.lock_backoff;
        let mut attempt = 0;
        loop {
            let gas = self.pick_gas(&sender, needed, &excluded).await?;
            let tx = TransactionData::new(build(gas), sender, vec![gas]);
            match self.sign_and_execute(key, &tx).await {
                Err(ClientError::Rpc { message, .. })
                    if is_lock_conflict(&message) && attempt < LOCK_RETRIES =>
                {
                    excluded.insert(locked_object(&message).unwrap_or(gas.object_id));
                    tokio::time::sleep(backoff).await;
                    if attempt < 3 {
                        backoff *= 2;
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One coin at random among the 8 richest that hold `needed` (§9.1).
    async fn pick_gas(
        &self,
        owner: &SomaAddress,
        needed: u64,
        excluded: &HashSet<ObjectID>,
    ) -> ClientResult<ObjectRef> {
        let candidates: Vec<ObjectRef> = self
            .coins(owner)
            .await?
            .into_iter()
            .filter(|(r, balance)| *balance >= needed && !excluded.contains(&r.object_id))
            .map(|(r, _)| r)
            .take(8)
            .collect();
        if candidates.is_empty() {
            return Err(ClientError::NoGas {
                address: owner.to_hex(),
                needed,
            });
        }
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| crate::Error::Rng(e.to_string()))?;
        Ok(candidates[(u64::from_le_bytes(random) % candidates.len() as u64) as usize])
    }

    /// Signs and executes `tx`, then waits for its checkpoint; a failed
    /// execution is an error with its reason in words. Nothing is signed for a
    /// server whose protocol version this client does not speak.
    pub async fn sign_and_execute(
        &self,
        key: &SecretKey,
        tx: &TransactionData,
    ) -> ClientResult<Executed> {
        self.check_protocol().await?;
        let signature = sign_transaction(key, tx)?;
        let digest = tx.digest()?;
        let digest_text = digest.to_base58();
        // Subscribe first, or the checkpoint could pass before we listen (§9.2).
        let mut checkpoints = self.subscribe_checkpoints().await?;
        let request = proto::ExecuteTransactionRequest {
            transaction: Some(convert::transaction_to_proto(tx)?),
            signatures: vec![(&signature).into()],
            read_mask: Some(proto::FieldMask::from_paths(
                "effects,balance_changes,objects",
            )),
        };
        let response: proto::ExecuteTransactionResponse =
            self.rpc(paths::EXECUTE_TRANSACTION, request).await?;
        let executed = response.transaction.unwrap_or_default();
        let effects = convert::required(executed.effects, "transaction.effects")
            .map_err(|e| self.malformed("ExecuteTransaction", e))?;
        let balance_changes = executed
            .balance_changes
            .iter()
            .map(convert::balance_change)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.malformed("ExecuteTransaction", e))?;
        let waited = tokio::time::timeout(self.retry.finality_timeout, async {
            while let Some(message) = checkpoints.message().await.map_err(|s| ClientError::Rpc {
                url: self.rpc.url.clone(),
                method: paths::SUBSCRIBE_CHECKPOINTS,
                code: s.code(),
                message: status_text(&s),
            })? {
                let included = message.checkpoint.as_ref().is_some_and(|c| {
                    c.transactions
                        .iter()
                        .any(|t| t.digest.as_deref() == Some(digest_text.as_str()))
                });
                if included {
                    return Ok(message.cursor.unwrap_or(0));
                }
            }
            Err(ClientError::Rpc {
                url: self.rpc.url.clone(),
                method: paths::SUBSCRIBE_CHECKPOINTS,
                code: tonic::Code::Unavailable,
                message: "the checkpoint stream ended".into(),
            })
        })
        .await;
        let checkpoint = match waited {
            Ok(result) => result?,
            Err(_) => {
                return Err(ClientError::FinalityTimeout {
                    digest: digest_text,
                    seconds: self.retry.finality_timeout.as_secs(),
                })
            }
        };
        let status = convert::required(effects.status.as_ref(), "effects.status")
            .map_err(|e| self.malformed("ExecuteTransaction", e))?;
        if status.success != Some(true) {
            return Err(ClientError::Failed {
                digest: digest_text,
                kind: status
                    .error
                    .as_ref()
                    .and_then(|e| e.kind)
                    .and_then(|k| proto::ExecutionErrorKind::try_from(k).ok())
                    .unwrap_or(proto::ExecutionErrorKind::Unknown),
                reason: status
                    .error
                    .as_ref()
                    .map(describe_failure)
                    .unwrap_or_else(|| "no reason given".into()),
            });
        }
        Ok(Executed {
            digest,
            checkpoint,
            effects,
            balance_changes,
        })
    }

    async fn subscribe_checkpoints(
        &self,
    ) -> ClientResult<Streaming<proto::SubscribeCheckpointsResponse>> {
        let request = proto::SubscribeCheckpointsRequest {
            read_mask: Some(proto::FieldMask::from_paths(
                "transactions.digest,sequence_number",
            )),
        };
        self.retrying(&self.rpc, paths::SUBSCRIBE_CHECKPOINTS, |mut grpc| {
            let request = request.clone();
            async move {
                grpc.server_streaming(
                    Request::new(request),
                    PathAndQuery::from_static(paths::SUBSCRIBE_CHECKPOINTS),
                    ProstCodec::default(),
                )
                .await
                .map(tonic::Response::into_inner)
            }
        })
        .await
    }
}

/// A status's message with its transport cause, if any.
fn status_text(status: &Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => format!("{}: {}", status.message(), error_chain(source)),
        None => status.message().to_owned(),
    }
}

/// An error and its causes, joined.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
