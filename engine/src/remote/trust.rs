//! Who may say what a key's outputs are. Objects are named by their content and checked
//! on download, so a bucket cannot lie about what an object holds; an entry, though,
//! says which objects a key has, and anyone who can write to the bucket can write one.
//! So, as Nix signs its binary caches, a machine that publishes signs each entry with an
//! Ed25519 key (`SOMA_FLOW_REMOTE_KEY`, a key file), and readers take only entries
//! signed by an address they trust (`SOMA_FLOW_REMOTE_TRUST`, or `remote.trust` in the
//! pipeline). A tree's listing needs no signature of its own: the signed entry names it
//! by the hash it is checked against, and each file in it by its own.
//!
//! The binary says how key files are read and how a public key is named
//! ([`KeyScheme`]); the engine signs and verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::setting::{Address, KeyScheme, TrustSetting};
use crate::store::CacheEntry;

/// The key file a publishing machine signs entries with.
pub const KEY_ENV: &str = "SOMA_FLOW_REMOTE_KEY";
/// The addresses whose entries a reader takes (comma-separated), or `any`.
pub const TRUST_ENV: &str = "SOMA_FLOW_REMOTE_TRUST";
/// What a signature covers, before the entry's bytes: a signature made for something
/// else never verifies as an entry's.
const DOMAIN: &[u8] = b"soma-flow remote entry 1\0";

/// The signing key of this machine and the addresses it trusts.
pub struct Trust {
    signer: Option<(SigningKey, Address)>,
    trusted: Trusted,
    address_of: fn(&VerifyingKey) -> Address,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Trusted {
    /// Nobody said: entries are taken unverified, and said to be.
    Unset,
    /// `any`: entries are taken unverified, as the user asked.
    Any,
    Keys(BTreeSet<Address>),
}

/// Why an entry read from the remote is not taken.
pub(super) enum Refused {
    /// Not an entry, or its signature fails: nobody can take it.
    Broken(String),
    /// A sound entry this machine does not trust (unsigned, or another's key).
    Untrusted(String),
}

#[derive(Serialize, Deserialize)]
struct Signed {
    /// The Ed25519 public key, base64.
    public_key: String,
    /// The signature over [`DOMAIN`] and the entry's bytes, base64.
    signature: String,
}

const SIGNATURE: &str = "signature";
/// Beside the entry's fields: each object's version (ETag) as its publisher saw it,
/// so that one replaced after signing is noticed without downloading it.
const VERSIONS: &str = "object_versions";

/// An entry as read from the remote.
pub(super) struct Read {
    pub entry: CacheEntry,
    /// Who signed it, if its signature verifies.
    pub signer: Option<Address>,
    /// Object path (relative to the remote's prefix) → version, as published.
    pub versions: BTreeMap<String, String>,
}

/// The bytes a signature covers: the entry's JSON object as stored, without its
/// signature, written compactly. Taken from the stored JSON rather than from the fields
/// this version knows, so that a newer writer's entry verifies here too.
fn signed_bytes(object: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    let mut object = object.clone();
    object.shift_remove(SIGNATURE);
    [
        DOMAIN,
        &serde_json::to_vec(&object).expect("JSON serialises"),
    ]
    .concat()
}

impl Default for Trust {
    fn default() -> Trust {
        Trust {
            signer: None,
            trusted: Trusted::Unset,
            address_of: KeyScheme::PLAIN.address,
        }
    }
}

impl Trust {
    /// The key in `key_file` (if any) signs; `setting` says whose entries to take. A
    /// machine that signs trusts itself.
    pub fn new(
        scheme: KeyScheme,
        key_file: Option<&Path>,
        setting: Option<&TrustSetting>,
    ) -> Result<Trust> {
        let signer = match key_file {
            Some(path) => {
                let key = (scheme.load)(path).context(KEY_ENV)?;
                let address = (scheme.address)(&key.verifying_key());
                Some((key, address))
            }
            None => None,
        };
        let trusted = match (setting, &signer) {
            (Some(TrustSetting::Any), _) => Trusted::Any,
            (Some(TrustSetting::Keys(keys)), _) => Trusted::Keys(
                keys.iter()
                    .copied()
                    .chain(signer.iter().map(|s| s.1))
                    .collect(),
            ),
            (None, Some((_, me))) => Trusted::Keys(BTreeSet::from([*me])),
            (None, None) => Trusted::Unset,
        };
        Ok(Trust {
            signer,
            trusted,
            address_of: scheme.address,
        })
    }

    /// As [`Trust::new`], from `SOMA_FLOW_REMOTE_KEY` and `SOMA_FLOW_REMOTE_TRUST`
    /// (which overrides the pipeline's `setting`).
    pub fn from_env(scheme: KeyScheme, setting: Option<&TrustSetting>) -> Result<Trust> {
        let key_file = std::env::var_os(KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let from_env = match std::env::var(TRUST_ENV) {
            Ok(text) if !text.trim().is_empty() => Some(
                text.parse()
                    .map_err(|e| anyhow::anyhow!("{TRUST_ENV}: {e}"))?,
            ),
            _ => None,
        };
        Trust::new(scheme, key_file.as_deref(), from_env.as_ref().or(setting))
    }

    /// The address entries are signed with here, if any.
    pub fn signer(&self) -> Option<Address> {
        self.signer.as_ref().map(|s| s.1)
    }

    /// The addresses whose entries are taken; empty when entries are not verified.
    pub fn trusted(&self) -> Vec<Address> {
        match &self.trusted {
            Trusted::Keys(keys) => keys.iter().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether entries are taken without a signature because nobody said otherwise:
    /// results that come from them are marked unverified.
    pub fn unset(&self) -> bool {
        self.trusted == Trusted::Unset
    }

    /// Whether the user said to take entries whoever wrote them (`any`).
    pub fn any(&self) -> bool {
        self.trusted == Trusted::Any
    }

    /// What to say once per run about how entries are judged.
    pub fn describe(&self) -> Option<String> {
        match &self.trusted {
            Trusted::Unset => Some(format!(
                "remote entries are not verified: anyone who can write to the bucket decides \
                 what this run builds on (and `commit` refuses what came from them). Set \
                 {KEY_ENV} (a key file from `soma-flow keygen`) on the machines that publish \
                 and {TRUST_ENV} (or the pipeline's `remote: {{ url, trust: [...] }}`) to \
                 their addresses here"
            )),
            Trusted::Any => Some(format!(
                "remote entries are taken whoever wrote them ({TRUST_ENV}=any)"
            )),
            Trusted::Keys(_) => None,
        }
    }

    /// `entry` as the remote keeps it (JSON), signed when this machine signs and `sign`
    /// holds. What is local to one store (its seal, whether it came unverified) is left
    /// out.
    pub(super) fn publish(
        &self,
        entry: &CacheEntry,
        versions: &BTreeMap<String, String>,
        sign: bool,
    ) -> Vec<u8> {
        let bare = CacheEntry {
            seal: String::new(),
            unverified: false,
            ..entry.clone()
        };
        let serde_json::Value::Object(mut object) =
            serde_json::to_value(&bare).expect("entries serialise")
        else {
            unreachable!("an entry is a JSON object")
        };
        if !versions.is_empty() {
            let versions = serde_json::to_value(versions).expect("versions serialise");
            object.insert(VERSIONS.into(), versions);
        }
        if let Some((key, _)) = self.signer.as_ref().filter(|_| sign) {
            let b64 = base64::engine::general_purpose::STANDARD;
            let signed = Signed {
                public_key: b64.encode(key.verifying_key().to_bytes()),
                signature: b64.encode(key.sign(&signed_bytes(&object)).to_bytes()),
            };
            let signed = serde_json::to_value(signed).expect("signatures serialise");
            object.insert(SIGNATURE.into(), signed);
        }
        serde_json::to_vec_pretty(&object).expect("JSON serialises")
    }

    /// The entry in `bytes` (as [`Trust::publish`] writes it) and who signed it, if this
    /// machine takes it.
    pub(super) fn read(&self, bytes: &[u8]) -> Result<Read, Refused> {
        let broken = |why: String| Refused::Broken(why);
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| broken(format!("it is malformed ({e})")))?;
        let entry: CacheEntry = serde_json::from_value(object.clone().into())
            .map_err(|e| broken(format!("it is malformed ({e})")))?;
        let versions = match object.get(VERSIONS) {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| broken(format!("its `{VERSIONS}` are malformed ({e})")))?,
        };
        let signer = match object.get(SIGNATURE) {
            None => None,
            Some(signed) => Some(self.verify(&object, signed).map_err(broken)?),
        };
        let read = Read {
            entry,
            signer,
            versions,
        };
        match (&self.trusted, signer) {
            (Trusted::Unset | Trusted::Any, _) => Ok(read),
            (Trusted::Keys(keys), Some(a)) if keys.contains(&a) => Ok(read),
            (Trusted::Keys(_), Some(a)) => Err(Refused::Untrusted(format!(
                "it is signed by {a}, which is not trusted here"
            ))),
            (Trusted::Keys(_), None) => Err(Refused::Untrusted("it is not signed".into())),
        }
    }

    /// The address whose key made `signed` over `object`, if the signature verifies.
    fn verify(
        &self,
        object: &serde_json::Map<String, serde_json::Value>,
        signed: &serde_json::Value,
    ) -> Result<Address, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let signed: Signed = serde_json::from_value(signed.clone())
            .map_err(|e| format!("its signature is malformed ({e})"))?;
        let public: [u8; 32] = b64
            .decode(&signed.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("its public key is malformed")?;
        let signature: [u8; 64] = b64
            .decode(&signed.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("its signature is malformed")?;
        let public = VerifyingKey::from_bytes(&public).map_err(|_| "its public key is invalid")?;
        let address = (self.address_of)(&public);
        public
            .verify_strict(&signed_bytes(object), &Signature::from_bytes(&signature))
            .map_err(|_| {
                format!("its signature by {address} does not verify (it was changed after signing)")
            })?;
        Ok(address)
    }

    /// The addresses to look up signed entries of, in order.
    pub(super) fn slots(&self) -> impl Iterator<Item = &Address> {
        match &self.trusted {
            Trusted::Keys(keys) => Some(keys.iter()),
            _ => None,
        }
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Artifact, ArtifactKind, ContentHash};

    fn entry() -> CacheEntry {
        CacheEntry {
            key: "k".repeat(64),
            kind: "step".into(),
            outputs: [(
                "out".to_string(),
                Artifact {
                    kind: ArtifactKind::File,
                    hash: ContentHash::parse(&"a".repeat(64)).unwrap(),
                    size: 3,
                },
            )]
            .into(),
            duration_ms: 5,
            notes: vec!["a note".into()],
            seal: String::new(),
            unverified: false,
        }
    }

    fn trust(seed: u8, setting: Option<&str>) -> Trust {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, format!("{:02x}", seed).repeat(32)).unwrap();
        let setting = setting.map(|s| s.parse().unwrap());
        Trust::new(KeyScheme::PLAIN, Some(&key), setting.as_ref()).unwrap()
    }

    fn versions() -> BTreeMap<String, String> {
        BTreeMap::from([("objects/a".to_string(), "\"etag\"".to_string())])
    }

    fn why(r: Result<Read, Refused>) -> String {
        match r {
            Ok(_) => panic!("taken"),
            Err(Refused::Broken(why)) => format!("broken: {why}"),
            Err(Refused::Untrusted(why)) => format!("untrusted: {why}"),
        }
    }

    #[test]
    fn a_signed_entry_verifies_and_names_its_signer_and_any_change_breaks_it() {
        let me = trust(1, None);
        let bytes = me.publish(&entry(), &versions(), true);
        let read = me.read(&bytes).ok().unwrap();
        assert_eq!(read.signer, me.signer());
        assert_eq!(read.entry.outputs, entry().outputs);
        assert_eq!(read.versions, versions());
        // A field this version does not know still verifies (a newer writer's).
        let text = String::from_utf8(bytes.clone()).unwrap();
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&me.publish(&entry(), &versions(), false)).unwrap();
        object.insert("from_the_future".into(), 1.into());
        let (key, _) = me.signer.as_ref().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let signed = Signed {
            public_key: b64.encode(key.verifying_key().to_bytes()),
            signature: b64.encode(key.sign(&signed_bytes(&object)).to_bytes()),
        };
        object.insert(SIGNATURE.into(), serde_json::to_value(signed).unwrap());
        let newer = serde_json::to_vec(&object).unwrap();
        assert_eq!(me.read(&newer).ok().unwrap().signer, me.signer());
        // Another size, or a note, after signing.
        let forged = text.replace("\"size\": 3", "\"size\": 4");
        assert_ne!(forged, text);
        assert!(why(me.read(forged.as_bytes())).contains("broken: its signature by"));
        let forged = text.replace("etag", "other");
        assert!(why(me.read(forged.as_bytes())).contains("does not verify"));
        let forged = text.replace("a note", "another note");
        assert!(why(me.read(forged.as_bytes())).contains("does not verify"));
        assert!(why(me.read(b"{not json")).contains("broken: it is malformed"));
        // Unsigned, or signed by a key nobody here trusts.
        let unsigned = me.publish(&entry(), &versions(), false);
        assert_eq!(why(me.read(&unsigned)), "untrusted: it is not signed");
        let other = trust(2, None);
        let theirs = other.publish(&entry(), &versions(), true);
        assert!(why(me.read(&theirs)).contains("not trusted here"));
        // Trusting the other's address, written as `SOMA_FLOW_REMOTE_TRUST` takes it.
        let listed = format!("{}", other.signer().unwrap());
        let me = trust(1, Some(&listed));
        assert_eq!(me.read(&theirs).ok().unwrap().signer, other.signer());
        assert!(me.read(&bytes).is_ok(), "a signer trusts itself");
        // Nobody configured: taken, signed or not.
        let open = Trust::default();
        assert!(open.read(&unsigned).is_ok() && open.read(&theirs).is_ok());
    }
}
