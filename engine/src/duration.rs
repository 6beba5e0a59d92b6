//! A duration as people write it in a pipeline (`2s`, `10m`, `6h 30m`), parsed once when
//! the pipeline loads: a bad one is a validation error located at its key.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration, kept with the text it was written as (which is what enters cache keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    value: Duration,
}

impl HumanDuration {
    pub fn get(&self) -> Duration {
        self.value
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let value = humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration ({e}); e.g. `2s`, `10m`, `6h`"))?;
        Ok(HumanDuration {
            text: text.to_string(),
            value,
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`), e.g. `2s`, `10m`, `6h 30m`.",
            "examples": ["2s", "10m", "24h"]
        })
    }
}

/// The duration the environment variable `name` gives (as people write it, `30s`,
/// `5m`), or `default` when it is unset.
pub fn from_env(name: &str, default: Duration) -> Result<Duration, String> {
    match std::env::var(name) {
        Ok(text) => text
            .parse::<HumanDuration>()
            .map(|d| d.get())
            .map_err(|e| format!("{name}: {e}")),
        Err(_) => Ok(default),
    }
}

/// A duration as progress lines and reports show it: `850ms`, `4.2s`, `3m07s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_its_text_and_names_a_bad_one() {
        let d: HumanDuration = serde_json::from_value(serde_json::json!("1m 30s")).unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        assert_eq!(serde_json::to_value(&d).unwrap(), "1m 30s");
        let err = serde_json::from_value::<HumanDuration>(serde_json::json!("soon")).unwrap_err();
        assert!(
            err.to_string().contains("`soon` is not a duration"),
            "{err}"
        );
    }
}
