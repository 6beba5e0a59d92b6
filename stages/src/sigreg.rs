//! SIGReg: a sketched test that representations look standard normal, from
//! 256 random unit projections compared with the Gaussian characteristic
//! function on 17 points of [0, 3].

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::backend::{passes, Pass};
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
/// `[dim, SLICES]`: the mean over all batch·len positions (shape `[1]`), computed as
/// the chain computes it. On the CPU inference backend (scores, embeddings) by
/// [`exact_on_host`], which gives the same value bit for bit; elsewhere by
/// [`unfused`].
pub fn sigreg<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>) -> Tensor<B, 1> {
    #[cfg(feature = "ndarray")]
    {
        use crate::host::{kernel, same_type, Kernel};
        if kernel::<B>(Pass::Device) == Some(Kernel::Inference) {
            return same_type(exact_on_host(same_type(rep), same_type(noise)));
        }
    }
    unfused(rep, noise)
}

/// [`sigreg`] with Burn tensor operations, as the chain's runtime runs them: the
/// `[batch·len, 256, 17]` products, their cos and sin, means and sums as tensors.
/// On a device, positions go through in parts whose products fit
/// [`crate::backend::DEVICE_ELEMENTS`], their sums added (positions are independent).
pub fn unfused<B: Backend>(rep: Tensor<B, 3>, noise: Tensor<B, 2>) -> Tensor<B, 1> {
    let device = rep.device();
    let x = project(rep, noise);
    let [positions, slices] = x.dims();
    let passes = passes::<B>(&device, positions, slices * POINTS);
    if passes.len() <= 1 {
        return integrated(x).mean();
    }
    let sums: Vec<Tensor<B, 1>> = passes
        .into_iter()
        .map(|part| integrated(x.clone().slice([part, 0..slices])).sum())
        .collect();
    Tensor::cat(sums, 0).sum().div_scalar(positions as f64)
}

/// SIGReg's integral at each position of `x [positions, SLICES]` (shape `[positions,
/// 1, 1]`), as the chain computes it.
fn integrated<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 3> {
    let device = x.device();
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
    (err * point_row(weights))
        .sum_dim(2)
        .mul_scalar(SLICES as f64)
}

/// [`unfused`] on the CPU inference backend, bit for bit, in one parallel pass over
/// the positions instead of eight passes over `[batch·len, 256, 17]` tensors (one
/// thread each). It repeats burn-ndarray's `f32` operations in their order: the
/// product `x·t`, cos and sin through `f64`, the means over the 256 projections
/// summed one after the other (ndarray's `sum_axis` over an axis that is not the
/// innermost), the sums over the 17 points and over positions by ndarray's own `sum`
/// (an 8-way unrolled fold). A test compares it with [`unfused`] bit for bit.
#[cfg(feature = "ndarray")]
fn exact_on_host(
    rep: Tensor<crate::host::Inner, 3>,
    noise: Tensor<crate::host::Inner, 2>,
) -> Tensor<crate::host::Inner, 1> {
    use ndarray::ArrayView1;
    use rayon::prelude::*;
    let device = rep.device();
    let x = crate::host::to_host(project(rep, noise).into_primitive().tensor());
    let as_f32 = |v: Vec<f64>| -> [f32; POINTS] { std::array::from_fn(|j| v[j] as f32) };
    let (t, phi, weights) = quadrature();
    let (t, phi, weights) = (as_f32(t), as_f32(phi), as_f32(weights));
    let slices = SLICES as f32;
    let per_position: Vec<f32> = x
        .par_chunks(SLICES)
        .map(|row| {
            let (mut cos_sum, mut sin_sum) = ([0.0f32; POINTS], [0.0f32; POINTS]);
            for &x in row {
                for j in 0..POINTS {
                    let angle = f64::from(x * t[j]);
                    cos_sum[j] += angle.cos() as f32;
                    sin_sum[j] += angle.sin() as f32;
                }
            }
            let err: [f32; POINTS] = std::array::from_fn(|j| {
                let (cos_gap, sin_mean) = (cos_sum[j] / slices - phi[j], sin_sum[j] / slices);
                (cos_gap * cos_gap + sin_mean * sin_mean) * weights[j]
            });
            ArrayView1::from(&err[..]).sum() * slices
        })
        .collect();
    let mean = ArrayView1::from(&per_position[..]).sum() / per_position.len() as f32;
    Tensor::from_data(TensorData::new(vec![mean], [1]), &device)
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

    /// Scores need the chain's value to the last bit: the host pass must give it.
    #[test]
    fn the_host_pass_gives_the_unfused_value_bit_for_bit() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let rng = &mut StdRng::seed_from_u64(5);
        let device = Default::default();
        for (shape, spread) in [([1, 1024, 128], 1.0), ([3, 37, 64], 3.0), ([2, 9, 16], 0.2)] {
            let values: Vec<f32> = (0..shape.iter().product())
                .map(|_| rng.random_range(-spread..spread))
                .collect();
            let rep = Tensor::<B, 3>::from_data(TensorData::new(values, shape), &device);
            let noise = chain_noise::<B>(3, 1, shape[2], &device);
            let host = sigreg(rep.clone(), noise.clone()).into_scalar();
            let reference = unfused(rep, noise).into_scalar();
            assert_eq!(
                host.to_bits(),
                reference.to_bits(),
                "{shape:?}: {host} vs {reference}"
            );
        }
    }
}
