//! The SOMA V1 model: configuration, canonical layout, Burn module and weights.

pub mod attention;
pub mod config;
pub mod gelu;
pub mod layout;
pub mod linear;
pub mod transformer;
pub mod weights;

pub use config::{ArchConfig, ArchOverrides, Preset};
pub use layout::{canonical_layout, ParamSpec};
pub use transformer::SomaModel;
pub use weights::{read_header, LayoutMismatch, TensorHeader, WeightsError};
