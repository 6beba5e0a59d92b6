//! Request dispatch: each method path of §1.3 and §1.5 to its handler, with
//! tonic's server-side framing (`tonic::server::Grpc`) and no generated code.
//!
//! Handlers are plain functions from a decoded request to a response or a
//! `Status`; refusals use the codes of §1.4 (an executed-but-failed
//! transaction is an OK response with failed effects). Every fullnode response
//! carries the `x-soma-*` headers of §1.1.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use soma_flow_chain::proto::{self, convert};
use soma_flow_chain::rpc::{self, paths, BcsCodec, SERVER_NAME};
use soma_flow_chain::{ObjectID, ObjectType, SomaAddress};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding};
use tonic::Status;
use tonic_prost::ProstCodec;

use super::{blobs, render, Node};
use crate::effects::{Rejection, RejectionCode};
use crate::journal::{Applied, Change, ChangeError};
use crate::targets::{StatusFilter, TargetCursor, TargetQuery};

/// Which of the three servers a connection belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Service {
    Fullnode,
    Faucet,
    Admin,
}

pub async fn dispatch(node: Arc<Node>, service: Service, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (service, path.as_str()) {
        (Service::Faucet, paths::REQUEST_GAS) => {
            bcs_unary(req, move |r: rpc::GasRequest| {
                let node = node.clone();
                async move { request_gas(&node, r).await }
            })
            .await
        }
        (Service::Admin, paths::ADVANCE_EPOCH) => {
            bcs_unary(req, move |_: rpc::AdvanceEpochRequest| {
                let node = node.clone();
                async move { advance_epoch(&node).await }
            })
            .await
        }
        (Service::Fullnode, _) => {
            let mut response = fullnode(node.clone(), &path, req).await;
            add_headers(&node, &mut response);
            response
        }
        _ => Status::unimplemented(format!("no method {path} here")).into_http(),
    }
}

async fn fullnode(node: Arc<Node>, path: &str, req: Request<Incoming>) -> Response<Body> {
    let n = node.clone();
    match path {
        paths::GET_SERVICE_INFO => {
            unary(req, move |_: proto::GetServiceInfoRequest| {
                Ok(service_info(&n))
            })
            .await
        }
        paths::GET_EPOCH => unary(req, move |r| get_epoch(&n, r)).await,
        paths::GET_OBJECT => unary(req, move |r| get_object(&n, r)).await,
        paths::LIST_OWNED_OBJECTS => unary(req, move |r| list_owned_objects(&n, r)).await,
        paths::GET_BALANCE => unary(req, move |r| get_balance(&n, r)).await,
        paths::LIST_TARGETS => unary(req, move |r| list_targets(&n, r)).await,
        paths::GET_TARGET => unary(req, move |r| get_target(&n, r)).await,
        paths::EXECUTE_TRANSACTION => {
            unary_with(ProstCodec::default(), req, move |r| {
                let n = n.clone();
                async move { execute(&n, r).await }
            })
            .await
        }
        paths::SUBSCRIBE_CHECKPOINTS => {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                proto::SubscribeCheckpointsResponse,
                proto::SubscribeCheckpointsRequest,
            >::default());
            let service = tower::service_fn(
                move |_: tonic::Request<proto::SubscribeCheckpointsRequest>| {
                    let stream = subscribe(n.clone());
                    async move { Ok::<_, Status>(tonic::Response::new(stream)) }
                },
            );
            grpc.server_streaming(service, req).await
        }
        "/soma.rpc.StateService/GetChallenge" | "/soma.rpc.StateService/ListChallenges" => {
            Status::unimplemented("Challenge system has been removed").into_http()
        }
        _ if path.starts_with("/model/") || path.starts_with("/data/") => {
            blobs::serve(&node, path, req.headers())
        }
        _ => Status::unimplemented(format!("no method {path}")).into_http(),
    }
}

/// Only StateService replies are compressed, and only for clients that
/// accept zstd (§1.1).
fn compressed(path: &str) -> bool {
    path.starts_with("/soma.rpc.StateService/")
}

/// Runs a unary handler under `codec`.
async fn unary_with<C, F, Fut>(codec: C, req: Request<Incoming>, handler: F) -> Response<Body>
where
    C: Codec,
    C::Decode: Send + 'static,
    C::Encode: Send + 'static,
    F: Fn(C::Decode) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<C::Encode, Status>> + Send + 'static,
{
    let service = tower::service_fn(move |r: tonic::Request<C::Decode>| {
        let reply = handler(r.into_inner());
        async move { reply.await.map(tonic::Response::new) }
    });
    let mut grpc = tonic::server::Grpc::new(codec);
    if compressed(req.uri().path()) {
        grpc = grpc.send_compressed(CompressionEncoding::Zstd);
    }
    grpc.unary(service, req).await
}

/// A unary read: answered from the ledger at once.
async fn unary<Req, Resp, F>(req: Request<Incoming>, handler: F) -> Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: Fn(Req) -> Result<Resp, Status> + Send + 'static,
{
    let codec = ProstCodec::<Resp, Req>::default();
    unary_with(codec, req, move |r| std::future::ready(handler(r))).await
}

async fn bcs_unary<Req, Resp, F, Fut>(req: Request<Incoming>, handler: F) -> Response<Body>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Resp, Status>> + Send + 'static,
{
    unary_with(BcsCodec::<Resp, Req>::default(), req, handler).await
}

/// The `x-soma-*` and `server` headers of §1.1.
fn add_headers(node: &Node, response: &mut Response<Body>) {
    let ledger = node.ledger();
    let latest = ledger.latest_checkpoint();
    let values = [
        ("x-soma-chain-id", ledger.chain_id().to_base58()),
        ("x-soma-chain", "localnet".to_owned()),
        ("x-soma-epoch", ledger.epoch().to_string()),
        (
            "x-soma-checkpoint-height",
            latest.sequence_number.to_string(),
        ),
        ("x-soma-timestamp-ms", latest.timestamp_ms.to_string()),
        ("x-soma-timestamp", rfc3339(latest.timestamp_ms)),
        ("x-soma-lowest-available-checkpoint", "0".to_owned()),
        ("x-soma-lowest-available-checkpoint-objects", "0".to_owned()),
        ("server", SERVER_NAME.to_owned()),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
fn rfc3339(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn bad(e: soma_flow_chain::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

fn parse<T: std::str::FromStr<Err = soma_flow_chain::Error>>(
    value: Option<&String>,
    field: &str,
) -> Result<T, Status> {
    let text = convert::required(value, field).map_err(bad)?;
    text.parse()
        .map_err(|e: soma_flow_chain::Error| Status::invalid_argument(format!("{field}: {e}")))
}

fn mask_paths(mask: &Option<proto::FieldMask>, default: &'static str) -> Vec<String> {
    match mask {
        Some(m) if !m.paths.is_empty() => m
            .paths
            .iter()
            .flat_map(|p| p.split(','))
            .map(str::to_owned)
            .collect(),
        _ => default.split(',').map(str::to_owned).collect(),
    }
}

// ---- LedgerService ------------------------------------------------------------

fn service_info(node: &Node) -> proto::GetServiceInfoResponse {
    let ledger = node.ledger();
    let latest = ledger.latest_checkpoint();
    proto::GetServiceInfoResponse {
        chain_id: Some(ledger.chain_id().to_base58()),
        chain: Some("localnet".to_owned()),
        epoch: Some(ledger.epoch()),
        checkpoint_height: Some(latest.sequence_number),
        timestamp: Some(render::timestamp(latest.timestamp_ms)),
        lowest_available_checkpoint: Some(0),
        lowest_available_checkpoint_objects: Some(0),
        server: Some(SERVER_NAME.to_owned()),
    }
}

fn get_epoch(node: &Node, r: proto::GetEpochRequest) -> Result<proto::GetEpochResponse, Status> {
    let mask = mask_paths(
        &r.read_mask,
        "epoch,committee,first_checkpoint,last_checkpoint,start,end,protocol_config.protocol_version",
    );
    let ledger = node.ledger();
    let info = ledger
        .epoch_info(r.epoch)
        .ok_or_else(|| Status::not_found(format!("epoch {:?} not found", r.epoch)))?;
    let with_state = mask.iter().any(|p| p == "system_state");
    Ok(proto::GetEpochResponse {
        epoch: Some(render::epoch(&info, with_state)),
    })
}

fn get_object(node: &Node, r: proto::GetObjectRequest) -> Result<proto::GetObjectResponse, Status> {
    let id: ObjectID = parse(r.object_id.as_ref(), "object_id")?;
    let object = node
        .ledger()
        .object(&id)
        .filter(|o| r.version.is_none_or(|v| v == o.data.version))
        .ok_or_else(|| Status::not_found(format!("Object {id} not found")))?;
    Ok(proto::GetObjectResponse {
        object: Some(
            render::object_to_proto(&object).map_err(|e| Status::internal(e.to_string()))?,
        ),
    })
}

// ---- StateService -------------------------------------------------------------

fn list_owned_objects(
    node: &Node,
    r: proto::ListOwnedObjectsRequest,
) -> Result<proto::ListOwnedObjectsResponse, Status> {
    let owner: SomaAddress = parse(r.owner.as_ref(), "owner")?;
    let object_type = r
        .object_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(ObjectType::from_proto)
        .transpose()
        .map_err(bad)?;
    let cursor = match &r.page_token {
        Some(token) => {
            Some(ObjectID(token.as_slice().try_into().map_err(|_| {
                Status::invalid_argument("invalid page_token")
            })?))
        }
        None => None,
    };
    let limit = r.page_size.unwrap_or(50).clamp(1, 1000) as usize;
    let (page, next) = node
        .ledger()
        .owned_objects(&owner, object_type, cursor, limit);
    Ok(proto::ListOwnedObjectsResponse {
        objects: page
            .iter()
            .map(|(_, o)| render::object_to_proto(o))
            .collect::<Result<_, _>>()
            .map_err(|e| Status::internal(e.to_string()))?,
        next_page_token: next.map(|id| id.0.to_vec()),
    })
}

fn get_balance(
    node: &Node,
    r: proto::GetBalanceRequest,
) -> Result<proto::GetBalanceResponse, Status> {
    let owner: SomaAddress = parse(r.owner.as_ref(), "owner")?;
    let balance = node.ledger().balance(&owner);
    Ok(proto::GetBalanceResponse {
        balance: Some(u64::try_from(balance).unwrap_or(u64::MAX)),
    })
}

fn list_targets(
    node: &Node,
    r: proto::ListTargetsRequest,
) -> Result<proto::ListTargetsResponse, Status> {
    let status = r
        .status_filter
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<StatusFilter>)
        .transpose()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let submitter = r
        .submitter_filter
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| parse::<SomaAddress>(Some(s), "submitter_filter"))
        .transpose()?;
    let cursor = r
        .page_token
        .as_deref()
        .map(TargetCursor::from_bytes)
        .transpose()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let query = TargetQuery {
        status,
        epoch: r.epoch_filter,
        submitter,
        page_size: r.page_size,
        cursor,
    };
    let mask = mask_paths(&r.read_mask, "id,status,generation_epoch,reward_pool");
    let mask: Vec<&str> = mask.iter().map(String::as_str).collect();
    let page = node.ledger().list_targets(&query);
    Ok(proto::ListTargetsResponse {
        targets: page
            .targets
            .iter()
            .map(|e| {
                let mut target = render::target_to_proto(&e.id, &e.target, e.status);
                render::mask_target(&mut target, &mask);
                target
            })
            .collect(),
        next_page_token: page.next_cursor.map(|c| c.to_bytes()),
    })
}

fn get_target(node: &Node, r: proto::GetTargetRequest) -> Result<proto::GetTargetResponse, Status> {
    let id: ObjectID = parse(r.target_id.as_ref(), "target_id")?;
    let target = node
        .ledger()
        .target(&id)
        .ok_or_else(|| Status::not_found(format!("Target {id} not found")))?;
    let mut rendered =
        render::target_to_proto(&id, &target, crate::targets::raw_status(&target.status));
    let mask = mask_paths(
        &r.read_mask,
        "id,status,generation_epoch,reward_pool,distance_threshold",
    );
    let mask: Vec<&str> = mask.iter().map(String::as_str).collect();
    render::mask_target(&mut rendered, &mask);
    Ok(proto::GetTargetResponse {
        target: Some(rendered),
    })
}

// ---- TransactionExecutionService ------------------------------------------------

async fn execute(
    node: &Node,
    r: proto::ExecuteTransactionRequest,
) -> Result<proto::ExecuteTransactionResponse, Status> {
    let sent = convert::required(r.transaction.as_ref(), "transaction").map_err(bad)?;
    let tx = convert::transaction_from_proto(sent).map_err(bad)?;
    let signatures = r
        .signatures
        .iter()
        .map(convert::signature_from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Status::invalid_argument(format!("Invalid user signature: {e}")))?;
    let change = Change::Execute {
        transaction: Box::new(tx),
        signatures,
    };
    let (effects, objects) = node
        .commit(change, |ledger, result| {
            let effects = match result {
                Ok(Applied::Executed(effects)) => effects,
                Err(ChangeError::Rejected(rejection)) => return Err(refused(rejection)),
                other => return Err(unexpected(other)),
            };
            let objects = render::written_ids(&effects)
                .iter()
                .filter_map(|id| ledger.object(id))
                .map(|o| render::object_to_proto(&o))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok((effects, objects))
        })
        .await?;
    let mut echoed = sent.clone();
    echoed.digest = Some(effects.transaction_digest.to_base58());
    Ok(proto::ExecuteTransactionResponse {
        transaction: Some(render::executed(
            &effects,
            Some(echoed),
            r.signatures.clone(),
            objects,
        )),
    })
}

/// A transaction refused before execution, with the code of §1.4.
fn refused(rejection: Rejection) -> Status {
    let text = rejection.to_string();
    match rejection.code() {
        RejectionCode::InvalidArgument => Status::invalid_argument(text),
        RejectionCode::FailedPrecondition => Status::failed_precondition(text),
        RejectionCode::NotFound => Status::not_found(text),
    }
}

/// A change that failed in the ledger, or answered as another change would.
fn unexpected(result: Result<Applied, ChangeError>) -> Status {
    match result {
        Err(e) => Status::internal(e.to_string()),
        Ok(applied) => Status::internal(format!("unexpected outcome {applied:?}")),
    }
}

// ---- SubscriptionService ------------------------------------------------------

/// Checkpoints from the point of subscription on, in order, without gaps;
/// each once it is durable.
fn subscribe(
    node: Arc<Node>,
) -> ReceiverStream<Result<proto::SubscribeCheckpointsResponse, Status>> {
    // Watch before reading the height, so no checkpoint falls in between.
    let mut durable = node.journal.watch();
    let mut last = durable.borrow_and_update().checkpoint;
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let upto = durable.borrow_and_update().checkpoint;
            let pending: Vec<_> = node
                .ledger()
                .checkpoints_after(last)
                .iter()
                .take_while(|c| c.sequence_number <= upto)
                .map(render::checkpoint)
                .collect();
            for checkpoint in pending {
                last = checkpoint.sequence_number.unwrap_or(last);
                let message = proto::SubscribeCheckpointsResponse {
                    cursor: checkpoint.sequence_number,
                    checkpoint: Some(checkpoint),
                };
                if sender.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if durable.changed().await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(receiver)
}

// ---- faucet and admin -----------------------------------------------------------

async fn request_gas(node: &Node, r: rpc::GasRequest) -> Result<rpc::GasResponse, Status> {
    let recipient: SomaAddress = r
        .recipient
        .parse()
        .map_err(|e| Status::invalid_argument(format!("Invalid address {:?}: {e}", r.recipient)))?;
    let change = Change::Faucet {
        recipient,
        amount: node.faucet_amount,
    };
    node.commit(change, |_, result| match result {
        Ok(Applied::Faucet(receipt)) => Ok(rpc::GasResponse {
            status: "Success".to_owned(),
            coins_sent: vec![rpc::GasCoinInfo {
                amount: receipt.amount,
                id: receipt.coin.object_id.to_hex(),
                transfer_tx_digest: receipt.transaction_digest.to_base58(),
            }],
        }),
        other => Err(unexpected(other)),
    })
    .await
}

/// Ends the epoch now (by the wall clock, never before the epoch's start).
pub(super) async fn advance_epoch(node: &Node) -> Result<rpc::AdvanceEpochResponse, Status> {
    let change = Change::AdvanceEpoch {
        now_ms: crate::now_ms(),
    };
    node.commit(change, |ledger, result| match result {
        Ok(Applied::Epoch(_)) => Ok(rpc::AdvanceEpochResponse {
            epoch: ledger.epoch(),
        }),
        other => Err(unexpected(other)),
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_renders_civil_time() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
    }
}
