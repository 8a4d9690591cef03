//! Client keys of the proxy: which configured key a bearer token belongs to, and the `key_id`
//! the proxy logs for it. Tokens are compared in constant time through their keyed hashes, and
//! a raw token is never kept beyond the comparison or written anywhere.
//!
//! With `[[key]]` entries configured, only their tokens are admitted and `key_id` is the key's
//! name. With none, any bearer token is admitted and logged as `tok-` + 12 hex digits of an
//! HMAC-SHA256 of the token (stable across restarts and processes, not reversible); a request
//! without a token is logged as `anonymous`.

use std::sync::Arc;

use ring::hmac;

use crate::config::Config;
use crate::error::{Error, Result};

/// Domain separation for the token hash, so the same token hashed elsewhere does not match.
const HASH_KEY: &[u8] = b"switchyard proxy key_id v1";
/// Hex digits of the hash shown in an unconfigured token's `key_id` (48 bits).
const ID_HEX_DIGITS: usize = 12;
/// `key_id` of a request that carried no token while no keys are configured.
pub const ANONYMOUS: &str = "anonymous";

/// The configured client keys (possibly none).
pub struct KeyRing {
    hasher: hmac::Key,
    /// Key name and the keyed hash of its token.
    keys: Vec<(Arc<str>, hmac::Tag)>,
    anonymous: Arc<str>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|(n, _)| &**n).collect();
        f.debug_struct("KeyRing").field("keys", &names).finish()
    }
}

impl KeyRing {
    /// Reads each `[[key]]`'s token from its environment variable; an unset or empty one is an
    /// error naming the key and the variable.
    pub fn from_config(cfg: &Config) -> Result<KeyRing> {
        let mut keys = Vec::with_capacity(cfg.keys.len());
        for (name, env) in &cfg.keys {
            match std::env::var(env) {
                Ok(t) if !t.trim().is_empty() => keys.push((name.clone(), t)),
                _ => {
                    return Err(Error::Config(format!(
                        "key {name:?}: environment variable {env} (its token_env) is unset or empty"
                    )));
                }
            }
        }
        KeyRing::new(keys)
    }

    /// A key ring from `(name, token)` pairs. Names and tokens must be unique.
    pub fn new(keys: impl IntoIterator<Item = (String, String)>) -> Result<KeyRing> {
        let hasher = hmac::Key::new(hmac::HMAC_SHA256, HASH_KEY);
        let mut out: Vec<(Arc<str>, hmac::Tag)> = Vec::new();
        for (name, token) in keys {
            let name = name.trim().to_string();
            if name.is_empty() {
                return Err(Error::Config("a [[key]] has an empty name".into()));
            }
            let tag = hmac::sign(&hasher, token.trim().as_bytes());
            for (other, t) in &out {
                if **other == *name {
                    return Err(Error::Config(format!("key {name:?} is configured twice")));
                }
                if ct_eq(t.as_ref(), tag.as_ref()) {
                    return Err(Error::Config(format!(
                        "keys {other:?} and {name:?} have the same token"
                    )));
                }
            }
            out.push((Arc::from(name), tag));
        }
        Ok(KeyRing {
            hasher,
            keys: out,
            anonymous: Arc::from(ANONYMOUS),
        })
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The `key_id` to log for a request's bearer token, or `None`: unauthorised (401).
    ///
    /// Every configured key is compared (no early exit), each in constant time.
    pub fn authenticate(&self, bearer: Option<&str>) -> Option<Arc<str>> {
        let token = bearer.map(str::trim).filter(|t| !t.is_empty());
        if self.keys.is_empty() {
            return Some(match token {
                None => self.anonymous.clone(),
                Some(t) => Arc::from(self.token_id(t)),
            });
        }
        let tag = hmac::sign(&self.hasher, token?.as_bytes());
        let mut found = None;
        for (name, t) in &self.keys {
            if ct_eq(t.as_ref(), tag.as_ref()) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }

    /// The logged id of an unconfigured token: `tok-` + 12 hex digits of its keyed hash.
    pub fn token_id(&self, token: &str) -> String {
        let tag = hmac::sign(&self.hasher, token.trim().as_bytes());
        let mut id = String::with_capacity(4 + ID_HEX_DIGITS);
        id.push_str("tok-");
        id.push_str(&hex::encode(&tag.as_ref()[..ID_HEX_DIGITS / 2]));
        id
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares two byte strings without an early exit on the first differing byte (lengths are
/// not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
