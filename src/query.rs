//! Cross-session queries and analytics, without scanning keys.
//!
//! Every query reads a bounded page of one global sorted set (a field index,
//! the seen index or a value registry, see [`crate::keys`]) and then checks
//! each session it names against the live session ([`SessionStore::query`]
//! and [`SessionStore::active_since`]): a dead, expired or changed session is
//! never returned, and its stale entry is pruned on the way.
//!
//! | query | round trips |
//! |---|---|
//! | [`SessionStore::query`], [`SessionStore::active_since`] | 2 (page, live check), +1 when stale entries are pruned |
//! | [`SessionStore::counts`] | 1 |
//! | [`SessionStore::stats`] | 1 |
//! | [`SessionStore::devices`] (a user's sessions) | 1 |

use serde::Serialize;

use crate::backend::{Backend, Retry, Value};
use crate::config::IndexSpec;
use crate::cookie::SessionHandle;
use crate::error::{Error, Result};
use crate::keys::KeyLayout;
use crate::script::{self, Keys};
use crate::session::Timestamp;
use crate::store::SessionStore;

/// Most sessions one page returns.
pub const MAX_PAGE: usize = 1000;
/// Most distinct values a count examines per field.
pub const MAX_COUNTED_VALUES: usize = 10_000;
/// Longest indexed value, in bytes (longer values are not indexed).
pub const MAX_INDEXED_VALUE: usize = 256;
/// The "active recently" window of [`Stats::active_last_10_minutes`].
const RECENT_MS: u64 = 10 * 60 * 1000;

/// A live session found by a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    /// The session's non-secret handle.
    #[serde(serialize_with = "handle_text")]
    pub handle: SessionHandle,
    /// The user it is bound to, if any.
    pub user: Option<String>,
    /// When it was created.
    pub created: Timestamp,
    /// When it was last used (updated at most once per touch interval).
    pub last_seen: Timestamp,
    /// When it expires unless used.
    pub expires: Timestamp,
    /// When it expires at the latest.
    pub absolute_expiry: Timestamp,
}

fn handle_text<S: serde::Serializer>(h: &SessionHandle, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.as_str())
}

/// One page of a query.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Page {
    /// Live sessions, soonest expiry (or oldest use) first.
    pub sessions: Vec<SessionSummary>,
    /// Index entries matching the query when the page was read: an upper
    /// bound of the live sessions (entries not yet found stale are counted).
    pub total: u64,
    /// The cursor of the next page, if there is more.
    pub next_cursor: Option<u64>,
}

/// Sessions per value of an indexed field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// The field.
    pub field: String,
    /// Distinct values with at least one live session.
    pub distinct: u64,
    /// The values with the most live sessions, most first.
    pub top: Vec<ValueCount>,
}

/// Live sessions holding one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueCount {
    /// The value.
    pub value: String,
    /// Live sessions holding it.
    pub sessions: u64,
}

/// Figures of one day (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyStats {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Sessions started: first writes and logins (a login always starts a
    /// new session, carrying the old one's data).
    pub created: u64,
    /// Logins.
    pub logins: u64,
    /// Distinct users who signed in or used a session (HyperLogLog estimate,
    /// standard error 0.81%).
    pub distinct_users: u64,
}

/// Every analytics figure, from one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Redis's clock when the figures were read.
    pub now: Timestamp,
    /// Live sessions.
    pub active_sessions: u64,
    /// Sessions used in the last 10 minutes.
    pub active_last_10_minutes: u64,
    /// Today first, then earlier days (`SESSION_STATS_DAYS` of them).
    pub days: Vec<DailyStats>,
    /// Top values of every scalar index (e.g. sessions per tenant).
    pub fields: Vec<Counts>,
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
fn date_of(day: i64) -> String {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    i32::try_from(day + UNIX_EPOCH_JULIAN_DAY)
        .ok()
        .and_then(|jd| time::Date::from_julian_day(jd).ok())
        .map_or_else(
            || format!("day {day}"),
            |d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        )
}

fn uint(value: &Value, what: &'static str) -> Result<u64> {
    value
        .as_int()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(Error::protocol(what))
}

fn array(value: Value, what: &'static str) -> Result<Vec<Value>> {
    value.into_array().ok_or(Error::protocol(what))
}

fn parse_counts(field: &str, distinct: &Value, flat: Value) -> Result<Counts> {
    let flat = array(flat, "counts: expected a list")?;
    let top = flat
        .chunks(2)
        .map(|pair| match pair {
            [value, count] => Ok(ValueCount {
                value: value
                    .as_str()
                    .ok_or(Error::protocol("counts: value"))?
                    .to_owned(),
                sessions: uint(count, "counts: count")?,
            }),
            _ => Err(Error::protocol("counts: odd list")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Counts {
        field: field.to_owned(),
        distinct: uint(distinct, "counts: distinct")?,
        top,
    })
}

impl<B: Backend> SessionStore<B> {
    /// The declared index of `field`.
    pub fn index_of(&self, field: &str) -> Result<&IndexSpec> {
        self.config()
            .indexes
            .iter()
            .find(|s| s.field == field)
            .ok_or_else(|| Error::InvalidField {
                name: field.to_owned(),
                reason: "is not an indexed field (declare it in SESSION_INDEXES)",
            })
    }

    /// Live sessions whose indexed `field` holds `value` (for an array index:
    /// contains it), `limit` (at most [`MAX_PAGE`]) from `cursor` on (0 for
    /// the first page). Two round trips.
    ///
    /// `value` is the text of a JSON string, or the JSON text of a number or
    /// boolean (`42`, `true`).
    pub async fn query(&self, field: &str, value: &str, cursor: u64, limit: usize) -> Result<Page> {
        let spec = self.index_of(field)?.clone();
        if value.len() > MAX_INDEXED_VALUE {
            return Err(Error::TooLarge {
                what: "indexed value",
                limit: MAX_INDEXED_VALUE,
                actual: value.len(),
            });
        }
        let set = format!("ix:{field}:{value}");
        self.page(&set, None, 0, Some((&spec, value)), cursor, limit)
            .await
    }

    /// Live sessions used within the last `within` (at most the idle
    /// timeout: older sessions have expired), oldest use first. Two round
    /// trips.
    pub async fn active_since(
        &self,
        within: std::time::Duration,
        cursor: u64,
        limit: usize,
    ) -> Result<Page> {
        let idle = self.config().idle_ttl.as_millis();
        let within = within.as_millis().min(idle);
        self.page(
            "seen",
            Some(u64::try_from(within).unwrap_or(u64::MAX)),
            u64::try_from(idle).unwrap_or(u64::MAX),
            None,
            cursor,
            limit,
        )
        .await
    }

    async fn page(
        &self,
        set: &str,
        ago: Option<u64>,
        horizon: u64,
        check: Option<(&IndexSpec, &str)>,
        cursor: u64,
        limit: usize,
    ) -> Result<Page> {
        let limit = limit.clamp(1, MAX_PAGE);
        let call = self.call(
            &script::RANGE,
            self.global_keys(set),
            vec![
                ago.map(|a| a.to_string()).unwrap_or_default(),
                horizon.to_string(),
                cursor.to_string(),
                limit.to_string(),
            ],
        );
        let reply = script::run_one(self.backend(), call, Retry::Idempotent).await?;
        let [_now, total, flat] = <[Value; 3]>::try_from(array(reply, "range: expected a list")?)
            .map_err(|_| Error::protocol("range: expected three items"))?;
        let total = uint(&total, "range: total")?;
        let ids: Vec<String> = array(flat, "range: expected members")?
            .chunks(2)
            .filter_map(|pair| pair.first().and_then(Value::as_str).map(str::to_owned))
            .collect();
        if ids.is_empty() {
            return Ok(Page {
                sessions: Vec::new(),
                total,
                next_cursor: None,
            });
        }
        let (field, array_flag, value) = match check {
            Some((spec, value)) => (
                spec.field.as_str(),
                if spec.array { "1" } else { "0" },
                value,
            ),
            None => ("", "0", ""),
        };
        let calls: Vec<_> = ids
            .iter()
            .map(|id| {
                self.call(
                    &script::CHECK,
                    Keys::default().with('s', self.layout().session_key(id)),
                    vec![field.to_owned(), array_flag.to_owned(), value.to_owned()],
                )
            })
            .collect();
        let replies = script::run(self.backend(), &calls, Retry::Idempotent).await?;
        let mut sessions = Vec::with_capacity(ids.len());
        let mut stale = Vec::new();
        for (id, reply) in ids.iter().zip(replies) {
            match parse_check(id, reply)? {
                Some(summary) => sessions.push(summary),
                None => stale.push(id),
            }
        }
        if !stale.is_empty() {
            let mut ops = Vec::with_capacity(stale.len() * 5);
            for id in &stale {
                ops.extend(["R", set, id.as_str(), "0", "0"].map(str::to_owned));
            }
            let call = self.call(&script::TRACK, self.global_keys(set), ops);
            script::run(self.backend(), &[call], Retry::Idempotent).await?;
        }
        let read = ids.len() as u64;
        let next_cursor = (cursor + read < total).then(|| cursor + read - stale.len() as u64);
        Ok(Page {
            sessions,
            total,
            next_cursor,
        })
    }

    /// Live sessions per value of the indexed `field`: the `top` values with
    /// the most sessions, and the number of distinct values. One round trip
    /// (examining at most [`MAX_COUNTED_VALUES`] values).
    pub async fn counts(&self, field: &str, top: usize) -> Result<Counts> {
        self.index_of(field)?;
        let call = self.call(
            &script::COUNTS,
            self.global_keys(&format!("iv:{field}")),
            vec![
                field.to_owned(),
                top.clamp(1, MAX_PAGE).to_string(),
                MAX_COUNTED_VALUES.to_string(),
            ],
        );
        let reply = script::run_one(self.backend(), call, Retry::Idempotent).await?;
        let [_now, distinct, flat] =
            <[Value; 3]>::try_from(array(reply, "counts: expected a list")?)
                .map_err(|_| Error::protocol("counts: expected three items"))?;
        parse_counts(field, &distinct, flat)
    }

    /// Every analytics figure: active sessions, sessions used in the last 10
    /// minutes, sessions created, logins and distinct users per day, and the
    /// top 10 values of every scalar index. One round trip.
    pub async fn stats(&self) -> Result<Stats> {
        let call = self.call(
            &script::STATS,
            self.global_keys("active"),
            vec![
                self.config().stats_days.to_string(),
                "10".to_owned(),
                MAX_COUNTED_VALUES.to_string(),
                RECENT_MS.to_string(),
            ],
        );
        let reply = script::run_one(self.backend(), call, Retry::Idempotent).await?;
        let [now, active, seen, days, fields] =
            <[Value; 5]>::try_from(array(reply, "stats: expected a list")?)
                .map_err(|_| Error::protocol("stats: expected five items"))?;
        let days = array(days, "stats: days")?
            .chunks(4)
            .map(|d| match d {
                [day, created, logins, users] => Ok(DailyStats {
                    date: date_of(day.as_int().ok_or(Error::protocol("stats: day"))?),
                    created: uint(created, "stats: created")?,
                    logins: uint(logins, "stats: logins")?,
                    distinct_users: uint(users, "stats: users")?,
                }),
                _ => Err(Error::protocol("stats: short day")),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut counts = Vec::new();
        let mut fields = array(fields, "stats: fields")?.into_iter();
        while let (Some(field), Some(distinct), Some(flat)) =
            (fields.next(), fields.next(), fields.next())
        {
            let field = field.as_str().ok_or(Error::protocol("stats: field"))?;
            counts.push(parse_counts(field, &distinct, flat)?);
        }
        Ok(Stats {
            now: Timestamp(uint(&now, "stats: now")?),
            active_sessions: uint(&active, "stats: active")?,
            active_last_10_minutes: uint(&seen, "stats: seen")?,
            days,
            fields: counts,
        })
    }
}

/// Parses the reply of `check.lua` for the session `id`.
fn parse_check(id: &str, reply: Value) -> Result<Option<SessionSummary>> {
    let items = array(reply, "check: expected a list")?;
    if items.first().and_then(Value::as_int) != Some(1) {
        return Ok(None);
    }
    let [_, user, created, seen, expires, absolute] =
        <[Value; 6]>::try_from(items).map_err(|_| Error::protocol("check: expected six items"))?;
    let stamp = |v: &Value, what| uint(v, what).map(Timestamp);
    Ok(Some(SessionSummary {
        handle: KeyLayout::handle_of_id(id).ok_or(Error::protocol("check: bad session id"))?,
        user: user.into_string().filter(|u| !u.is_empty()),
        created: stamp(&created, "check: created")?,
        last_seen: stamp(&seen, "check: seen")?,
        expires: stamp(&expires, "check: expiry")?,
        absolute_expiry: stamp(&absolute, "check: absolute")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_are_dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(20_415), "2025-11-23");
        assert_eq!(date_of(11_016), "2000-02-29");
    }
}
