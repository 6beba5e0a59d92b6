//! `soma-flow score`: what the chain would compute for competing models on one blob.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use soma_flow_engine::app::ExitStatus;
use soma_flow_stages::formats::embedding;
use soma_flow_stages::formats::scores::{caption, label, table};
use soma_flow_stages::score::{map_data, score_models};
use soma_flow_stages::BackendChoice;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// A canonical safetensors weights file (repeat for competing models)
    #[arg(long = "model", required = true, value_name = "W.safetensors")]
    pub models: Vec<PathBuf>,
    /// The data blob
    #[arg(long)]
    pub data: PathBuf,
    /// Seed of the SIGReg noise stream
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Attention heads (default: the preset whose shapes match the weights; 8 for v1)
    #[arg(long)]
    pub heads: Option<usize>,
    /// Burn backend
    #[arg(long, default_value = "ndarray")]
    pub backend: BackendChoice,
    /// An embedding (JSON array or little-endian f32) to measure cosine distance to
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Print {"models":[{"path","loss","embedding"}],"winner":i} instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ScoreArgs) -> Result<ExitStatus> {
    args.backend.ensure_compiled()?;
    let data = map_data(&args.data)?;
    let target = args.target.as_deref().map(embedding::read).transpose()?;
    let report = score_models(&args.models, &data, args.seed, args.heads, args.backend)?;
    let names: Vec<String> = args
        .models
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let scores = label(&[report], &names, args.seed, target.as_deref())?;
    if args.json {
        let models: Vec<serde_json::Value> = scores
            .models
            .iter()
            .map(|m| {
                let mut v =
                    serde_json::json!({"path": m.name, "loss": m.loss, "embedding": m.embedding});
                if let Some(d) = m.distance {
                    v["distance"] = d.into();
                }
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"models": models, "winner": scores.winner})
        );
    } else {
        println!("{}\n{}", table(&scores), caption(&scores));
    }
    Ok(ExitStatus::Ok)
}
