//! The `arrgen` noise stream that seeds SIGReg on the chain.
//!
//! The stream is only reproducible with the exact crate versions pinned in
//! Cargo.toml (rand 0.9, rand_distr 0.5, ndarray-rand 0.16): the generator, the
//! normal sampler and the fill order all take part in it.

use ndarray::Array2;
use ndarray_rand::rand_distr::Normal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `[rows, cols]` standard normals, row-major, as `arrgen.normal_array(seed, [rows, cols], 0, 1)`.
pub fn normal_array(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0f32).expect("unit normal is valid");
    let array = Array2::random_using((rows, cols), normal, &mut rng);
    array.iter().copied().collect()
}
