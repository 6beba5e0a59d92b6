//! How a remote and its trust are written: addresses, key files, `trust:` and
//! `remote:` in a pipeline.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

const ADDRESS_FORM: &str = "64 hex digits, 0x optional";

/// A public key's name, as users write it in trust lists: 32 bytes, `0x` and 64 hex
/// digits (what [`KeyScheme::address`] derives from a public key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 32]);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = String;
    fn from_str(text: &str) -> Result<Address, String> {
        let bad = || format!("{text:?} is not an address ({ADDRESS_FORM})");
        let digits = text.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Address(bytes))
    }
}

/// How the binary reads signing keys and names public keys.
#[derive(Clone, Copy)]
pub struct KeyScheme {
    /// Reads the Ed25519 key in a key file. Errors name the file, never its contents.
    pub load: fn(&Path) -> Result<SigningKey>,
    /// The address of a public key.
    pub address: fn(&VerifyingKey) -> Address,
}

impl KeyScheme {
    /// The engine's own, for programs that bring none: a key file holds the 32-byte
    /// secret as 64 hex digits, and an address is the public key itself.
    pub const PLAIN: KeyScheme = KeyScheme {
        load: load_plain,
        address: |key| Address(key.to_bytes()),
    };
}

fn load_plain(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let Ok(Address(secret)) = format!("0x{}", text.trim()).parse() else {
        bail!("key file {} does not hold 64 hex digits", path.display());
    };
    Ok(SigningKey::from_bytes(&secret))
}

/// Whose entries a reader takes, as written in a pipeline (`trust:`) or in
/// `SOMA_FLOW_REMOTE_TRUST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustSetting {
    /// Entries whoever wrote them, as the user says explicitly: `any`.
    Any,
    /// Entries signed by one of these addresses.
    Keys(BTreeSet<Address>),
}

impl FromStr for TrustSetting {
    type Err = String;
    /// `any`, or addresses separated by commas.
    fn from_str(text: &str) -> Result<TrustSetting, String> {
        if text.trim() == "any" {
            return Ok(TrustSetting::Any);
        }
        let keys = text
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(str::parse)
            .collect::<Result<BTreeSet<Address>, String>>()?;
        match keys.is_empty() {
            true => Err(format!(
                "{text:?} names no address ({ADDRESS_FORM}), nor `any`"
            )),
            false => Ok(TrustSetting::Keys(keys)),
        }
    }
}

impl<'de> Deserialize<'de> for TrustSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TrustSetting, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            List(Vec<String>),
        }
        let text = match Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected `any` or a list of addresses ({ADDRESS_FORM})"
            ))
        })? {
            Written::One(text) => text,
            Written::List(list) if list.iter().any(|a| a.trim() == "any") => {
                return Err(serde::de::Error::custom(
                    "`any` stands alone: write `trust: any`, not in a list",
                ))
            }
            Written::List(list) => list.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for TrustSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TrustSetting::Any => s.serialize_str("any"),
            TrustSetting::Keys(keys) => s.collect_seq(keys.iter().map(ToString::to_string)),
        }
    }
}

impl schemars::JsonSchema for TrustSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TrustSetting".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Whose entries to take from the remote store: `any` (whoever wrote them), or the addresses of the machines that publish (their SOMA_FLOW_REMOTE_KEY)",
            "anyOf": [
                { "const": "any" },
                { "type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$" },
                { "type": "array", "items": { "type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$" } }
            ]
        })
    }
}

/// A pipeline's `remote`: a URL, or `{ url, trust }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteSetting {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSetting>,
}

impl<'de> Deserialize<'de> for RemoteSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RemoteSetting, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: String,
            #[serde(default)]
            trust: Option<TrustSetting>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RemoteSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a store URL, or `{ url: URL, trust: [addresses] }`")
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<RemoteSetting, E> {
                Ok(RemoteSetting {
                    url: url.to_string(),
                    trust: None,
                })
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<RemoteSetting, M::Error> {
                let table = Table::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RemoteSetting {
                    url: table.url,
                    trust: table.trust,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl schemars::JsonSchema for RemoteSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RemoteSetting".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let trust = generator.subschema_for::<TrustSetting>();
        schemars::json_schema!({
            "anyOf": [
                { "type": "string", "description": "The store's URL" },
                {
                    "type": "object",
                    "properties": {
                        "url": { "type": "string", "description": "The store's URL" },
                        "trust": trust
                    },
                    "required": ["url"],
                    "additionalProperties": false
                }
            ]
        })
    }
}
#[cfg(test)]
mod tests {
    use super::super::{KeyScheme, Trust};
    use super::*;

    #[test]
    fn trust_settings_parse_with_errors_that_say_what_is_valid() {
        let a = format!("0x{}", "ab".repeat(32));
        assert_eq!("any".parse::<TrustSetting>().unwrap(), TrustSetting::Any);
        let TrustSetting::Keys(keys) = format!("{a}, {a}").parse().unwrap() else {
            panic!("keys")
        };
        assert_eq!(keys.len(), 1);
        let err = "0x12".parse::<TrustSetting>().unwrap_err();
        assert!(err.contains("64 hex digits"), "{err}");
        let err = serde_json::from_str::<TrustSetting>(r#"["any"]"#).unwrap_err();
        assert!(err.to_string().contains("stands alone"), "{err}");
        let err = serde_json::from_str::<TrustSetting>("3").unwrap_err();
        assert!(
            err.to_string().contains("expected `any` or a list"),
            "{err}"
        );
        let t = Trust::new(KeyScheme::PLAIN, None, None).unwrap();
        assert!(t.unset() && t.describe().is_some() && t.signer().is_none());
    }
}
