//! Session tokens, the signing key ring and the session cookie.
//!
//! A session token is 256 bits from the operating system's CSPRNG. The cookie
//! value is
//!
//! ```text
//! <kid>.<user tag>.<secret>.<signature>
//! ```
//!
//! - `kid`: id of the key that signed the cookie (`[A-Za-z0-9_-]`, 1 to 16 chars);
//! - `user tag`: empty for a session not bound to a user, else 32 hex chars
//!   derived from the user id (it places the session next to the user's device
//!   set on Redis Cluster, see [`crate::keys`]);
//! - `secret`: the 32 random bytes, base64url without padding;
//! - `signature`: HMAC-SHA256 over the cookie name and the three parts above,
//!   base64url without padding.
//!
//! Verification is pure computation: a malformed, truncated, forged or
//! unknown-key cookie is an anonymous visitor and costs no Redis call. The MAC
//! is checked in constant time ([`Mac::verify_slice`]).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::platform::fill_random;

type HmacSha256 = Hmac<Sha256>;

/// Length of the random part of a token, in bytes (256 bits).
pub const SECRET_BYTES: usize = 32;
/// Minimum length of a signing key, in bytes.
pub const MIN_KEY_BYTES: usize = 32;
const SECRET_B64_LEN: usize = 43;
const SIG_B64_LEN: usize = 43;
const USER_TAG_LEN: usize = 32;
const MAX_KID_LEN: usize = 16;
/// Longest cookie value this module will look at; anything longer is not ours.
const MAX_VALUE_LEN: usize = MAX_KID_LEN + USER_TAG_LEN + SECRET_B64_LEN + SIG_B64_LEN + 3;
/// Largest `Set-Cookie` value (name, value and attributes) the codec may
/// produce: browsers keep cookies up to 4096 bytes (RFC 6265 section 6.1) and
/// silently drop larger ones, which shows as a login loop.
pub const MAX_SET_COOKIE_BYTES: usize = 4096;

/// The secret part of a session: what the cookie carries and Redis never sees.
///
/// `Debug` prints only the non-secret handle.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    secret: [u8; SECRET_BYTES],
    user_tag: Option<UserTag>,
    /// SHA-256 of the secret, computed once: the handle is needed several
    /// times per request (the key, the script arguments, the device set).
    digest: [u8; 32],
}

impl SessionToken {
    /// A fresh token from the CSPRNG, bound to `user_tag` if given.
    pub fn generate(user_tag: Option<UserTag>) -> Self {
        let mut secret = [0u8; SECRET_BYTES];
        fill_random(&mut secret);
        Self::with_secret(secret, user_tag)
    }

    fn with_secret(secret: [u8; SECRET_BYTES], user_tag: Option<UserTag>) -> Self {
        Self {
            secret,
            user_tag,
            digest: Sha256::digest(secret).into(),
        }
    }

    /// A token with a chosen secret, for the fuzz targets
    /// ([`crate::fuzzing::token`]); real tokens come from [`Self::generate`].
    pub(crate) fn from_secret(secret: [u8; SECRET_BYTES], user_tag: Option<UserTag>) -> Self {
        Self::with_secret(secret, user_tag)
    }

    /// The non-secret handle of the session: hex SHA-256 of the secret.
    ///
    /// The Redis key is derived from it, it names the session in device lists
    /// and it is what the origin sees as `x-session-id`. It cannot be turned
    /// back into a cookie.
    pub fn handle(&self) -> SessionHandle {
        // Into a buffer first: `hex::encode` pushes char by char (~200 ns).
        let mut buf = [0u8; 64];
        match hex::encode_to_slice(self.digest, &mut buf) {
            Ok(()) => SessionHandle(String::from_utf8_lossy(&buf).into_owned()),
            Err(_) => SessionHandle(hex::encode(self.digest)),
        }
    }

    /// The user tag the session is stored under, if it is bound to a user.
    pub fn user_tag(&self) -> Option<&UserTag> {
        self.user_tag.as_ref()
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionToken")
            .field("handle", &self.handle())
            .field("user_tag", &self.user_tag)
            .finish_non_exhaustive()
    }
}

/// Non-secret id of a session: 64 lowercase hex chars (SHA-256 of the token secret).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// Parses a handle, accepting only 64 lowercase hex chars.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.0)
    }
}

/// Hash tag shared by all keys of one user: 32 hex chars of SHA-256 of the user id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserTag(String);

impl UserTag {
    /// The tag of `user_id`.
    pub fn of(user_id: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"edge-session:user:");
        hasher.update(user_id.as_bytes());
        let digest = hasher.finalize();
        Self(hex::encode(&digest[..USER_TAG_LEN / 2]))
    }

    fn parse(text: &str) -> Option<Self> {
        (text.len() == USER_TAG_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserTag({})", self.0)
    }
}

/// One signing key. `Debug` shows only its id.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    mac: HmacSha256,
}

/// The signing keys: the first signs, every key verifies.
///
/// Parsed from `SESSION_SECRETS`: a comma-separated list of `kid:base64secret`
/// (standard or URL-safe base64, secrets of at least 32 bytes). To rotate, put a
/// new key first and keep the old ones after it until their cookies have been
/// re-signed or expired.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Parses a `kid:base64secret[,kid:base64secret...]` list.
    pub fn parse(spec: &str) -> Result<Self> {
        const NAME: &str = "SESSION_SECRETS";
        let mut keys: Vec<SigningKey> = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let Some((kid, secret)) = entry.split_once(':') else {
                return Err(Error::config(
                    NAME,
                    format!("entry {} is not of the form kid:base64secret", index + 1),
                ));
            };
            let kid = kid.trim();
            if !valid_kid(kid) {
                return Err(Error::config(
                    NAME,
                    format!(
                        "entry {}: key id must be 1 to {MAX_KID_LEN} chars of A-Z a-z 0-9 _ -",
                        index + 1
                    ),
                ));
            }
            let secret = secret.trim();
            let bytes = STANDARD
                .decode(secret)
                .or_else(|_| URL_SAFE_NO_PAD.decode(secret.trim_end_matches('=')))
                .map_err(|_| {
                    Error::config(NAME, format!("key {kid:?}: secret is not valid base64"))
                })?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(Error::config(
                    NAME,
                    format!(
                        "key {kid:?}: secret is {} bytes, at least {MIN_KEY_BYTES} are required",
                        bytes.len()
                    ),
                ));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(Error::config(NAME, format!("key id {kid:?} appears twice")));
            }
            let mac = HmacSha256::new_from_slice(&bytes)
                .map_err(|_| Error::config(NAME, "unusable key length"))?;
            keys.push(SigningKey {
                kid: kid.to_owned(),
                mac,
            });
        }
        if keys.is_empty() {
            return Err(Error::config(NAME, "no signing key given"));
        }
        Ok(Self { keys })
    }

    /// The id of the key that signs new cookies.
    pub fn primary_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// All key ids, signing key first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    fn find(&self, kid: &str) -> Option<(usize, &SigningKey)> {
        self.keys.iter().enumerate().find(|(_, k)| k.kid == kid)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSitePolicy {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax` (the default).
    Lax,
    /// `SameSite=None` (requires `Secure`).
    None,
}

impl SameSitePolicy {
    fn to_cookie(self) -> SameSite {
        match self {
            SameSitePolicy::Strict => SameSite::Strict,
            SameSitePolicy::Lax => SameSite::Lax,
            SameSitePolicy::None => SameSite::None,
        }
    }
}

/// Attributes of the session cookie.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CookieConfig {
    /// Cookie name. Default `__Host-session`.
    pub name: String,
    /// `Secure` attribute. Default `true`.
    pub secure: bool,
    /// `HttpOnly` attribute. Default `true`.
    pub http_only: bool,
    /// `SameSite` attribute. Default `Lax`.
    pub same_site: SameSitePolicy,
    /// `Path` attribute. Default `/`.
    pub path: String,
    /// `Domain` attribute. Default none (host-only).
    pub domain: Option<String>,
    /// When true (default) the cookie carries `Max-Age` up to the session's
    /// absolute expiry, so it survives a browser restart; when false it is a
    /// browser-session cookie.
    pub persistent: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "__Host-session".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSitePolicy::Lax,
            path: "/".to_owned(),
            domain: None,
            persistent: true,
        }
    }
}

impl CookieConfig {
    /// Checks the attribute rules browsers enforce, so a misconfiguration fails
    /// at start-up instead of silently losing every cookie.
    pub fn validate(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !name_ok {
            return Err(Error::config(
                "SESSION_COOKIE_NAME",
                "not a valid cookie name (RFC 6265 token)",
            ));
        }
        if self.name.starts_with("__Host-")
            && (!self.secure || self.path != "/" || self.domain.is_some())
        {
            return Err(Error::config(
                "SESSION_COOKIE_NAME",
                "a __Host- cookie needs Secure, Path=/ and no Domain",
            ));
        }
        if self.name.starts_with("__Secure-") && !self.secure {
            return Err(Error::config(
                "SESSION_COOKIE_NAME",
                "a __Secure- cookie needs Secure",
            ));
        }
        if self.same_site == SameSitePolicy::None && !self.secure {
            return Err(Error::config(
                "SESSION_COOKIE_SAMESITE",
                "SameSite=None needs Secure",
            ));
        }
        if !self.path.starts_with('/') {
            return Err(Error::config(
                "SESSION_COOKIE_PATH",
                "the path must start with /",
            ));
        }
        let longest = self.longest_set_cookie();
        if longest > MAX_SET_COOKIE_BYTES {
            // Name the attribute that takes the most room.
            let name = [
                (self.name.len(), "SESSION_COOKIE_NAME"),
                (self.path.len(), "SESSION_COOKIE_PATH"),
                (
                    self.domain.as_ref().map_or(0, String::len),
                    "SESSION_COOKIE_DOMAIN",
                ),
            ]
            .into_iter()
            .max_by_key(|(len, _)| *len)
            .map_or("SESSION_COOKIE_NAME", |(_, name)| name);
            return Err(Error::config(
                name,
                format!(
                    "the session cookie could reach {longest} bytes with its attributes, over the {MAX_SET_COOKIE_BYTES}-byte limit of browsers (shorten the cookie name, path or domain)"
                ),
            ));
        }
        Ok(())
    }

    /// The length of the longest `Set-Cookie` value these attributes can
    /// give: the longest value the codec signs (a key id of 16 chars, a
    /// user tag) with the longest `Max-Age`.
    pub fn longest_set_cookie(&self) -> usize {
        let value = "x".repeat(MAX_VALUE_LEN);
        let mut cookie = CookieCodec::cookie_with(self, value);
        if self.persistent {
            cookie.set_max_age(cookie::time::Duration::seconds(i64::MAX));
        }
        cookie.to_string().len()
    }
}

/// A cookie that passed verification.
#[derive(Debug, Clone)]
pub struct VerifiedCookie {
    /// The session token it carries.
    pub token: SessionToken,
    /// True when it was signed by an older key of the ring and should be
    /// re-signed with the current one on the response.
    pub needs_resign: bool,
}

/// Signs, verifies and formats session cookies.
#[derive(Clone)]
pub struct CookieCodec {
    config: CookieConfig,
    keys: KeyRing,
    /// The deployment the signatures are bound to (the store's key prefix):
    /// two deployments that share secrets refuse each other's cookies
    /// before any Redis call.
    deployment: String,
}

impl fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieCodec")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .field("deployment", &self.deployment)
            .finish()
    }
}

impl CookieCodec {
    /// A codec over `config` and `keys`; fails when the attributes are invalid.
    pub fn new(config: CookieConfig, keys: KeyRing) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            keys,
            deployment: String::new(),
        })
    }

    /// Binds the signatures to `deployment` (the store passes its key
    /// prefix): a cookie signed for another deployment does not verify, even
    /// with the same secrets and cookie name. Cookies signed before this
    /// binding existed (by the cookie name alone) still verify and are
    /// re-signed on the response, as after a key rotation.
    #[must_use]
    pub fn bound_to(mut self, deployment: impl Into<String>) -> Self {
        self.deployment = deployment.into();
        self
    }

    /// The cookie attributes.
    pub fn config(&self) -> &CookieConfig {
        &self.config
    }

    /// The cookie value for `token`, signed with the primary key.
    pub fn sign(&self, token: &SessionToken) -> String {
        let key = &self.keys.keys[0];
        let secret = URL_SAFE_NO_PAD.encode(token.secret);
        let tag = token.user_tag.as_ref().map_or("", UserTag::as_str);
        let payload = format!("{}.{}.{}", key.kid, tag, secret);
        let sig = self.mac(key, &payload, true).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Verifies one cookie value. `None` for anything that is not a valid,
    /// correctly signed session cookie of a known key.
    pub fn verify(&self, value: &str) -> Option<VerifiedCookie> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        let (payload, sig) = value.rsplit_once('.')?;
        let mut parts = payload.split('.');
        let (kid, tag, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || sig.len() != SIG_B64_LEN || secret.len() != SECRET_B64_LEN {
            return None;
        }
        let (index, key) = self.keys.find(kid)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        // A signature bound to this deployment, or one made by the cookie
        // name alone (before the binding), which is re-signed.
        let bound = self.mac(key, payload, true).verify_slice(&sig).is_ok();
        if !bound {
            self.mac(key, payload, false).verify_slice(&sig).ok()?;
        }
        let user_tag = if tag.is_empty() {
            None
        } else {
            Some(UserTag::parse(tag)?)
        };
        let secret: [u8; SECRET_BYTES] = URL_SAFE_NO_PAD.decode(secret).ok()?.try_into().ok()?;
        Some(VerifiedCookie {
            token: SessionToken::with_secret(secret, user_tag),
            needs_resign: index != 0 || !bound,
        })
    }

    /// Finds and verifies the session cookie in a `Cookie` request header.
    ///
    /// When the browser sends several cookies of that name (for example one per
    /// path), the first valid one wins.
    pub fn from_header(&self, header: &str) -> Option<VerifiedCookie> {
        Cookie::split_parse(header)
            .filter_map(|c| c.ok())
            .filter(|c| c.name() == self.config.name)
            .find_map(|c| self.verify(c.value()))
    }

    /// A `Set-Cookie` header value carrying `token`, valid for `max_age_secs`
    /// (ignored for non-persistent cookies).
    pub fn set_cookie(&self, token: &SessionToken, max_age_secs: u64) -> String {
        let mut cookie = self.base_cookie(self.sign(token));
        if self.config.persistent {
            let secs = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
            cookie.set_max_age(cookie::time::Duration::seconds(secs));
        }
        cookie.to_string()
    }

    /// A `Set-Cookie` header value that deletes the session cookie.
    pub fn clear_cookie(&self) -> String {
        let mut cookie = self.base_cookie(String::new());
        cookie.set_max_age(cookie::time::Duration::ZERO);
        cookie.to_string()
    }

    fn base_cookie(&self, value: String) -> Cookie<'static> {
        Self::cookie_with(&self.config, value)
    }

    fn cookie_with(c: &CookieConfig, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(c.name.clone(), value);
        cookie.set_path(c.path.clone());
        cookie.set_secure(c.secure);
        cookie.set_http_only(c.http_only);
        cookie.set_same_site(c.same_site.to_cookie());
        if let Some(domain) = &c.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }

    /// The MAC over `payload`: bound to the deployment (and the cookie
    /// name), or by the cookie name alone as before the binding.
    fn mac(&self, key: &SigningKey, payload: &str, bound: bool) -> HmacSha256 {
        let mut mac = key.mac.clone();
        if bound {
            mac.update(b"edge-session-v2\0");
            mac.update(self.deployment.as_bytes());
            mac.update(b"\0");
        }
        mac.update(self.config.name.as_bytes());
        mac.update(b"=");
        mac.update(payload.as_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const K1: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const K2: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

    fn codec(spec: &str) -> CookieCodec {
        CookieCodec::new(CookieConfig::default(), KeyRing::parse(spec).unwrap()).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let c = codec(K1);
        for tag in [None, Some(UserTag::of("alice"))] {
            let token = SessionToken::generate(tag);
            let v = c.verify(&c.sign(&token)).unwrap();
            assert_eq!(v.token, token);
            assert!(!v.needs_resign);
        }
    }

    #[test]
    fn tokens_are_random_and_256_bits() {
        let a = SessionToken::generate(None);
        let b = SessionToken::generate(None);
        assert_ne!(a, b);
        assert_eq!(a.secret.len() * 8, 256);
        assert_eq!(a.handle().as_str().len(), 64);
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let c = codec(K1);
        let value = c.sign(&SessionToken::generate(Some(UserTag::of("bob"))));
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != value {
                assert!(c.verify(&tampered).is_none(), "accepted tampering at {i}");
            }
        }
    }

    #[test]
    fn truncated_malformed_and_foreign_values_are_anonymous() {
        let c = codec(K1);
        let value = c.sign(&SessionToken::generate(None));
        for n in 0..value.len() {
            assert!(c.verify(&value[..n]).is_none());
        }
        for bad in [
            "",
            ".",
            "...",
            "k1...",
            "k1.zz.abc.def",
            "not-a-cookie",
            "💥.💥.💥.💥",
        ] {
            assert!(c.verify(bad).is_none(), "{bad}");
        }
        assert!(c.verify(&format!("{value}{}", "A".repeat(5000))).is_none());
        // A cookie signed by a key the ring does not know.
        let other = codec(K2).sign(&SessionToken::generate(None));
        assert!(c.verify(&other).is_none());
    }

    #[test]
    fn the_signature_binds_the_cookie_name() {
        let a = codec(K1);
        let config = CookieConfig {
            name: "__Host-other".into(),
            ..CookieConfig::default()
        };
        let b = CookieCodec::new(config, KeyRing::parse(K1).unwrap()).unwrap();
        let value = a.sign(&SessionToken::generate(None));
        assert!(b.verify(&value).is_none());
    }

    #[test]
    fn the_signature_binds_the_deployment() {
        let a = codec(K1).bound_to("app-a:");
        let b = codec(K1).bound_to("app-b:");
        let token = SessionToken::generate(None);
        let value = a.sign(&token);
        assert!(b.verify(&value).is_none(), "another deployment's cookie");
        let own = a.verify(&value).unwrap();
        assert!(!own.needs_resign);
        // A cookie signed before the binding still verifies, and is re-signed.
        let old = a.verify(&mac_by_name_only(&codec(K1), &token)).unwrap();
        assert!(old.needs_resign);
        assert_eq!(old.token, token);
    }

    /// A cookie value signed the way cookies were before the deployment binding.
    fn mac_by_name_only(codec: &CookieCodec, token: &SessionToken) -> String {
        let key = &codec.keys.keys[0];
        let secret = URL_SAFE_NO_PAD.encode(token.secret);
        let payload = format!("{}..{}", key.kid, secret);
        let sig = codec.mac(key, &payload, false).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn rotation_verifies_old_keys_and_asks_for_resign() {
        let old = codec(K1);
        let rotated = codec(&format!("{K2},{K1}"));
        let token = SessionToken::generate(None);
        let v = rotated.verify(&old.sign(&token)).unwrap();
        assert!(v.needs_resign);
        assert_eq!(v.token, token);
        let resigned = rotated.sign(&v.token);
        assert!(resigned.starts_with("k2."));
        assert!(!rotated.verify(&resigned).unwrap().needs_resign);
        // Once the old key is removed, its cookies are anonymous.
        assert!(codec(K2).verify(&old.sign(&token)).is_none());
    }

    #[test]
    fn key_ring_rejects_bad_specs_without_echoing_secrets() {
        for bad in [
            "",
            "nokey",
            "k1:c2hvcnQ=",
            "k1:!!!notbase64!!!",
            "bad kid:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            &format!("{K1},{K1}"),
        ] {
            let err = KeyRing::parse(bad).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("MDEyMzQ1"), "secret leaked: {text}");
        }
        let ring = KeyRing::parse(&format!(" {K2} , {K1} ")).unwrap();
        assert_eq!(ring.kids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(!format!("{ring:?}").contains("ZmVk"));
    }

    #[test]
    fn cookie_header_parsing_picks_our_cookie() {
        let c = codec(K1);
        let token = SessionToken::generate(None);
        let header = format!(
            "a=1; __Host-session=garbage; __Host-session={}; b=2",
            c.sign(&token)
        );
        assert_eq!(c.from_header(&header).unwrap().token, token);
        assert!(c.from_header("a=1; b=2").is_none());
        assert!(c.from_header(";;;==;").is_none());
    }

    #[test]
    fn set_cookie_has_the_secure_defaults() {
        let c = codec(K1);
        let set = c.set_cookie(&SessionToken::generate(None), 3600);
        for attr in [
            "__Host-session=",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(set.contains(attr), "{set} lacks {attr}");
        }
        let clear = c.clear_cookie();
        assert!(clear.contains("Max-Age=0") && clear.starts_with("__Host-session=;"));
    }

    #[test]
    fn host_prefix_rules_are_enforced() {
        let mut config = CookieConfig {
            secure: false,
            ..CookieConfig::default()
        };
        assert!(config.validate().is_err());
        config.name = "sid".into();
        assert!(config.validate().is_ok());
        config.same_site = SameSitePolicy::None;
        assert!(config.validate().is_err());
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let c = codec(K1);
        let token = SessionToken::generate(None);
        let value = c.sign(&token);
        let secret_part = value.split('.').nth(2).unwrap();
        assert!(!format!("{token:?}").contains(secret_part));
    }

    #[test]
    fn the_largest_set_cookie_fits_in_4096_bytes() {
        // The longest key id and a user tag: the longest value signed.
        let ring = KeyRing::parse(&format!("{}:{}", "k".repeat(16), &K1[3..])).unwrap();
        let domain = format!("{}.example", "d".repeat(1700));
        let config = CookieConfig {
            name: "__Secure-session".into(),
            path: format!("/{}", "p".repeat(2000)),
            domain: Some(domain),
            ..CookieConfig::default()
        };
        let longest = config.longest_set_cookie();
        assert!(longest <= MAX_SET_COOKIE_BYTES, "{longest}");
        let c = CookieCodec::new(config.clone(), ring).unwrap();
        let set = c.set_cookie(&SessionToken::generate(Some(UserTag::of("u"))), u64::MAX);
        assert!(set.len() <= longest, "{} > {longest}: {set}", set.len());
        assert!(
            set.len() > 3900,
            "the test should come close: {}",
            set.len()
        );
        // A little more and the configuration is refused at start-up.
        let too_long = CookieConfig {
            path: format!("/{}", "p".repeat(2400)),
            ..config
        };
        let e = too_long.validate().unwrap_err().to_string();
        assert!(
            e.contains("SESSION_COOKIE_PATH") && e.contains("4096"),
            "{e}"
        );
        assert!(CookieConfig::default().longest_set_cookie() < 300);
    }
}
