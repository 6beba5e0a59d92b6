//! Plumbing shared by the host kernels of the CPU backend (`model::attention`,
//! `model::linear`, `model::gelu`, `sigreg`): which backends they serve, and moving
//! tensors to and from plain `f32` buffers.
//!
//! A kernel checks the backend's `TypeId` against [`Training`] (autodiff: it
//! registers a backward of its own) and [`Inner`] (no gradients: teachers, scores),
//! and otherwise falls back to Burn's operations.

use burn::backend::ndarray::NdArrayTensor;
use burn::backend::NdArray;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

/// The CPU inference backend.
pub(crate) type Inner = NdArray<f32>;
/// The CPU training backend.
pub(crate) type Training = crate::backend::NdArrayBackend;

/// Whether `B` is `T`.
pub(crate) fn is<B: 'static, T: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<T>()
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
