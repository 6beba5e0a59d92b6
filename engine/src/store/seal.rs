//! The store's sealing key: a random 32-byte key kept in the store (`seal.key`,
//! mode 0600) that binds what the store vouches for to this store.
//!
//! Cache entries are sealed over their key and outputs, so an entry copied to another
//! key's file, or edited to name another stage's intact objects, is detected and
//! ignored. Verification stamps are sealed too, so a stamp cannot be forged for a
//! changed object. Someone who can read the key can forge both; the seal protects
//! against entries arriving from elsewhere (a synced or hand-edited store), not against
//! the store's owner.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};

pub struct SealKey([u8; 32]);

const FILE: &str = "seal.key";

impl SealKey {
    /// Reads the store's key, creating it (0600, written whole before it is visible)
    /// on first use. Concurrent first openers agree on one key.
    pub fn load_or_create(root: &Path) -> Result<SealKey> {
        let path = root.join(FILE);
        if let Some(key) = read(&path)? {
            return Ok(key);
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for the store key: {e}"))?;
        let tmp = root.join(super::files::temp_name(FILE));
        let mut f =
            private_create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        // A hard link publishes the whole file or fails if another process won.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
        read(&path)?.with_context(|| format!("{} vanished while being created", path.display()))
    }

    fn mac(&self, domain: &str, bytes: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(domain.as_bytes());
        h.update(&[0]);
        h.update(bytes);
        h.finalize()
    }

    /// A keyed BLAKE3 MAC of `bytes` under `domain`, as hex.
    pub fn seal(&self, domain: &str, bytes: &[u8]) -> String {
        self.mac(domain, bytes).to_hex().to_string()
    }

    /// Whether `mac` is the seal of `bytes` under `domain` (constant time: blake3's
    /// `Hash` equality is).
    pub fn verify(&self, domain: &str, bytes: &[u8], mac: &str) -> bool {
        blake3::Hash::from_hex(mac).is_ok_and(|given| self.mac(domain, bytes) == given)
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

fn read(path: &Path) -> Result<Option<SealKey>> {
    match fs::read(path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                anyhow::anyhow!(
                    "{} holds {} bytes, not a 32-byte store key; remove it to start a new one (every cache entry is then rebuilt once)",
                    path.display(),
                    b.len()
                )
            })?;
            Ok(Some(SealKey(key)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn private_create(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_store_private_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let a = SealKey::load_or_create(dir.path()).unwrap();
        let b = SealKey::load_or_create(dir.path()).unwrap();
        let mac = a.seal("d", b"x");
        assert!(b.verify("d", b"x", &mac));
        assert!(!b.verify("d", b"y", &mac));
        assert!(!b.verify("e", b"x", &mac));
        assert!(!b.verify("d", b"x", "zz"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = tempfile::tempdir().unwrap();
        let c = SealKey::load_or_create(other.path()).unwrap();
        assert!(
            !c.verify("d", b"x", &mac),
            "another store's key does not verify"
        );
        assert_eq!(format!("{a:?}"), "SealKey(<redacted>)");
    }
}
