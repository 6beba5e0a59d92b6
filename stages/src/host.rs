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
