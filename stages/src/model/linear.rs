//! Linear layers, `x·W + b` over the last axis.
//!
//! Two implementations compute them, chosen by [`Pass`]:
//! - Burn's `Linear::forward` ([`Pass::Device`] on the autodiff backend, and every
//!   backend without a host kernel), as the chain's runtime runs it: one matrix
//!   product per batch row (`[len, in]·[in, out]`), so a batch of 2 keeps 2 tasks
//!   busy.
//! - `host` (burn-ndarray: [`Pass::Host`] for CPU training, and either pass without
//!   autodiff: teachers, scores, embeddings): every position's row as one
//!   `[batch·len, in]` matrix, cut into blocks of rows that rayon spreads over all
//!   cores, each block one product (single-threaded after
//!   `backend::prepare_process`) and its bias, and a backward of its own on the
//!   autodiff backend (`dx = dy·Wᵀ` by blocks of rows, `dW = xᵀ·dy` by blocks of `W`'s
//!   rows, `db` the column sums of `dy`). No output element is split over tasks, so
//!   the result does not depend on the number of threads, and the forward gives
//!   Burn's values bit for bit. Tests check the value and the three gradients against
//!   Burn's.

use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::backend::Pass;

/// `layer` applied to `x` (`[.., in]` → `[.., out]`), computed as `pass` says.
pub fn linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
    pass: Pass,
) -> Tensor<B, D> {
    #[cfg(feature = "ndarray")]
    if let (Some(kernel), Some(bias)) = (crate::host::kernel::<B>(pass), &layer.bias) {
        use crate::host::{same_type, Kernel};
        use burn::tensor::TensorPrimitive;
        let dims = host::Dims::of(&x.dims(), layer.weight.dims());
        let inputs = [
            x.into_primitive().tensor(),
            layer.weight.val().into_primitive().tensor(),
            bias.val().into_primitive().tensor(),
        ];
        let output = match kernel {
            Kernel::Tracked => same_type(host::training(dims, inputs.map(same_type))),
            Kernel::Inference => same_type(host::inference(&dims, inputs.map(same_type))),
        };
        return Tensor::from_primitive(TensorPrimitive::Float(output));
    }
    let _ = pass; // read by the host arm only
    layer.forward(x)
}

#[cfg(feature = "ndarray")]
mod host {
    use std::sync::Arc;

    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::tensor::ops::FloatTensor;
    use ndarray::linalg::general_mat_mul;
    use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};
    use rayon::prelude::*;

    use crate::host::{from_host, to_host, tracked, Inner, Training};

    /// `a·b` (`[m, k]·[k, n]`) into a new row-major buffer, plus `bias` (`[n]`) on
    /// every row when given: blocks of `a`'s rows on rayon, about two per thread, each
    /// one product (single-threaded after `backend::prepare_process`).
    fn product(a: ArrayView2<f32>, b: ArrayView2<f32>, bias: Option<&[f32]>) -> Vec<f32> {
        let (m, n) = (a.nrows(), b.ncols());
        let rows = m.div_ceil(2 * rayon::current_num_threads()).clamp(32, 512);
        let mut out = vec![0.0f32; m * n];
        out.par_chunks_mut(rows * n)
            .enumerate()
            .for_each(|(block, chunk)| {
                let r0 = block * rows;
                let mut c = ArrayViewMut2::from_shape((chunk.len() / n, n), chunk)
                    .expect("a block of whole rows");
                let a = a.slice(s![r0..r0 + c.nrows(), ..]);
                general_mat_mul(1.0, &a, &b, 0.0, &mut c);
                if let Some(bias) = bias {
                    for mut row in c.rows_mut() {
                        row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                    }
                }
            });
        out
    }

    /// `rows × cols` view of a row-major buffer.
    fn matrix(values: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((rows, cols), values).expect("buffer of the tensor's shape")
    }

    /// `x`'s shape (`[.., input]`, read as `rows × input`) and the output width.
    #[derive(Debug)]
    pub(super) struct Dims {
        shape: Vec<usize>,
        output: usize,
    }

    impl Dims {
        pub(super) fn of(x: &[usize], weight: [usize; 2]) -> Self {
            assert_eq!(x.last(), Some(&weight[0]), "linear input width");
            Dims {
                shape: x.to_vec(),
                output: weight[1],
            }
        }

        fn input(&self) -> usize {
            self.shape[self.shape.len() - 1]
        }

        fn rows(&self) -> usize {
            self.shape[..self.shape.len() - 1].iter().product()
        }

        fn output_shape(&self) -> Vec<usize> {
            let mut shape = self.shape.clone();
            *shape.last_mut().expect("a shape has axes") = self.output;
            shape
        }
    }

    fn forward(dims: &Dims, x: &[f32], w: &[f32], b: &[f32]) -> FloatTensor<Inner> {
        let x = matrix(x, dims.rows(), dims.input());
        let w = matrix(w, dims.input(), dims.output);
        from_host(product(x, w, Some(b)), dims.output_shape())
    }

    /// Without gradients (teachers, scores, embeddings): `x`, the weight and the bias.
    pub(super) fn inference(dims: &Dims, inputs: [FloatTensor<Inner>; 3]) -> FloatTensor<Inner> {
        let [x, weight, bias] = inputs.map(to_host);
        forward(dims, &x, &weight, &bias)
    }

    /// What the backward needs: the input and the weight.
    #[derive(Debug)]
    struct Saved {
        dims: Dims,
        x: Vec<f32>,
        weight: Vec<f32>,
    }

    #[derive(Debug)]
    struct LinearBackward;

    /// With the backward registered when any input needs a gradient: `x`, the weight
    /// and the bias.
    pub(super) fn training(
        dims: Dims,
        inputs: [FloatTensor<Training>; 3],
    ) -> FloatTensor<Training> {
        tracked(LinearBackward, inputs, |[x, weight, bias]| {
            let output = forward(&dims, &x, &weight, &bias);
            (output, Arc::new(Saved { dims, x, weight }))
        })
    }

    impl Backward<Inner, 3> for LinearBackward {
        type State = Arc<Saved>;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let d_out = to_host(grads.consume::<Inner>(&ops.node));
            let Saved { dims, x, weight } = &*ops.state;
            let (rows, input, output) = (dims.rows(), dims.input(), dims.output);
            let dy = matrix(&d_out, rows, output);
            let [x_node, weight_node, bias_node] = &ops.parents;
            if let Some(node) = x_node {
                let w = matrix(weight, input, output);
                let dx = product(dy, w.t(), None);
                grads.register::<Inner>(node.id, from_host(dx, dims.shape.clone()));
            }
            if let Some(node) = weight_node {
                let x = matrix(x, rows, input);
                let dw = product(x.t(), dy, None);
                grads.register::<Inner>(node.id, from_host(dw, [input, output]));
            }
            if let Some(node) = bias_node {
                let db = dy.sum_axis(Axis(0)).into_raw_vec_and_offset().0;
                grads.register::<Inner>(node.id, from_host(db, [output]));
            }
        }
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use burn::module::Param;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::host::testing::{assert_close, random, values};
    use crate::host::{Inner, Training};

    fn layer<B: Backend>(rng: &mut StdRng, input: usize, output: usize) -> Linear<B> {
        Linear {
            weight: Param::from_tensor(random(rng, [input, output])),
            bias: Some(Param::from_tensor(random(rng, [output]))),
        }
    }

    /// The output and the gradients of `Σ w·linear(x)` (x, weight, bias) for random
    /// inputs and weights `w`, computed as `pass` says.
    fn value_and_grads(shape: [usize; 3], output: usize, pass: Pass) -> Vec<Vec<f32>> {
        let rng = &mut StdRng::seed_from_u64(11);
        let layer = layer::<Training>(rng, shape[2], output);
        let x = random::<Training, 3>(rng, shape).require_grad();
        let w = random::<Training, 3>(rng, [shape[0], shape[1], output]);
        let out = linear(&layer, x.clone(), pass);
        let mut result = vec![values(out.clone())];
        let grads = (out * w).sum().backward();
        result.push(values(x.grad(&grads).expect("x has a gradient")));
        result.push(values(layer.weight.grad(&grads).expect("W has a gradient")));
        let bias = layer.bias.as_ref().expect("a bias");
        result.push(values(bias.grad(&grads).expect("b has a gradient")));
        result
    }

    /// Row counts that fill blocks, leave a partial one and fit in one.
    #[test]
    fn host_linear_matches_burns_value_and_gradients() {
        for (shape, output) in [([2, 300, 24], 40), ([1, 7, 5], 3), ([3, 64, 16], 64)] {
            let host = value_and_grads(shape, output, Pass::Host);
            let reference = value_and_grads(shape, output, Pass::Device);
            assert_eq!(host[0], reference[0], "output of {shape:?}");
            for (what, (got, want)) in ["dx", "dW", "db"]
                .iter()
                .zip(host[1..].iter().zip(&reference[1..]))
            {
                // dW and db sum up to 600 rows, in another order than Burn's.
                assert_close(&format!("{what} of {shape:?}"), got, want, 5e-5);
            }
        }
    }

    /// Scores and embeddings need the chain's values to the last bit. Inner
    /// dimensions below and above matrixmultiply's blocks of 256.
    #[test]
    fn host_linear_without_gradients_gives_burns_values_bit_for_bit() {
        let rng = &mut StdRng::seed_from_u64(3);
        for (shape, output) in [([2, 300, 24], 40), ([1, 1024, 1024], 256)] {
            let layer = layer::<Inner>(rng, shape[2], output);
            let x = random::<Inner, 3>(rng, shape);
            let host = values(linear(&layer, x.clone(), Pass::Device));
            assert!(host == values(layer.forward(x)), "{shape:?}");
        }
    }
}
