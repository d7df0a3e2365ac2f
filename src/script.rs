//! The Lua scripts behind every multi-command session operation, and how they
//! are run: `EVALSHA` first, `EVAL` for those Redis answers `NOSCRIPT` (a fresh
//! server, or after `SCRIPT FLUSH`). Redis caches a script after its first
//! `EVAL`, so the fallback costs one extra round trip once per server.

use std::sync::OnceLock;

use sha1::{Digest, Sha1};

use crate::backend::{Backend, Command, Retry, Value};
use crate::error::{Error, Result};

/// A Lua script: its own body, and the source Redis runs (the body after the
/// parts of `scripts/lib.lua` it uses), with that source's SHA-1 digest.
#[derive(Debug)]
pub(crate) struct Script {
    name: &'static str,
    body: &'static str,
    source: OnceLock<String>,
    sha: OnceLock<String>,
}

macro_rules! script {
    ($name:literal) => {
        Script::new($name, include_str!(concat!("scripts/", $name, ".lua")))
    };
}

/// The shared library: top-level statements (the context, constants) that
/// every script gets, and `local function` blocks that a script gets when it
/// uses them.
static LIB: &str = include_str!("scripts/lib.lua");

/// A piece of [`LIB`]: top-level statements, or one `local function` with the
/// comment lines right above it.
struct LibPart {
    function: Option<&'static str>,
    text: String,
}

/// [`LIB`] cut into its parts, in order. A function starts at a line
/// `local function NAME(` and ends at the first line that is exactly `end`.
fn lib_parts() -> &'static [LibPart] {
    static PARTS: OnceLock<Vec<LibPart>> = OnceLock::new();
    PARTS.get_or_init(|| {
        let mut parts: Vec<LibPart> = Vec::new();
        let mut pending: Vec<&str> = Vec::new();
        let mut function: Option<(&'static str, String)> = None;
        for line in LIB.lines() {
            if let Some((_, text)) = &mut function {
                text.push_str(line);
                text.push('\n');
                if line == "end" {
                    let (name, text) = function.take().unwrap_or_default();
                    parts.push(LibPart {
                        function: Some(name),
                        text,
                    });
                }
            } else if let Some(rest) = line.strip_prefix("local function ") {
                let name = rest.split('(').next().unwrap_or_default();
                // The comment lines just above belong to the function.
                let split = pending
                    .iter()
                    .rposition(|l| !l.starts_with("--"))
                    .map_or(0, |i| i + 1);
                let comments = pending.split_off(split);
                if !pending.is_empty() {
                    parts.push(LibPart {
                        function: None,
                        text: pending.drain(..).map(|l| format!("{l}\n")).collect(),
                    });
                }
                let mut text: String = comments.iter().map(|l| format!("{l}\n")).collect();
                text.push_str(line);
                text.push('\n');
                function = Some((name, text));
            } else {
                pending.push(line);
            }
        }
        if !pending.is_empty() {
            parts.push(LibPart {
                function: None,
                text: pending.iter().map(|l| format!("{l}\n")).collect(),
            });
        }
        parts
    })
}

/// The identifiers in Lua code (names and keywords), comments left out: each
/// line is cut at its first `--` (no script has `--` inside a string).
fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .flat_map(|code| code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
}

/// `body` after the library parts it needs: every top-level statement, and
/// the functions it names, with the functions those name, and so on. Redis
/// runs a script's whole text on every call, so a function left out is work
/// saved on every call (defining ~20 unused closures cost about as much as
/// a Redis command).
fn assemble(body: &str) -> String {
    let parts = lib_parts();
    let mut needed = vec![false; parts.len()];
    let mut queue: Vec<&str> = identifiers(body).collect();
    while let Some(word) = queue.pop() {
        for (i, part) in parts.iter().enumerate() {
            if !needed[i] && part.function == Some(word) {
                needed[i] = true;
                queue.extend(identifiers(&part.text));
            }
        }
    }
    let mut source = String::with_capacity(LIB.len() + body.len());
    for (part, needed) in parts.iter().zip(needed) {
        if part.function.is_none() || needed {
            source.push_str(&part.text);
        }
    }
    source.push_str(body);
    source
}

pub(crate) static LOAD: Script = script!("load");
pub(crate) static APPLY: Script = script!("apply");
pub(crate) static CREATE: Script = script!("create");
pub(crate) static LOGIN: Script = script!("login");
pub(crate) static TAKE: Script = script!("take");
pub(crate) static DESTROY: Script = script!("destroy");
pub(crate) static DEVICES: Script = script!("devices");
pub(crate) static REVOKE: Script = script!("revoke");
pub(crate) static ACTIVE: Script = script!("active");
pub(crate) static TRACK: Script = script!("track");
pub(crate) static RANGE: Script = script!("range");
pub(crate) static CHECK: Script = script!("check");
pub(crate) static COUNTS: Script = script!("counts");
pub(crate) static STATS: Script = script!("stats");
pub(crate) static REINDEX: Script = script!("reindex");
pub(crate) static INSPECT: Script = script!("inspect");
pub(crate) static UNLOCK: Script = script!("unlock");
pub(crate) static RENEW: Script = script!("renew");

/// Every script, for preloading.
pub(crate) static ALL: [&Script; 18] = [
    &LOAD, &APPLY, &CREATE, &LOGIN, &TAKE, &DESTROY, &DEVICES, &REVOKE, &ACTIVE, &TRACK, &RANGE,
    &CHECK, &COUNTS, &STATS, &REINDEX, &INSPECT, &UNLOCK, &RENEW,
];

/// The keys of a script call, each with its role letter (see `scripts/lib.lua`):
/// `s` session, `d` device set, `o` old session, `p` old device set, `g` a
/// global key, `l` a lock. The roles travel in the first argument, with the context.
#[derive(Debug, Default, Clone)]
pub(crate) struct Keys {
    roles: String,
    names: Vec<String>,
}

impl Keys {
    /// Adds `key` in `role`.
    pub(crate) fn with(mut self, role: char, key: String) -> Self {
        self.roles.push(role);
        self.names.push(key);
        self
    }

    /// Adds `key` in `role` if there is one.
    pub(crate) fn maybe(self, role: char, key: Option<String>) -> Self {
        match key {
            Some(key) => self.with(role, key),
            None => self,
        }
    }

    /// The key in `role`, if present.
    pub(crate) fn get(&self, role: char) -> Option<&str> {
        self.roles
            .chars()
            .position(|r| r == role)
            .map(|i| self.names[i].as_str())
    }
}

impl Script {
    const fn new(name: &'static str, body: &'static str) -> Self {
        Self {
            name,
            body,
            source: OnceLock::new(),
            sha: OnceLock::new(),
        }
    }

    /// The script's name (for diagnostics).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The source Redis runs: the body after the library parts it uses.
    pub(crate) fn source(&self) -> &str {
        self.source.get_or_init(|| assemble(self.body))
    }

    /// Hex SHA-1 of the source, as Redis computes it.
    pub(crate) fn sha(&self) -> &str {
        self.sha
            .get_or_init(|| hex::encode(Sha1::digest(self.source().as_bytes())))
    }

    /// A call of this script with `keys` and `args`, in `context` (the lines
    /// that follow the key roles in the first argument: prefix, cluster mode,
    /// indexes, statistics days; see `scripts/lib.lua`).
    pub(crate) fn call(&'static self, keys: Keys, context: &str, args: Vec<String>) -> ScriptCall {
        let mut all_args = Vec::with_capacity(args.len() + 1);
        all_args.push(format!("{}\n{context}", keys.roles));
        all_args.extend(args);
        ScriptCall {
            script: self,
            keys: keys.names,
            args: all_args,
        }
    }
}

/// One invocation of a script.
pub(crate) struct ScriptCall {
    script: &'static Script,
    keys: Vec<String>,
    args: Vec<String>,
}

impl std::fmt::Debug for ScriptCall {
    /// Names the script and counts keys and arguments; arguments may hold
    /// session data and are not shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ScriptCall({}, {} keys, {} args)",
            self.script.name(),
            self.keys.len(),
            self.args.len()
        )
    }
}

impl ScriptCall {
    fn command(&self, by_sha: bool) -> Command {
        let (name, body) = if by_sha {
            ("EVALSHA", self.script.sha())
        } else {
            ("EVAL", self.script.source())
        };
        Command::new(name)
            .arg(body)
            .arg(self.keys.len())
            .args(&self.keys)
            .args(&self.args)
    }
}

/// Runs `calls` in one round trip (two the first time a script meets a server)
/// and returns their results in order. A script's error reply becomes
/// [`Error::Redis`].
pub(crate) async fn run<B: Backend + ?Sized>(
    backend: &B,
    calls: &[ScriptCall],
    retry: Retry,
) -> Result<Vec<Value>> {
    let refs: Vec<&ScriptCall> = calls.iter().collect();
    run_refs(backend, &refs, retry).await
}

/// [`run`] over borrowed calls.
pub(crate) async fn run_refs<B: Backend + ?Sized>(
    backend: &B,
    calls: &[&ScriptCall],
    retry: Retry,
) -> Result<Vec<Value>> {
    let commands: Vec<Command> = calls.iter().map(|c| c.command(true)).collect();
    let mut replies = backend.pipeline(&commands, retry).await?;
    let missing: Vec<usize> = replies
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Err(e) if e.code() == "NOSCRIPT"))
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        let commands: Vec<Command> = missing.iter().map(|&i| calls[i].command(false)).collect();
        let again = backend.pipeline(&commands, retry).await?;
        for (i, reply) in missing.into_iter().zip(again) {
            replies[i] = reply;
        }
    }
    replies
        .into_iter()
        .map(|r| r.map_err(Error::Redis))
        .collect()
}

/// Runs one script call.
pub(crate) async fn run_one<B: Backend + ?Sized>(
    backend: &B,
    call: ScriptCall,
    retry: Retry,
) -> Result<Value> {
    run(backend, std::slice::from_ref(&call), retry)
        .await?
        .pop()
        .ok_or(Error::protocol("missing script reply"))
}

/// Loads every script into the server's cache (`SCRIPT LOAD`), in one round
/// trip, so that no request pays the `NOSCRIPT` fallback.
pub(crate) async fn preload<B: Backend + ?Sized>(backend: &B) -> Result<()> {
    let commands: Vec<Command> = ALL
        .iter()
        .map(|s| Command::new("SCRIPT").arg("LOAD").arg(s.source()))
        .collect();
    for reply in backend.pipeline(&commands, Retry::Idempotent).await? {
        reply.map_err(Error::Redis)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_carries_the_shared_library() {
        for script in ALL {
            assert!(
                script.source().contains("local ROLES, PREFIX"),
                "{}: the context is parsed in every script",
                script.name()
            );
            assert!(script.source().ends_with(script.body));
            assert_eq!(script.sha().len(), 40);
        }
    }

    /// Every library function a script's source names is defined in it
    /// (before the body), and no function it never names is.
    #[test]
    fn every_script_gets_exactly_the_functions_it_uses() {
        let functions: Vec<&str> = lib_parts().iter().filter_map(|p| p.function).collect();
        assert!(functions.len() > 20, "{functions:?}");
        assert!(functions.contains(&"now_ms") && functions.contains(&"ix_counts"));
        for script in ALL {
            let source = script.source();
            let named: std::collections::BTreeSet<&str> = identifiers(source)
                .filter(|w| functions.contains(w))
                .collect();
            for name in functions.iter().copied() {
                let defined = source.contains(&format!("local function {name}("));
                assert_eq!(
                    defined,
                    named.contains(name),
                    "{}: {name} defined {defined}",
                    script.name()
                );
            }
        }
        // `identifiers` cuts lines at `--`: no `--` may sit inside a string.
        for text in ALL.iter().map(|s| s.body).chain([LIB]) {
            for line in text.lines() {
                let code = line.split_once("--").map_or(line, |(code, _)| code);
                let quotes = code.matches(['\'', '"']).count();
                assert!(quotes % 2 == 0, "`--` inside a string: {line}");
            }
        }
        assert!(!APPLY.source().contains("local function ix_counts("));
        assert!(COUNTS.source().contains("local function ix_counts("));
        assert!(APPLY.source().contains("local function expire("));
    }

    /// Nothing of the library is lost or reordered: a script naming every
    /// function gets the library whole.
    #[test]
    fn the_whole_library_when_everything_is_used() {
        let every: String = lib_parts()
            .iter()
            .filter_map(|p| p.function)
            .map(|f| format!("{f} "))
            .collect();
        let source = assemble(&every);
        assert_eq!(source.strip_suffix(every.as_str()), Some(LIB));
    }
}
