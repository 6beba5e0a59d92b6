//! The canonical safetensors layout: every key and shape a V1-style weights
//! file holds, and how a fresh model initialises each of them.
//!
//! This table is the single description of the file format; loading,
//! saving and validation all follow it.

use super::config::ArchConfig;

/// How a freshly initialised model fills a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamInit {
    /// Kaiming uniform with gain 1/sqrt(3) over `fan_in` (Burn's Linear default).
    KaimingUniform {
        fan_in: usize,
    },
    Ones,
    Zeros,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub key: String,
    pub shape: Vec<usize>,
    pub init: ParamInit,
}

impl ParamSpec {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

fn linear(out: &mut Vec<ParamSpec>, prefix: &str, d_in: usize, d_out: usize) {
    // Weights are [in, out]; Burn initialises the bias with the weight's fan-in too.
    let init = ParamInit::KaimingUniform { fan_in: d_in };
    out.push(ParamSpec {
        key: format!("{prefix}.weight"),
        shape: vec![d_in, d_out],
        init,
    });
    out.push(ParamSpec {
        key: format!("{prefix}.bias"),
        shape: vec![d_out],
        init,
    });
}

fn norm(out: &mut Vec<ParamSpec>, prefix: &str, dim: usize) {
    out.push(ParamSpec {
        key: format!("{prefix}.gamma"),
        shape: vec![dim],
        init: ParamInit::Ones,
    });
    out.push(ParamSpec {
        key: format!("{prefix}.beta"),
        shape: vec![dim],
        init: ParamInit::Zeros,
    });
}

/// Prefix of layer `i`'s tensors.
pub fn layer_prefix(i: usize) -> String {
    format!("encoder.layers.{i}")
}

/// Every tensor of a model with this configuration, in the order the model
/// is built.
pub fn canonical_layout(config: &ArchConfig) -> Vec<ParamSpec> {
    let (d, h, v) = (
        config.embedding_dim,
        config.pwff_hidden_dim,
        config.vocab_size,
    );
    let mut specs = Vec::with_capacity(4 + 16 * config.num_layers);
    // The embedding acts as a Linear(vocab -> dim) on one-hot inputs, so its
    // fan-in is the vocabulary size.
    specs.push(ParamSpec {
        key: "embedding.weight".into(),
        shape: vec![v, d],
        init: ParamInit::KaimingUniform { fan_in: v },
    });
    for i in 0..config.num_layers {
        let p = layer_prefix(i);
        norm(&mut specs, &format!("{p}.norm_1"), d);
        for part in ["query", "key", "value", "output"] {
            linear(&mut specs, &format!("{p}.attention.{part}"), d, d);
        }
        norm(&mut specs, &format!("{p}.norm_2"), d);
        linear(&mut specs, &format!("{p}.pwff.linear_inner"), d, h);
        linear(&mut specs, &format!("{p}.pwff.linear_outer"), h, d);
    }
    norm(&mut specs, "final_norm", d);
    linear(&mut specs, "predictor", d, v);
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Preset;

    #[test]
    fn v1_layout_has_about_1_21e9_parameters() {
        let layout = canonical_layout(&Preset::V1.config());
        assert_eq!(layout.len(), 1 + 24 * 16 + 2 + 2);
        let total: usize = layout.iter().map(ParamSpec::num_elements).sum();
        assert!((1.20e9..1.22e9).contains(&(total as f64)), "{total}");
    }
}
