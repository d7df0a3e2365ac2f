//! `log` records to standard error, which Lambda sends to CloudWatch Logs.

use std::io::Write as _;

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Sends `log` records (edge-session's, and the Lambda runtime's) to standard
/// error. The level is `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's logging
/// configuration) or `RUST_LOG` when it is a plain level name, else `info`.
pub fn init_logging() {
    static LOGGER: StderrLog = StderrLog;
    let level = ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find_map(|v| v.trim().parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
