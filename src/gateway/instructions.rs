//! The origin's session instructions: `x-session-*` response headers.

use http::HeaderMap;

use crate::error::{Error, Result};
use crate::request::{Logout, RequestSession};

/// `x-session-set: {"field": value, ...}` (`null` deletes a field).
pub const SET: &str = "x-session-set";
/// `x-session-incr: {"field": n, ...}`.
pub const INCR: &str = "x-session-incr";
/// `x-session-login: <user id>` (percent-encoded, like `x-session-user`).
pub const LOGIN: &str = "x-session-login";
/// `x-session-logout: current | all`.
pub const LOGOUT: &str = "x-session-logout";

/// Why an instruction was refused. The whole response's instructions are
/// refused together: they never half-apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstructionError {
    /// The header at fault.
    pub header: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for InstructionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.header, self.reason)
    }
}

impl std::error::Error for InstructionError {}

/// The instructions of one origin response, parsed and validated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Instructions {
    // pub(crate) for `crate::fuzzing::instruction_parts`.
    pub(crate) set: Vec<(String, serde_json::Value)>,
    pub(crate) incr: Vec<(String, i64)>,
    pub(crate) login: Option<String>,
    pub(crate) logout: Option<Logout>,
}

impl Instructions {
    /// Removes every `x-session-*` header from `headers` and parses the
    /// instructions among them. Unknown `x-session-*` headers are dropped.
    pub fn take(headers: &mut HeaderMap) -> std::result::Result<Self, InstructionError> {
        let mut out = Self::default();
        let set = take_one(headers, SET)?;
        let incr = take_one(headers, INCR)?;
        let login = take_one(headers, LOGIN)?;
        let logout = take_one(headers, LOGOUT)?;
        super::strip_session_headers(headers);

        if let Some(text) = set {
            for (field, value) in json_object(SET, &text)? {
                out.set.push((field, value));
            }
        }
        if let Some(text) = incr {
            for (field, value) in json_object(INCR, &text)? {
                let by = value.as_i64().ok_or_else(|| InstructionError {
                    header: INCR,
                    reason: format!("{field:?} is not an integer"),
                })?;
                out.incr.push((field, by));
            }
        }
        if let Some(user) = login {
            // A header sent twice reaches some packagings already joined
            // ("alice, bob": the Workers `Headers` API joins repeats), so a
            // raw comma is refused; a comma in a user id travels as `%2C`.
            if user.contains(',') {
                return Err(InstructionError {
                    header: LOGIN,
                    reason: "sent more than once (or a raw comma: percent-encode it as %2C)".into(),
                });
            }
            // Percent-decoded, as `x-session-user` is encoded: user ids that
            // are not plain ASCII travel safely through every HTTP stack.
            let user = percent_encoding::percent_decode_str(user.trim())
                .decode_utf8()
                .map_err(|_| InstructionError {
                    header: LOGIN,
                    reason: "not UTF-8 once percent-decoded".into(),
                })?;
            if user.is_empty() {
                return Err(InstructionError {
                    header: LOGIN,
                    reason: "empty user id".into(),
                });
            }
            out.login = Some(user.into_owned());
        }
        if let Some(scope) = logout {
            out.logout = Some(match scope.trim() {
                "current" => Logout::Current,
                "all" => Logout::All,
                _ => {
                    return Err(InstructionError {
                        header: LOGOUT,
                        reason: "must be current or all".into(),
                    });
                }
            });
        }
        Ok(out)
    }

    /// True when the origin asked for nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.incr.is_empty() && self.login.is_none() && self.logout.is_none()
    }

    /// Records the instructions on the request's session. Field names and
    /// sizes are checked here, before anything is written.
    pub fn apply(self, session: &mut RequestSession) -> Result<()> {
        for (field, value) in &self.set {
            session.changes().set_json(field, value)?;
        }
        for (field, by) in &self.incr {
            session.changes().incr(field, *by)?;
        }
        if let Some(scope) = self.logout {
            session.logout(scope);
        }
        if let Some(user) = self.login {
            session.login(user);
        }
        Ok(())
    }
}

fn take_one(
    headers: &mut HeaderMap,
    name: &'static str,
) -> std::result::Result<Option<String>, InstructionError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InstructionError {
            header: name,
            reason: "sent more than once".into(),
        });
    }
    let text = String::from_utf8(first.as_bytes().to_vec()).map_err(|_| InstructionError {
        header: name,
        reason: "not UTF-8".into(),
    })?;
    Ok(Some(text))
}

fn json_object(
    header: &'static str,
    text: &str,
) -> std::result::Result<serde_json::Map<String, serde_json::Value>, InstructionError> {
    match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(InstructionError {
            header,
            reason: "must be a JSON object".into(),
        }),
        Err(e) => Err(InstructionError {
            header,
            reason: format!("invalid JSON ({e})"),
        }),
    }
}

/// Errors from applying instructions that are the origin's fault (bad field
/// names, sizes, increments of non-integers): answered with 502.
pub(crate) fn is_instruction_fault(error: &Error) -> bool {
    matches!(
        error,
        Error::InvalidField { .. }
            | Error::TooLarge { .. }
            | Error::TooManyFields { .. }
            | Error::NotAnInteger { .. }
            | Error::Encode { .. }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn parses_every_instruction_and_strips_the_headers() {
        let mut h = headers(&[
            (SET, r#"{"a": 1, "b": null}"#),
            (INCR, r#"{"n": -2}"#),
            (LOGIN, " alice "),
            (LOGOUT, "all"),
            ("x-session-other", "x"),
            ("content-type", "text/html"),
        ]);
        let i = Instructions::take(&mut h).unwrap();
        assert_eq!(i.set.len(), 2);
        assert_eq!(i.incr, [("n".to_owned(), -2)]);
        assert_eq!(i.login.as_deref(), Some("alice"));
        let mut encoded = headers(&[(LOGIN, "Jos%C3%A9%25")]);
        let decoded = Instructions::take(&mut encoded).unwrap();
        assert_eq!(decoded.login.as_deref(), Some("José%"));
        assert_eq!(i.logout, Some(Logout::All));
        assert_eq!(h.len(), 1, "only content-type is left");
    }

    #[test]
    fn malformed_instructions_are_refused_whole() {
        for bad in [
            (SET, "not json"),
            (SET, "[1,2]"),
            (INCR, r#"{"n": 1.5}"#),
            (INCR, r#"{"n": "1"}"#),
            (LOGIN, "   "),
            (LOGOUT, "everyone"),
        ] {
            let mut h = headers(&[bad, (SET, r#"{"ok": 1}"#)]);
            let err = Instructions::take(&mut h).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad:?}");
        }
        let mut joined = headers(&[(LOGIN, "alice, bob")]);
        assert!(
            Instructions::take(&mut joined).is_err_and(|e| e.reason.contains("more than once"))
        );
        let mut comma = headers(&[(LOGIN, "a%2Cb")]);
        assert_eq!(
            Instructions::take(&mut comma).ok().and_then(|i| i.login),
            Some("a,b".to_owned())
        );
        let mut twice = headers(&[(LOGIN, "a"), (LOGIN, "b")]);
        assert!(Instructions::take(&mut twice).is_err());
    }
}
