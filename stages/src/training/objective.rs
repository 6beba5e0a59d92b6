//! What a training step minimises: the on-chain task loss, or distillation
//! towards frozen teachers on top of it.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use super::embedding::pool;
use crate::backend::Pass;
use crate::loss::{objective, BatchTensors};
use crate::model::SomaModel;

/// The differentiable total and the named scalar parts reported in metrics.
pub struct StepTerms<B: Backend> {
    pub total: Tensor<B, 1>,
    pub parts: Vec<(&'static str, Tensor<B, 1>)>,
}

pub trait Objective<B: AutodiffBackend> {
    /// Terms of one micro-batch with SIGReg projection `noise` (`[dim, 256]`).
    fn terms(
        &self,
        model: &SomaModel<B>,
        batch: &BatchTensors<B>,
        noise: Tensor<B, 2>,
    ) -> StepTerms<B>;
}

/// `CE + 0.02 · SIGReg`, the loss the chain scores.
pub struct TaskLoss;

impl<B: AutodiffBackend> Objective<B> for TaskLoss {
    fn terms(
        &self,
        model: &SomaModel<B>,
        batch: &BatchTensors<B>,
        noise: Tensor<B, 2>,
    ) -> StepTerms<B> {
        let pass = Pass::for_training::<B>(&noise.device());
        let terms = objective(model, batch, noise, pass);
        StepTerms {
            total: terms.total,
            parts: vec![("ce", terms.cross_entropy), ("sigreg", terms.sigreg)],
        }
    }
}

/// `α·task + (1−α)·MSE(student embedding, teacher embedding)`, plus
/// `kl_weight · T² · KL(teacher ‖ student)` on temperature-softened logits.
/// Teachers run without gradients on the inner backend, giving the chain's values (on
/// the CPU by host kernels, see [`Pass`]); several teachers are combined by their
/// weights (embeddings and probabilities alike).
pub struct Distillation<B: Backend> {
    pub teachers: Vec<SomaModel<B>>,
    /// Normalised to sum 1.
    pub weights: Vec<f64>,
    pub alpha: f64,
    pub kl_weight: f64,
    pub temperature: f64,
}

impl<B: Backend> Distillation<B> {
    /// Weighted teacher embeddings `[batch, dim]` and, when asked, softened
    /// probabilities `[batch, len, vocab]`.
    fn targets(
        &self,
        tokens: burn::tensor::Tensor<B, 2, burn::tensor::Int>,
        positions: burn::tensor::Tensor<B, 2, burn::tensor::Int>,
        with_probs: bool,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 3>>) {
        let mut embedding: Option<Tensor<B, 2>> = None;
        let mut probs: Option<Tensor<B, 3>> = None;
        for (teacher, &w) in self.teachers.iter().zip(&self.weights) {
            let rep = teacher.encode(tokens.clone(), positions.clone());
            let e = pool(rep.clone()).mul_scalar(w);
            embedding = Some(embedding.map_or(e.clone(), |acc| acc + e));
            if with_probs {
                let logits = teacher.predict(rep).div_scalar(self.temperature);
                let p = softmax(logits, 2).mul_scalar(w);
                probs = Some(probs.map_or(p.clone(), |acc| acc + p));
            }
        }
        (embedding.expect("at least one teacher"), probs)
    }
}

impl<B: AutodiffBackend> Objective<B> for Distillation<B::InnerBackend> {
    fn terms(
        &self,
        model: &SomaModel<B>,
        batch: &BatchTensors<B>,
        noise: Tensor<B, 2>,
    ) -> StepTerms<B> {
        let pass = Pass::for_training::<B>(&noise.device());
        let task = objective(model, batch, noise, pass);
        let use_kl = self.kl_weight > 0.0;
        let (teacher_embedding, teacher_probs) = self.targets(
            batch.token_ids.clone().inner(),
            batch.positions.clone().inner(),
            use_kl,
        );
        let gap = pool(task.rep.clone()) - Tensor::<B, 2>::from_inner(teacher_embedding);
        let mse = gap.powf_scalar(2.0).mean();
        let mut total =
            task.total.clone().mul_scalar(self.alpha) + mse.clone().mul_scalar(1.0 - self.alpha);
        let mut parts = vec![
            ("task", task.total),
            ("ce", task.cross_entropy),
            ("sigreg", task.sigreg),
            ("distill", mse),
        ];
        if let Some(p) = teacher_probs {
            let p = Tensor::<B, 3>::from_inner(p);
            let logits = model.predict_by(task.rep, pass);
            let log_q = log_softmax(logits.div_scalar(self.temperature), 2);
            let kl = (p.clone() * (p.clamp_min(1e-12).log() - log_q))
                .sum_dim(2)
                .mean()
                .mul_scalar(self.temperature * self.temperature);
            total = total + kl.clone().mul_scalar(self.kl_weight);
            parts.push(("kl", kl));
        }
        StepTerms { total, parts }
    }
}
