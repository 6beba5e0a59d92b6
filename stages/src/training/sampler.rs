//! Seeded choice of training sequences. Every draw is a pure function of
//! (seed, step, micro-batch), so a resumed run needs no generator state.

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::documents::Documents;
use super::settings::Positions;
use crate::contract::{num_sequences, Batch};

/// Independent streams derived from one seed.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Sampling = 1,
    Noise = 2,
    Dropout = 3,
    Embedding = 4,
}

/// A seed for `stream` at (step, micro): splitmix64 over the mixed inputs.
pub fn derive_seed(seed: u64, stream: Stream, step: u64, micro: u64) -> u64 {
    let mut z = seed
        ^ (stream as u64).wrapping_mul(0xA24B_AED4_963E_E407)
        ^ step.wrapping_mul(0x9FB2_1C65_1E98_DF25)
        ^ micro.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Every contract sequence of every document, as (document, sequence index).
pub struct SequenceIndex<'a> {
    docs: &'a dyn Documents,
    seq_len: usize,
    sequences: Vec<(u32, u32)>,
}

impl<'a> SequenceIndex<'a> {
    /// All sequences, or only those holding `seq_len` data bytes.
    pub fn new(docs: &'a dyn Documents, seq_len: usize, full_only: bool) -> Result<Self> {
        let mut sequences = Vec::new();
        for d in 0..docs.len() {
            let len = docs.get(d).len();
            let count = if full_only {
                len / seq_len
            } else {
                num_sequences(len, seq_len)
            };
            sequences.extend((0..count).map(|s| (d as u32, s as u32)));
        }
        ensure!(
            !sequences.is_empty(),
            "the data has no {}sequences of {seq_len} bytes ({} documents)",
            if full_only { "full " } else { "" },
            docs.len()
        );
        Ok(Self {
            docs,
            seq_len,
            sequences,
        })
    }

    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// The batch of the listed sequences (indices into this index).
    pub fn batch(&self, picks: &[usize], positions: Positions) -> Batch {
        let batch = Batch::of_sequences(
            self.seq_len,
            picks.iter().map(|&i| {
                let (d, s) = self.sequences[i];
                (self.docs.get(d as usize), s as usize)
            }),
        );
        match positions {
            Positions::Chain => batch,
            Positions::Local => batch.with_local_positions(),
        }
    }

    /// `count` uniform draws with replacement from `seed`.
    pub fn draw(&self, seed: u64, count: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| rng.random_range(0..self.len()))
            .collect()
    }

    /// `count` distinct sequences (all of them when fewer), in index order.
    pub fn sample_distinct(&self, seed: u64, count: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut picks =
            rand::seq::index::sample(&mut rng, self.len(), count.min(self.len())).into_vec();
        picks.sort_unstable();
        picks
    }
}
