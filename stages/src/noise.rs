//! The `arrgen` noise stream that seeds SIGReg on the chain: the same standard-normal
//! stream as target embeddings (`soma_flow_chain::arrgen`, where the pinned crate
//! versions that define it live), read as a row-major `[rows, cols]` array.

/// `[rows, cols]` standard normals, row-major, as `arrgen.normal_array(seed, [rows, cols], 0, 1)`
/// (arrgen fills in order, so this is the first `rows × cols` values of the stream).
pub fn normal_array(seed: u64, rows: usize, cols: usize) -> Vec<f32> {
    soma_flow_chain::arrgen::normal_array(seed, rows * cols)
}
