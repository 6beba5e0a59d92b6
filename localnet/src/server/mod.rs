//! The local network's servers: the fullnode gRPC services of SOMA-RPC.md §1.3
//! (LedgerService, StateService, TransactionExecutionService,
//! SubscriptionService) plus plain HTTP `GET /model/{id}` and `/data/{id}` on
//! one port, the BCS faucet and the BCS admin (epoch advance) on theirs (§1.5).
//!
//! [`serve`] binds every port (0 picks a free one), starts serving in the
//! current tokio runtime and returns the bound addresses, so tests and
//! soma-flow run a network in process. Each connection speaks HTTP/1.1 or
//! h2c (gRPC), answers client PINGs (the SDK sends one every 5 s) and sends
//! response headers as soon as a call starts. Changes are answered once they
//! are durable in the ledger's log, written by group commit (`commit`).

mod blobs;
mod commit;
mod grpc;
mod render;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper_util::rt::{TokioExecutor, TokioIo};
use soma_flow_chain::rpc::{DEFAULT_ADMIN_PORT, DEFAULT_FAUCET_PORT, DEFAULT_RPC_PORT};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

pub use blobs::store_blob;

use crate::journal::{Applied, Change, ChangeError};
use crate::params::GenesisConfig;
use crate::{Ledger, LedgerError, LEDGER_FILE};
use soma_flow_chain::SHANNONS_PER_SOMA;

/// Where and how a local network serves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The ledger lives here (created from `genesis` when absent); blobs that
    /// `/model/` and `/data/` serve live in its `blobs/` folder.
    pub data_dir: PathBuf,
    pub genesis: GenesisConfig,
    pub host: IpAddr,
    /// The fullnode port (gRPC and HTTP); 0 picks a free port.
    pub rpc_port: u16,
    pub faucet_port: u16,
    pub admin_port: u16,
    /// What one faucet request sends (the real faucet: 2 SOMA).
    pub faucet_amount: u64,
    /// Advance the epoch by the clock every `parameters.epoch_duration_ms`; a
    /// network that was down past an epoch's end starts a new epoch when it is
    /// served again, as a restarted chain does. Off: epochs move only through the
    /// admin service.
    pub timed_epochs: bool,
    /// Changes between snapshots of the ledger (its log is replayed from the
    /// last one when the network is served again).
    pub snapshot_every: u64,
}

impl ServerConfig {
    /// The localnet defaults: ports 9000/9123/9125 on 127.0.0.1, 2 SOMA per
    /// faucet request.
    pub fn new(data_dir: impl Into<PathBuf>, genesis: GenesisConfig) -> Self {
        Self {
            data_dir: data_dir.into(),
            genesis,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rpc_port: DEFAULT_RPC_PORT,
            faucet_port: DEFAULT_FAUCET_PORT,
            admin_port: DEFAULT_ADMIN_PORT,
            faucet_amount: 2 * SHANNONS_PER_SOMA,
            timed_epochs: false,
            snapshot_every: commit::SNAPSHOT_EVERY,
        }
    }

    /// Every port 0: for tests.
    pub fn ephemeral_ports(mut self) -> Self {
        self.rpc_port = 0;
        self.faucet_port = 0;
        self.admin_port = 0;
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A running network. Dropping it stops the servers (and waits for the
/// log's last write).
pub struct ServerHandle {
    pub rpc_addr: SocketAddr,
    pub faucet_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    node: Arc<Node>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("rpc_addr", &self.rpc_addr)
            .field("faucet_addr", &self.faucet_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    pub fn rpc_url(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    pub fn faucet_url(&self) -> String {
        format!("http://{}", self.faucet_addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Stops accepting connections, waits for the accept loops to end and
    /// for the log's last changes to be written.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.stop_writer();
    }

    fn stop_writer(&mut self) {
        self.node.journal.stop();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
        self.stop_writer();
    }
}

/// The state the services share: the ledger, its log, and the faucet's
/// amount.
pub(crate) struct Node {
    ledger: Mutex<Ledger>,
    journal: commit::Journal,
    data_dir: PathBuf,
    faucet_amount: u64,
}

impl Node {
    /// The ledger, even if a panicking holder poisoned the lock (the ledger's
    /// own operations leave it consistent).
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` and logs it; `answer` reads what the reply needs from
    /// the ledger as the change left it. The reply comes once the change is
    /// durable, so nothing acknowledged is lost if the process is killed.
    async fn commit<T>(
        &self,
        change: Change,
        answer: impl FnOnce(&Ledger, Result<Applied, ChangeError>) -> Result<T, Status>,
    ) -> Result<T, Status> {
        if let Some(why) = self.journal.failed() {
            return Err(Status::unavailable(why.to_string()));
        }
        let (reply, logged) = {
            let mut ledger = self.ledger();
            let result = ledger.apply_change(&change);
            let logged = match change.must_log(&result) {
                true => Some(
                    self.journal
                        .append(&change)
                        .map_err(|e| Status::internal(e.to_string()))?,
                ),
                false => None,
            };
            (answer(&ledger, result), logged)
        };
        if let Some(number) = logged {
            self.journal
                .durable(number)
                .await
                .map_err(|why| Status::unavailable(why.to_string()))?;
        }
        reply
    }

    fn blobs_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }
}

/// Opens (or creates) the ledger and serves it on the configured ports.
pub async fn serve(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let ledger = open_or_create(&config.data_dir, &config.genesis)?;
    let (journal, log) = commit::Journal::start(&config.data_dir, &ledger, config.snapshot_every)?;
    let node = Arc::new(Node {
        ledger: Mutex::new(ledger),
        journal,
        data_dir: config.data_dir.clone(),
        faucet_amount: config.faucet_amount,
    });
    let writer = {
        let node = node.clone();
        std::thread::Builder::new()
            .name("localnet-log".to_owned())
            .spawn(move || node.journal.write(&node.ledger, log))
            .map_err(|source| LedgerError::Io {
                path: config.data_dir.clone(),
                source,
            })?
    };
    let (shutdown, stop) = watch::channel(false);
    let rpc = bind(config.host, config.rpc_port).await?;
    let faucet = bind(config.host, config.faucet_port).await?;
    let admin = bind(config.host, config.admin_port).await?;
    let addrs = (rpc.1, faucet.1, admin.1);
    let mut tasks: Vec<_> = [
        (rpc.0, grpc::Service::Fullnode),
        (faucet.0, grpc::Service::Faucet),
        (admin.0, grpc::Service::Admin),
    ]
    .into_iter()
    .map(|(listener, service)| {
        tokio::spawn(accept_loop(listener, node.clone(), service, stop.clone()))
    })
    .collect();
    if config.timed_epochs {
        tasks.push(tokio::spawn(epoch_clock(node.clone(), stop.clone())));
    }
    Ok(ServerHandle {
        rpc_addr: addrs.0,
        faucet_addr: addrs.1,
        admin_addr: addrs.2,
        shutdown,
        tasks,
        node,
        writer: Some(writer),
    })
}

/// A listener on `host:port` (0: any free port) and the address it got.
async fn bind(host: IpAddr, port: u16) -> Result<(TcpListener, SocketAddr), ServerError> {
    let addr = SocketAddr::new(host, port);
    let error = |source| ServerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

fn open_or_create(dir: &Path, genesis: &GenesisConfig) -> Result<Ledger, LedgerError> {
    if dir.join(LEDGER_FILE).exists() {
        return Ledger::open(dir);
    }
    Ledger::genesis(genesis.clone())
}

/// Ends each epoch when its duration has passed (at once if it already has).
async fn epoch_clock(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        let due_in = {
            let ledger = node.ledger();
            let state = ledger.system_state();
            let end = state
                .epoch_start_timestamp_ms
                .saturating_add(state.parameters.epoch_duration_ms.max(1));
            end.saturating_sub(crate::now_ms())
        };
        if due_in > 0 {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(due_in)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        if let Err(status) = grpc::advance_epoch(&node).await {
            eprintln!(
                "warning: the local network cannot advance its epoch: {}",
                status.message()
            );
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    node: Arc<Node>,
    service: grpc::Service,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = stop.changed() => return,
        };
        // Small replies go out at once: with Nagle's algorithm a reply waits
        // for the client's delayed ACK (40 ms on Linux) behind the previous one.
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |request| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(grpc::dispatch(node, service, request).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // PINGs are answered by h2; never refuse them as grpcio would.
            builder.http2().max_concurrent_streams(1024);
            let _ = builder
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}
