//! What interrupts a run: signals (the command line) or a notification (a program
//! embedding the engine).

use std::sync::Arc;

use anyhow::Result;
use tokio::sync::Notify;

/// What interrupts a run: its running stages are stopped, unstarted ones skipped, and
/// the run is recorded as interrupted.
#[derive(Clone)]
pub enum StopOn {
    /// SIGINT, SIGTERM or SIGHUP (the command line).
    Signals,
    /// A notification (a program embedding the engine, or a test). Stage processes
    /// are not signalled: several runs may share the process.
    Notified(Arc<Notify>),
}

/// The run's interrupt source. Signals are listened to for the whole run so that none
/// is lost.
pub(super) enum Interrupts {
    #[cfg(unix)]
    Signals {
        int: tokio::signal::unix::Signal,
        term: tokio::signal::unix::Signal,
        hup: tokio::signal::unix::Signal,
    },
    #[cfg(not(unix))]
    Signals,
    Notified(Arc<Notify>),
}

impl Interrupts {
    pub(super) fn new(stop_on: StopOn) -> Result<Interrupts> {
        Ok(match stop_on {
            #[cfg(unix)]
            StopOn::Signals => {
                use tokio::signal::unix::{signal, SignalKind};
                Interrupts::Signals {
                    int: signal(SignalKind::interrupt())?,
                    term: signal(SignalKind::terminate())?,
                    hup: signal(SignalKind::hangup())?,
                }
            }
            #[cfg(not(unix))]
            StopOn::Signals => Interrupts::Signals,
            StopOn::Notified(n) => Interrupts::Notified(n),
        })
    }

    /// The name of the next interrupt.
    pub(super) async fn recv(&mut self) -> &'static str {
        match self {
            #[cfg(unix)]
            Interrupts::Signals { int, term, hup } => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            },
            #[cfg(not(unix))]
            Interrupts::Signals => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
            Interrupts::Notified(n) => {
                n.notified().await;
                "a stop request"
            }
        }
    }
}
