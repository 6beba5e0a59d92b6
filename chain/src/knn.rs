//! Weighted-KNN routing of a target to models (§7.3), bit for bit.
//!
//! Candidates are the Active models in ascending id order; voting power is the
//! sqrt-stake share (f64, cast to f32); the score is the f32 cosine distance
//! divided by `vp + 1e-10`; the k lowest scores win, sorted with the chain's
//! unstable sort on `f32::total_cmp`. Sums use ndarray 0.16's `sum_axis` (as
//! burn-ndarray 0.19.1 does): its eight-way unrolled accumulation gives other
//! bits than a naive loop.

use ndarray_016::{Array1, Array2, Axis};

use crate::ObjectID;

/// One candidate: its id, embedding and stake (`staking_pool.soma_balance`).
pub struct Candidate<'a> {
    pub id: ObjectID,
    pub embedding: &'a [f32],
    pub stake: u64,
}

/// Why routing cannot run (the chain panics here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model} has an embedding of length {actual}, the target has {expected}")]
pub struct DimensionMismatch {
    pub model: ObjectID,
    pub expected: usize,
    pub actual: usize,
}

/// `vp_i = (sqrt(s_i) / Σ sqrt(s_j)) as f32`, or `1/n` when every stake is 0.
pub fn voting_power(stakes: &[u64]) -> Vec<f32> {
    let roots: Vec<f64> = stakes.iter().map(|&s| (s as f64).sqrt()).collect();
    let total: f64 = roots.iter().fold(0.0, |acc, r| acc + r);
    if total == 0.0 {
        let equal = 1.0 / stakes.len() as f32;
        return vec![equal; stakes.len()];
    }
    roots.iter().map(|r| (r / total) as f32).collect()
}

/// The scores `dist_i / (vp_i + 1e-10)` of every candidate, in candidate order.
pub fn scores(target: &[f32], candidates: &[Candidate<'_>]) -> Result<Vec<f32>, DimensionMismatch> {
    let dim = target.len();
    let n = candidates.len();
    let mut flat = Vec::with_capacity(n * dim);
    for c in candidates {
        if c.embedding.len() != dim {
            return Err(DimensionMismatch {
                model: c.id,
                expected: dim,
                actual: c.embedding.len(),
            });
        }
        flat.extend_from_slice(c.embedding);
    }
    let Ok(embeddings) = Array2::from_shape_vec((n, dim), flat) else {
        unreachable!("n × dim values were collected")
    };
    let t = Array1::from(target.to_vec()).insert_axis(Axis(0));
    let dots = (&embeddings * &t).sum_axis(Axis(1));
    let target_norm = (&t * &t).sum_axis(Axis(1))[0].sqrt().max(1e-8);
    let norms = (&embeddings * &embeddings)
        .sum_axis(Axis(1))
        .mapv(|s| s.sqrt().max(1e-8));
    let vp = voting_power(&candidates.iter().map(|c| c.stake).collect::<Vec<_>>());
    Ok((0..n)
        .map(|i| {
            let cos = dots[i] / (target_norm * norms[i]);
            (1.0 - cos) / (vp[i] + 1e-10)
        })
        .collect())
}

/// The `k = min(k, n)` selected model ids, in selection order.
pub fn select(
    target: &[f32],
    candidates: &[Candidate<'_>],
    k: usize,
) -> Result<Vec<ObjectID>, DimensionMismatch> {
    if candidates.is_empty() || k == 0 {
        return Ok(Vec::new());
    }
    let scores = scores(target, candidates)?;
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    Ok(order
        .into_iter()
        .take(k.min(candidates.len()))
        .map(|i| candidates[i].id)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectID {
        ObjectID([n; 32])
    }

    /// Hand-computed: target (1, 0); models A (1, 0) stake 1, B (0, 1) stake 4,
    /// C (-1, 0) stake 9. Roots 1, 2, 3 (sum 6): vp 1/6, 1/3, 1/2. Distances 0,
    /// 1, 2. Scores 0, 3, 4 → A, B, C; with k = 2, A then B.
    #[test]
    fn hand_computed_case() {
        let (a, b, c) = ([1.0f32, 0.0], [0.0f32, 1.0], [-1.0f32, 0.0]);
        let cands = [
            Candidate {
                id: id(1),
                embedding: &a,
                stake: 1,
            },
            Candidate {
                id: id(2),
                embedding: &b,
                stake: 4,
            },
            Candidate {
                id: id(3),
                embedding: &c,
                stake: 9,
            },
        ];
        let s = scores(&[1.0, 0.0], &cands).unwrap();
        assert_eq!(s[0], 0.0);
        assert!((s[1] - 3.0).abs() < 1e-5, "{s:?}");
        assert!((s[2] - 4.0).abs() < 1e-5, "{s:?}");
        assert_eq!(select(&[1.0, 0.0], &cands, 2).unwrap(), vec![id(1), id(2)]);
        assert_eq!(
            select(&[1.0, 0.0], &cands, 9).unwrap(),
            vec![id(1), id(2), id(3)]
        );
    }

    /// Stake outweighs distance: B is farther but holds 100× the stake.
    #[test]
    fn stake_share_weights_the_distance() {
        let (a, b) = ([1.0f32, 0.1], [1.0f32, 0.5]);
        let cands = [
            Candidate {
                id: id(1),
                embedding: &a,
                stake: 1,
            },
            Candidate {
                id: id(2),
                embedding: &b,
                stake: 10_000,
            },
        ];
        assert_eq!(select(&[1.0, 0.0], &cands, 1).unwrap(), vec![id(2)]);
    }

    #[test]
    fn zero_stake_gives_equal_power_and_mismatch_is_an_error() {
        assert_eq!(voting_power(&[0, 0, 0, 0]), vec![0.25; 4]);
        let a = [1.0f32, 0.0, 0.0];
        let cands = [Candidate {
            id: id(1),
            embedding: &a,
            stake: 1,
        }];
        let err = select(&[1.0, 0.0], &cands, 1).unwrap_err();
        assert_eq!((err.expected, err.actual), (2, 3));
    }

    /// The unrolled sum differs from a left fold on this input; the scores
    /// must use the former.
    #[test]
    fn sums_are_the_unrolled_ones() {
        // With all-one targets the products are the embedding: a left fold
        // gives 1e8 + 1 = 1e8, − 1e8 = 0, then six ones; the eight lanes
        // cancel differently.
        let target = vec![1.0f32; 9];
        let mut emb = vec![1.0f32; 9];
        emb[0] = 1e8;
        emb[2] = -1e8;
        let unrolled = (&Array1::from(emb.clone()) * &Array1::from(target.clone())).sum();
        let naive = emb
            .iter()
            .zip(&target)
            .fold(0.0f32, |acc, (a, b)| acc + a * b);
        assert_ne!(
            unrolled.to_bits(),
            naive.to_bits(),
            "pick an input where the orders differ"
        );
        let cands = [Candidate {
            id: id(1),
            embedding: &emb,
            stake: 1,
        }];
        let tn = target
            .iter()
            .map(|x| x * x)
            .collect::<Array1<f32>>()
            .sum()
            .sqrt();
        let en = emb
            .iter()
            .map(|x| x * x)
            .collect::<Array1<f32>>()
            .sum()
            .sqrt();
        let expected = (1.0 - unrolled / (tn * en)) / (1.0 + 1e-10);
        assert_eq!(
            scores(&target, &cands).unwrap()[0].to_bits(),
            expected.to_bits()
        );
    }
}
