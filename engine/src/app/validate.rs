//! `validate`: check a pipeline file without running anything.

use anyhow::Result;

use super::{load, Env, ExitStatus, PipelineArgs};

pub(super) fn run(env: &Env, pipeline: &PipelineArgs) -> Result<ExitStatus> {
    Ok(match load(env, pipeline) {
        Ok(plan) => {
            println!(
                "{}: ok ({} stages)",
                pipeline.file.display(),
                plan.stages.len()
            );
            ExitStatus::Ok
        }
        Err(status) => status,
    })
}
