//! Secrets: generated from the OS RNG, shown once, stored as SHA-256 hashes. A hash of a
//! 256-bit random secret is a safe lookup key, so keys are found by hash in the database;
//! the one secret that arrives from the environment is compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 256 bits of randomness, URL-safe.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A SCIM API key: `scim_<connection_id>_<secret>`.
pub fn new_scim_key(connection_id: &str) -> String {
    format!("scim_{connection_id}_{}", random_secret())
}

/// An integration key for the management API.
pub fn new_integration_key() -> String {
    format!("sgi_{}", random_secret())
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// Whether any string or key holds U+0000, which PostgreSQL text cannot store: such input is
/// refused on every backend alike.
pub fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_connection_and_256_bits() {
        let key = new_scim_key("c1");
        let secret = key.strip_prefix("scim_c1_").expect("prefix");
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).expect("base64").len(), 32);
        assert_ne!(new_scim_key("c1"), key);
        assert_eq!(hash(&key), hash(&key));
        assert!(constant_time_eq(&key, &key) && !constant_time_eq(&key, "x"));
    }
}
