//! Secrets at rest: AES-256-GCM under a master key that never enters the database.
//!
//! The master key comes from `ROOST_MASTER_KEY` (64 hex characters; what replicas sharing one
//! PostgreSQL database must set alike) or from `<data-dir>/master.key`, created with mode 0600
//! on first start. Whoever reads the database alone learns no CPE password and cannot forge a
//! token.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, Result, anyhow, bail};
use rand::RngCore;

/// A random, URL-safe token of 256 bits, after `prefix`: refresh tokens, API keys, CPE
/// credentials Roost makes up.
pub fn random_token(prefix: &str) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How the tokens Roost makes up are stored (refresh tokens, API keys, speed-test tokens):
/// SHA-256, hex. They are 256 random bits, so a slow hash would add nothing but cost.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Secrets {
    cipher: Aes256Gcm,
    /// Keys credentials that Roost derives instead of storing (see [`Secrets::derived_token`]),
    /// itself derived from the master key: replicas with one master key derive alike.
    derivation: [u8; 32],
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(key.into()), derivation: hmac_sha256(key, b"roost derived credentials v1") }
    }

    /// A 256-bit key for `purpose`, the same in every process with this master key.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        let mut input = b"key\0".to_vec();
        input.extend_from_slice(purpose.as_bytes());
        hmac_sha256(&self.derivation, &input)
    }

    /// A credential for `subject` in `purpose`, 24 hex characters, the same in every process
    /// with this master key and different for every subject: a device's STUN password, which the
    /// STUN server checks without a lookup per Binding Request.
    pub fn derived_token(&self, purpose: &str, subject: &str) -> String {
        let mut input = Vec::with_capacity(purpose.len() + 1 + subject.len());
        input.extend_from_slice(purpose.as_bytes());
        input.push(0);
        input.extend_from_slice(subject.as_bytes());
        hex::encode(&hmac_sha256(&self.derivation, &input)[..12])
    }

    /// Loads the master key from the environment or the data directory, creating it if needed.
    pub fn load_or_create(data_dir: &Path) -> Result<Self> {
        if let Ok(hex_key) = std::env::var("ROOST_MASTER_KEY") {
            return Self::from_hex(hex_key.trim()).context("ROOST_MASTER_KEY");
        }
        let path = data_dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_hex(text.trim()).with_context(|| format!("{}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                write_private(&path, &hex::encode(key))?;
                Ok(Self::from_key(&key))
            }
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text).context("the master key must be 64 hex characters")?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| anyhow!("the master key must be 32 bytes (64 hex characters)"))?;
        Ok(Self::from_key(&key))
    }

    /// Encrypts: a fresh random nonce followed by the ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // AES-GCM encryption fails only for inputs over 64 GiB.
        if let Ok(ciphertext) = self.cipher.encrypt(Nonce::from_slice(&nonce), plaintext) {
            out.extend_from_slice(&ciphertext);
        }
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            bail!("sealed value too short");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| anyhow!("sealed value does not open with this master key"))
    }

    pub fn open_string(&self, sealed: &[u8]) -> Result<String> {
        String::from_utf8(self.open(sealed)?).context("sealed value is not UTF-8")
    }
}

fn hmac_sha256(key: &[u8], input: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length.
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else { return [0; 32] };
    mac.update(input);
    mac.finalize().into_bytes().into()
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let secrets = Secrets::from_key(&[7; 32]);
        let sealed = secrets.seal(b"cr-password");
        assert_ne!(&sealed[NONCE_LEN..], b"cr-password");
        assert_eq!(secrets.open(&sealed).ok(), Some(b"cr-password".to_vec()));
        assert!(Secrets::from_key(&[8; 32]).open(&sealed).is_err());
        assert_ne!(secrets.seal(b"x"), secrets.seal(b"x"), "nonces must be fresh");
    }

    #[test]
    fn derived_tokens_agree_across_processes_and_differ_per_subject_and_key() {
        let one = Secrets::from_key(&[7; 32]);
        let token = one.derived_token("stun", "00259E-HG8245H-ABC");
        assert_eq!(token.len(), 24);
        assert_eq!(Secrets::from_key(&[7; 32]).derived_token("stun", "00259E-HG8245H-ABC"), token);
        assert_ne!(one.derived_token("stun", "00259E-HG8245H-ABD"), token);
        assert_ne!(one.derived_token("other", "00259E-HG8245H-ABC"), token);
        assert_ne!(Secrets::from_key(&[8; 32]).derived_token("stun", "00259E-HG8245H-ABC"), token);
        assert_eq!(Secrets::from_key(&[7; 32]).derived_key("nonces"), one.derived_key("nonces"));
        assert_ne!(one.derived_key("nonces"), one.derived_key("other"));
        assert_ne!(Secrets::from_key(&[8; 32]).derived_key("nonces"), one.derived_key("nonces"));
        // The separator keeps purpose and subject apart.
        assert_ne!(one.derived_token("stu", "n00259E"), one.derived_token("stun", "00259E"));
    }
}
