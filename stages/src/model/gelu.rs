//! GELU in its exact erf form, `x·½(1 + erf(x/√2))`, as the chain's feed-forward
//! block applies it.
//!
//! Two implementations compute it, chosen by [`Pass`]:
//! - [`unfused`] ([`Pass::Device`] on the autodiff backend, and every backend without
//!   a host kernel): Burn tensor operations, written out so that autodiff
//!   differentiates the erf itself (Burn's own gelu has a tanh-approximation
//!   backward). Five passes over the `[batch, len, 4·dim]` activations forward and as
//!   many backward, one thread each.
//! - `host` (burn-ndarray: [`Pass::Host`] for CPU training, and either pass without
//!   autodiff: teachers, scores, embeddings): one parallel pass forward, with the same
//!   `f32` operations in the same order (erf in `f64`, as burn-ndarray computes it),
//!   so the same values bit for bit; and one parallel pass backward,
//!   `dy·(Φ(x) + x·φ(x))`. Tests check both against [`unfused`].

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::backend::Pass;

/// GELU of `x`, element by element, computed as `pass` says.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>, pass: Pass) -> Tensor<B, D> {
    #[cfg(feature = "ndarray")]
    {
        use crate::host::{kernel, same_type, Kernel};
        match kernel::<B>(pass) {
            Some(Kernel::Tracked) => return same_type(host::training::<D>(same_type(x))),
            Some(Kernel::Inference) => return same_type(host::inference::<D>(same_type(x))),
            None => {}
        }
    }
    let _ = pass; // read by the host arm only
    unfused(x)
}

/// [`gelu`] with Burn tensor operations.
pub fn unfused<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone()
        .div_scalar(std::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul(x)
        .div_scalar(2.0)
}

#[cfg(feature = "ndarray")]
mod host {
    use std::sync::Arc;

    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::tensor::{Tensor, TensorPrimitive};
    use rayon::prelude::*;

    use crate::host::{from_host, to_host, tracked, Inner, Training};

    /// Elements per parallel task.
    const CHUNK: usize = 1 << 14;

    /// [`super::unfused`]'s operations on one value, in its order.
    fn value(x: f32) -> f32 {
        let erf = libm::erf((x / std::f32::consts::SQRT_2) as f64) as f32;
        (erf + 1.0) * x / 2.0
    }

    /// `d/dx x·Φ(x) = Φ(x) + x·φ(x)`, with Φ and φ the standard normal's distribution
    /// and density.
    fn slope(x: f32) -> f32 {
        let x = x as f64;
        let cdf = 0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2));
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        (cdf + x * pdf) as f32
    }

    fn forward(x: &[f32]) -> Vec<f32> {
        x.par_iter()
            .with_min_len(CHUNK)
            .map(|&x| value(x))
            .collect()
    }

    /// Without gradients (teachers, scores, embeddings).
    pub(super) fn inference<const D: usize>(x: Tensor<Inner, D>) -> Tensor<Inner, D> {
        let shape = x.dims();
        let x = to_host(x.into_primitive().tensor());
        Tensor::from_primitive(TensorPrimitive::Float(from_host(forward(&x), shape)))
    }

    /// What the backward needs: the input.
    #[derive(Debug)]
    struct Saved {
        x: Vec<f32>,
        shape: Vec<usize>,
    }

    #[derive(Debug)]
    struct GeluBackward;

    /// With the backward registered when the input needs a gradient.
    pub(super) fn training<const D: usize>(x: Tensor<Training, D>) -> Tensor<Training, D> {
        let shape = x.dims().to_vec();
        let output = tracked(GeluBackward, [x.into_primitive().tensor()], |[x]| {
            let output = from_host(forward(&x), shape.clone());
            (output, Arc::new(Saved { x, shape }))
        });
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }

    impl Backward<Inner, 1> for GeluBackward {
        type State = Arc<Saved>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            let d_out = to_host(grads.consume::<Inner>(&ops.node));
            let [parent] = ops.parents;
            if let Some(node) = parent {
                let saved = &ops.state;
                let dx: Vec<f32> = d_out
                    .par_iter()
                    .zip(&saved.x)
                    .with_min_len(CHUNK)
                    .map(|(&dy, &x)| dy * slope(x))
                    .collect();
                grads.register::<Inner>(node.id, from_host(dx, saved.shape.clone()));
            }
        }
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::host::testing::{assert_close, values};
    use crate::host::{Inner, Training};

    /// Values in [-6, 6] and some exact corners (0, large of both signs).
    fn inputs() -> Vec<f32> {
        let mut values: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.0) * 3e-4).collect();
        values.extend([0.0, -0.0, 30.0, -30.0, 1e-20, -1e-20]);
        values
    }

    fn tensor<B: Backend>(values: &[f32]) -> Tensor<B, 2> {
        let shape = [2, values.len() / 2];
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
    }

    #[test]
    fn host_gelu_gives_the_unfused_values_bit_for_bit() {
        let x = inputs();
        let want = values(unfused(tensor::<Inner>(&x)));
        assert_eq!(values(gelu(tensor::<Inner>(&x), Pass::Host)), want);
        assert_eq!(values(gelu(tensor::<Training>(&x), Pass::Host)), want);
    }

    /// The gradient of `Σ w·gelu(x)` for weights `w` that vary along `x`.
    fn gradient(pass: Pass) -> Vec<f32> {
        let x = inputs();
        let weights: Vec<f32> = (0..x.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let x = tensor::<Training>(&x).require_grad();
        let grads = (gelu(x.clone(), pass) * tensor::<Training>(&weights))
            .sum()
            .backward();
        values(x.grad(&grads).expect("x has a gradient"))
    }

    #[test]
    fn host_gelu_gradient_matches_the_unfused() {
        let (got, want) = (gradient(Pass::Host), gradient(Pass::Device));
        assert_close("the gradient", &got, &want, 1e-6);
        assert!(
            want.iter().any(|g| *g > 1.0),
            "the gradient exceeds 1 somewhere"
        );
    }
}
