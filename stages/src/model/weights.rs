//! Canonical safetensors weights: validated loading through a memory map and
//! tensor-by-tensor saving, so a 4.8 GB V1 file is never held twice in memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};

use super::config::ArchConfig;
use super::layout::{canonical_layout, ParamSpec};
use super::transformer::{ParamSource, SomaModel};

/// The safetensors format's own header limit; a longer "header" means the
/// file is something else altogether.
const MAX_HEADER_LEN: usize = 100_000_000;

/// How many offending keys of each kind an error message lists.
const LISTED: usize = 5;

/// Why a weights file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a safetensors file ({reason})")]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{path}: truncated or padded file: its header declares {expected} bytes but the file has {actual}")]
    Truncated {
        path: PathBuf,
        expected: usize,
        actual: usize,
    },
    #[error("{path}: tensor `{key}` is {dtype:?}, expected F32")]
    WrongDtype {
        path: PathBuf,
        key: String,
        dtype: Dtype,
    },
    #[error("{0}")]
    Layout(LayoutMismatch),
}

/// Differences between a file and the canonical layout of a configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayoutMismatch {
    pub path: PathBuf,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// `(key, expected shape, shape in the file)`.
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LayoutMismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
}

fn write_list<T>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    items: &[T],
    show: impl Fn(&T) -> String,
) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = items.iter().take(LISTED).map(show).collect();
    let more = items.len().saturating_sub(LISTED);
    write!(f, "; {} {what}: {}", items.len(), shown.join(", "))?;
    if more > 0 {
        write!(f, " (and {more} more)")?;
    }
    Ok(())
}

impl fmt::Display for LayoutMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: weights do not match the model configuration",
            self.path.display()
        )?;
        write_list(f, "missing keys", &self.missing, |k| format!("`{k}`"))?;
        write_list(f, "unexpected keys", &self.unexpected, |k| format!("`{k}`"))?;
        write_list(
            f,
            "shape mismatches",
            &self.wrong_shape,
            |(k, want, got)| format!("`{k}` expected {want:?} found {got:?}"),
        )
    }
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorHeader {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// A weights file mapped into memory with its header checked.
struct MappedWeights {
    path: PathBuf,
    map: Mmap,
}

impl MappedWeights {
    fn open(path: &Path) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and lives only while loading; like every
        // reader of the file we rely on nobody truncating it meanwhile.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let weights = Self {
            path: path.to_path_buf(),
            map,
        };
        weights.tensors()?;
        Ok(weights)
    }

    fn tensors(&self) -> Result<SafeTensors<'_>, WeightsError> {
        SafeTensors::deserialize(&self.map).map_err(|e| self.describe(e))
    }

    fn describe(&self, error: SafeTensorError) -> WeightsError {
        let path = self.path.clone();
        let actual = self.map.len();
        match declared_len(&self.map) {
            // A header that parses but promises other lengths: cut short (or padded).
            Some(expected) if expected != actual => WeightsError::Truncated {
                path,
                expected,
                actual,
            },
            _ => WeightsError::NotSafetensors {
                path,
                reason: error.to_string(),
            },
        }
    }

    fn header(&self) -> Result<BTreeMap<String, TensorHeader>, WeightsError> {
        let tensors = self.tensors()?;
        Ok(tensors
            .tensors()
            .into_iter()
            .map(|(key, view)| {
                let header = TensorHeader {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                };
                (key, header)
            })
            .collect())
    }
}

/// File length the header promises: 8 length bytes, the JSON header, and the
/// largest data offset it names. `None` when not even that much can be read.
fn declared_len(bytes: &[u8]) -> Option<usize> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let header_end = usize::try_from(n).ok()?.checked_add(8)?;
    let Some(header) = bytes.get(8..header_end) else {
        // Cut inside the header: at least the header was promised.
        return (header_end <= MAX_HEADER_LEN).then_some(header_end);
    };
    let json: serde_json::Value = serde_json::from_slice(header).ok()?;
    let data_end = json
        .as_object()?
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    header_end.checked_add(usize::try_from(data_end).ok()?)
}

/// The header of a safetensors file (keys, dtypes, shapes); no tensor data is read.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, TensorHeader>, WeightsError> {
    MappedWeights::open(path)?.header()
}

/// The architecture of the weights at `path`, checked to have its canonical V1
/// layout (`heads` for shapes that match no preset).
pub fn inspect(path: &Path, heads: Option<usize>) -> anyhow::Result<ArchConfig> {
    let config = ArchConfig::infer_from_weights(path, heads)?;
    check_layout(path, &read_header(path)?, &config)?;
    Ok(config)
}

/// Compares a header with the canonical layout of `config`.
pub fn check_layout(
    path: &Path,
    header: &BTreeMap<String, TensorHeader>,
    config: &ArchConfig,
) -> Result<(), WeightsError> {
    let layout = canonical_layout(config);
    let expected: BTreeSet<&str> = layout.iter().map(|s| s.key.as_str()).collect();
    let mut mismatch = LayoutMismatch {
        path: path.to_path_buf(),
        ..Default::default()
    };
    for spec in &layout {
        match header.get(&spec.key) {
            None => mismatch.missing.push(spec.key.clone()),
            Some(found) if found.shape != spec.shape => mismatch.wrong_shape.push((
                spec.key.clone(),
                spec.shape.clone(),
                found.shape.clone(),
            )),
            Some(_) => {}
        }
    }
    mismatch.unexpected = header
        .keys()
        .filter(|k| !expected.contains(k.as_str()))
        .cloned()
        .collect();
    if !mismatch.is_empty() {
        return Err(WeightsError::Layout(mismatch));
    }
    if let Some((key, found)) = header.iter().find(|(_, h)| h.dtype != Dtype::F32) {
        return Err(WeightsError::WrongDtype {
            path: path.to_path_buf(),
            key: key.clone(),
            dtype: found.dtype,
        });
    }
    Ok(())
}

struct FileSource<'a, B: Backend> {
    tensors: SafeTensors<'a>,
    device: B::Device,
}

impl<B: Backend> ParamSource<B> for FileSource<'_, B> {
    fn take<const D: usize>(&mut self, spec: &ParamSpec) -> Result<Tensor<B, D>> {
        let view = self.tensors.tensor(&spec.key)?;
        // The map gives no alignment guarantee, so decode instead of casting.
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(values, spec.shape.clone()),
            &self.device,
        ))
    }
}

impl<B: Backend> SomaModel<B> {
    /// Loads canonical weights for `config`; any mismatch is an error listing
    /// missing, unexpected and mis-shaped tensors.
    pub fn load(path: &Path, config: &ArchConfig, device: &B::Device) -> Result<Self> {
        let weights = MappedWeights::open(path)?;
        check_layout(path, &weights.header()?, config)?;
        let mut source = FileSource::<B> {
            tensors: weights.tensors()?,
            device: device.clone(),
        };
        Self::build(config, device, &mut source)
            .with_context(|| format!("loading {}", path.display()))
    }

    /// Loads a weights file whose configuration is read from its own header
    /// (see [`ArchConfig::infer_from_weights`]), with the given dropout.
    pub fn load_inferred(
        path: &Path,
        heads: Option<usize>,
        dropout: f64,
        device: &B::Device,
    ) -> Result<Self> {
        let config = ArchConfig::infer_from_weights(path, heads)?.with_dropout(dropout);
        Self::load(path, &config, device)
    }

    /// Writes canonical weights, fetching one tensor at a time from the device.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut collector = Collector::<B> { flat: Vec::new() };
        self.visit(&mut collector);
        let layout = canonical_layout(self.config());
        assert_eq!(
            layout.len(),
            collector.flat.len(),
            "module parameters and canonical layout disagree"
        );
        let entries: Vec<(String, LazyTensor<B>)> = layout
            .into_iter()
            .zip(collector.flat)
            .map(|(spec, flat)| {
                assert_eq!(
                    spec.num_elements(),
                    flat.dims()[0],
                    "`{}` has the wrong size",
                    spec.key
                );
                (
                    spec.key,
                    LazyTensor {
                        shape: spec.shape,
                        flat,
                    },
                )
            })
            .collect();
        safetensors::serialize_to_file(entries, None, path)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Every float parameter, flattened, in module declaration order (which is the
/// canonical layout order).
struct Collector<B: Backend> {
    flat: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collector<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let n = tensor.shape().num_elements();
        self.flat.push(tensor.reshape([n]));
    }
}

/// A parameter whose bytes are only fetched when the writer reaches it.
struct LazyTensor<B: Backend> {
    shape: Vec<usize>,
    flat: Tensor<B, 1>,
}

impl<B: Backend> View for LazyTensor<B> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let values = self
            .flat
            .clone()
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("converted to f32");
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 4
    }
}
