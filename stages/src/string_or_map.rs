//! Settings written either as a string or as a map: `arch: v1-tiny` or
//! `arch: {preset: v1-tiny, layers: 3}`, a bare URL or `{url, sha256}`, a network's
//! name or its map.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// `T` from a string (`from_str`, which may refuse it: the message is the error) or
/// from a map (read as `M`, then `from_map`), told apart by the value's type. An error
/// inside the map is reported as itself, with its path (serde's `untagged` would say
/// only that no form matched).
pub(crate) fn string_or_map<'de, D, T, M>(
    deserializer: D,
    expecting: &'static str,
    from_str: fn(&str) -> Result<T, String>,
    from_map: fn(M) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    M: Deserialize<'de>,
{
    struct Forms<T, M> {
        expecting: &'static str,
        from_str: fn(&str) -> Result<T, String>,
        from_map: fn(M) -> T,
    }
    impl<'de, T, M: Deserialize<'de>> Visitor<'de> for Forms<T, M> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            (self.from_str)(text).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            M::deserialize(de::value::MapAccessDeserializer::new(map)).map(self.from_map)
        }
    }
    deserializer.deserialize_any(Forms {
        expecting,
        from_str,
        from_map,
    })
}
