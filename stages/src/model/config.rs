//! Architecture configuration: V1 presets, overrides, and inference from a
//! weights file's header.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

use super::weights::read_header;

/// Shape and hyper-parameters of a SOMA V1-style transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ArchSpec")]
pub struct ArchConfig {
    pub embedding_dim: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub pwff_hidden_dim: usize,
    pub vocab_size: usize,
    pub max_seq_len: usize,
    pub rope_max_wavelength: f64,
    pub rope_scale_factor: f64,
    pub layer_norm_eps: f64,
    pub dropout: f64,
}

/// Named starting points; only `v1` is valid on the real network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preset {
    #[serde(rename = "v1")]
    V1,
    #[serde(rename = "v1-small")]
    V1Small,
    #[serde(rename = "v1-tiny")]
    V1Tiny,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::V1, Preset::V1Small, Preset::V1Tiny];

    pub fn name(self) -> &'static str {
        match self {
            Preset::V1 => "v1",
            Preset::V1Small => "v1-small",
            Preset::V1Tiny => "v1-tiny",
        }
    }

    pub fn config(self) -> ArchConfig {
        let (embedding_dim, num_layers, num_heads, pwff_hidden_dim) = match self {
            Preset::V1 => (2048, 24, 8, 8192),
            Preset::V1Small => (256, 4, 4, 1024),
            Preset::V1Tiny => (128, 2, 4, 512),
        };
        ArchConfig {
            embedding_dim,
            num_layers,
            num_heads,
            pwff_hidden_dim,
            vocab_size: 264,
            max_seq_len: 1024,
            rope_max_wavelength: 10_000.0,
            rope_scale_factor: 1.0,
            layer_norm_eps: 1e-5,
            dropout: 0.1,
        }
    }
}

impl FromStr for Preset {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .with_context(|| {
                let names: Vec<_> = Preset::ALL.iter().map(|p| p.name()).collect();
                format!("unknown model preset `{s}` (known: {})", names.join(", "))
            })
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a configuration is written by people: a preset plus any overrides.
///
/// Accepted as a bare preset name (`"v1-tiny"`) or as a map
/// (`{preset: v1-tiny, layers: 3}`); every `ArchConfig` field name is accepted
/// too, so a serialised `ArchConfig` reads back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchOverrides {
    pub preset: Option<Preset>,
    #[serde(alias = "embedding_dim")]
    pub dim: Option<usize>,
    #[serde(alias = "num_layers")]
    pub layers: Option<usize>,
    #[serde(alias = "num_heads")]
    pub heads: Option<usize>,
    #[serde(alias = "pwff_hidden_dim")]
    pub hidden: Option<usize>,
    pub vocab_size: Option<usize>,
    pub max_seq_len: Option<usize>,
    pub rope_max_wavelength: Option<f64>,
    pub rope_scale_factor: Option<f64>,
    pub layer_norm_eps: Option<f64>,
    pub dropout: Option<f64>,
}

/// An architecture as written: a preset name (or `preset:key=value,...`) or a map of
/// overrides. Told apart by the value's type, so that an error inside either form is
/// reported as itself (an untagged enum would say only that neither form matched).
#[derive(Debug, Clone)]
enum ArchSpec {
    Name(String),
    Overrides(ArchOverrides),
}

impl<'de> Deserialize<'de> for ArchSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::string_or_map::string_or_map(
            deserializer,
            "a model preset (v1, v1-small, v1-tiny) or a map such as `{preset: v1-tiny, layers: 3}`",
            |name| Ok(ArchSpec::Name(name.to_owned())),
            ArchSpec::Overrides,
        )
    }
}

impl TryFrom<ArchSpec> for ArchConfig {
    type Error = anyhow::Error;

    fn try_from(spec: ArchSpec) -> Result<Self> {
        match spec {
            ArchSpec::Name(text) => text.parse(),
            ArchSpec::Overrides(overrides) => overrides.resolve(),
        }
    }
}

impl ArchOverrides {
    /// Applies the overrides to their preset (`v1` when none is named).
    pub fn resolve(&self) -> Result<ArchConfig> {
        let mut c = self.preset.unwrap_or(Preset::V1).config();
        let set = |slot: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        set(&mut c.embedding_dim, self.dim);
        set(&mut c.num_layers, self.layers);
        set(&mut c.num_heads, self.heads);
        set(&mut c.pwff_hidden_dim, self.hidden);
        set(&mut c.vocab_size, self.vocab_size);
        set(&mut c.max_seq_len, self.max_seq_len);
        c.rope_max_wavelength = self.rope_max_wavelength.unwrap_or(c.rope_max_wavelength);
        c.rope_scale_factor = self.rope_scale_factor.unwrap_or(c.rope_scale_factor);
        c.layer_norm_eps = self.layer_norm_eps.unwrap_or(c.layer_norm_eps);
        c.dropout = self.dropout.unwrap_or(c.dropout);
        c.validate()?;
        Ok(c)
    }
}

/// Parses `preset` or `preset:key=value,key=value`, e.g. `v1-tiny:layers=3,heads=2`.
impl FromStr for ArchConfig {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (preset, rest) = s.split_once(':').unwrap_or((s, ""));
        let mut overrides = ArchOverrides {
            preset: Some(preset.parse()?),
            ..Default::default()
        };
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("expected key=value in model spec `{s}`, got `{pair}`"))?;
            let (key, value) = (key.trim(), value.trim());
            let int = || -> Result<usize> {
                value
                    .parse()
                    .with_context(|| format!("`{key}` needs an integer, got `{value}`"))
            };
            let float = || -> Result<f64> {
                value
                    .parse()
                    .with_context(|| format!("`{key}` needs a number, got `{value}`"))
            };
            match key {
                "dim" | "embedding_dim" => overrides.dim = Some(int()?),
                "layers" | "num_layers" => overrides.layers = Some(int()?),
                "heads" | "num_heads" => overrides.heads = Some(int()?),
                "hidden" | "pwff_hidden_dim" => overrides.hidden = Some(int()?),
                "vocab_size" => overrides.vocab_size = Some(int()?),
                "max_seq_len" => overrides.max_seq_len = Some(int()?),
                "rope_max_wavelength" => overrides.rope_max_wavelength = Some(float()?),
                "rope_scale_factor" => overrides.rope_scale_factor = Some(float()?),
                "layer_norm_eps" => overrides.layer_norm_eps = Some(float()?),
                "dropout" => overrides.dropout = Some(float()?),
                other => bail!("unknown model setting `{other}` in `{s}`"),
            }
        }
        overrides.resolve()
    }
}

/// The shape as weights show it, after the preset of that shape if any:
/// `v1-tiny (dim 128, 2 layers, hidden 512, vocab 264)`.
impl fmt::Display for ArchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes = format!(
            "dim {}, {} layers, hidden {}, vocab {}",
            self.embedding_dim, self.num_layers, self.pwff_hidden_dim, self.vocab_size
        );
        match Preset::ALL
            .into_iter()
            .find(|p| p.config().shape() == self.shape())
        {
            Some(preset) => write!(f, "{preset} ({sizes})"),
            None => f.write_str(&sizes),
        }
    }
}

impl ArchConfig {
    /// What weights fix: embedding and hidden widths, layers, vocabulary.
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (
            self.embedding_dim,
            self.num_layers,
            self.pwff_hidden_dim,
            self.vocab_size,
        )
    }

    pub fn preset(preset: Preset) -> Self {
        preset.config()
    }

    pub fn head_dim(&self) -> usize {
        self.embedding_dim / self.num_heads
    }

    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Rejects shapes the forward pass cannot run.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("embedding_dim", self.embedding_dim),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("pwff_hidden_dim", self.pwff_hidden_dim),
            ("vocab_size", self.vocab_size),
            ("max_seq_len", self.max_seq_len),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("model setting `{name}` must be positive");
        }
        if !self.embedding_dim.is_multiple_of(self.num_heads) {
            bail!(
                "embedding_dim {} is not divisible by num_heads {}",
                self.embedding_dim,
                self.num_heads
            );
        }
        // RoPE rotates the two halves of each head against each other.
        if !self.head_dim().is_multiple_of(2) {
            bail!("head dimension {} must be even for RoPE", self.head_dim());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("dropout {} must be in [0, 1)", self.dropout);
        }
        if self.rope_scale_factor < 1.0 {
            bail!("rope_scale_factor {} must be >= 1", self.rope_scale_factor);
        }
        Ok(())
    }

    /// Reads dimensions and layer count from the header of a canonical weights
    /// file (no tensor data is read). The head count cannot be seen in the
    /// shapes: it is `heads`, or V1's 8.
    pub fn infer_from_weights(path: &Path, heads: Option<usize>) -> Result<Self> {
        let header = read_header(path)?;
        let shape_of = |key: &str| {
            header
                .get(key)
                .map(|info| info.shape.clone())
                .with_context(|| format!("{}: no `{key}` tensor", path.display()))
        };
        let (vocab_size, embedding_dim) = match shape_of("embedding.weight")?.as_slice() {
            [v, d] => (*v, *d),
            other => bail!(
                "{}: `embedding.weight` has shape {other:?}, expected 2-D",
                path.display()
            ),
        };
        let layer_ids: BTreeSet<usize> = header
            .keys()
            .filter_map(|k| {
                k.strip_prefix("encoder.layers.")?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let num_layers = layer_ids.len();
        if num_layers == 0 {
            bail!("{}: no `encoder.layers.*` tensors", path.display());
        }
        let pwff_hidden_dim =
            match shape_of("encoder.layers.0.pwff.linear_inner.weight")?.as_slice() {
                [_, h] => *h,
                other => bail!(
                "{}: `encoder.layers.0.pwff.linear_inner.weight` has shape {other:?}, expected 2-D",
                path.display()
            ),
            };
        let config = ArchConfig {
            embedding_dim,
            num_layers,
            num_heads: heads.unwrap_or(Preset::V1.config().num_heads),
            pwff_hidden_dim,
            vocab_size,
            ..Preset::V1.config()
        };
        config
            .validate()
            .with_context(|| format!("{}: inferred configuration is unusable", path.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_shapes() {
        let v1 = Preset::V1.config();
        assert_eq!(
            (
                v1.embedding_dim,
                v1.num_layers,
                v1.num_heads,
                v1.pwff_hidden_dim
            ),
            (2048, 24, 8, 8192)
        );
        let tiny: ArchConfig = "v1-tiny".parse().unwrap();
        assert_eq!(
            (
                tiny.embedding_dim,
                tiny.num_layers,
                tiny.num_heads,
                tiny.pwff_hidden_dim
            ),
            (128, 2, 4, 512)
        );
        assert_eq!(tiny.vocab_size, 264);
        assert_eq!(tiny.max_seq_len, 1024);
    }

    #[test]
    fn string_overrides_apply_on_top_of_the_preset() {
        let c: ArchConfig = "v1-tiny:layers=3, heads=2,dropout=0".parse().unwrap();
        assert_eq!((c.num_layers, c.num_heads, c.dropout), (3, 2, 0.0));
        assert!("v1-huge"
            .parse::<ArchConfig>()
            .unwrap_err()
            .to_string()
            .contains("unknown model preset"));
        assert!("v1-tiny:heads=3".parse::<ArchConfig>().is_err());
        assert!("v1:colour=blue".parse::<ArchConfig>().is_err());
    }

    #[test]
    fn deserialises_from_a_name_a_map_and_its_own_serialisation() {
        let by_name: ArchConfig = serde_json::from_str("\"v1-small\"").unwrap();
        assert_eq!(by_name, Preset::V1Small.config());
        let by_map: ArchConfig =
            serde_json::from_str(r#"{"preset":"v1-tiny","layers":3}"#).unwrap();
        assert_eq!(by_map.num_layers, 3);
        assert_eq!(by_map.embedding_dim, 128);
        let round: ArchConfig =
            serde_json::from_str(&serde_json::to_string(&by_map).unwrap()).unwrap();
        assert_eq!(round, by_map);
        assert!(serde_json::from_str::<ArchConfig>(r#"{"preset":"v1","wings":2}"#).is_err());
        // Each form's own error, not "no variant matched".
        let error = |json: &str| {
            serde_json::from_str::<ArchConfig>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(error(r#""v9""#).contains("unknown model preset `v9`"));
        assert!(
            error(r#"{"heads":"four"}"#).contains("invalid type: string \"four\", expected usize")
        );
        assert!(error("5").contains("expected a model preset (v1, v1-small, v1-tiny) or a map"));
    }
}
