//! `edge-session`: the command-line tool of edge-session.
//!
//! Lists and revokes a user's sessions, queries the secondary indexes, shows
//! counts and statistics, re-indexes and audits the key space, over the REST
//! or the direct backend, configured by the same environment variables as the
//! library (global flags override them). Tables by default, `--json` for
//! scripts; the exit codes are listed in `--help`.

mod output;
mod settings;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use edge_session::query::MAX_PAGE;
use edge_session::{AnyBackend, Error, Page, SessionHandle, SessionStore};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::Out;

const EXIT_CODES: &str = "\
Configuration:
  The same environment variables as the library: SESSION_BACKEND, UPSTASH_REDIS_REST_URL and
  UPSTASH_REDIS_REST_TOKEN (or KV_REST_API_URL and KV_REST_API_TOKEN), REDIS_URL,
  SESSION_KEY_PREFIX, SESSION_INDEXES, SESSION_IDLE_TTL, SESSION_STATS_DAYS,
  SESSION_REDIS_CLUSTER, SESSION_STORE_TIMEOUT_MS, SESSION_STORE_RETRIES, ... The global flags
  override them; --redis-url selects the direct backend, --rest-url the REST backend.
  SESSION_SECRETS is not needed (the tool never signs cookies) and is ignored.

Exit codes:
  0  success
  1  the check found problems: `audit` found problems (with --fix: problems it cannot repair
     remain, i.e. oversized sessions); `sessions revoke --id` found no such session
  2  usage or configuration error (bad flags or arguments, invalid settings, a field that is
     not indexed)
  3  the store is unreachable or failed (network, timeout, authentication, Redis errors), or
     the output could not be written";

/// Administer edge-session's sessions in Redis.
#[derive(Debug, Parser)]
#[command(name = "edge-session", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags accepted before or after any command.
#[derive(Debug, Args)]
struct Global {
    /// Print machine-readable JSON on stdout instead of tables (times in ms since the epoch)
    #[arg(long, global = true)]
    json: bool,
    /// Direct Redis URL (redis:// or rediss://); overrides REDIS_URL and selects the direct
    /// backend
    #[arg(long, global = true, value_name = "URL", conflicts_with = "rest_url")]
    redis_url: Option<String>,
    /// Upstash-style REST endpoint; overrides UPSTASH_REDIS_REST_URL and selects the REST backend
    #[arg(long, global = true, value_name = "URL")]
    rest_url: Option<String>,
    /// Bearer token of the REST endpoint (prefer the environment variable: flags show in `ps`)
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "UPSTASH_REDIS_REST_TOKEN",
        hide_env_values = true
    )]
    rest_token: Option<String>,
    /// Prefix of every Redis key
    #[arg(long, global = true, value_name = "PREFIX", env = "SESSION_KEY_PREFIX")]
    prefix: Option<String>,
    /// Indexed fields, e.g. `tenant,cart[]` (`[]`: each element of a JSON array)
    #[arg(long, global = true, value_name = "LIST", env = "SESSION_INDEXES")]
    indexes: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A user's sessions (devices): list them, revoke one or all
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Live sessions whose indexed FIELD holds VALUE (for an array index: contains it)
    Query {
        /// An indexed field (see --indexes)
        field: String,
        /// The value: the text of a JSON string, or the JSON text of a number or boolean
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Live sessions per value of an indexed FIELD, most first
    Counts {
        /// An indexed field (see --indexes)
        field: String,
        /// How many values to show
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_PAGE as u64))]
        top: u64,
    },
    /// Live sessions used recently, oldest use first
    Active {
        /// The window: seconds, or a number with s, m, h or d (at most the idle timeout)
        #[arg(long, value_name = "SECONDS", default_value = "600", value_parser = parse_since)]
        since: Duration,
        #[command(flatten)]
        paging: Paging,
    },
    /// Every analytics figure: live sessions, daily creations, logins, distinct users, top values
    Stats,
    /// Rebuild the index entries of every live session (after declaring a new index)
    Reindex,
    /// Check every key under the prefix: missing TTLs, orphaned index entries, oversized
    /// sessions, unknown keys
    Audit {
        /// Repair what can be repaired: give TTL-less keys their TTL, remove orphaned entries
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List a user's live sessions
    List {
        /// The user id
        #[arg(long)]
        user: String,
    },
    /// Revoke one session of a user (--id) or all of them (--all)
    #[command(group(ArgGroup::new("which").required(true).args(["all", "id"])))]
    Revoke {
        /// The user id
        #[arg(long)]
        user: String,
        /// Revoke every session of the user (logout everywhere)
        #[arg(long)]
        all: bool,
        /// The handle of the session to revoke (64 hex characters, from `sessions list`)
        #[arg(long, value_name = "HANDLE", value_parser = parse_handle)]
        id: Option<SessionHandle>,
    },
}

/// Paging of the queries.
#[derive(Debug, Args)]
struct Paging {
    /// Where to start: 0, or the next cursor of the previous page
    #[arg(long, default_value_t = 0)]
    cursor: u64,
    /// Sessions per page
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_PAGE as u64))]
    limit: u64,
    /// Follow the cursor to the end and print every page as one
    #[arg(long, conflicts_with = "cursor")]
    all_pages: bool,
}

fn parse_handle(text: &str) -> Result<SessionHandle, String> {
    SessionHandle::parse(text)
        .ok_or_else(|| "a session handle is 64 lowercase hex characters".to_owned())
}

fn parse_since(text: &str) -> Result<Duration, String> {
    edge_session::config::parse_duration(text).ok_or_else(|| {
        "use seconds, or a number with s, m, h or d (90, 90s, 30m, 24h, 7d)".to_owned()
    })
}

/// How a command ended, when it ran to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Exit 0.
    Done,
    /// Exit 1: the check found problems.
    Problems,
}

/// Why a command did not run to the end.
#[derive(Debug)]
enum Failure {
    Store(Error),
    Output(io::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

type Store = SessionStore<AnyBackend>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Problems) => ExitCode::from(1),
        Err(Failure::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(e)) => {
            report(&format!("cannot write the output: {e}"), None);
            ExitCode::from(3)
        }
        Err(Failure::Store(e)) => {
            report(&e.to_string(), std::error::Error::source(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The documented exit code of a library error.
fn exit_code(e: &Error) -> u8 {
    match e {
        // Bad settings or arguments: nothing reached the store.
        Error::Config { .. } | Error::InvalidField { .. } | Error::TooLarge { .. } => 2,
        _ => 3,
    }
}

/// Prints an error and its source chain on stderr.
fn report(message: &str, mut source: Option<&(dyn std::error::Error + 'static)>) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "error: {message}");
    let mut last = String::new();
    while let Some(cause) = source {
        // Some errors repeat their source's text: say it once.
        let text = cause.to_string();
        if text != last {
            let _ = writeln!(err, "  caused by: {text}");
        }
        last = text;
        source = cause.source();
    }
}

async fn run(cli: Cli) -> Result<Outcome, Failure> {
    let settings = settings::settings(&cli.global)?;
    let backend = settings.backend.connect().await?;
    let store = SessionStore::new(backend, settings.session, settings.keys)?;
    let mut out = Out::new(cli.global.json);
    let show_progress = !cli.global.json && io::stderr().is_terminal();
    match cli.command {
        Command::Sessions(SessionsCommand::List { user }) => {
            let sessions = store.devices(&user).await?;
            out.devices(&user, &sessions)?;
            Ok(Outcome::Done)
        }
        Command::Sessions(SessionsCommand::Revoke { user, all, id }) => {
            match id {
                Some(handle) => {
                    let existed = store.revoke(&user, &handle).await?;
                    out.revoked(&user, Some(&handle), u64::from(existed))?;
                    Ok(if existed {
                        Outcome::Done
                    } else {
                        Outcome::Problems
                    })
                }
                None => {
                    // clap requires one of --all and --id.
                    debug_assert!(all);
                    let n = store.logout_all(&user).await?;
                    out.revoked(&user, None, n)?;
                    Ok(Outcome::Done)
                }
            }
        }
        Command::Query {
            field,
            value,
            paging,
        } => {
            let page = pages(&paging, show_progress, |cursor, limit| {
                store.query(&field, &value, cursor, limit)
            })
            .await?;
            out.page(&page, !paging.all_pages)?;
            Ok(Outcome::Done)
        }
        Command::Counts { field, top } => {
            let counts = store
                .counts(&field, usize::try_from(top).unwrap_or(MAX_PAGE))
                .await?;
            out.counts(&counts)?;
            Ok(Outcome::Done)
        }
        Command::Active { since, paging } => {
            let page = pages(&paging, show_progress, |cursor, limit| {
                store.active_since(since, cursor, limit)
            })
            .await?;
            out.page(&page, !paging.all_pages)?;
            Ok(Outcome::Done)
        }
        Command::Stats => {
            let stats = store.stats().await?;
            out.stats(&stats)?;
            Ok(Outcome::Done)
        }
        Command::Reindex => {
            let bar = spinner(show_progress, "re-indexing", "keys scanned");
            let result = store.reindex(|n| bar.set_position(n)).await;
            bar.finish_and_clear();
            out.reindex(&result?)?;
            Ok(Outcome::Done)
        }
        Command::Audit { fix } => audit(&store, fix, show_progress, &mut out).await,
    }
}

async fn audit(
    store: &Store,
    fix: bool,
    show_progress: bool,
    out: &mut Out,
) -> Result<Outcome, Failure> {
    let bar = spinner(
        show_progress,
        if fix {
            "auditing and fixing"
        } else {
            "auditing"
        },
        "keys scanned",
    );
    let result = store.audit(fix, |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    let report = result?;
    out.audit(&report, fix)?;
    // With --fix, TTLs and orphans are repaired; oversized sessions never are.
    let unrepaired = if fix {
        !report.oversized_sessions.is_empty()
    } else {
        !report.is_clean()
    };
    Ok(if unrepaired {
        Outcome::Problems
    } else {
        Outcome::Done
    })
}

/// One page from `paging`, or with `--all-pages` every page from cursor 0
/// merged into one.
async fn pages<F, Fut>(paging: &Paging, show_progress: bool, mut fetch: F) -> Result<Page, Error>
where
    F: FnMut(u64, usize) -> Fut,
    Fut: Future<Output = Result<Page, Error>>,
{
    let limit = usize::try_from(paging.limit).unwrap_or(MAX_PAGE);
    if !paging.all_pages {
        return fetch(paging.cursor, limit).await;
    }
    let bar = spinner(show_progress, "reading pages", "sessions");
    let mut all = Page::default();
    let mut cursor = 0;
    let result = loop {
        let page = match fetch(cursor, limit).await {
            Ok(page) => page,
            Err(e) => break Err(e),
        };
        all.sessions.extend(page.sessions);
        all.total = page.total;
        bar.set_position(all.sessions.len() as u64);
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break Ok(()),
        }
    };
    bar.finish_and_clear();
    result.map(|()| all)
}

/// A spinner on stderr counting `unit`s, hidden unless `show`.
fn spinner(show: bool, what: &'static str, unit: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let mut bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
        .with_prefix(what)
        .with_message(unit);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {prefix}: {human_pos} {msg} ({elapsed})")
    {
        bar = bar.with_style(style);
    }
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
