//! Secret fields of blocks, sealed with ChaCha20-Poly1305 under a master key
//! that lives outside the database (an environment variable or a key file):
//! a copy of the database alone reveals nothing.

use headwater_core::block::{get_path, get_path_mut, is_block_ref, keep_unchanged_secrets, MASK};
use headwater_core::{BlockDocument, BlockType};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

use crate::error::{Result, StoreError};

/// How a sealed value is stored: `{"$encrypted": "<hex of nonce, ciphertext and tag>"}`.
const SEALED: &str = "$encrypted";

/// The 256-bit master key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(********)")
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> SecretKey {
        let mut k = [0u8; 32];
        SystemRandom::new().fill(&mut k).expect("the system's random source works");
        SecretKey(k)
    }

    /// A key written as 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> std::result::Result<SecretKey, String> {
        let bytes = from_hex(text.trim()).filter(|b| b.len() == 32).ok_or_else(|| {
            "a secret key is 64 hexadecimal digits (32 bytes); make one with `openssl rand -hex 32`".to_string()
        })?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        Ok(SecretKey(k))
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
}

pub struct Cipher {
    key: LessSafeKey,
}

impl Cipher {
    pub fn new(key: &SecretKey) -> Cipher {
        Cipher { key: LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key.0).expect("a 32-byte key")) }
    }

    /// Seals `value`, bound to where it belongs (`aad`): a sealed value
    /// moved to another block or field does not open.
    fn seal(&self, aad: &str, value: &Value) -> Value {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source works");
        let mut data = serde_json::to_vec(value).expect("JSON values serialize");
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut data)
            .expect("sealing cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        json!({ SEALED: to_hex(&out) })
    }

    fn open(&self, aad: &str, sealed: &Value) -> Result<Value> {
        let wrong = || {
            StoreError::Refused(format!(
                "the secret at {aad} cannot be decrypted with this secret key (was HEADWATER_SECRET_KEY or the key file changed?)"
            ))
        };
        let bytes = sealed[SEALED].as_str().and_then(from_hex).filter(|b| b.len() > NONCE_LEN).ok_or_else(wrong)?;
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut data = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let plain = self.key.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut data).map_err(|_| wrong())?;
        serde_json::from_slice(plain).map_err(|_| wrong())
    }
}

fn is_sealed(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.len() == 1 && m.contains_key(SEALED))
}

fn aad(block: &str, path: &[String]) -> String {
    format!("block {block}, field {}", path.join("."))
}

fn no_key() -> StoreError {
    StoreError::Refused(
        "secrets need a secret key: set HEADWATER_SECRET_KEY (64 hex digits), or let Headwater create its key file \
         (the CLI, the server and flows do so in the Headwater home)"
            .into(),
    )
}

/// What to store for `doc`: its secrets sealed. A secret sent back masked
/// keeps the stored (sealed) value of `previous`.
pub fn seal_document(
    cipher: Option<&Cipher>,
    doc: &BlockDocument,
    t: &BlockType,
    previous: Option<&Value>,
) -> Result<Value> {
    let paths = t.secret_paths();
    let mut data = doc.data.clone();
    if let Some(prev) = previous {
        keep_unchanged_secrets(&mut data, prev, &paths);
    }
    for path in &paths {
        let Some(v) = get_path_mut(&mut data, path) else { continue };
        if v.is_null() || is_sealed(v) || is_block_ref(v) {
            continue;
        }
        if v.as_str() == Some(MASK) {
            return Err(StoreError::Refused(format!(
                "{}: give the secret's value (it is shown as {MASK} and there is none stored)",
                path.join(".")
            )));
        }
        let cipher = cipher.ok_or_else(no_key)?;
        *v = cipher.seal(&aad(&doc.name, path), v);
    }
    Ok(data)
}

/// A stored document as readers see it: sealed secrets as [`MASK`], or,
/// when revealed, opened.
pub fn unseal_document(cipher: Option<&Cipher>, mut doc: BlockDocument, reveal: bool) -> Result<BlockDocument> {
    let mut sealed_paths = Vec::new();
    find_sealed(&doc.data, &mut Vec::new(), &mut sealed_paths);
    for path in sealed_paths {
        let opened = if reveal {
            let cipher = cipher.ok_or_else(no_key)?;
            cipher.open(&aad(&doc.name, &path), get_path(&doc.data, &path).expect("found above"))?
        } else {
            Value::String(MASK.into())
        };
        *get_path_mut(&mut doc.data, &path).expect("found above") = opened;
    }
    Ok(doc)
}

fn find_sealed(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if is_sealed(v) {
        out.push(path.clone());
    } else if let Some(m) = v.as_object() {
        for (k, x) in m {
            path.push(k.clone());
            find_sealed(x, path, out);
            path.pop();
        }
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn t() -> BlockType {
        BlockType {
            slug: "secret".into(),
            name: "Secret".into(),
            description: String::new(),
            schema: json!({"type": "object", "properties": {"value": {"type": "string", "writeOnly": true}}}),
        }
    }

    fn doc(name: &str, value: &str) -> BlockDocument {
        let now = Utc::now();
        BlockDocument {
            name: name.into(),
            block_type: "secret".into(),
            data: json!({"value": value}),
            created: now,
            updated: now,
        }
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_place() {
        let key = SecretKey::generate();
        let cipher = Cipher::new(&key);
        let stored = seal_document(Some(&cipher), &doc("pg", "hunter2"), &t(), None).unwrap();
        assert!(!stored.to_string().contains("hunter2"));
        let read = |name: &str, data: &Value, c: &Cipher, reveal| {
            let mut d = doc(name, "");
            d.data = data.clone();
            unseal_document(Some(c), d, reveal)
        };
        assert_eq!(read("pg", &stored, &cipher, false).unwrap().data["value"], MASK);
        assert_eq!(read("pg", &stored, &cipher, true).unwrap().data["value"], "hunter2");
        let other = Cipher::new(&SecretKey::generate());
        assert!(read("pg", &stored, &other, true).unwrap_err().to_string().contains("cannot be decrypted"));
        assert!(read("moved", &stored, &cipher, true).is_err(), "bound to its block");
        assert!(seal_document(None, &doc("pg", "x"), &t(), None)
            .unwrap_err()
            .to_string()
            .contains("HEADWATER_SECRET_KEY"));
        // Masked on the way back in: the stored value stays.
        let again = seal_document(Some(&cipher), &doc("pg", MASK), &t(), Some(&stored)).unwrap();
        assert_eq!(again, stored);
        assert_eq!(SecretKey::from_hex(&key.to_hex()).unwrap().0, key.0);
        assert!(SecretKey::from_hex("abc").is_err());
        assert_eq!(format!("{key:?}"), "SecretKey(********)");
    }
}
