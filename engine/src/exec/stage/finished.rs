//! How a stage ended: its status, key, outputs, notes and times, as the run's record
//! keeps them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;

use super::lookup::Origin;
use crate::exec::shared::Shared;
use crate::key::CacheKey;
use crate::kind::shown_notes;
use crate::pipeline::PlannedStage;
use crate::record::{StageRecord, StageStatus};
use crate::store::{Artifact, CacheEntry};

/// How a stage ended; built up step by step as [`run`](super::run) goes.
pub(in crate::exec) struct Finished {
    pub status: StageStatus,
    pub key: Option<CacheKey>,
    inputs: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Artifact>,
    /// A hit in the remote store: the outputs come down only when a stage needs them.
    remote: bool,
    /// The stage whose remote entry nobody verified that these outputs derive from
    /// (this one, or one upstream).
    pub unverified: Option<String>,
    message: Option<String>,
    notes: Vec<String>,
    start: Duration,
    elapsed: Duration,
}

impl Finished {
    /// A stage that produced nothing (skipped, or cut short by an interrupt), now.
    pub(in crate::exec) fn without_outputs(
        status: StageStatus,
        message: String,
        shared: &Shared,
    ) -> Finished {
        Finished {
            message: Some(message),
            ..Finished::new(status, BTreeMap::new(), shared)
        }
    }

    /// A stage on `inputs` whose steps start now; failed until one says otherwise.
    pub(super) fn starting(inputs: &BTreeMap<String, Vec<Artifact>>, shared: &Shared) -> Finished {
        Finished::new(
            StageStatus::Failed,
            crate::key::input_hashes(inputs),
            shared,
        )
    }

    fn new(
        status: StageStatus,
        inputs: BTreeMap<String, Vec<String>>,
        shared: &Shared,
    ) -> Finished {
        Finished {
            status,
            key: None,
            inputs,
            outputs: BTreeMap::new(),
            remote: false,
            unverified: None,
            message: None,
            notes: Vec::new(),
            start: shared.t0.elapsed(),
            elapsed: Duration::ZERO,
        }
    }

    /// A result found in the cache before anything ran: said, and done.
    pub(super) fn hit(
        mut self,
        shared: &Shared,
        stage: &PlannedStage,
        (entry, origin): (CacheEntry, Origin),
        tainted: Option<String>,
    ) -> Finished {
        self.found(entry, origin, &stage.name, tainted);
        self.elapsed = shared.t0.elapsed() - self.start;
        let note = self.remote.then_some("in the remote store");
        shared
            .progress
            .finished(&stage.name, self.status, self.elapsed, note);
        self
    }

    /// Execution starts now: the timeline shows execution, not the wait for a slot.
    pub(super) fn executing(&mut self, shared: &Shared, stage: &PlannedStage) {
        self.start = shared.t0.elapsed();
        shared.progress.started(&stage.name, stage.kind.name());
    }

    /// Execution is over, after the failed tries `notes` tell of.
    pub(super) fn executed(&mut self, shared: &Shared, notes: Vec<String>) {
        self.elapsed = shared.t0.elapsed() - self.start;
        self.notes.extend(notes);
    }

    /// Outputs another process or machine built under the same key.
    pub(super) fn found(
        &mut self,
        entry: CacheEntry,
        origin: Origin,
        stage: &str,
        tainted: Option<String>,
    ) {
        self.status = StageStatus::Hit;
        self.remote = origin != Origin::Local;
        self.unverified = origin.unverified(&entry, stage).or(tainted);
        self.outputs = entry.outputs;
        self.notes.extend(shown_notes(entry.notes, false));
    }

    /// Outputs built by this run: here, or by a job into the remote store (`elsewhere`).
    pub(super) fn built(&mut self, entry: CacheEntry, tainted: Option<String>, elsewhere: bool) {
        self.status = StageStatus::Ran;
        self.unverified = tainted;
        self.remote = elsewhere;
        self.outputs = entry.outputs;
        self.notes.extend(shown_notes(entry.notes, true));
    }

    pub(super) fn deferred(&mut self, reason: String) {
        self.status = StageStatus::Deferred;
        self.message = Some(reason);
    }

    /// Says how it ended.
    pub(super) fn said(self, shared: &Shared, stage: &PlannedStage) -> Finished {
        shared.progress.finished(
            &stage.name,
            self.status,
            self.elapsed,
            self.message.as_deref(),
        );
        self
    }

    /// Failed now, for `message`, as said.
    pub(super) fn failed(
        mut self,
        shared: &Shared,
        stage: &PlannedStage,
        message: String,
    ) -> Finished {
        self.status = StageStatus::Failed;
        self.elapsed = shared.t0.elapsed() - self.start;
        self.message = Some(message);
        self.said(shared, stage)
    }

    /// The stage's record in the run.
    pub(in crate::exec) fn into_record(self, stage: &PlannedStage) -> StageRecord {
        let (key, key_material) = match self.key {
            Some(k) => (Some(k.hash), k.extra),
            None => (None, Json::Null),
        };
        StageRecord {
            kind: stage.kind.name().to_string(),
            version: stage.kind.version(),
            status: self.status,
            key,
            start_ms: self.start.as_millis() as u64,
            duration_ms: self.elapsed.as_millis() as u64,
            with: stage.with.clone(),
            params_used: stage.params_used.iter().cloned().collect(),
            inputs: self.inputs,
            key_material,
            outputs: self.outputs,
            remote: self.remote,
            unverified: self.unverified,
            message: self.message,
            notes: self.notes,
        }
    }
}
