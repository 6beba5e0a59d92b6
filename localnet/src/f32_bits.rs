//! Serde for `f32` as its IEEE-754 bit pattern (a `u32`): BCS has no floats,
//! and the ledger file must round-trip thresholds bit for bit.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u32(value.to_bits())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    u32::deserialize(deserializer).map(f32::from_bits)
}
