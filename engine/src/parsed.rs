//! A `with` value written as text and parsed once, when the pipeline loads: the kind
//! gets the parsed value, a bad one is a `with` error located at its key (the parse
//! error is the message), the schema says "a string", and the text as written is what
//! serialises, so that what enters a stage's cache key is what the file says.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `T` parsed from its text (see the module's documentation).
#[derive(Clone)]
pub struct Parsed<T> {
    text: String,
    value: T,
}

impl<T> Parsed<T> {
    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<T> Deref for Parsed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: FromStr> FromStr for Parsed<T>
where
    T::Err: fmt::Display,
{
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.parse() {
            Ok(value) => Ok(Parsed {
                text: text.to_owned(),
                value,
            }),
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

impl<T> PartialEq for Parsed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T> Eq for Parsed<T> {}

impl<T> fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl<T> fmt::Display for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<T> Serialize for Parsed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, T: FromStr> Deserialize<'de> for Parsed<T>
where
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl<T> schemars::JsonSchema for Parsed<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "String".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_parsed_once_and_the_text_is_what_serialises() {
        let p: Parsed<u8> = serde_json::from_str("\"42\"").unwrap();
        assert_eq!((*p, p.text()), (42, "42"));
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"42\"");
        let e = serde_json::from_str::<Parsed<u8>>("\"300\"").unwrap_err();
        assert!(e.to_string().contains("number too large"), "{e}");
        let e = serde_json::from_str::<Parsed<u8>>("7").unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
    }
}
