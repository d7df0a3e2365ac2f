//! Offline maintenance: re-indexing and the audit. Both walk the whole key
//! space under the prefix with `SCAN` (never `KEYS`), in batches, so they
//! belong in a command-line tool or a job, never on a request path. On Redis
//! Cluster, run them against each master.

use serde::Serialize;

use crate::backend::{self, Backend, Command, Retry, Value};
use crate::error::{Error, Result};
use crate::script::{self, Keys};
use crate::store::SessionStore;

/// Keys asked for per `SCAN` step (and scripts per pipeline).
const SCAN_BATCH: usize = 500;
/// Members read per step when checking a sorted set.
const MEMBER_BATCH: isize = 1000;

/// What [`SessionStore::reindex`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReindexReport {
    /// Keys examined.
    pub scanned_keys: u64,
    /// Live sessions whose index entries were rebuilt.
    pub sessions_indexed: u64,
}

/// What [`SessionStore::audit`] found (and, with `fix`, repaired).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Keys examined.
    pub scanned_keys: u64,
    /// Keys under the prefix without a TTL (everything edge-session writes
    /// has one).
    pub keys_without_ttl: Vec<String>,
    /// Index entries naming a session that is gone or no longer holds the
    /// indexed value.
    pub orphaned_entries: Vec<OrphanedEntry>,
    /// Sessions over the field-count or field-size limit.
    pub oversized_sessions: Vec<OversizedSession>,
    /// Keys under the prefix that edge-session does not write (reported,
    /// never changed; they do not make the audit fail).
    pub unknown_keys: Vec<String>,
    /// Problems repaired (with `fix`).
    pub fixed: u64,
}

impl AuditReport {
    /// Whether nothing is wrong (repaired problems still count as found).
    pub fn is_clean(&self) -> bool {
        self.keys_without_ttl.is_empty()
            && self.orphaned_entries.is_empty()
            && self.oversized_sessions.is_empty()
    }
}

/// An index entry without a live session behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanedEntry {
    /// The index key.
    pub index: String,
    /// The member (a session id, a handle, or a value).
    pub member: String,
}

/// A session over a configured limit. Audit reports it and never trims
/// user data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OversizedSession {
    /// The session key.
    pub key: String,
    /// User fields.
    pub fields: u64,
    /// Bytes of user data (names and values).
    pub bytes: u64,
    /// The largest field (name and value), in bytes.
    pub largest_field: u64,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Session,
    Devices,
    /// `active` and `seen` (members: session ids).
    SessionIndex,
    /// `ix:<field>:<value>`.
    FieldIndex {
        field: String,
        value: String,
    },
    /// `iv:<field>`.
    ValueRegistry {
        field: String,
    },
    Statistic,
    Unknown,
}

/// Escapes the glob characters of `text` for `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl<B: Backend> SessionStore<B> {
    /// Walks keys matching `pattern` (a suffix of the prefix), calling
    /// `batch` with each step's keys and then `progress` with the number of
    /// keys examined so far. Returns that number.
    async fn scan<F>(
        &self,
        pattern: &str,
        progress: &mut impl FnMut(u64),
        mut batch: F,
    ) -> Result<u64>
    where
        F: AsyncFnMut(Vec<String>) -> Result<()>,
    {
        let pattern = format!("{}{pattern}", glob_escape(self.layout().prefix()));
        let mut cursor = "0".to_owned();
        let mut seen = 0u64;
        loop {
            let reply = backend::query(
                self.backend(),
                Command::new("SCAN")
                    .arg(&cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_BATCH),
            )
            .await?;
            let mut items = reply
                .into_array()
                .ok_or(Error::protocol("scan: expected a list"))?
                .into_iter();
            let (Some(next), Some(keys)) = (items.next(), items.next()) else {
                return Err(Error::protocol("scan: expected a cursor and keys"));
            };
            cursor = next.into_string().ok_or(Error::protocol("scan: cursor"))?;
            let keys: Vec<String> = keys
                .into_array()
                .ok_or(Error::protocol("scan: keys"))?
                .into_iter()
                .filter_map(Value::into_string)
                .collect();
            seen += keys.len() as u64;
            if !keys.is_empty() {
                batch(keys).await?;
                progress(seen);
            }
            if cursor == "0" {
                return Ok(seen);
            }
        }
    }

    /// Rebuilds the index entries (active and seen indexes, every declared
    /// field index) of every live session, for indexes declared after
    /// sessions existed. Scans the key space; safe to run again and while
    /// traffic flows. `progress` gets the number of keys examined so far.
    pub async fn reindex(&self, mut progress: impl FnMut(u64)) -> Result<ReindexReport> {
        let mut report = ReindexReport::default();
        let idle = self.config().idle_ttl.as_millis().to_string();
        let scanned = self
            .scan("s:*", &mut progress, async |keys: Vec<String>| {
                let calls: Vec<_> = keys
                    .iter()
                    .map(|key| {
                        self.call(
                            &script::REINDEX,
                            Keys::default().with('s', key.clone()),
                            vec![idle.clone()],
                        )
                    })
                    .collect();
                for reply in self.run_global(&calls, Retry::Idempotent).await? {
                    if reply.as_int() == Some(1) {
                        report.sessions_indexed += 1;
                    }
                }
                Ok(())
            })
            .await?;
        report.scanned_keys = scanned;
        Ok(report)
    }

    fn kind_of(&self, key: &str, kind: &str) -> Kind {
        let Some(rest) = key.strip_prefix(self.layout().prefix()) else {
            return Kind::Unknown;
        };
        match (kind, rest) {
            ("hash", r) if r.starts_with("s:{") => Kind::Session,
            ("zset", r) if r.starts_with("u:{") => Kind::Devices,
            ("zset", "{g}:active" | "{g}:seen") => Kind::SessionIndex,
            ("zset", r) => match r.strip_prefix("{g}:ix:").and_then(|r| r.split_once(':')) {
                Some((field, value)) => Kind::FieldIndex {
                    field: field.to_owned(),
                    value: value.to_owned(),
                },
                None => match r.strip_prefix("{g}:iv:") {
                    Some(field) => Kind::ValueRegistry {
                        field: field.to_owned(),
                    },
                    None => Kind::Unknown,
                },
            },
            ("string", r) if r.starts_with("{g}:st:") => Kind::Statistic,
            _ => Kind::Unknown,
        }
    }

    /// Checks every key under the prefix: keys without a TTL, index entries
    /// whose session is gone (or no longer holds the value), sessions over
    /// the configured limits, and keys edge-session does not write. With
    /// `fix`, gives TTL-less keys their TTL (a session without `_abs` is
    /// deleted), and removes orphaned entries; oversized sessions are only
    /// reported. `progress` gets the number of keys examined so far.
    pub async fn audit(&self, fix: bool, mut progress: impl FnMut(u64)) -> Result<AuditReport> {
        let mut report = AuditReport::default();
        let scanned = self
            .scan("*", &mut progress, async |keys: Vec<String>| {
                let mut commands = Vec::with_capacity(keys.len() * 2);
                for key in &keys {
                    commands.push(Command::new("TYPE").arg(key));
                    commands.push(Command::new("PTTL").arg(key));
                }
                let replies = self
                    .backend()
                    .pipeline(&commands, Retry::Idempotent)
                    .await?;
                for (key, pair) in keys.iter().zip(replies.chunks(2)) {
                    let [kind, ttl] = pair else {
                        return Err(Error::protocol("audit: short reply"));
                    };
                    let kind = kind.clone().map_err(Error::Redis)?;
                    let ttl = ttl.clone().map_err(Error::Redis)?.as_int().unwrap_or(-2);
                    if ttl == -2 {
                        continue; // expired meanwhile
                    }
                    let kind = self.kind_of(key, kind.as_str().unwrap_or(""));
                    self.audit_key(key, &kind, ttl == -1, fix, &mut report)
                        .await?;
                }
                Ok(())
            })
            .await?;
        report.scanned_keys = scanned;
        Ok(report)
    }

    async fn audit_key(
        &self,
        key: &str,
        kind: &Kind,
        no_ttl: bool,
        fix: bool,
        report: &mut AuditReport,
    ) -> Result<()> {
        let config = self.config();
        let idle_ms = config.idle_ttl.as_millis().to_string();
        match kind {
            Kind::Unknown => {
                // Not ours: reported, never changed.
                report.unknown_keys.push(key.to_owned());
                return Ok(());
            }
            Kind::Session => {
                let call = self.call(
                    &script::INSPECT,
                    Keys::default().with('s', key.to_owned()),
                    Vec::new(),
                );
                let reply = script::run_one(self.backend(), call, Retry::Idempotent).await?;
                let items = reply
                    .into_array()
                    .ok_or(Error::protocol("inspect: expected a list"))?;
                let n = |i: usize| items.get(i).and_then(Value::as_int).unwrap_or(0);
                let (fields, bytes, largest, abs) = (n(0), n(1), n(2), n(3));
                if usize::try_from(fields).unwrap_or(usize::MAX) > config.max_fields
                    || usize::try_from(largest).unwrap_or(usize::MAX) > config.max_value_bytes + 256
                {
                    report.oversized_sessions.push(OversizedSession {
                        key: key.to_owned(),
                        fields: fields.unsigned_abs(),
                        bytes: bytes.unsigned_abs(),
                        largest_field: largest.unsigned_abs(),
                    });
                }
                if no_ttl {
                    report.keys_without_ttl.push(key.to_owned());
                    if fix {
                        // A session without `_abs` was not written by
                        // edge-session whole: it cannot be trusted.
                        let command = if abs > 0 {
                            Command::new("PEXPIRE").arg(key).arg(&idle_ms)
                        } else {
                            Command::new("DEL").arg(key)
                        };
                        backend::query(self.backend(), command).await?;
                        report.fixed += 1;
                    }
                }
                return Ok(());
            }
            Kind::Statistic => {
                if no_ttl {
                    report.keys_without_ttl.push(key.to_owned());
                    if fix {
                        let ms = (u64::from(config.stats_days) + 1) * 86_400_000;
                        backend::query(self.backend(), Command::new("PEXPIRE").arg(key).arg(ms))
                            .await?;
                        report.fixed += 1;
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        // A sorted set: check its members in batches.
        let mut start: isize = 0;
        let mut orphans = Vec::new();
        loop {
            let reply = backend::query(
                self.backend(),
                Command::new("ZRANGE")
                    .arg(key)
                    .arg(start)
                    .arg(start + MEMBER_BATCH - 1),
            )
            .await?;
            let members: Vec<String> = reply
                .into_array()
                .unwrap_or_default()
                .into_iter()
                .filter_map(Value::into_string)
                .collect();
            if members.is_empty() {
                break;
            }
            start += MEMBER_BATCH;
            let alive = self.members_alive(key, kind, &members).await?;
            orphans.extend(
                members
                    .into_iter()
                    .zip(alive)
                    .filter(|(_, alive)| !alive)
                    .map(|(m, _)| m),
            );
        }
        for member in &orphans {
            report.orphaned_entries.push(OrphanedEntry {
                index: key.to_owned(),
                member: member.clone(),
            });
        }
        if fix && !orphans.is_empty() {
            backend::query(self.backend(), Command::new("ZREM").arg(key).args(&orphans)).await?;
            report.fixed += orphans.len() as u64;
        }
        if no_ttl {
            report.keys_without_ttl.push(key.to_owned());
            if fix {
                // The set's TTL follows its last member, as the scripts keep it.
                let last = backend::query(
                    self.backend(),
                    Command::new("ZRANGE")
                        .arg(key)
                        .arg(-1)
                        .arg(-1)
                        .arg("WITHSCORES"),
                )
                .await?
                .into_array()
                .unwrap_or_default();
                let score = last
                    .get(1)
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<f64>().ok());
                let horizon = if matches!(kind, Kind::SessionIndex) && key.ends_with("seen") {
                    config.idle_ttl.as_millis() as f64
                } else {
                    0.0
                };
                let command = match score {
                    Some(score) => Command::new("PEXPIREAT")
                        .arg(key)
                        .arg(format!("{:.0}", score + horizon)),
                    None => Command::new("DEL").arg(key),
                };
                backend::query(self.backend(), command).await?;
                report.fixed += 1;
            }
        }
        Ok(())
    }

    /// Whether each member of the sorted set `key` still has a live session
    /// (or, in a value registry, a non-empty index).
    async fn members_alive(&self, key: &str, kind: &Kind, members: &[String]) -> Result<Vec<bool>> {
        let layout = self.layout();
        match kind {
            Kind::FieldIndex { field, value } => {
                let array = self
                    .config()
                    .indexes
                    .iter()
                    .find(|s| &s.field == field)
                    .map(|s| s.array);
                let Some(array) = array else {
                    // An index no longer declared: every entry is an orphan.
                    return Ok(vec![false; members.len()]);
                };
                let calls: Vec<_> = members
                    .iter()
                    .map(|id| {
                        self.call(
                            &script::CHECK,
                            Keys::default().with('s', layout.session_key(id)),
                            vec![
                                field.clone(),
                                if array { "1" } else { "0" }.to_owned(),
                                value.clone(),
                            ],
                        )
                    })
                    .collect();
                let replies = script::run(self.backend(), &calls, Retry::Idempotent).await?;
                Ok(replies
                    .into_iter()
                    .map(|r| {
                        r.into_array()
                            .and_then(|items| items.first().and_then(Value::as_int))
                            == Some(1)
                    })
                    .collect())
            }
            _ => {
                let commands: Vec<Command> = members
                    .iter()
                    .map(|m| {
                        let target = match kind {
                            Kind::Devices => {
                                // es:u:{tag} lists handles of es:s:{tag}<handle>.
                                let tag = key
                                    .strip_prefix(layout.prefix())
                                    .and_then(|r| r.strip_prefix("u:"))
                                    .unwrap_or_default();
                                format!("{}s:{tag}{m}", layout.prefix())
                            }
                            Kind::ValueRegistry { field } => {
                                layout.global(&format!("ix:{field}:{m}"))
                            }
                            _ => layout.session_key(m),
                        };
                        Command::new("EXISTS").arg(target)
                    })
                    .collect();
                let replies = self
                    .backend()
                    .pipeline(&commands, Retry::Idempotent)
                    .await?;
                replies
                    .into_iter()
                    .map(|r| Ok(r.map_err(Error::Redis)?.as_int() == Some(1)))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("es:"), "es:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
