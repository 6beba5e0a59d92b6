//! `runs`: list recorded runs.

use anyhow::Result;

use super::{ExitStatus, StoreArgs};
use crate::record::{self, RunRecord, StageStatus};

pub(super) fn run(json: bool, store: &StoreArgs) -> Result<ExitStatus> {
    let runs = record::list(&store.open()?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print_runs(&runs);
    }
    Ok(ExitStatus::Ok)
}

fn print_runs(runs: &[RunRecord]) {
    println!(
        "{:<24} {:<21} {:<20} {:<11} {:>4} {:>6} {:>5}",
        "id", "started", "pipeline", "status", "ran", "cached", "other"
    );
    for r in runs {
        let other = r.stages.len() - r.count(StageStatus::Ran) - r.count(StageStatus::Hit);
        println!(
            "{:<24} {:<21} {:<20} {:<11} {:>4} {:>6} {:>5}",
            r.id,
            r.started,
            r.name,
            format!("{:?}", r.status).to_lowercase(),
            r.count(StageStatus::Ran),
            r.count(StageStatus::Hit),
            other
        );
    }
}
