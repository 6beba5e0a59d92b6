//! `dag`: print the stage graph.

use anyhow::Result;

use super::{load, Env, ExitStatus, PipelineArgs};
use crate::dag::{self, Format};

pub(super) fn run(env: &Env, pipeline: &PipelineArgs, format: Format) -> Result<ExitStatus> {
    match load(env, pipeline) {
        Ok(plan) => {
            print!("{}", dag::render(&plan.stages, format));
            Ok(ExitStatus::Ok)
        }
        Err(status) => Ok(status),
    }
}
