//! The origin's `x-session-*` instructions (`edge_session::gateway::instructions`).
//!
//! Input: a response header block, one `name: value` per line (`\n`); a
//! one-character name `0`..`4` stands for `x-session-set`, `-incr`, `-login`,
//! `-logout` and `x-session-other`. Lines whose name or value `http` refuses
//! are skipped, as a real origin response could not carry them.
//!
//! Invariants: [`Instructions::take`] returns an error or instructions that
//! are exactly what the headers said; on success no `x-session-*` header is
//! left for the browser; applying the instructions to a change set returns
//! `Ok` or a typed error, never a panic.
#![no_main]

use edge_session::Changes;
use edge_session::fuzzing;
use edge_session::gateway::Instructions;
use edge_session::gateway::instructions::{INCR, LOGIN, LOGOUT, SET};
use edge_session::request::Logout;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn header_name(raw: &[u8]) -> Option<HeaderName> {
    let name = match raw {
        b"0" => SET,
        b"1" => INCR,
        b"2" => LOGIN,
        b"3" => LOGOUT,
        b"4" => "x-session-other",
        _ => return HeaderName::from_bytes(raw).ok(),
    };
    Some(HeaderName::from_static(name))
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Some(name), Ok(value)) = (
            header_name(trim(&line[..colon])),
            HeaderValue::from_bytes(trim(&line[colon + 1..])),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let before = headers.clone();
    let non_session = before
        .keys()
        .filter(|n| !is_session_header(n.as_str()))
        .map(|n| before.get_all(n).iter().count())
        .sum::<usize>();

    let Ok(instructions) = Instructions::take(&mut headers) else {
        return;
    };
    assert!(
        headers.keys().all(|n| !is_session_header(n.as_str())),
        "an x-session-* header survived"
    );
    assert_eq!(headers.len(), non_session, "other headers are kept");

    let (set, incr, login, logout) = fuzzing::instruction_parts(&instructions);
    let single = |name: &str| {
        let mut values = before.get_all(name).iter();
        let first = values.next();
        assert!(values.next().is_none(), "{name} accepted twice");
        first.map(|v| std::str::from_utf8(v.as_bytes()).expect("accepted as UTF-8"))
    };
    match single(SET) {
        Some(text) => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).expect("x-session-set is a JSON object");
            assert_eq!(set.len(), object.len());
            for (field, value) in set {
                assert_eq!(object.get(field), Some(value));
            }
        }
        None => assert!(set.is_empty()),
    }
    match single(INCR) {
        Some(text) => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).expect("x-session-incr is a JSON object");
            assert_eq!(incr.len(), object.len());
            for (field, by) in incr {
                assert_eq!(
                    object.get(field).and_then(serde_json::Value::as_i64),
                    Some(*by)
                );
            }
        }
        None => assert!(incr.is_empty()),
    }
    match (single(LOGIN), login) {
        (Some(_), Some(user)) => assert!(!user.is_empty()),
        (None, None) => {}
        (sent, parsed) => panic!("login {sent:?} parsed as {parsed:?}"),
    }
    match (single(LOGOUT).map(str::trim), logout) {
        (Some("current"), Some(Logout::Current))
        | (Some("all"), Some(Logout::All))
        | (None, None) => {}
        (sent, parsed) => panic!("logout {sent:?} parsed as {parsed:?}"),
    }
    assert_eq!(
        instructions.is_empty(),
        set.is_empty() && incr.is_empty() && login.is_none() && logout.is_none()
    );

    // What `Instructions::apply` does with the fields: checked, never a panic.
    let mut changes = Changes::new();
    for (field, value) in set {
        let _ = changes.set_json(field, value);
    }
    for (field, by) in incr {
        let _ = changes.incr(field, *by);
    }
});

/// `x-session-*`, with `_` read as `-` (what the gateway strips).
fn is_session_header(name: &str) -> bool {
    name.replace('_', "-").starts_with("x-session-")
}
