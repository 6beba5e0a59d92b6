//! Plumbing shared by the host kernels of the CPU backend (`model::attention`,
//! `model::linear`, `model::gelu`, `sigreg`): which backends they serve, and moving
//! tensors to and from plain `f32` buffers.
//!
//! An operation asks [`kernel`] whether a host kernel serves its backend and pass; if
//! not, it runs Burn's operations.

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::ndarray::NdArrayTensor;
use burn::backend::NdArray;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use crate::backend::Pass;

/// The CPU inference backend.
pub(crate) type Inner = NdArray<f32>;
/// The CPU training backend.
pub(crate) type Training = crate::backend::NdArrayBackend;

/// The host kernel that serves an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// On the training backend, with a backward of its own ([`tracked`]).
    Tracked,
    /// On the inference backend: no gradients (teachers, scores, embeddings).
    Inference,
}

/// Which host kernel serves backend `B` for `pass`, if any. The inference backend
/// takes its kernel for either pass, because the kernels' forwards give Burn's values
/// bit for bit (so the chain's values too); the training backend only for
/// [`Pass::Host`], because their backwards give Burn's gradients up to rounding.
pub(crate) fn kernel<B: 'static>(pass: Pass) -> Option<Kernel> {
    let is = |t: std::any::TypeId| std::any::TypeId::of::<B>() == t;
    if is(std::any::TypeId::of::<Inner>()) {
        Some(Kernel::Inference)
    } else if pass == Pass::Host && is(std::any::TypeId::of::<Training>()) {
        Some(Kernel::Tracked)
    } else {
        None
    }
}

/// An operation's result on the training backend: `forward` computes it, and the
/// state its backward needs, from the inputs' values; `op`'s backward is registered
/// when any input needs a gradient.
pub(crate) fn tracked<Op, const N: usize>(
    op: Op,
    inputs: [FloatTensor<Training>; N],
    forward: impl FnOnce([Vec<f32>; N]) -> (FloatTensor<Inner>, Op::State),
) -> FloatTensor<Training>
where
    Op: Backward<Inner, N>,
{
    let nodes = inputs.each_ref().map(|t| t.node.clone());
    let (output, state) = forward(inputs.map(|t| to_host(t.primitive)));
    match op
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// `value` as `U`, which the caller has checked is its own type.
pub(crate) fn same_type<T: 'static, U: 'static>(value: T) -> U {
    let mut slot = Some(value);
    (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("the caller checked that the types are the same")
}

/// The values of a tensor of the CPU backend, in row-major order. One copy: Burn's
/// `into_data` copies a tensor that is still shared (a layer's weight, an input used
/// twice) element by element, 10× slower than this.
pub(crate) fn to_host(tensor: FloatTensor<Inner>) -> Vec<f32> {
    match tensor {
        NdArrayTensor::F32(array) => match array.as_slice() {
            Some(values) => values.to_vec(),
            None => array.iter().copied().collect(),
        },
        other => Tensor::<Inner, 1>::from_primitive(TensorPrimitive::Float(other))
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32"),
    }
}

/// A tensor of the CPU backend holding `values` (row-major) in `shape`.
pub(crate) fn from_host(values: Vec<f32>, shape: impl Into<Vec<usize>>) -> FloatTensor<Inner> {
    Inner::float_from_data(TensorData::new(values, shape), &Default::default())
}

/// What the host kernels' tests share: inputs, and comparisons with Burn's values.
#[cfg(test)]
pub(crate) mod testing {
    use burn::tensor::backend::Backend;
    use burn::tensor::{Tensor, TensorData};
    use rand::rngs::StdRng;
    use rand::Rng;

    /// Values in [-2, 2) from `rng`: the backends' own generator is shared by tests
    /// running at the same time.
    pub(crate) fn random<B: Backend, const D: usize>(
        rng: &mut StdRng,
        shape: [usize; D],
    ) -> Tensor<B, D> {
        let values: Vec<f32> = (0..shape.iter().product())
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), &Default::default())
    }

    pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().into_vec::<f32>().expect("f32 values")
    }

    /// `got` is `want` within `tolerance` (relative, and absolute near 0), and `want`
    /// is not all zero (which would make the comparison say nothing).
    pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f32) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < tolerance, "{what} differs by {worst}");
        assert!(want.iter().any(|x| x.abs() > 1e-3), "{what} is all zero");
    }
}
