//! SIGReg: a sketched test that representations look standard normal, from
//! 256 random unit projections compared with the Gaussian characteristic
//! function on 17 points of [0, 3].

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::noise::normal_array;

/// Number of random projections.
pub const SLICES: usize = 256;
/// Quadrature points on [0, T_MAX].
pub const POINTS: usize = 17;
pub const T_MAX: f64 = 3.0;
/// Weight of SIGReg in the loss.
pub const COEFFICIENT: f64 = 0.02;

/// The chain's noise for batch `b` of a blob scored with `seed`: arrgen
/// normals of shape `[dim, SLICES]` seeded with `seed + b`.
pub fn chain_noise<B: Backend>(
    seed: u64,
    batch_index: u64,
    dim: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let values = normal_array(seed.wrapping_add(batch_index), dim, SLICES);
    Tensor::from_data(TensorData::new(values, [dim, SLICES]), device)
}

/// Host-side constants of the quadrature: points t, Gaussian CF phi(t), and
/// trapezoid weights times phi.
fn quadrature() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let dt = T_MAX / (POINTS - 1) as f64;
    let t: Vec<f64> = (0..POINTS).map(|j| j as f64 * dt).collect();
    let phi: Vec<f64> = t.iter().map(|t| (-t * t / 2.0).exp()).collect();
    let weights = phi
        .iter()
        .enumerate()
        .map(|(j, phi)| {
            let edge = j == 0 || j == POINTS - 1;
            (if edge { dt } else { 2.0 * dt }) * phi
        })
        .collect::<Vec<f64>>();
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f32s(t), f32s(phi), f32s(weights))
}

/// Unscaled SIGReg of representations `[batch, len, dim]` with projection noise
/// `[dim, SLICES]`: the mean over all batch·len positions (shape `[1]`).
pub fn sigreg<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>) -> Tensor<B, 1> {
    let [batch, len, dim] = rep.dims();
    let device = rep.device();
    let column_norms = noise.clone().powf_scalar(2.0).sum_dim(0).sqrt();
    let projections = noise / column_norms;
    let x = rep.reshape([batch * len, dim]).matmul(projections);
    let (t, phi, weights) = quadrature();
    let point_row = |v: Vec<f32>| {
        Tensor::<B, 1>::from_data(TensorData::new(v, [POINTS]), &device).reshape([1, 1, POINTS])
    };
    let x_t = x.unsqueeze_dim::<3>(2) * point_row(t);
    let cos_mean = x_t.clone().cos().mean_dim(1);
    let sin_mean = x_t.sin().mean_dim(1);
    let cos_gap = cos_mean - point_row(phi);
    let err = cos_gap.clone() * cos_gap + sin_mean.clone() * sin_mean;
    let integrated = (err * point_row(weights))
        .sum_dim(2)
        .mul_scalar(SLICES as f64);
    integrated.mean()
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    type B = burn::backend::NdArray<f32>;

    #[test]
    fn gaussian_data_scores_far_lower_than_wide_data() {
        let device = Default::default();
        let noise = chain_noise::<B>(1, 0, 64, &device);
        let gaussian =
            Tensor::<B, 3>::random([2, 256, 64], Distribution::Normal(0.0, 1.0), &device);
        let low = sigreg(gaussian, noise.clone()).into_scalar();
        // Projections of a unit-variance vector on 256 directions only match the
        // normal CF up to sampling noise, so the floor is O(1), not 0.
        let wide = Tensor::<B, 3>::random([2, 256, 64], Distribution::Normal(0.0, 10.0), &device);
        let high = sigreg(wide, noise).into_scalar();
        assert!(low < 5.0, "gaussian SIGReg {low}");
        assert!(high > 10.0 * low, "wide SIGReg {high} vs gaussian {low}");
    }
}
