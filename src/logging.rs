//! Log lines out: to syslog when run as a service (so `logread` shows them),
//! to stderr in the foreground. The level follows the config's `log_level`
//! and changes on reload.
//!
//! Neighbours: `daemon` (sets it up), every module (through `log`).

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

type Syslog = syslog::Logger<syslog::LoggerBackend, Rfc3164>;

/// The lines of syslog's `Formatter3164` without a hostname
/// (`<PRI>Mmm dd hh:mm:ss dae[PID]: message`, the time in UTC as that
/// formatter has it on unix), written without it: it parses a `time`
/// format description for every line, and that crate's parser and
/// formatter weigh about 40 kB of the MIPS binary.
#[derive(Clone)]
struct Rfc3164 {
    pid: u32,
}

impl<T: std::fmt::Display> syslog::LogFormat<T> for Rfc3164 {
    fn format<W: Write>(
        &self,
        w: &mut W,
        severity: syslog::Severity,
        message: T,
    ) -> syslog::Result<()> {
        let (_, month, day, secs) = civil(unix_now());
        write!(
            w,
            "<{}>{} {day:02} {:02}:{:02}:{:02} dae[{}]: {message}",
            syslog::Facility::LOG_DAEMON as u8 | severity as u8,
            MONTHS[month as usize - 1],
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            self.pid,
        )
        .map_err(syslog::Error::Write)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

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
        let formatter = Rfc3164 {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Year, month (1-12), day and seconds into the day (UTC) of a Unix time,
/// without a date library.
fn civil(secs: u64) -> (i64, i64, i64, u64) {
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
    (y, m, d, rem)
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let (y, m, d, rem) = civil(unix_now());
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

    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1, 0));
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(super::civil(1_709_251_199), (2024, 2, 29, 86399));
        assert_eq!(super::civil(1_709_251_200), (2024, 3, 1, 0));
    }

    #[test]
    fn syslog_line() {
        use syslog::LogFormat;
        let mut out = Vec::new();
        let f = super::Rfc3164 { pid: 42 };
        f.format(&mut out, syslog::Severity::LOG_WARNING, "hello")
            .unwrap();
        let line = String::from_utf8(out).unwrap();
        // <28>Mmm dd hh:mm:ss dae[42]: hello (daemon.warning = 3 * 8 + 4)
        assert!(line.starts_with("<28>"), "{line}");
        assert!(line.ends_with(" dae[42]: hello"), "{line}");
        assert_eq!(
            line.len(),
            "<28>Jan 01 00:00:00 dae[42]: hello".len(),
            "{line}"
        );
        assert!(super::MONTHS.contains(&&line[4..7]), "{line}");
    }
}
