//! Which commands are reads and which need the primary, from Redis's own command table.
//!
//! The table is read once at start with `COMMAND` (every command, with its subcommands), so the
//! classification is Redis's, complete for the server in use, and costs no round trip per
//! request. Two questions are answered from it:
//!
//! - **Is it a read?** Redis flags it `readonly` (`GET`, `HGETALL`, `PTTL`, `ZRANGE`,
//!   `EVAL_RO`, `OBJECT ENCODING`, ...). The lagging replica answers only such commands (and
//!   tries plain scripts as `EVAL_RO`, see `replica.rs`).
//! - **Does it need the primary?** Redis flags it `write` (`SET`, `HSET`, `DEL`, `EXPIRE`,
//!   `FUNCTION LOAD`, ...) or `pubsub` (`PUBLISH` reaches subscribers in every region), or it is
//!   a `@scripting` command that Redis does not flag `readonly`: `EVAL`, `EVALSHA`, `FCALL` and
//!   the `SCRIPT` / `FUNCTION` subcommands, since a script may write and the scripts live on the
//!   primary. A command missing from the table (a typo, a module's command) needs the primary
//!   too. Commands that are neither reads nor writes and touch no data (`PING`, `ECHO`, `TIME`,
//!   `INFO`, `CLIENT SETNAME`) are answered where they arrive.
//!
//! A command with subcommands (`SCRIPT`, `OBJECT`, `CLIENT`, ...) is classified by the entry of
//! its subcommand (`script|load`), whose flags are the meaningful ones.

use std::collections::HashMap;

use redis::Value;

use crate::command::Command;

/// What one command (or subcommand) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Kind {
    /// Flagged `readonly`: a replica may answer it.
    pub(crate) read_only: bool,
    /// Flagged `write` or `pubsub`, or a `@scripting` command without `readonly`.
    pub(crate) needs_primary: bool,
}

#[derive(Debug, Default)]
struct Entry {
    kind: Kind,
    /// By subcommand name in lower case (`load` for `script|load`); empty for most commands.
    subcommands: HashMap<String, Kind>,
}

/// Redis's command table, as far as routing needs it.
#[derive(Debug, Default)]
pub(crate) struct CommandTable {
    /// By command name in lower case.
    commands: HashMap<String, Entry>,
}

impl CommandTable {
    /// The table from a `COMMAND` reply (an array of command entries).
    pub(crate) fn from_reply(reply: &Value) -> Self {
        let mut commands = HashMap::new();
        for entry in items(reply) {
            let Some((name, kind)) = parse_entry(entry) else {
                continue;
            };
            let mut subcommands = HashMap::new();
            if let Some(subs) = items(entry).get(9) {
                for sub in items(subs) {
                    if let Some((full, sub_kind)) = parse_entry(sub) {
                        let sub_name = full.rsplit('|').next().unwrap_or(&full).to_owned();
                        subcommands.insert(sub_name, sub_kind);
                    }
                }
            }
            commands.insert(name, Entry { kind, subcommands });
        }
        Self { commands }
    }

    /// Whether the table knows no command at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// The kind of `command`; `None` when Redis does not know it (or its subcommand).
    pub(crate) fn kind(&self, command: &Command) -> Option<Kind> {
        let args = command.args();
        let name = String::from_utf8_lossy(args.first()?).to_ascii_lowercase();
        let entry = self.commands.get(&name)?;
        if entry.subcommands.is_empty() {
            return Some(entry.kind);
        }
        let sub = String::from_utf8_lossy(args.get(1)?).to_ascii_lowercase();
        entry.subcommands.get(&sub).copied()
    }

    /// Whether a replica may answer `command`.
    pub(crate) fn is_read_only(&self, command: &Command) -> bool {
        self.kind(command).is_some_and(|kind| kind.read_only)
    }

    /// Whether `command` must run on the primary (unknown commands included).
    pub(crate) fn needs_primary(&self, command: &Command) -> bool {
        self.kind(command).is_none_or(|kind| kind.needs_primary)
    }
}

/// The elements of an array (or set) reply; empty for anything else.
fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::SimpleString(s) => Some(s.to_ascii_lowercase()),
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).to_ascii_lowercase()),
        _ => None,
    }
}

/// The name and kind in one `COMMAND` entry: `[name, arity, flags, first key, last key, step,
/// ACL categories, ...]`.
fn parse_entry(entry: &Value) -> Option<(String, Kind)> {
    let fields = items(entry);
    let name = text(fields.first()?)?;
    let flags: Vec<String> = fields
        .get(2)
        .map_or(&[][..], items)
        .iter()
        .filter_map(text)
        .collect();
    let categories: Vec<String> = fields
        .get(6)
        .map_or(&[][..], items)
        .iter()
        .filter_map(text)
        .collect();
    let has = |list: &[String], wanted: &str| list.iter().any(|item| item == wanted);
    let read_only = has(&flags, "readonly");
    let needs_primary = has(&flags, "write")
        || has(&flags, "pubsub")
        || (has(&categories, "@scripting") && !read_only);
    Some((
        name,
        Kind {
            read_only,
            needs_primary,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, flags: &[&str], categories: &[&str], subs: Vec<Value>) -> Value {
        let strings = |list: &[&str]| {
            Value::Array(
                list.iter()
                    .map(|s| Value::SimpleString((*s).to_owned()))
                    .collect(),
            )
        };
        Value::Array(vec![
            Value::BulkString(name.as_bytes().to_vec()),
            Value::Int(-2),
            strings(flags),
            Value::Int(0),
            Value::Int(0),
            Value::Int(0),
            strings(categories),
            Value::Array(vec![]),
            Value::Array(vec![]),
            Value::Array(subs),
        ])
    }

    fn cmd(words: &[&str]) -> Command {
        Command::from_args(words.iter().map(|w| w.as_bytes().to_vec()).collect()).expect("words")
    }

    #[test]
    fn classified_by_flags_categories_and_subcommands() {
        let table = CommandTable::from_reply(&Value::Array(vec![
            entry("get", &["readonly", "fast"], &["@read", "@string"], vec![]),
            entry("set", &["write", "denyoom"], &["@write", "@string"], vec![]),
            entry(
                "eval",
                &["noscript", "stale"],
                &["@slow", "@scripting"],
                vec![],
            ),
            entry(
                "eval_ro",
                &["readonly", "noscript"],
                &["@scripting"],
                vec![],
            ),
            entry("publish", &["pubsub", "fast"], &["@pubsub"], vec![]),
            entry("ping", &["fast"], &["@connection"], vec![]),
            entry(
                "script",
                &[],
                &["@slow"],
                vec![
                    entry("script|load", &["noscript"], &["@scripting"], vec![]),
                    entry("script|flush", &["noscript"], &["@scripting"], vec![]),
                ],
            ),
            entry(
                "object",
                &[],
                &["@slow"],
                vec![entry("object|encoding", &["readonly"], &["@read"], vec![])],
            ),
        ]));
        assert_eq!(table.commands.len(), 8);
        let read = Kind {
            read_only: true,
            needs_primary: false,
        };
        let primary = Kind {
            read_only: false,
            needs_primary: true,
        };
        assert_eq!(table.kind(&cmd(&["GET", "k"])), Some(read));
        assert_eq!(table.kind(&cmd(&["set", "k", "v"])), Some(primary));
        assert_eq!(table.kind(&cmd(&["EVAL", "s", "0"])), Some(primary));
        assert_eq!(table.kind(&cmd(&["EVAL_RO", "s", "0"])), Some(read));
        assert_eq!(table.kind(&cmd(&["publish", "c", "m"])), Some(primary));
        assert_eq!(table.kind(&cmd(&["PING"])), Some(Kind::default()));
        assert_eq!(table.kind(&cmd(&["script", "LOAD", "s"])), Some(primary));
        assert_eq!(table.kind(&cmd(&["OBJECT", "encoding", "k"])), Some(read));
        assert_eq!(table.kind(&cmd(&["script"])), None, "no subcommand");
        assert_eq!(table.kind(&cmd(&["script", "nope"])), None);
        assert_eq!(table.kind(&cmd(&["NOPE"])), None);
        assert!(table.needs_primary(&cmd(&["NOPE"])), "unknown: the primary");
        assert!(!table.is_read_only(&cmd(&["NOPE"])));
        assert!(!table.needs_primary(&cmd(&["PING"])));
        assert!(!table.is_read_only(&cmd(&["PING"])));
        assert!(CommandTable::from_reply(&Value::Nil).is_empty());
    }
}
