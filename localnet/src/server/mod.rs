//! The local network's servers: the fullnode gRPC services of SOMA-RPC.md §1.3
//! (LedgerService, StateService, TransactionExecutionService,
//! SubscriptionService) plus plain HTTP `GET /model/{id}` and `/data/{id}` on
//! one port, the BCS faucet and the BCS admin (epoch advance) on theirs (§1.5).
//!
//! [`serve`] binds every port (0 picks a free one), starts serving in the
//! current tokio runtime and returns the bound addresses, so tests and
//! soma-flow run a network in process. Each connection speaks HTTP/1.1 or
//! h2c (gRPC), answers client PINGs (the SDK sends one every 5 s) and sends
//! response headers as soon as a call starts. The ledger is saved with its own
//! atomic `save` after every transaction and epoch change.

mod blobs;
mod grpc;
mod render;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper_util::rt::{TokioExecutor, TokioIo};
use soma_flow_chain::rpc::{DEFAULT_ADMIN_PORT, DEFAULT_FAUCET_PORT, DEFAULT_RPC_PORT};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use blobs::store_blob;

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

/// A running network. Dropping it stops the servers.
#[derive(Debug)]
pub struct ServerHandle {
    pub rpc_addr: SocketAddr,
    pub faucet_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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

    /// Stops accepting connections and waits for the accept loops to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The state the services share: the ledger, where it is saved, and the
/// checkpoint notifications subscriptions wait on.
pub(crate) struct Node {
    ledger: Mutex<Ledger>,
    data_dir: PathBuf,
    checkpoints: broadcast::Sender<u64>,
    faucet_amount: u64,
}

impl Node {
    /// The ledger, even if a panicking holder poisoned the lock (the ledger's
    /// own operations leave it consistent).
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a change: persist, then wake the checkpoint subscribers.
    fn committed(&self, ledger: &Ledger) -> Result<(), LedgerError> {
        ledger.save(&self.data_dir)?;
        let _ = self
            .checkpoints
            .send(ledger.latest_checkpoint().sequence_number);
        Ok(())
    }

    fn blobs_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }
}

/// Opens (or creates) the ledger and serves it on the configured ports.
pub async fn serve(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let ledger = open_or_create(&config.data_dir, &config.genesis)?;
    let node = Arc::new(Node {
        ledger: Mutex::new(ledger),
        data_dir: config.data_dir.clone(),
        checkpoints: broadcast::channel(1024).0,
        faucet_amount: config.faucet_amount,
    });
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
    let ledger = Ledger::genesis(genesis.clone())?;
    ledger.save(dir)?;
    Ok(ledger)
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
        if let Err(status) = grpc::advance_epoch(&node) {
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
