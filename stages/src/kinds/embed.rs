//! `embed`: the embedding a model registers, from a sample of its training
//! data (genesis) or from the data it won (update).

use anyhow::Result;
use soma_flow_engine::{
    InputPort, Inputs, Outcome, Requirements, RunContext, StageKind, WithError,
};

use crate::formats::embedding::write;
use crate::training::documents::open_documents;
use crate::training::embedding::embed_file;
pub use crate::training::embedding::EmbedWith;

pub struct EmbedKind;

impl StageKind for EmbedKind {
    type With = EmbedWith;
    const NAME: &'static str = "embed";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Unit-norm model embedding: mean-pooled final representations over sampled or won data";

    fn inputs(&self, _: &EmbedWith) -> Inputs {
        Inputs::Fixed(vec![
            InputPort::required("model"),
            InputPort::required("data"),
        ])
    }

    fn outputs(&self, _: &EmbedWith) -> Vec<String> {
        vec!["embedding".into()]
    }

    fn check(&self, with: &EmbedWith) -> Result<(), WithError> {
        with.check()
    }

    fn requirements(&self, _: &EmbedWith) -> Requirements {
        Requirements::backend_in(super::MODEL_RESOURCE)
    }

    fn run(&self, with: &EmbedWith, ctx: &RunContext<'_>) -> Result<Outcome> {
        let model = ctx.input("model").expect("required input");
        let docs = open_documents(ctx.input("data").expect("required input"))?;
        let file = embed_file(
            model,
            docs.as_ref(),
            with,
            crate::backend::resolve(ctx.backend)?,
            ctx.progress,
        )?;
        write(&ctx.output("embedding"), &file)?;
        ctx.note(format!(
            "{:?} embedding over {} sequences (dim {})",
            file.mode, file.sequences, file.dim
        ));
        Ok(Outcome::Done)
    }
}
