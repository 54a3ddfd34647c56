//! A run's claim on its experiment: the lease taken before rows are sent and renewed while
//! they are, who holds it, and how an experiment whose run is gone reads (interrupted). It
//! must not run or change anything else.

use crate::error::Result;
use crate::model::{Experiment, ExperimentStatus};
use crate::store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a run's claim on its experiment lasts without renewal; it is renewed every third
/// of that while the run goes on, so a run that dies frees its experiment within this time
/// (at once when it ran on this machine: a dead process's lease is not honoured).
pub const LEASE: Duration = Duration::from_secs(30);

/// A run's claim on its experiment, renewed by a thread while held, given up when dropped.
pub(super) struct Lease {
    store: Arc<dyn Store>,
    id: String,
    owner: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    pub(super) fn take(store: &Arc<dyn Store>, id: &str) -> Result<Lease> {
        let owner = lease_owner();
        store.take_lease(id, &owner, LEASE, &holder_alive)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let renewer = {
            let (store, id, owner) = (store.clone(), id.to_string(), owner.clone());
            std::thread::spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(LEASE / 3)
                {
                    let _ = store.renew_lease(&id, &owner, LEASE);
                }
            })
        };
        Ok(Lease {
            store: store.clone(),
            id: id.to_string(),
            owner,
            stop: Some(stop),
            renewer: Some(renewer),
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let _ = self.store.release_lease(&self.id, &self.owner);
    }
}

/// An experiment as a person should read it: one stored as running whose run is gone (its
/// lease expired, or its process on this machine ended, or it never had one) is interrupted,
/// and `runner experiment resume ID` runs the rest.
pub fn as_seen(mut experiment: Experiment) -> Experiment {
    // A detached experiment runs while it has items left, whichever workers come and go.
    if experiment.status == ExperimentStatus::Running && experiment.settings.detached.is_none() {
        let running = experiment
            .lease
            .as_ref()
            .is_some_and(|lease| lease.until > crate::model::now() && holder_alive(&lease.owner));
        if !running {
            experiment.status = ExperimentStatus::Interrupted;
        }
    }
    experiment
}

pub(in crate::workflow) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

/// Who holds a lease, as a person reads it: `pid 4242 on build-7`.
fn lease_owner() -> String {
    format!("pid {} on {}", std::process::id(), hostname())
}

/// Whether a lease's holder may still be running: a process on this machine that is gone
/// holds nothing; for another machine only the lease's expiry can tell.
fn holder_alive(holder: &str) -> bool {
    let parsed = holder
        .strip_prefix("pid ")
        .and_then(|rest| rest.split_once(" on "))
        .and_then(|(pid, host)| Some((pid.parse::<u32>().ok()?, host)));
    match parsed {
        Some((pid, host)) if host == hostname() && Path::new("/proc/self").exists() => {
            Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => true,
    }
}
