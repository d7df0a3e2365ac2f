//! Commands as the REST API receives them: parsing JSON bodies and path-style requests, and the
//! list of commands the endpoint refuses to run, like Upstash does.

use serde_json::Value as Json;

/// One Redis command: its name followed by its arguments, as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command(Vec<Vec<u8>>);

impl Command {
    /// A command from already split arguments; `None` when there are none.
    pub(crate) fn from_args(args: Vec<Vec<u8>>) -> Option<Self> {
        if args.is_empty() {
            None
        } else {
            Some(Self(args))
        }
    }

    /// All words of the command, the name first.
    pub(crate) fn args(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The command name in upper case (lossy for non-UTF-8 names).
    pub(crate) fn name(&self) -> String {
        self.word_upper(0).unwrap_or_default()
    }

    fn word_upper(&self, index: usize) -> Option<String> {
        self.0
            .get(index)
            .map(|word| String::from_utf8_lossy(word).to_ascii_uppercase())
    }

    /// `Err(message)` for commands that Upstash does not serve over REST: blocking commands,
    /// transactions and connection-state commands (which would also break the connection this
    /// endpoint shares between requests), subscriptions and MONITOR.
    pub(crate) fn check_allowed(&self) -> Result<(), String> {
        let name = self.name();
        let not_available = || {
            Err(format!(
                "ERR Command is not available: '{}'",
                name.to_ascii_lowercase()
            ))
        };
        match name.as_str() {
            // Blocking commands.
            "BLPOP" | "BRPOP" | "BRPOPLPUSH" | "BLMOVE" | "BLMPOP" | "BZPOPMIN" | "BZPOPMAX"
            | "BZMPOP" | "WAIT" | "WAITAOF" => not_available(),
            // Transactions: only `/multi-exec` makes one.
            "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" => not_available(),
            // Connection state and connection takeover.
            "SELECT" | "HELLO" | "RESET" | "AUTH" | "QUIT" | "MONITOR" | "SYNC" | "PSYNC"
            | "REPLCONF" => not_available(),
            // Pub/sub subscriptions (PUBLISH is fine).
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
            | "SUNSUBSCRIBE" => not_available(),
            "CLIENT" => match self.word_upper(1).as_deref() {
                Some(sub @ ("REPLY" | "TRACKING" | "CACHING")) => Err(format!(
                    "ERR Command is not available: 'client|{}'",
                    sub.to_ascii_lowercase()
                )),
                _ => Ok(()),
            },
            "XREAD" | "XREADGROUP" => {
                // BLOCK is an option before the STREAMS keyword.
                let blocking = self
                    .0
                    .iter()
                    .skip(1)
                    .map(|word| word.to_ascii_uppercase())
                    .take_while(|word| word != b"STREAMS")
                    .any(|word| word == b"BLOCK");
                if blocking {
                    Err(format!(
                        "ERR Command is not available: '{}' with BLOCK",
                        name.to_ascii_lowercase()
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Why a request body could not be read as commands.
pub(crate) fn malformed(detail: &str) -> String {
    format!("ERR malformed request body: {detail}")
}

/// A command from one JSON array of strings, numbers and booleans. Numbers become their decimal
/// text, booleans `true`/`false`.
fn command_from_json(value: &Json) -> Result<Command, String> {
    let Json::Array(items) = value else {
        return Err(malformed("a command must be a JSON array"));
    };
    let mut args = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Json::String(text) => args.push(text.clone().into_bytes()),
            Json::Number(number) => args.push(number_text(number).into_bytes()),
            // The official JS client passes booleans through as JSON booleans.
            Json::Bool(flag) => args.push(flag.to_string().into_bytes()),
            _ => {
                return Err(malformed(
                    "command arguments must be JSON strings, numbers or booleans",
                ));
            }
        }
    }
    Command::from_args(args).ok_or_else(|| malformed("empty command"))
}

/// The decimal text of a JSON number: integers as they are, other numbers in their shortest
/// round-trip form without an exponent (`1e3` becomes `1000`, `1.5e-7` becomes `0.00000015`).
fn number_text(number: &serde_json::Number) -> String {
    if let Some(int) = number.as_i64() {
        int.to_string()
    } else if let Some(uint) = number.as_u64() {
        uint.to_string()
    } else {
        // Without serde_json's arbitrary_precision every other number is an f64.
        number.as_f64().map(|f| f.to_string()).unwrap_or_default()
    }
}

fn parse_json(body: &[u8]) -> Result<Json, String> {
    serde_json::from_slice(body).map_err(|err| malformed(&err.to_string()))
}

/// The body of `POST /`: one command.
pub(crate) fn parse_single(body: &[u8]) -> Result<Command, String> {
    command_from_json(&parse_json(body)?)
}

/// The body of `POST /pipeline` and `POST /multi-exec`: a non-empty array of commands.
pub(crate) fn parse_batch(body: &[u8]) -> Result<Vec<Command>, String> {
    let Json::Array(items) = parse_json(body)? else {
        return Err(malformed("expected a JSON array of commands"));
    };
    if items.is_empty() {
        return Err(malformed("empty pipeline"));
    }
    items.iter().map(command_from_json).collect()
}

/// A path-style command: `/set/foo/bar?EX=100`, with a non-empty request body (POST/PUT) appended
/// as the last path argument, then the query parameters (other than `_token`) as `KEY value`.
pub(crate) fn parse_path(
    path: &str,
    body: Option<&[u8]>,
    query: &[(String, String)],
) -> Result<Command, String> {
    let mut args: Vec<Vec<u8>> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_encoding::percent_decode_str(segment).collect())
        .collect();
    if let Some(body) = body.filter(|body| !body.is_empty()) {
        args.push(body.to_vec());
    }
    for (key, value) in query {
        args.push(key.clone().into_bytes());
        if !value.is_empty() {
            args.push(value.clone().into_bytes());
        }
    }
    Command::from_args(args).ok_or_else(|| "ERR empty command".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(cmd: &Command) -> Vec<String> {
        cmd.args()
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    #[test]
    fn numbers_become_decimal_text() {
        let cmd = parse_single(br#"["set","k",10,-3,1.5,1e3,1.5e-7,18446744073709551615]"#)
            .expect("valid command");
        assert_eq!(
            words(&cmd),
            [
                "set",
                "k",
                "10",
                "-3",
                "1.5",
                "1000",
                "0.00000015",
                "18446744073709551615"
            ]
        );
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for body in [
            &b"not json"[..],
            b"{}",
            b"[]",
            b"[null]",
            b"[{}]",
            b"[[\"get\"]]",
            b"",
        ] {
            assert!(
                parse_single(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [&b"[]"[..], b"[\"get\",\"k\"]", b"[[]]", b"[[\"get\"], 1]"] {
            assert!(
                parse_batch(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_batch(br#"[["get","a"],["incr","b"]]"#).map(|v| v.len()),
            Ok(2)
        );
    }

    #[test]
    fn path_style() {
        let cmd = parse_path(
            "/set/foo%20bar/",
            Some(b"value"),
            &[("EX".into(), "100".into()), ("NX".into(), String::new())],
        )
        .expect("valid");
        assert_eq!(words(&cmd), ["set", "foo bar", "value", "EX", "100", "NX"]);
        assert!(parse_path("/", None, &[]).is_err());
    }

    #[test]
    fn rejected_commands() {
        let cmd = |words: &[&str]| {
            Command::from_args(words.iter().map(|w| w.as_bytes().to_vec()).collect())
                .expect("non-empty")
        };
        for rejected in [
            &["blpop", "k", "0"][..],
            &["MULTI"],
            &["exec"],
            &["watch", "k"],
            &["select", "1"],
            &["subscribe", "c"],
            &["monitor"],
            &["client", "reply", "off"],
            &["xread", "block", "0", "streams", "s", "$"],
        ] {
            assert!(cmd(rejected).check_allowed().is_err(), "{rejected:?}");
        }
        for allowed in [
            &["get", "k"][..],
            &["publish", "c", "m"],
            &["client", "setname", "x"],
            &["xread", "count", "1", "streams", "block", "0"],
        ] {
            assert_eq!(cmd(allowed).check_allowed(), Ok(()), "{allowed:?}");
        }
        assert_eq!(
            cmd(&["BLPOP", "k", "0"]).check_allowed(),
            Err("ERR Command is not available: 'blpop'".to_owned())
        );
    }
}
