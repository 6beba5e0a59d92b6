//! `SomaTensor` (§3.5): how embeddings, distances and losses are carried in BCS.
//!
//! `{ dtype: u8 (0 = F32), bytes: f32 little-endian row-major, shape: Vec<u64> }`.
//! Decoding rejects anything but a consistent f32 tensor with an error, so a
//! malformed value from a server can never reach a panic further on.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The only dtype SOMA uses.
pub const DTYPE_F32: u8 = 0;

/// An f32 tensor in SOMA's BCS form. Its fields are private so that every value
/// holds `bytes.len() == 4 × Π shape`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTensor")]
pub struct SomaTensor {
    dtype: u8,
    bytes: Vec<u8>,
    shape: Vec<u64>,
}

#[derive(Deserialize)]
struct RawTensor {
    dtype: u8,
    bytes: Vec<u8>,
    shape: Vec<u64>,
}

impl TryFrom<RawTensor> for SomaTensor {
    type Error = Error;
    fn try_from(raw: RawTensor) -> Result<Self> {
        Self::from_parts(raw.dtype, raw.bytes, raw.shape)
    }
}

impl SomaTensor {
    /// Checks the invariants: dtype F32 and a byte length matching the shape.
    pub fn from_parts(dtype: u8, bytes: Vec<u8>, shape: Vec<u64>) -> Result<Self> {
        if dtype != DTYPE_F32 {
            return Err(Error::Tensor(format!("dtype {dtype} is not 0 (F32)")));
        }
        let expected = shape
            .iter()
            .try_fold(4u64, |acc, &dim| acc.checked_mul(dim))
            .ok_or_else(|| Error::Tensor(format!("shape {shape:?} overflows")))?;
        if expected != bytes.len() as u64 {
            return Err(Error::Tensor(format!(
                "{} bytes do not match shape {shape:?} ({expected} bytes)",
                bytes.len()
            )));
        }
        Ok(Self {
            dtype,
            bytes,
            shape,
        })
    }

    /// A vector of shape `[len]`: embeddings and loss scores.
    pub fn vector(values: &[f32]) -> Self {
        Self {
            dtype: DTYPE_F32,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            shape: vec![values.len() as u64],
        }
    }

    /// The scalar form, shape `[1]`: distance scores and thresholds.
    pub fn scalar(value: f32) -> Self {
        Self::vector(&[value])
    }

    /// The values in row-major order.
    pub fn values(&self) -> Vec<f32> {
        self.bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The f32 little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
