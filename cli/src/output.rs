//! What the commands print on stdout: tables for people, JSON with `--json`.

use std::io::{self, Write};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use edge_session::{
    AuditReport, Counts, DeviceSession, Page, ReindexReport, SessionHandle, Stats, Timestamp,
};
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Stdout, in table or JSON mode.
#[derive(Debug)]
pub(crate) struct Out {
    json: bool,
    stdout: io::Stdout,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Self {
            json,
            stdout: io::stdout(),
        }
    }

    fn write_json<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        let mut out = self.stdout.lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        out.flush()
    }

    fn line(&mut self, text: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.stdout.lock(), "{text}")
    }

    fn table(&mut self, table: &Table) -> io::Result<()> {
        writeln!(self.stdout.lock(), "{table}")
    }

    fn capped_table(&mut self, table: &Table, more: Option<String>) -> io::Result<()> {
        self.table(table)?;
        match more {
            Some(note) => self.line(note),
            None => Ok(()),
        }
    }

    /// `sessions list`.
    pub(crate) fn devices(&mut self, user: &str, sessions: &[DeviceSession]) -> io::Result<()> {
        if self.json {
            return self.write_json(&json!({ "user": user, "sessions": sessions }));
        }
        if sessions.is_empty() {
            return self.line(format_args!("no live sessions for user {user:?}"));
        }
        let mut table = new_table([
            "handle",
            "created",
            "last seen",
            "expires",
            "absolute expiry",
            "user agent",
        ]);
        for s in sessions {
            table.add_row([
                s.handle.to_string(),
                time(s.created),
                time(s.last_seen),
                time(s.expires),
                time(s.absolute_expiry),
                shown(s.user_agent.as_deref().unwrap_or_default()),
            ]);
        }
        self.table(&table)?;
        self.line(format_args!(
            "{} of user {user:?}",
            plural(sessions.len() as u64, "live session")
        ))
    }

    /// `sessions revoke`.
    pub(crate) fn revoked(
        &mut self,
        user: &str,
        handle: Option<&SessionHandle>,
        revoked: u64,
    ) -> io::Result<()> {
        if self.json {
            return self.write_json(&match handle {
                Some(h) => json!({ "user": user, "handle": h, "revoked": revoked }),
                None => json!({ "user": user, "revoked": revoked }),
            });
        }
        match handle {
            Some(h) if revoked == 0 => self.line(format_args!(
                "no session {h} of user {user:?}: nothing revoked"
            )),
            Some(h) => self.line(format_args!("revoked session {h} of user {user:?}")),
            None => self.line(format_args!(
                "revoked {} of user {user:?}",
                plural(revoked, "session")
            )),
        }
    }

    /// `query` and `active`. `paged`: one page was asked for, so the next
    /// cursor is worth showing.
    pub(crate) fn page(&mut self, page: &Page, paged: bool) -> io::Result<()> {
        if self.json {
            return self.write_json(page);
        }
        if page.sessions.is_empty() {
            self.line("no live sessions found")?;
        } else {
            let mut table = new_table(["handle", "user", "created", "last seen", "expires"]);
            for s in &page.sessions {
                table.add_row([
                    s.handle.to_string(),
                    shown(s.user.as_deref().unwrap_or_default()),
                    time(s.created),
                    time(s.last_seen),
                    time(s.expires),
                ]);
            }
            self.table(&table)?;
            self.line(format_args!(
                "{} shown; {} in the index",
                plural(page.sessions.len() as u64, "session"),
                plural(page.total, "entry"),
            ))?;
        }
        match page.next_cursor {
            Some(next) if paged => {
                self.line(format_args!("more: --cursor {next} (or --all-pages)"))
            }
            _ => Ok(()),
        }
    }

    /// `counts`.
    pub(crate) fn counts(&mut self, counts: &Counts) -> io::Result<()> {
        if self.json {
            return self.write_json(counts);
        }
        self.counts_table(counts)
    }

    fn counts_table(&mut self, counts: &Counts) -> io::Result<()> {
        if counts.top.is_empty() {
            return self.line(format_args!("{}: no live sessions", counts.field));
        }
        let mut table = new_table([counts.field.as_str(), "sessions"]);
        right_align(&mut table, 1);
        for v in &counts.top {
            table.add_row([shown(&v.value), v.sessions.to_string()]);
        }
        self.table(&table)?;
        self.line(format_args!(
            "{} of {} with live sessions",
            plural(counts.distinct, "distinct value"),
            counts.field
        ))
    }

    /// `stats`.
    pub(crate) fn stats(&mut self, stats: &Stats) -> io::Result<()> {
        if self.json {
            return self.write_json(stats);
        }
        let mut table = new_table(["figure", "value"]);
        right_align(&mut table, 1);
        table.add_row([
            "live sessions".to_owned(),
            stats.active_sessions.to_string(),
        ]);
        table.add_row([
            "used in the last 10 minutes".to_owned(),
            stats.active_last_10_minutes.to_string(),
        ]);
        table.add_row(["as of".to_owned(), time(stats.now)]);
        self.table(&table)?;
        if !stats.days.is_empty() {
            let mut days = new_table(["day (UTC)", "sessions created", "logins", "distinct users"]);
            for column in 1..=3 {
                right_align(&mut days, column);
            }
            for d in &stats.days {
                days.add_row([
                    d.date.clone(),
                    d.created.to_string(),
                    d.logins.to_string(),
                    d.distinct_users.to_string(),
                ]);
            }
            self.table(&days)?;
        }
        for counts in &stats.fields {
            self.counts_table(counts)?;
        }
        Ok(())
    }

    /// `reindex`.
    pub(crate) fn reindex(&mut self, report: &ReindexReport) -> io::Result<()> {
        if self.json {
            return self.write_json(report);
        }
        self.line(format_args!(
            "scanned {}; re-indexed {}",
            plural(report.scanned_keys, "key"),
            plural(report.sessions_indexed, "live session"),
        ))
    }

    /// `audit`.
    pub(crate) fn audit(&mut self, report: &AuditReport, fix: bool) -> io::Result<()> {
        if self.json {
            return self.write_json(report);
        }
        if !report.keys_without_ttl.is_empty() {
            let (keys, more) = capped(&report.keys_without_ttl);
            let mut table = new_table(["key without a TTL"]);
            for key in keys {
                table.add_row([shown(key)]);
            }
            self.capped_table(&table, more)?;
        }
        if !report.orphaned_entries.is_empty() {
            let (entries, more) = capped(&report.orphaned_entries);
            let mut table = new_table(["index", "orphaned member"]);
            for entry in entries {
                table.add_row([shown(&entry.index), shown(&entry.member)]);
            }
            self.capped_table(&table, more)?;
        }
        if !report.oversized_sessions.is_empty() {
            let (sessions, more) = capped(&report.oversized_sessions);
            let mut table = new_table(["oversized session", "fields", "bytes", "largest field"]);
            for column in 1..=3 {
                right_align(&mut table, column);
            }
            for s in sessions {
                table.add_row([
                    shown(&s.key),
                    s.fields.to_string(),
                    s.bytes.to_string(),
                    s.largest_field.to_string(),
                ]);
            }
            self.capped_table(&table, more)?;
        }
        if !report.unknown_keys.is_empty() {
            let (keys, more) = capped(&report.unknown_keys);
            let mut table = new_table(["unknown key (not written by edge-session; left alone)"]);
            for key in keys {
                table.add_row([shown(key)]);
            }
            self.capped_table(&table, more)?;
        }
        self.line(format_args!(
            "scanned {}: {} without a TTL, {}, {}, {}",
            plural(report.scanned_keys, "key"),
            plural(report.keys_without_ttl.len() as u64, "key"),
            plural(report.orphaned_entries.len() as u64, "orphaned index entry"),
            plural(report.oversized_sessions.len() as u64, "oversized session"),
            plural(report.unknown_keys.len() as u64, "unknown key"),
        ))?;
        if fix {
            self.line(format_args!(
                "fixed {}{}",
                plural(report.fixed, "problem"),
                if report.oversized_sessions.is_empty() {
                    ""
                } else {
                    " (oversized sessions are reported, never trimmed)"
                }
            ))
        } else if report.is_clean() {
            self.line("clean")
        } else {
            self.line("problems found (run with --fix to repair them)")
        }
    }
}

/// Rows a problem table of `audit` shows; `--json` has them all.
const MAX_ROWS: usize = 100;

/// The first [`MAX_ROWS`] items, and a note about the rest.
fn capped<T>(items: &[T]) -> (&[T], Option<String>) {
    if items.len() <= MAX_ROWS {
        return (items, None);
    }
    let note = format!(
        "... and {} more (--json lists them all)",
        items.len() - MAX_ROWS
    );
    (&items[..MAX_ROWS], Some(note))
}

fn new_table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    table
}

fn right_align(table: &mut Table, column: usize) {
    if let Some(c) = table.column_mut(column) {
        c.set_cell_alignment(CellAlignment::Right);
    }
}

/// `n thing` or `n things` (`entry` becomes `entries`).
fn plural(n: u64, thing: &str) -> String {
    match (n, thing.strip_suffix("ry")) {
        (1, _) => format!("1 {thing}"),
        (_, Some(stem)) => format!("{n} {stem}ries"),
        (_, None) => format!("{n} {thing}s"),
    }
}

/// Text from Redis as a table shows it: control characters (a user agent
/// or a key may hold terminal escapes) are escaped.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// RFC 3339 in UTC, to the second (`2025-11-23T10:04:05Z`).
fn time(ts: Timestamp) -> String {
    let nanos = i128::from(ts.as_millis()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{} ms", ts.as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(time(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(Timestamp(1_763_892_245_678)), "2025-11-23T10:04:05Z");
        assert_eq!(time(Timestamp(u64::MAX)), format!("{} ms", u64::MAX));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("Mozilla/5.0 (X11)"), "Mozilla/5.0 (X11)");
        assert_eq!(shown("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(shown("café"), "café");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "key"), "1 key");
        assert_eq!(plural(0, "key"), "0 keys");
        assert_eq!(plural(3, "day"), "3 days");
        assert_eq!(
            plural(2, "orphaned index entry"),
            "2 orphaned index entries"
        );
    }
}
