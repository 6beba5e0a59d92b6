//! SIGReg: a sketched test that representations look standard normal, from
//! 256 random unit projections compared with the Gaussian characteristic
//! function on 17 points of [0, 3].

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::backend::Pass;
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
fn quadrature() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
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
    (t, phi, weights)
}

/// [`sigreg`] computed as `pass` says.
pub fn sigreg_by<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>, pass: Pass) -> Tensor<B, 1> {
    match pass {
        Pass::Device => sigreg(rep, noise),
        Pass::Host => sigreg_on_host(rep, noise),
    }
}

/// `rep [batch, len, dim]` projected on the unit columns of `noise [dim, SLICES]`.
fn project<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>) -> Tensor<B, 2> {
    let [batch, len, dim] = rep.dims();
    let column_norms = noise.clone().powf_scalar(2.0).sum_dim(0).sqrt();
    rep.reshape([batch * len, dim]).matmul(noise / column_norms)
}

/// Unscaled SIGReg of representations `[batch, len, dim]` with projection noise
/// `[dim, SLICES]`: the mean over all batch·len positions (shape `[1]`).
pub fn sigreg<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>) -> Tensor<B, 1> {
    let device = rep.device();
    let x = project(rep, noise);
    let (t, phi, weights) = quadrature();
    let point_row = |v: Vec<f64>| {
        let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
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

/// [`sigreg`] with its value and its gradient with respect to the projections computed
/// in one pass on the host, in f64: per projection one `sin_cos`, the other 16 points
/// by rotation, instead of `[batch·len, 256, 17]` tensors of cos and sin and their
/// derivatives. The result is `value + Σ x·g − Σ detach(x·g)`: it equals `value`, and
/// autodiff carries the gradient `g` back into `rep` through the projection. With
/// `K = 256` projections and `N = batch·len` positions,
/// `c_j = mean_k cos(t_j x_k)`, `s_j = mean_k sin(t_j x_k)`,
/// `err = K Σ_j w_j ((c_j − phi_j)² + s_j²)`, the value is `mean err`, and
/// `∂value/∂x_k = (2/N) Σ_j w_j t_j (s_j cos(t_j x_k) − (c_j − phi_j) sin(t_j x_k))`.
/// Rows are independent and summed in order: the result is the same on any number of
/// threads.
pub fn sigreg_on_host<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>) -> Tensor<B, 1> {
    use rayon::prelude::*;
    let device = rep.device();
    let x = project(rep, noise);
    let [rows, _] = x.dims();
    let values: Vec<f32> = x
        .to_data()
        .convert::<f32>()
        .into_vec()
        .expect("converted to f32");
    let (t, phi, weights) = quadrature();
    let dt = t[1];
    // The points' rotations of one projection: (cos, sin) of t_j·x for every j.
    let rotations = |x: f32| {
        let (s1, c1) = (dt * f64::from(x)).sin_cos();
        let (mut c, mut s) = (1.0f64, 0.0f64);
        std::array::from_fn::<(f64, f64), POINTS, _>(|_| {
            let here = (c, s);
            (c, s) = (c * c1 - s * s1, s * c1 + c * s1);
            here
        })
    };
    let scale = 2.0 / rows as f64;
    let per_row: Vec<(f64, Vec<f32>)> = values
        .par_chunks(SLICES)
        .map(|row| {
            let mut cos_mean = [0.0f64; POINTS];
            let mut sin_mean = [0.0f64; POINTS];
            for &x in row {
                for (j, (c, s)) in rotations(x).into_iter().enumerate() {
                    cos_mean[j] += c / SLICES as f64;
                    sin_mean[j] += s / SLICES as f64;
                }
            }
            let err: f64 = (0..POINTS)
                .map(|j| weights[j] * ((cos_mean[j] - phi[j]).powi(2) + sin_mean[j].powi(2)))
                .sum::<f64>()
                * SLICES as f64;
            let grad = row
                .iter()
                .map(|&x| {
                    let g: f64 = rotations(x)
                        .into_iter()
                        .enumerate()
                        .map(|(j, (c, s))| {
                            weights[j] * t[j] * (sin_mean[j] * c - (cos_mean[j] - phi[j]) * s)
                        })
                        .sum();
                    (g * scale) as f32
                })
                .collect();
            (err, grad)
        })
        .collect();
    let value = per_row.iter().map(|(err, _)| err).sum::<f64>() / rows as f64;
    let grad: Vec<f32> = per_row.into_iter().flat_map(|(_, g)| g).collect();
    let grad = Tensor::<B, 2>::from_data(TensorData::new(grad, [rows, SLICES]), &device);
    let linear = (x * grad).sum();
    (linear.clone() - linear.detach()).add_scalar(value)
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
