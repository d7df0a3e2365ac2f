//! Settings: the library's environment variables, overridden by the global
//! flags, with a throwaway signing key (the tool never signs cookies).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use edge_session::{Error, Settings};

use crate::Global;

/// Reads the settings from the environment and `global`.
pub(crate) fn settings(global: &Global) -> Result<Settings, Error> {
    let keys = throwaway_key_ring()?;
    let overrides = overrides(global);
    Settings::from_lookup(|name| {
        if name == "SESSION_SECRETS" {
            return Some(keys.clone());
        }
        match overrides.get(name) {
            Some(value) => Some(value.clone()),
            None => std::env::var(name).ok(),
        }
    })
}

/// The variables the flags set.
fn overrides(global: &Global) -> HashMap<&'static str, String> {
    let mut map = HashMap::new();
    if let Some(url) = &global.redis_url {
        map.insert("REDIS_URL", url.clone());
        map.insert("SESSION_BACKEND", "direct".to_owned());
    }
    if let Some(url) = &global.rest_url {
        map.insert("UPSTASH_REDIS_REST_URL", url.clone());
        map.insert("SESSION_BACKEND", "rest".to_owned());
    }
    if let Some(token) = &global.rest_token {
        map.insert("UPSTASH_REDIS_REST_TOKEN", token.clone());
    }
    if let Some(prefix) = &global.prefix {
        map.insert("SESSION_KEY_PREFIX", prefix.clone());
    }
    if let Some(indexes) = &global.indexes {
        map.insert("SESSION_INDEXES", indexes.clone());
    }
    map
}

/// A key ring of one random 32-byte key, never printed nor used to sign: the
/// library requires one, and the operator's real secrets are not needed.
fn throwaway_key_ring() -> Result<String, Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::Config {
        name: "SESSION_SECRETS",
        reason: format!("no randomness for the throwaway signing key: {e}"),
    })?;
    Ok(format!("cli:{}", STANDARD.encode(secret)))
}
