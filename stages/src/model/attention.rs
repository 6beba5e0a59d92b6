//! Causal self-attention: `softmax(q·kᵀ / √d, future masked) · v`, per head.
//!
//! Two implementations compute it, chosen by [`Pass`]:
//! - [`unfused`] ([`Pass::Device`] on the autodiff backend, and every backend without
//!   a host kernel): Burn tensor operations, as the chain's runtime runs them.
//! - `host` (burn-ndarray: [`Pass::Host`] for CPU training, and either pass without
//!   autodiff: teachers, scores, embeddings): computed on the host head by head, in
//!   row blocks, with a backward of its own on the autodiff backend. It never builds
//!   the `[batch, heads, len, len]` scores, mask and softmax as separate tensors (each
//!   a pass over 32 MB at batch 2 × 1024, and their derivatives as many more), and it
//!   computes only the causal half of `q·kᵀ`, `p·v` and their derivatives. It keeps
//!   each head's probabilities for the backward. Its forward repeats [`unfused`]'s
//!   `f32` operations (the products' sums run over the same terms in the same order;
//!   the masked terms [`unfused`] adds are exact zeros), so it gives the same values
//!   bit for bit; tests check that, and the gradients against [`unfused`]'s.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::backend::Pass;

/// Score given to future positions before the softmax. The chain fills with -1e4;
/// -inf gives the same probabilities bit for bit (after the row's maximum is
/// subtracted, `exp` of either underflows to exactly 0, and a causal row always keeps
/// its diagonal, so no row is wholly masked), and glibc's `expf` returns 0 for -inf
/// at once but takes its slow underflow path for -1e4, half of all scores.
const MASKED_SCORE: f32 = f32::NEG_INFINITY;

/// Attention of `q`, `k`, `v` (`[batch, len, heads, head_dim]`, rotary angles
/// already applied to `q` and `k`), each position seeing itself and earlier ones,
/// computed as `pass` says. Returns `[batch, len, heads · head_dim]`, heads side by
/// side.
pub fn causal_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    pass: Pass,
) -> Tensor<B, 3> {
    #[cfg(feature = "ndarray")]
    {
        use crate::host::{kernel, same_type, Kernel};
        match kernel::<B>(pass) {
            Some(Kernel::Tracked) => {
                return same_type(host::training([q, k, v].map(same_type)));
            }
            Some(Kernel::Inference) => {
                return same_type(host::inference([q, k, v].map(same_type)));
            }
            None => {}
        }
    }
    let _ = pass; // read by the host arm only
    unfused(q, k, v)
}

/// [`causal_attention`] with Burn tensor operations.
pub fn unfused<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 3> {
    let [batch, len, heads, head_dim] = q.dims();
    let mask = causal_mask::<B>(len, &q.device()).expand([batch, heads, len, len]);
    let [q, k, v] = [q, k, v].map(|t| t.swap_dims(1, 2));
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .div_scalar((head_dim as f64).sqrt());
    softmax(scores.mask_fill(mask, MASKED_SCORE), 3)
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, len, heads * head_dim])
}

/// `true` where a query must not see a key (strictly later positions).
fn causal_mask<B: Backend>(len: usize, device: &B::Device) -> Tensor<B, 4, burn::tensor::Bool> {
    let future: Vec<bool> = (0..len * len).map(|i| i % len > i / len).collect();
    Tensor::from_data(TensorData::new(future, [1, 1, len, len]), device)
}

#[cfg(feature = "ndarray")]
mod host {
    use std::sync::Arc;

    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops};
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Tensor, TensorPrimitive};
    use ndarray::linalg::general_mat_mul;
    use ndarray::{s, Array2, ArrayView2, ShapeBuilder};
    use rayon::prelude::*;

    use crate::host::{from_host, to_host, tracked, Inner, Training};

    /// Rows of `q` per block: the causal half of each product is computed in blocks
    /// of this many rows, so about `BLOCK / len` of the work is above the diagonal.
    /// A multiple of 8 (see `softmax_in_place`).
    const BLOCK: usize = 64;

    #[derive(Debug, Clone, Copy)]
    struct Dims {
        batch: usize,
        len: usize,
        heads: usize,
        head_dim: usize,
    }

    impl Dims {
        fn width(&self) -> usize {
            self.heads * self.head_dim
        }

        /// What the scores are divided by, as [`super::unfused`] divides them.
        fn root(&self) -> f32 {
            (self.head_dim as f64).sqrt() as f32
        }

        /// The derivative of that division.
        fn scale(&self) -> f32 {
            1.0 / self.root()
        }

        /// Head `task % heads` of batch `task / heads` in a `[batch, len, heads,
        /// head_dim]` buffer: `[len, head_dim]` with a row stride of `width`.
        fn head<'a>(&self, buffer: &'a [f32], task: usize) -> ArrayView2<'a, f32> {
            let (b, h) = (task / self.heads, task % self.heads);
            let start = b * self.len * self.width() + h * self.head_dim;
            ArrayView2::from_shape(
                (self.len, self.head_dim).strides((self.width(), 1)),
                &buffer[start..],
            )
            .expect("a head lies inside its buffer")
        }

        /// Per-head results `[len, head_dim]` put back side by side.
        fn join(&self, heads: Vec<Array2<f32>>) -> Vec<f32> {
            let mut out = vec![0.0; self.batch * self.len * self.width()];
            for (task, head) in heads.iter().enumerate() {
                let (b, h) = (task / self.heads, task % self.heads);
                for (i, row) in head.rows().into_iter().enumerate() {
                    let start = (b * self.len + i) * self.width() + h * self.head_dim;
                    out[start..start + self.head_dim]
                        .iter_mut()
                        .zip(row)
                        .for_each(|(o, x)| *o = *x);
                }
            }
            out
        }

        fn row_blocks(&self) -> impl Iterator<Item = (usize, usize)> {
            let len = self.len;
            (0..len)
                .step_by(BLOCK)
                .map(move |r0| (r0, (r0 + BLOCK).min(len)))
        }
    }

    /// What the backward needs: the inputs and each head's probabilities
    /// (`[len, len]`, zero above the diagonal).
    #[derive(Debug)]
    struct Saved {
        dims: Dims,
        q: Vec<f32>,
        k: Vec<f32>,
        v: Vec<f32>,
        probabilities: Vec<Array2<f32>>,
    }

    #[derive(Debug)]
    struct CausalAttentionBackward;

    fn dims_of<B: burn::tensor::backend::Backend>(q: &Tensor<B, 4>) -> Dims {
        let [batch, len, heads, head_dim] = q.dims();
        Dims {
            batch,
            len,
            heads,
            head_dim,
        }
    }

    /// Every head's output, joined (`[batch, len, width]`), and probabilities.
    fn forward_all(
        dims: &Dims,
        q: &[f32],
        k: &[f32],
        v: &[f32],
    ) -> (FloatTensor<Inner>, Vec<Array2<f32>>) {
        let (heads, probabilities): (Vec<_>, Vec<_>) = (0..dims.batch * dims.heads)
            .into_par_iter()
            .map(|task| {
                forward(
                    dims,
                    dims.head(q, task),
                    dims.head(k, task),
                    dims.head(v, task),
                )
            })
            .unzip();
        let output = from_host(dims.join(heads), [dims.batch, dims.len, dims.width()]);
        (output, probabilities)
    }

    /// Without gradients (teachers, scores, embeddings).
    pub(super) fn inference(qkv: [Tensor<Inner, 4>; 3]) -> Tensor<Inner, 3> {
        let dims = dims_of(&qkv[0]);
        let [q, k, v] = qkv.map(|t| to_host(t.into_primitive().tensor()));
        Tensor::from_primitive(TensorPrimitive::Float(forward_all(&dims, &q, &k, &v).0))
    }

    /// With the backward registered when any input needs a gradient.
    pub(super) fn training(qkv: [Tensor<Training, 4>; 3]) -> Tensor<Training, 3> {
        let dims = dims_of(&qkv[0]);
        let inputs = qkv.map(|t| t.into_primitive().tensor());
        let output = tracked(CausalAttentionBackward, inputs, |[q, k, v]| {
            let (output, probabilities) = forward_all(&dims, &q, &k, &v);
            let saved = Saved {
                dims,
                q,
                k,
                v,
                probabilities,
            };
            (output, Arc::new(saved))
        });
        Tensor::from_primitive(TensorPrimitive::Float(output))
    }

    /// One head: its output `[len, head_dim]` and probabilities `[len, len]`.
    fn forward(
        dims: &Dims,
        q: ArrayView2<f32>,
        k: ArrayView2<f32>,
        v: ArrayView2<f32>,
    ) -> (Array2<f32>, Array2<f32>) {
        let mut p = Array2::<f32>::zeros((dims.len, dims.len));
        let mut out = Array2::<f32>::zeros((dims.len, dims.head_dim));
        for (r0, r1) in dims.row_blocks() {
            let mut scores = p.slice_mut(s![r0..r1, 0..r1]);
            general_mat_mul(
                1.0,
                &q.slice(s![r0..r1, ..]),
                &k.slice(s![0..r1, ..]).t(),
                0.0,
                &mut scores,
            );
            for (i, mut row) in scores.rows_mut().into_iter().enumerate() {
                let row = row.as_slice_mut().expect("rows of a standard array");
                softmax_in_place(row, r0 + i + 1, dims.root());
            }
            general_mat_mul(
                1.0,
                &p.slice(s![r0..r1, 0..r1]),
                &v.slice(s![0..r1, ..]),
                0.0,
                &mut out.slice_mut(s![r0..r1, ..]),
            );
        }
        (out, p)
    }

    /// The probabilities of one row of scores `q·kᵀ` (the first `seen` positions; the
    /// others are the future), as [`super::unfused`] computes them: `x / √d`, then
    /// `exp(x − max)` divided by the row's sum, which ndarray's `sum` takes in 8
    /// interleaved partial sums. The future's `exp(−inf)` are exact zeros, so summing
    /// the row up to the block's end (a multiple of 8, or the whole row) adds the same
    /// numbers in the same groups as summing the whole row.
    fn softmax_in_place(row: &mut [f32], seen: usize, root: f32) {
        let (scores, future) = row.split_at_mut(seen);
        scores.iter_mut().for_each(|x| *x /= root);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        scores.iter_mut().for_each(|x| *x = (*x - max).exp());
        future.fill(0.0);
        let sum = ndarray::ArrayView1::from(&*row).sum();
        row[..seen].iter_mut().for_each(|x| *x /= sum);
    }

    /// One head's gradients `(dq, dk, dv)`, each `[len, head_dim]`, from the output's
    /// gradient `d_out`. With `dP = d_out·vᵀ` and `dS = P ∘ (dP − rowsum(P ∘ dP))`:
    /// `dq = scale·dS·k`, `dk = scale·dSᵀ·q`, `dv = Pᵀ·d_out`, all on the causal half.
    fn backward(
        dims: &Dims,
        [q, k, v, d_out]: [ArrayView2<f32>; 4],
        p: &Array2<f32>,
    ) -> [Array2<f32>; 3] {
        let (len, scale) = (dims.len, dims.scale());
        let zeros = || Array2::<f32>::zeros((len, dims.head_dim));
        let (mut dq, mut dk, mut dv) = (zeros(), zeros(), zeros());
        let mut ds = Array2::<f32>::zeros((len, len));
        for (r0, r1) in dims.row_blocks() {
            let mut block = ds.slice_mut(s![r0..r1, 0..r1]);
            general_mat_mul(
                1.0,
                &d_out.slice(s![r0..r1, ..]),
                &v.slice(s![0..r1, ..]).t(),
                0.0,
                &mut block,
            );
            for (i, mut row) in block.rows_mut().into_iter().enumerate() {
                let row = row.as_slice_mut().expect("rows of a standard array");
                let (seen, future) = row.split_at_mut(r0 + i + 1);
                let probabilities =
                    &p.row(r0 + i).to_slice().expect("a standard array")[..seen.len()];
                let dot: f32 = seen.iter().zip(probabilities).map(|(d, p)| d * p).sum();
                seen.iter_mut()
                    .zip(probabilities)
                    .for_each(|(d, p)| *d = p * (*d - dot));
                future.fill(0.0);
            }
            general_mat_mul(
                scale,
                &ds.slice(s![r0..r1, 0..r1]),
                &k.slice(s![0..r1, ..]),
                0.0,
                &mut dq.slice_mut(s![r0..r1, ..]),
            );
        }
        // Key block `c0..c1` is seen by the queries `c0..len` only.
        for (c0, c1) in dims.row_blocks() {
            general_mat_mul(
                scale,
                &ds.slice(s![c0..len, c0..c1]).t(),
                &q.slice(s![c0..len, ..]),
                0.0,
                &mut dk.slice_mut(s![c0..c1, ..]),
            );
            general_mat_mul(
                1.0,
                &p.slice(s![c0..len, c0..c1]).t(),
                &d_out.slice(s![c0..len, ..]),
                0.0,
                &mut dv.slice_mut(s![c0..c1, ..]),
            );
        }
        [dq, dk, dv]
    }

    impl Backward<Inner, 3> for CausalAttentionBackward {
        type State = Arc<Saved>;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let d_out = to_host(grads.consume::<Inner>(&ops.node));
            let saved = &ops.state;
            let dims = saved.dims;
            let per_head: Vec<[Array2<f32>; 3]> = (0..dims.batch * dims.heads)
                .into_par_iter()
                .map(|task| {
                    let views = [&saved.q, &saved.k, &saved.v, &d_out].map(|b| dims.head(b, task));
                    backward(&dims, views, &saved.probabilities[task])
                })
                .collect();
            let mut by_input: [Vec<Array2<f32>>; 3] = Default::default();
            for grads in per_head {
                for (all, grad) in by_input.iter_mut().zip(grads) {
                    all.push(grad);
                }
            }
            let shape = [dims.batch, dims.len, dims.heads, dims.head_dim];
            for (parent, grads_of) in ops.parents.iter().zip(by_input) {
                if let Some(node) = parent {
                    grads.register::<Inner>(node.id, from_host(dims.join(grads_of), shape));
                }
            }
        }
    }
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use crate::host::testing::{assert_close, random, values};
    use crate::host::{Inner, Training};

    /// The output and the gradients of `Σ w·attention(q, k, v)` for random inputs and
    /// weights `w`, computed as `pass` says.
    fn value_and_grads(shape: [usize; 4], pass: Pass) -> Vec<Vec<f32>> {
        let rng = &mut StdRng::seed_from_u64(7);
        let [q, k, v] = [(); 3].map(|_| random::<Training, 4>(rng, shape).require_grad());
        let [batch, len, heads, head_dim] = shape;
        let weights = random::<Training, 3>(rng, [batch, len, heads * head_dim]);
        let out = causal_attention(q.clone(), k.clone(), v.clone(), pass);
        let mut result = vec![values(out.clone())];
        let grads = (out * weights).sum().backward();
        for input in [q, k, v] {
            result.push(values(
                input.grad(&grads).expect("every input has a gradient"),
            ));
        }
        result
    }

    /// Shapes with one partial block, several blocks with a partial last one, and
    /// exact blocks.
    #[test]
    fn host_attention_matches_the_unfused_value_and_gradients() {
        for shape in [[2, 5, 2, 4], [1, 150, 3, 8], [2, 128, 2, 16]] {
            let host = value_and_grads(shape, Pass::Host);
            let reference = value_and_grads(shape, Pass::Device);
            for (what, (got, want)) in ["output", "dq", "dk", "dv"]
                .iter()
                .zip(host.iter().zip(&reference))
            {
                assert_close(&format!("{what} of {shape:?}"), got, want, 1e-5);
            }
        }
    }

    /// Scores and embeddings need the chain's values to the last bit. Lengths with a
    /// partial last block, and longer than matrixmultiply's blocks of the inner
    /// dimension (256).
    #[test]
    fn host_attention_without_gradients_gives_the_unfused_values_bit_for_bit() {
        let rng = &mut StdRng::seed_from_u64(7);
        for shape in [[2, 150, 3, 8], [1, 600, 2, 32]] {
            let [q, k, v] = [(); 3].map(|_| random::<Inner, 4>(rng, shape));
            let host = causal_attention(q.clone(), k.clone(), v.clone(), Pass::Host);
            assert!(values(host) == values(unfused(q, k, v)), "{shape:?}");
        }
    }

    #[test]
    fn later_positions_do_not_change_earlier_outputs() {
        let device = Default::default();
        let shape = [1, 70, 2, 4];
        let rng = &mut StdRng::seed_from_u64(7);
        let [q, k, v] = [(); 3].map(|_| random::<Training, 4>(rng, shape));
        let before = causal_attention(q.clone(), k.clone(), v.clone(), Pass::Host);
        let changed = |t: Tensor<Training, 4>| {
            t.slice_assign(
                [0..1, 69..70, 0..2, 0..4],
                Tensor::ones([1, 1, 2, 4], &device),
            )
        };
        let after = causal_attention(changed(q), changed(k), changed(v), Pass::Host);
        let first = |t: Tensor<Training, 3>| {
            t.slice([0..1, 0..69, 0..8])
                .into_data()
                .into_vec::<f32>()
                .unwrap()
        };
        assert_eq!(first(before), first(after));
    }
}
