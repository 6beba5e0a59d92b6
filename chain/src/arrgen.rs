//! `arrgen::normal_array` (§7.2): the standard-normal stream a target embedding
//! is drawn from, `normal_array(seed, [dim], 0, 1)`.
//!
//! The chain seeds rand 0.9 `StdRng` (ChaCha12) with `seed_from_u64` and fills
//! the array with rand_distr 0.5 `Normal<f32>` through ndarray-rand, in order.
//! The values depend on all three crates, so their versions are pinned in
//! Cargo.toml exactly as in `stages/Cargo.toml` (whose SIGReg noise is the same
//! stream). A prefix of a longer array equals the shorter array.

use ndarray::Array1;
use ndarray_rand::rand_distr::Normal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `dim` standard normals from `seed`, as `arrgen.normal_array(seed, [dim], 0, 1)`.
pub fn normal_array(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Mean 0 and standard deviation 1 are finite, so `Normal::new` cannot fail.
    let Ok(normal) = Normal::new(0.0f32, 1.0f32) else {
        unreachable!("the unit normal has a finite, positive standard deviation")
    };
    Array1::random_using(dim, normal, &mut rng).to_vec()
}

/// The embedding of the target whose seed is `seed`: `normal_array(seed, [dim])`.
pub fn target_embedding(seed: u64, dim: usize) -> Vec<f32> {
    normal_array(seed, dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §7.2: `normal_array(42, [4])`, compared bit for bit.
    #[test]
    fn seed_42_matches_the_reference() {
        let bits: Vec<u32> = normal_array(42, 4).iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            [
                u32::from_le_bytes([0x39, 0x30, 0x8e, 0x3d]),
                u32::from_le_bytes([0xee, 0x20, 0x08, 0x3e]),
                u32::from_le_bytes([0x69, 0x70, 0x86, 0x3e]),
                u32::from_le_bytes([0x46, 0xb5, 0x66, 0xbe]),
            ]
        );
        assert_close(
            &normal_array(42, 4),
            &[0.06942791, 0.13293812, 0.26257637, -0.22530088],
        );
    }

    /// The document prints 8 significant digits (numpy's float32 form), not
    /// Rust's shortest round-trip form: compare within half a unit of the last.
    fn assert_close(actual: &[f32], printed: &[f32]) {
        assert_eq!(actual.len(), printed.len());
        for (a, p) in actual.iter().zip(printed) {
            assert!(
                (a - p).abs() <= 5e-8 * p.abs().max(1.0),
                "{actual:?} vs {printed:?}"
            );
        }
    }

    /// §7.2: the target seed of `derive_id(d_create, 0)` and its first values.
    #[test]
    fn create_model_digest_seed_matches_the_reference() {
        let digest = crate::Digest(hex_literal(
            "ecb1bcb553fc20d788a4a8a8804139609f55741b32655a159cf240c84616e331",
        ));
        let seed = crate::target_seed(&digest, 0);
        assert_eq!(seed, 14782369475130608935);
        assert_close(
            &normal_array(seed, 4),
            &[1.1225333, 0.9132287, -0.4843238, 0.4196187],
        );
    }

    #[test]
    fn a_prefix_of_a_longer_array_is_the_shorter_array() {
        let long = normal_array(7, 2048);
        assert_eq!(long.len(), 2048);
        assert_eq!(&long[..16], normal_array(7, 16).as_slice());
        assert_ne!(normal_array(7, 16), normal_array(8, 16));
    }

    fn hex_literal(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }
}
