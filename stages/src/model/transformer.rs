//! The V1 transformer as a Burn module.
//!
//! Field names mirror the canonical safetensors keys (see `layout`), so the
//! module tree and the file format read the same.

use anyhow::Result;
use burn::module::{Ignored, Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::distr::Uniform;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::attention::causal_attention;
use super::config::ArchConfig;
use super::gelu::gelu;
use super::layout::{canonical_layout, layer_prefix, ParamInit, ParamSpec};
use super::linear::linear;
use crate::backend::{passes, Pass};

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub query: Linear<B>,
    pub key: Linear<B>,
    pub value: Linear<B>,
    pub output: Linear<B>,
    num_heads: usize,
}

#[derive(Module, Debug)]
pub struct PositionWiseFeedForward<B: Backend> {
    pub linear_inner: Linear<B>,
    pub linear_outer: Linear<B>,
}

#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    pub norm_1: LayerNorm<B>,
    pub attention: Attention<B>,
    pub norm_2: LayerNorm<B>,
    pub pwff: PositionWiseFeedForward<B>,
    dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub layers: Vec<EncoderLayer<B>>,
}

/// The SOMA V1 model: `rep = encode(tokens, positions)`, `logits = predict(rep)`.
#[derive(Module, Debug)]
pub struct SomaModel<B: Backend> {
    pub embedding: Embedding<B>,
    pub encoder: Encoder<B>,
    pub final_norm: LayerNorm<B>,
    pub predictor: Linear<B>,
    config: Ignored<ArchConfig>,
}

/// Provides the tensor stored under a canonical key.
pub(crate) trait ParamSource<B: Backend> {
    fn take<const D: usize>(&mut self, spec: &ParamSpec) -> Result<Tensor<B, D>>;
}

/// Pulls parameters in layout order, so every source sees the same sequence.
struct Builder<'a, B: Backend, S: ParamSource<B>> {
    specs: std::vec::IntoIter<ParamSpec>,
    source: &'a mut S,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend, S: ParamSource<B>> Builder<'_, B, S> {
    fn next<const D: usize>(&mut self, key: &str) -> Result<Param<Tensor<B, D>>> {
        let spec = self
            .specs
            .next()
            .filter(|s| s.key == key)
            .unwrap_or_else(|| panic!("model structure and canonical layout disagree at `{key}`"));
        Ok(Param::from_tensor(self.source.take(&spec)?))
    }

    fn linear(&mut self, prefix: &str) -> Result<Linear<B>> {
        Ok(Linear {
            weight: self.next(&format!("{prefix}.weight"))?,
            bias: Some(self.next(&format!("{prefix}.bias"))?),
        })
    }

    fn norm(
        &mut self,
        prefix: &str,
        config: &ArchConfig,
        device: &B::Device,
    ) -> Result<LayerNorm<B>> {
        let mut norm = LayerNormConfig::new(config.embedding_dim)
            .with_epsilon(config.layer_norm_eps)
            .init(device);
        norm.gamma = self.next(&format!("{prefix}.gamma"))?;
        norm.beta = self.next(&format!("{prefix}.beta"))?;
        Ok(norm)
    }
}

impl<B: Backend> SomaModel<B> {
    /// Builds the model from any parameter source (fresh init, a weights file).
    pub(crate) fn build<S: ParamSource<B>>(
        config: &ArchConfig,
        device: &B::Device,
        source: &mut S,
    ) -> Result<Self> {
        config.validate()?;
        let mut b = Builder {
            specs: canonical_layout(config).into_iter(),
            source,
            _backend: std::marker::PhantomData,
        };
        let embedding = Embedding {
            weight: b.next("embedding.weight")?,
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = layer_prefix(i);
            let norm_1 = b.norm(&format!("{p}.norm_1"), config, device)?;
            let attention = Attention {
                query: b.linear(&format!("{p}.attention.query"))?,
                key: b.linear(&format!("{p}.attention.key"))?,
                value: b.linear(&format!("{p}.attention.value"))?,
                output: b.linear(&format!("{p}.attention.output"))?,
                num_heads: config.num_heads,
            };
            let norm_2 = b.norm(&format!("{p}.norm_2"), config, device)?;
            let pwff = PositionWiseFeedForward {
                linear_inner: b.linear(&format!("{p}.pwff.linear_inner"))?,
                linear_outer: b.linear(&format!("{p}.pwff.linear_outer"))?,
            };
            layers.push(EncoderLayer {
                norm_1,
                attention,
                norm_2,
                pwff,
                dropout: DropoutConfig::new(config.dropout).init(),
            });
        }
        let final_norm = b.norm("final_norm", config, device)?;
        let predictor = b.linear("predictor")?;
        Ok(Self {
            embedding,
            encoder: Encoder { layers },
            final_norm,
            predictor,
            config: Ignored(config.clone()),
        })
    }

    /// A freshly initialised model. Values are drawn on the host from `seed`,
    /// so the same seed gives the same weights on every backend, whatever else
    /// uses the backend's global generator meanwhile.
    pub fn init(config: &ArchConfig, seed: u64, device: &B::Device) -> Self {
        let mut source = FreshInit {
            device: device.clone(),
            rng: StdRng::seed_from_u64(seed),
        };
        Self::build(config, device, &mut source)
            .expect("fresh initialisation cannot fail for a validated configuration")
    }

    pub fn config(&self) -> &ArchConfig {
        &self.config.0
    }

    /// Final-layer representations `[batch, len, dim]` for token ids and their
    /// explicit integer positions (both `[batch, len]`), computed as the chain does.
    pub fn encode(&self, tokens: Tensor<B, 2, Int>, positions: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.encode_by(tokens, positions, Pass::Device)
    }

    /// [`Self::encode`] with the attention, linear layers and GELU computed as `pass`
    /// says.
    /// On a device, batch rows go through in parts whose attention scores and
    /// feed-forward activations fit [`crate::backend::DEVICE_ELEMENTS`] (rows are
    /// independent: the same values).
    pub fn encode_by(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        pass: Pass,
    ) -> Tensor<B, 3> {
        let [batch, len] = tokens.dims();
        let c = self.config();
        let per_row = len * (c.num_heads * len).max(c.pwff_hidden_dim);
        let passes = passes::<B>(&tokens.device(), batch, per_row);
        if passes.len() <= 1 {
            return self.encode_rows(tokens, positions, pass);
        }
        let parts = passes
            .into_iter()
            .map(|part| {
                self.encode_rows(
                    tokens.clone().slice([part.clone(), 0..len]),
                    positions.clone().slice([part, 0..len]),
                    pass,
                )
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    fn encode_rows(
        &self,
        tokens: Tensor<B, 2, Int>,
        positions: Tensor<B, 2, Int>,
        pass: Pass,
    ) -> Tensor<B, 3> {
        let rope = Rope::new(positions, self.config());
        let mut x = self.embedding.forward(tokens);
        for layer in &self.encoder.layers {
            x = layer.forward(x, &rope, pass);
        }
        self.final_norm.forward(x)
    }

    /// Next-token logits `[batch, len, vocab]` from representations, computed as the
    /// chain does.
    pub fn predict(&self, rep: Tensor<B, 3>) -> Tensor<B, 3> {
        self.predict_by(rep, Pass::Device)
    }

    /// [`Self::predict`] with the product computed as `pass` says.
    pub fn predict_by(&self, rep: Tensor<B, 3>, pass: Pass) -> Tensor<B, 3> {
        linear(&self.predictor, rep, pass)
    }
}

struct FreshInit<B: Backend> {
    device: B::Device,
    rng: StdRng,
}

impl<B: Backend> ParamSource<B> for FreshInit<B> {
    fn take<const D: usize>(&mut self, spec: &ParamSpec) -> Result<Tensor<B, D>> {
        let shape: [usize; D] = spec
            .shape
            .clone()
            .try_into()
            .expect("layout rank matches module rank");
        Ok(match spec.init {
            ParamInit::KaimingUniform { fan_in } => {
                // gain 1/sqrt(3) cancels the sqrt(3) of the uniform bound.
                let bound = 1.0 / (fan_in as f32).sqrt();
                let uniform = Uniform::new_inclusive(-bound, bound).expect("finite bound");
                let values: Vec<f32> = (&mut self.rng)
                    .sample_iter(uniform)
                    .take(spec.num_elements())
                    .collect();
                Tensor::from_data(TensorData::new(values, shape), &self.device)
            }
            ParamInit::Ones => Tensor::ones(shape, &self.device),
            ParamInit::Zeros => Tensor::zeros(shape, &self.device),
        })
    }
}

/// Rotary angles for one batch, shared by every layer.
struct Rope<B: Backend> {
    /// `[batch, len, 1, 1, head_dim / 2]`, broadcast over heads and halves.
    cos: Tensor<B, 5>,
    /// `[batch, len, 1, 2, head_dim / 2]`: `-sin` for the first half, `sin` for the
    /// second.
    signed_sin: Tensor<B, 5>,
}

impl<B: Backend> Rope<B> {
    fn new(positions: Tensor<B, 2, Int>, config: &ArchConfig) -> Self {
        let half = config.head_dim() / 2;
        let device = positions.device();
        let timescale: Vec<f32> = (0..half)
            .map(|i| {
                let fraction = (2 * i) as f64 / config.head_dim() as f64;
                config.rope_max_wavelength.powf(fraction) as f32
            })
            .collect();
        let timescale = Tensor::<B, 1>::from_data(TensorData::new(timescale, [half]), &device)
            .reshape([1, 1, half]);
        let positions: Tensor<B, 3> = positions.float().unsqueeze_dim(2);
        let angle = (positions / timescale)
            .div_scalar(config.rope_scale_factor)
            .unsqueeze_dim::<4>(2)
            .unsqueeze_dim::<5>(3);
        let sin = angle.clone().sin();
        Self {
            cos: angle.cos(),
            signed_sin: Tensor::cat(vec![sin.clone().neg(), sin], 3),
        }
    }

    /// Rotates the first half of each head against the second half:
    /// `(x1·cos − x2·sin, x2·cos + x1·sin)`, as `x·cos + swap(x)·signed_sin`, where
    /// `swap` exchanges the halves (a view, not a copy). `a + b·(−s)` is `a − b·s`
    /// exactly, so the values are the chain's bit for bit.
    fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, len, heads, head_dim] = x.dims();
        let x = x.reshape([batch, len, heads, 2, head_dim / 2]);
        let rotated = x.clone() * self.cos.clone() + x.flip([3]) * self.signed_sin.clone();
        rotated.reshape([batch, len, heads, head_dim])
    }
}

impl<B: Backend> Attention<B> {
    fn forward(&self, x: Tensor<B, 3>, rope: &Rope<B>, pass: Pass) -> Tensor<B, 3> {
        let [batch, len, dim] = x.dims();
        let split = |t: Tensor<B, 3>| t.reshape([batch, len, self.num_heads, dim / self.num_heads]);
        let q = rope.apply(split(linear(&self.query, x.clone(), pass)));
        let k = rope.apply(split(linear(&self.key, x.clone(), pass)));
        let v = split(linear(&self.value, x, pass));
        linear(&self.output, causal_attention(q, k, v, pass), pass)
    }
}

impl<B: Backend> PositionWiseFeedForward<B> {
    fn forward(&self, x: Tensor<B, 3>, pass: Pass) -> Tensor<B, 3> {
        let hidden = gelu(linear(&self.linear_inner, x, pass), pass);
        linear(&self.linear_outer, hidden, pass)
    }
}

impl<B: Backend> EncoderLayer<B> {
    /// Pre-norm residual block; dropout acts only on autodiff backends (training).
    fn forward(&self, x: Tensor<B, 3>, rope: &Rope<B>, pass: Pass) -> Tensor<B, 3> {
        let branch = self
            .attention
            .forward(self.norm_1.forward(x.clone()), rope, pass);
        let x = x + self.dropout.forward(branch);
        let branch = self.pwff.forward(self.norm_2.forward(x.clone()), pass);
        x + self.dropout.forward(branch)
    }
}
