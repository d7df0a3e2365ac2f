//! Load generator for the edge-session gateway.
//!
//! Each of `clients` concurrent clients signs in with its own session
//! (`POST /api/instruct {"login": ...}` on the demo origin, through the
//! gateway), then until the time is up sends a mix of reads
//! (`GET /api/whoami`) and writes (`GET /incr`, which answers with
//! `x-session-incr: {"n": 1}`), one request at a time. A client counts the
//! increments acknowledged (2xx) and checks every read against that count
//! (its session is its own, so a read must show exactly what it wrote).
//! Afterwards each session's counter is read back and compared (lost
//! increments), and, given the Redis URL, every key is checked for a TTL.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{COOKIE, SET_COOKIE};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the gateway, e.g. `http://127.0.0.1:8080`.
    pub gateway: String,
    /// Concurrent clients, each with its own session.
    pub clients: usize,
    /// How long the mixed workload runs (sign-in and the final checks come on top).
    pub duration: Duration,
    /// Share of the requests that are writes, in percent (the rest are reads).
    pub write_percent: u8,
    /// Redis to scan for keys without a TTL afterwards (`None`: skip the scan).
    pub redis_url: Option<String>,
    /// Name of the session cookie.
    pub cookie_name: String,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl LoadConfig {
    /// 200 clients for 60 s against `gateway`, half writes.
    pub fn new(gateway: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into().trim_end_matches('/').to_owned(),
            clients: 200,
            duration: Duration::from_secs(60),
            write_percent: 50,
            redis_url: None,
            cookie_name: "__Host-session".to_owned(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Clients that ran.
    pub clients: usize,
    /// Wall time of the mixed workload.
    pub elapsed: Duration,
    /// Requests sent in the mixed workload (sign-ins and final reads not included).
    pub requests: u64,
    /// Of them, writes (`/incr`).
    pub writes: u64,
    /// Requests answered with a non-2xx status, or not answered (all phases).
    pub errors: u64,
    /// The first few error descriptions.
    pub error_samples: Vec<String>,
    /// Increments acknowledged with a 2xx.
    pub increments_acknowledged: u64,
    /// Acknowledged increments missing from the sessions at the end.
    pub lost_increments: u64,
    /// Increments found beyond the acknowledged ones (only possible after errors).
    pub extra_increments: u64,
    /// Reads that did not show exactly the client's acknowledged count.
    pub stale_reads: u64,
    /// Latency percentiles of the mixed workload.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest request.
    pub max: Duration,
    /// Keys in Redis afterwards (`None`: not scanned).
    pub keys: Option<u64>,
    /// Keys without a TTL (`None`: not scanned).
    pub keys_without_ttl: Option<u64>,
    /// The first few keys without a TTL.
    pub keys_without_ttl_samples: Vec<String>,
}

impl Summary {
    /// Requests per second of the mixed workload.
    pub fn requests_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// True when nothing went wrong: no errors, no lost or extra
    /// increments, no stale reads, no key without a TTL.
    pub fn is_clean(&self) -> bool {
        self.errors == 0
            && self.lost_increments == 0
            && self.extra_increments == 0
            && self.stale_reads == 0
            && self.keys_without_ttl.unwrap_or(0) == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "clients {}, {:.1} s: {} requests ({} writes), {:.0} req/s",
            self.clients,
            self.elapsed.as_secs_f64(),
            self.requests,
            self.writes,
            self.requests_per_second()
        )?;
        writeln!(
            f,
            "latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )?;
        writeln!(f, "errors {}", self.errors)?;
        for sample in &self.error_samples {
            writeln!(f, "  {sample}")?;
        }
        writeln!(
            f,
            "increments acknowledged {}, lost {}, extra {}; stale reads {}",
            self.increments_acknowledged,
            self.lost_increments,
            self.extra_increments,
            self.stale_reads
        )?;
        match (self.keys, self.keys_without_ttl) {
            (Some(keys), Some(without)) => {
                writeln!(f, "keys {keys}, without TTL {without}")?;
                for key in &self.keys_without_ttl_samples {
                    writeln!(f, "  {key}")?;
                }
            }
            _ => writeln!(f, "keys not scanned (no Redis URL)")?,
        }
        write!(
            f,
            "result: {}",
            if self.is_clean() { "PASS" } else { "FAIL" }
        )
    }
}

/// Errors that stop the run before it measures anything.
#[derive(Debug)]
pub struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// One client's tally.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    writes: u64,
    errors: u64,
    error_samples: Vec<String>,
    acknowledged: u64,
    unsure: u64,
    stale_reads: u64,
    lost: u64,
    extra: u64,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(what);
        }
    }
}

struct Client {
    http: reqwest::Client,
    config: Arc<LoadConfig>,
    cookie: Option<String>,
}

enum Answer {
    Ok(String),
    Failed(String),
}

impl Client {
    async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie.as_str()),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Answer::Failed(format!("request failed: {e}")),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let prefix = format!("{}=", self.config.cookie_name);
        for value in headers.get_all(SET_COOKIE) {
            if let Ok(text) = value.to_str()
                && let Some(pair) = text.split(';').next()
                && pair.starts_with(&prefix)
            {
                self.cookie = Some(pair.to_owned());
            }
        }
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Answer::Ok(body)
        } else {
            Answer::Failed(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            ))
        }
    }

    /// The counter `n` the origin saw, from `/api/whoami`.
    async fn read_counter(&mut self) -> Result<u64, String> {
        let url = format!("{}/api/whoami", self.config.gateway);
        match self.send(self.http.get(url)).await {
            Answer::Ok(body) => {
                let json: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("whoami is not JSON: {e}"))?;
                if json["session_id"].is_null() {
                    return Err("whoami: the session is gone".to_owned());
                }
                Ok(json["data"]["n"].as_u64().unwrap_or(0))
            }
            Answer::Failed(e) => Err(e),
        }
    }
}

/// A small xorshift generator: which request comes next (no need for more).
struct Dice(u64);

impl Dice {
    fn percent(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        u8::try_from(self.0 % 100).unwrap_or(0)
    }
}

async fn run_client(
    index: usize,
    http: reqwest::Client,
    config: Arc<LoadConfig>,
    start: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut client = Client {
        http,
        config: Arc::clone(&config),
        cookie: None,
    };
    let login = serde_json::json!({ "login": format!("load-user-{index}") }).to_string();
    let request = client
        .http
        .post(format!("{}/api/instruct", config.gateway))
        .header("content-type", "application/json")
        .body(login);
    match client.send(request).await {
        Answer::Ok(_) if client.cookie.is_some() => {}
        Answer::Ok(_) => {
            tally.error("sign-in: no session cookie".to_owned());
            return tally;
        }
        Answer::Failed(e) => {
            tally.error(format!("sign-in: {e}"));
            return tally;
        }
    }
    let mut dice =
        Dice(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let end = start + config.duration;
    while Instant::now() < end {
        let write = dice.percent() < config.write_percent;
        let sent = Instant::now();
        if write {
            let url = format!("{}/incr", config.gateway);
            match client.send(client.http.get(url)).await {
                Answer::Ok(_) => tally.acknowledged += 1,
                Answer::Failed(e) => {
                    tally.unsure += 1;
                    tally.error(format!("write: {e}"));
                }
            }
            tally.writes += 1;
        } else {
            match client.read_counter().await {
                Ok(n) if n == tally.acknowledged => {}
                Ok(n) if n >= tally.acknowledged && n <= tally.acknowledged + tally.unsure => {}
                Ok(_) => tally.stale_reads += 1,
                Err(e) => tally.error(format!("read: {e}")),
            }
        }
        tally.requests += 1;
        let us = sent.elapsed().as_micros();
        tally
            .latencies_us
            .push(u32::try_from(us).unwrap_or(u32::MAX));
    }
    match client.read_counter().await {
        Ok(n) => {
            tally.lost = tally.acknowledged.saturating_sub(n);
            tally.extra = n.saturating_sub(tally.acknowledged + tally.unsure);
        }
        Err(e) => {
            tally.error(format!("final read: {e}"));
            tally.lost = tally.acknowledged;
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Duration::from_micros(u64::from(sorted[rank.min(sorted.len() - 1)]))
}

/// Keys in Redis, and the ones without a TTL (SCAN, then PTTL in batches).
async fn scan_ttls(url: &str) -> Result<(u64, Vec<String>), LoadError> {
    let fail = |e: redis::RedisError| LoadError(format!("redis scan: {e}"));
    let client = redis::Client::open(url).map_err(fail)?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .map_err(fail)?;
    let mut cursor: u64 = 0;
    let (mut keys, mut without) = (0u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .map_err(fail)?;
        if !batch.is_empty() {
            let mut pipe = redis::pipe();
            for key in &batch {
                pipe.cmd("PTTL").arg(key);
            }
            let ttls: Vec<i64> = pipe.query_async(&mut connection).await.map_err(fail)?;
            for (key, ttl) in batch.into_iter().zip(ttls) {
                // -2: expired between SCAN and PTTL; -1: no TTL.
                if ttl != -2 {
                    keys += 1;
                }
                if ttl == -1 {
                    without.push(key);
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok((keys, without))
}

/// Runs the load and checks the results.
pub async fn run(config: LoadConfig) -> Result<Summary, LoadError> {
    if config.clients == 0 {
        return Err(LoadError("at least one client".to_owned()));
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(config.clients)
        .build()
        .map_err(|e| LoadError(format!("http client: {e}")))?;
    let config = Arc::new(config);
    let start = Instant::now();
    let tasks: Vec<_> = (0..config.clients)
        .map(|i| tokio::spawn(run_client(i, http.clone(), Arc::clone(&config), start)))
        .collect();
    let mut summary = Summary {
        clients: config.clients,
        ..Summary::default()
    };
    let mut latencies = Vec::new();
    for task in tasks {
        let tally = task
            .await
            .map_err(|e| LoadError(format!("a client task failed: {e}")))?;
        summary.requests += tally.requests;
        summary.writes += tally.writes;
        summary.errors += tally.errors;
        for sample in tally.error_samples {
            if summary.error_samples.len() < 10 {
                summary.error_samples.push(sample);
            }
        }
        summary.increments_acknowledged += tally.acknowledged;
        summary.lost_increments += tally.lost;
        summary.extra_increments += tally.extra;
        summary.stale_reads += tally.stale_reads;
        latencies.extend(tally.latencies_us);
    }
    summary.elapsed = start.elapsed();
    latencies.sort_unstable();
    summary.p50 = percentile(&latencies, 50.0);
    summary.p90 = percentile(&latencies, 90.0);
    summary.p99 = percentile(&latencies, 99.0);
    summary.max = latencies
        .last()
        .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us)));
    if let Some(url) = &config.redis_url {
        let (keys, without) = scan_ttls(url).await?;
        summary.keys = Some(keys);
        summary.keys_without_ttl = Some(without.len() as u64);
        summary.keys_without_ttl_samples = without.into_iter().take(10).collect();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_micros(51));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn a_summary_with_any_fault_is_not_clean() {
        let clean = Summary {
            keys: Some(10),
            keys_without_ttl: Some(0),
            ..Summary::default()
        };
        assert!(clean.is_clean());
        assert!(clean.to_string().ends_with("result: PASS"));
        for dirty in [
            Summary {
                errors: 1,
                ..clean.clone()
            },
            Summary {
                lost_increments: 1,
                ..clean.clone()
            },
            Summary {
                stale_reads: 1,
                ..clean.clone()
            },
            Summary {
                keys_without_ttl: Some(1),
                ..clean.clone()
            },
        ] {
            assert!(!dirty.is_clean());
            assert!(dirty.to_string().ends_with("result: FAIL"));
        }
    }

    #[test]
    fn the_dice_mix_is_near_the_asked_share() {
        let mut dice = Dice(12345);
        let writes = (0..10_000).filter(|_| dice.percent() < 30).count();
        assert!((2_500..3_500).contains(&writes), "{writes}");
    }
}
