//! Log lines out: to syslog when run as a service (so `logread` shows them),
//! to stderr in the foreground. The level follows the config's `log_level`
//! and changes on reload.
//!
//! Neighbours: `daemon` (sets it up), every module (through `log`).

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

type Syslog = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

enum Sink {
    Stderr,
    Syslog(Mutex<Syslog>),
}

struct Logger {
    sink: Sink,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        match &self.sink {
            Sink::Stderr => {
                let line = format!("{} {:<5} {}\n", utc_now(), r.level(), r.args());
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog(s) => {
                let msg = r.args().to_string();
                let Ok(mut s) = s.lock() else { return };
                let _ = match r.level() {
                    Level::Error => s.err(msg),
                    Level::Warn => s.warning(msg),
                    Level::Info => s.info(msg),
                    Level::Debug | Level::Trace => s.debug(msg),
                };
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. `syslog`: to the local syslog socket (falls back to
/// stderr with a warning if there is none).
pub fn init(use_syslog: bool) {
    let mut fallback = None;
    let sink = if use_syslog {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "dae".into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(l) => Sink::Syslog(Mutex::new(l)),
            Err(e) => {
                fallback = Some(e.to_string());
                Sink::Stderr
            }
        }
    } else {
        Sink::Stderr
    };
    if log::set_boxed_logger(Box::new(Logger { sink })).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    if let Some(e) = fallback {
        log::warn!("no syslog ({e}); logging to stderr");
    }
}

pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// `YYYY-MM-DDTHH:MM:SSZ` without a date library.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::utc_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
