//! The training objective and the per-batch on-chain loss: cross-entropy with
//! Burn 0.19 semantics plus 0.02 · SIGReg.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::backend::Pass;
use crate::contract::{Batch, PAD_TOKEN};
use crate::model::SomaModel;
use crate::sigreg::{sigreg_by, COEFFICIENT};

/// One contract batch on a device.
#[derive(Debug, Clone)]
pub struct BatchTensors<B: Backend> {
    pub token_ids: Tensor<B, 2, Int>,
    pub targets: Tensor<B, 2, Int>,
    pub positions: Tensor<B, 2, Int>,
}

impl<B: Backend> BatchTensors<B> {
    pub fn new(batch: &Batch, device: &B::Device) -> Self {
        let shape = [batch.size, batch.seq_len];
        let ints = |v: &Vec<i64>| {
            Tensor::from_data(
                TensorData::new(v.clone(), shape).convert::<B::IntElem>(),
                device,
            )
        };
        Self {
            token_ids: ints(&batch.token_ids),
            targets: ints(&batch.targets),
            positions: ints(&batch.positions),
        }
    }
}

/// Mean negative log-likelihood of the targets where PAD targets count as 0
/// but still count in the denominator (all batch·len positions), as Burn 0.19's
/// `CrossEntropyLoss` with a pad token does on the chain.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [batch, len, vocab] = logits.dims();
    let loss = CrossEntropyLossConfig::new()
        .with_pad_tokens(Some(vec![PAD_TOKEN as usize]))
        .init(&logits.device());
    loss.forward(
        logits.reshape([batch * len, vocab]),
        targets.reshape([batch * len]),
    )
}

/// The parts of the objective for one batch; `rep` is kept for embeddings
/// and distillation.
#[derive(Debug, Clone)]
pub struct LossTerms<B: Backend> {
    pub total: Tensor<B, 1>,
    pub cross_entropy: Tensor<B, 1>,
    pub sigreg: Tensor<B, 1>,
    pub rep: Tensor<B, 3>,
}

/// `CE + 0.02 · SIGReg` of `model` on one batch with projection `noise`
/// (`[dim, 256]`), computed as `pass` says (scores: `Pass::Device`, the chain's
/// values). On an autodiff backend `total` is differentiable; pass
/// fresh noise (`sigreg::chain_noise`, or the training step's seeded draw) each step.
pub fn objective<B: Backend>(
    model: &SomaModel<B>,
    batch: &BatchTensors<B>,
    noise: Tensor<B, 2>,
    pass: Pass,
) -> LossTerms<B> {
    let rep = model.encode_by(batch.token_ids.clone(), batch.positions.clone(), pass);
    let logits = model.predict_by(rep.clone(), pass);
    let cross_entropy = cross_entropy(logits, batch.targets.clone());
    let sigreg = sigreg_by(rep.clone(), noise, pass);
    let total = cross_entropy.clone() + sigreg.clone().mul_scalar(COEFFICIENT);
    LossTerms {
        total,
        cross_entropy,
        sigreg,
        rep,
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    type B = burn::backend::NdArray<f32>;

    #[test]
    fn pad_targets_count_zero_but_stay_in_the_denominator() {
        let device = Default::default();
        // Uniform logits: every real target costs ln(vocab).
        let logits = Tensor::<B, 3>::zeros([1, 4, 264], &device);
        let targets = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![5i64, 6, PAD_TOKEN, PAD_TOKEN], [1, 4]).convert::<i64>(),
            &device,
        );
        let ce = cross_entropy(logits, targets).into_scalar();
        let expected = 2.0 * (264f32).ln() / 4.0;
        assert!((ce - expected).abs() < 1e-5, "{ce} vs {expected}");
    }
}
