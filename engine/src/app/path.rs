//! `path`: the stored path of a stage output from the latest run of a pipeline.

use std::path::Path;

use anyhow::{Context, Result};

use super::{ExitStatus, StoreArgs};
use crate::record;
use crate::store::Check;

pub(super) fn run(file: &Path, output: &str, store: &StoreArgs) -> Result<ExitStatus> {
    let store = store.open()?;
    let Some((stage, out)) = output.split_once('.') else {
        eprintln!("error: `{output}`: expected STAGE.OUTPUT");
        return Ok(ExitStatus::Usage);
    };
    let runs = record::list(&store)?;
    let abs = file
        .canonicalize()
        .with_context(|| format!("cannot find {}", file.display()))?;
    let found = runs
        .iter()
        .rev()
        .filter(|r| r.pipeline == abs)
        .find_map(|r| r.stages.get(stage).and_then(|s| s.outputs.get(out)));
    let Some(artifact) = found else {
        eprintln!(
            "error: no recorded run of {} produced `{output}`",
            file.display()
        );
        return Ok(ExitStatus::Failed);
    };
    let what = match store.check(artifact)? {
        Check::Ok => {
            println!("{}", store.path_of(artifact).display());
            return Ok(ExitStatus::Ok);
        }
        Check::Missing => "is no longer in the store (removed by gc or by hand)",
        Check::Corrupt => "was corrupt (did not match its hash) and has been discarded",
    };
    eprintln!(
        "error: `{output}` ({}) {what}; run the pipeline again to rebuild it",
        artifact.hash.short()
    );
    Ok(ExitStatus::Failed)
}
