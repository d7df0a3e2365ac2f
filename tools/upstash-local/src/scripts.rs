//! Upstash's script flag `allow-key-locking`, which stock Redis refuses.
//!
//! Upstash documents `#!lua flags=allow-key-locking` as a script's first line: the script then
//! locks only the keys it declares instead of the whole database. redis-server answers
//! `ERR Unexpected flag in script shebang: allow-key-locking`, so the endpoint removes that one
//! flag from the shebang of `EVAL`, `EVAL_RO` and `SCRIPT LOAD` bodies before they reach Redis.
//! The other flags stay, and so does the shebang line itself (`#!lua` alone when the flag was the
//! only one): the script keeps its line numbers and Redis treats it as the flagged script it is
//! (without `no-writes` it is a write script, which `EVAL_RO` refuses), as Upstash would.
//!
//! Clients name scripts by the SHA1 of the text they sent. So `SCRIPT LOAD` answers the SHA1 of
//! the original text, and every rewrite is remembered as original SHA1 -> SHA1 of the text Redis
//! has; `EVALSHA`, `EVALSHA_RO` and `SCRIPT EXISTS` are translated with that map. A SHA1 Redis
//! does not have still gets Redis's `NOSCRIPT` (after `SCRIPT FLUSH` too), so the clients'
//! fall-back to `EVAL` works unchanged.

use std::collections::HashMap;
use std::sync::Mutex;

use redis::Value;

use crate::command::Command;

/// The flag Upstash knows and Redis does not.
const ALLOW_KEY_LOCKING: &str = "allow-key-locking";

/// The rewrites made so far: SHA1 of a script as a client sent it -> SHA1 of the text Redis got.
#[derive(Debug, Default)]
pub(crate) struct Scripts {
    renamed: Mutex<HashMap<String, String>>,
}

/// A command ready for Redis.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// What Redis runs.
    pub(crate) command: Command,
    /// For a `SCRIPT LOAD` that was rewritten: the SHA1 the client expects (of its own text).
    pub(crate) answer_sha: Option<String>,
}

/// The reply to show the client, from Redis's reply to a [`Prepared::command`] with this
/// [`Prepared::answer_sha`]: a rewritten `SCRIPT LOAD` answers the SHA1 of the client's text.
pub(crate) fn client_reply(answer_sha: Option<&str>, reply: Value) -> Value {
    match (answer_sha, reply) {
        (Some(sha), Value::BulkString(_) | Value::SimpleString(_)) => {
            Value::BulkString(sha.as_bytes().to_vec())
        }
        (_, reply) => reply,
    }
}

impl Scripts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.renamed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `command` as Redis can run it.
    pub(crate) fn prepare(&self, command: Command) -> Prepared {
        let name = command.name();
        let upper = |index: usize| {
            command
                .args()
                .get(index)
                .map(|word| word.to_ascii_uppercase())
        };
        let script_at = match name.as_str() {
            "EVAL" | "EVAL_RO" => Some(1),
            "SCRIPT" if upper(1).as_deref() == Some(b"LOAD") => Some(2),
            "EVALSHA" | "EVALSHA_RO" => return self.translate(command, 1..2),
            "SCRIPT" if upper(1).as_deref() == Some(b"EXISTS") => {
                let len = command.args().len();
                return self.translate(command, 2..len);
            }
            _ => None,
        };
        let Some(index) = script_at else {
            return Prepared {
                command,
                answer_sha: None,
            };
        };
        let Some(stripped) = command
            .args()
            .get(index)
            .and_then(|script| without_key_locking(script))
        else {
            return Prepared {
                command,
                answer_sha: None,
            };
        };
        let original_sha = sha1_hex(&command.args()[index]);
        self.map().insert(original_sha.clone(), sha1_hex(&stripped));
        let mut args = command.args().to_vec();
        args[index] = stripped;
        Prepared {
            command: Command::from_args(args).unwrap_or(command),
            answer_sha: (index == 2).then_some(original_sha),
        }
    }

    /// Replaces the SHA1s at `indexes` that name rewritten scripts.
    fn translate(&self, command: Command, indexes: std::ops::Range<usize>) -> Prepared {
        let map = self.map();
        if map.is_empty() {
            drop(map);
            return Prepared {
                command,
                answer_sha: None,
            };
        }
        let mut args = command.args().to_vec();
        for arg in args.iter_mut().take(indexes.end).skip(indexes.start) {
            let sha = String::from_utf8_lossy(arg).to_ascii_lowercase();
            if let Some(stripped) = map.get(&sha) {
                *arg = stripped.clone().into_bytes();
            }
        }
        drop(map);
        Prepared {
            command: Command::from_args(args).unwrap_or(command),
            answer_sha: None,
        }
    }
}

/// The script without `allow-key-locking` in its shebang line; `None` when it has no such flag
/// (then it goes to Redis unchanged, whatever else its first line says).
fn without_key_locking(script: &[u8]) -> Option<Vec<u8>> {
    if !script.starts_with(b"#!") {
        return None;
    }
    // Redis requires the newline after a shebang; without one it fails the script anyway.
    let end = script.iter().position(|&byte| byte == b'\n')?;
    let line = std::str::from_utf8(&script[..end]).ok()?;
    // Redis splits the shebang at spaces, tabs and carriage returns.
    let mut words = line
        .split([' ', '\t', '\r'])
        .filter(|word| !word.is_empty());
    if words.next()? != "#!lua" {
        return None;
    }
    let mut found = false;
    let mut kept = vec!["#!lua".to_owned()];
    for word in words {
        match word.strip_prefix("flags=") {
            Some(list) => {
                let flags: Vec<&str> = list
                    .split(',')
                    .filter(|flag| {
                        let drop = *flag == ALLOW_KEY_LOCKING;
                        found |= drop;
                        !drop
                    })
                    .collect();
                if !flags.is_empty() {
                    kept.push(format!("flags={}", flags.join(",")));
                }
            }
            None => kept.push(word.to_owned()),
        }
    }
    if !found {
        return None;
    }
    let mut stripped = kept.join(" ").into_bytes();
    stripped.extend_from_slice(&script[end..]);
    Some(stripped)
}

/// SHA1 in lower-case hex, as Redis names scripts.
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest as _;
    hex::encode(sha1::Sha1::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Command {
        Command::from_args(words.iter().map(|w| w.as_bytes().to_vec()).collect()).expect("words")
    }

    fn words(command: &Command) -> Vec<String> {
        command
            .args()
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    fn strip(script: &str) -> Option<String> {
        without_key_locking(script.as_bytes()).map(|s| String::from_utf8(s).expect("utf-8"))
    }

    #[test]
    fn sha1_test_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            sha1_hex(&vec![b'a'; 1_000_000]),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        // What Redis names `return 1`.
        assert_eq!(
            sha1_hex(b"return 1"),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn only_allow_key_locking_is_removed() {
        assert_eq!(
            strip("#!lua flags=allow-key-locking\nreturn 1").as_deref(),
            Some("#!lua\nreturn 1")
        );
        assert_eq!(
            strip("#!lua flags=no-writes,allow-key-locking,allow-oom\r\nreturn 1").as_deref(),
            Some("#!lua flags=no-writes,allow-oom\nreturn 1")
        );
        assert_eq!(
            strip("#!lua  flags=allow-key-locking,no-writes \nreturn 1\n").as_deref(),
            Some("#!lua flags=no-writes\nreturn 1\n")
        );
        // Nothing to do: unchanged, byte for byte.
        for script in [
            "return 1",
            "#!lua flags=no-writes\nreturn 1",
            "#!lua\nreturn 1",
            "#!lua flags=allow-key-locking",
            "#!js flags=allow-key-locking\nreturn 1",
            "-- #!lua flags=allow-key-locking\nreturn 1",
            "#!lua flags=no-writes\n-- flags=allow-key-locking\nreturn 1",
        ] {
            assert_eq!(strip(script), None, "{script:?}");
        }
    }

    #[test]
    fn rewrites_are_mapped_by_the_original_sha() {
        let scripts = Scripts::default();
        let original = "#!lua flags=allow-key-locking\nreturn 1";
        let original_sha = sha1_hex(original.as_bytes());
        let stripped_sha = sha1_hex(b"#!lua\nreturn 1");

        // Before any rewrite EVALSHA goes through untouched.
        let untouched = scripts.prepare(cmd(&["EVALSHA", &original_sha, "0"]));
        assert_eq!(words(&untouched.command)[1], original_sha);

        let loaded = scripts.prepare(cmd(&["script", "load", original]));
        assert_eq!(
            words(&loaded.command),
            ["script", "load", "#!lua\nreturn 1"]
        );
        assert_eq!(loaded.answer_sha.as_deref(), Some(original_sha.as_str()));
        assert_eq!(
            client_reply(
                loaded.answer_sha.as_deref(),
                Value::BulkString(stripped_sha.clone().into_bytes())
            ),
            Value::BulkString(original_sha.clone().into_bytes())
        );
        // Errors are passed on.
        assert_eq!(
            client_reply(loaded.answer_sha.as_deref(), Value::Nil),
            Value::Nil
        );

        let upper = original_sha.to_ascii_uppercase();
        for name in ["EVALSHA", "evalsha_ro"] {
            let call = scripts.prepare(cmd(&[name, &upper, "1", "k"]));
            assert_eq!(words(&call.command), [name, &stripped_sha, "1", "k"]);
            assert_eq!(call.answer_sha, None);
        }
        let exists = scripts.prepare(cmd(&["SCRIPT", "EXISTS", &original_sha, "abc"]));
        assert_eq!(
            words(&exists.command),
            ["SCRIPT", "EXISTS", &stripped_sha, "abc"]
        );

        let eval = scripts.prepare(cmd(&["eval", original, "0"]));
        assert_eq!(words(&eval.command), ["eval", "#!lua\nreturn 1", "0"]);
        assert_eq!(eval.answer_sha, None, "EVAL answers the script's result");
        let plain = scripts.prepare(cmd(&["EVAL", "return 1", "0"]));
        assert_eq!(words(&plain.command), ["EVAL", "return 1", "0"]);
        let unknown = "f".repeat(40);
        let missing = scripts.prepare(cmd(&["EVALSHA", &unknown, "0"]));
        assert_eq!(words(&missing.command)[1], unknown);
    }
}
