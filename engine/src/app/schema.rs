//! `schema`: the JSON Schema of pipeline files.

use anyhow::Result;

use super::{Env, ExitStatus};

pub(super) fn run(env: &Env) -> Result<ExitStatus> {
    println!(
        "{}",
        serde_json::to_string_pretty(&crate::schema::pipeline_schema(&env.registry))?
    );
    Ok(ExitStatus::Ok)
}
