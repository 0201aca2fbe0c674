//! Log lines out: to syslog when run as a service (so `logread` shows them),
//! to stderr in the foreground. The level follows the config's `log_level`
//! and changes on reload.
//!
//! Warnings and errors are rate-limited per kind (the line of code that
//! logs them; the daemon's own start and reload lines excepted): a burst
//! of failing queries must not wipe a router's small `logread` ring. Each
//! kind writes at most `BURST` lines per `WINDOW`;
//! the rest are counted and summed up in one line when the window ends
//! ("… 8,975 more in the last 10 s like: …"), written at the next line
//! logged or by the daemon's `tick`, whichever comes first.
//!
//! Neighbours: `daemon` (sets it up, ticks), every module (through `log`).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Lines of one kind written in a window before the rest are only counted.
const BURST: u32 = 5;
/// How long a window of one kind lasts, from its first line.
const WINDOW: Duration = Duration::from_secs(10);

/// The module whose lines are never rate-limited.
const UNLIMITED: &str = "dae::daemon";

/// Where a line was logged: its kind.
type Site = (&'static str, u32);

/// One kind's current window.
struct Window {
    start: Instant,
    level: Level,
    written: u32,
    suppressed: u64,
    /// The first line of the window, quoted in its summary.
    sample: String,
}

/// What each kind of warning has written in its window (a few kinds at a
/// time: a list, not a map).
#[derive(Default)]
struct Limiter {
    windows: Vec<(Site, Window)>,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Write,
    Count,
}

impl Limiter {
    /// Admits or counts a line of `site`; `message` is made only when the
    /// line opens a window (it becomes the window's sample).
    fn admit(
        &mut self,
        site: Site,
        level: Level,
        now: Instant,
        message: impl FnOnce() -> String,
    ) -> Admit {
        let open = self.windows.iter_mut().find(|(s, _)| *s == site);
        match open.map(|(_, w)| w) {
            Some(w) if now.duration_since(w.start) < WINDOW => {
                if w.written < BURST {
                    w.written += 1;
                    Admit::Write
                } else {
                    w.suppressed += 1;
                    Admit::Count
                }
            }
            // An ended window with lines still to sum up is closed by
            // `ended` first (the caller asks it before admitting).
            _ => {
                let window = Window {
                    start: now,
                    level,
                    written: 1,
                    suppressed: 0,
                    sample: message(),
                };
                self.windows.retain(|(s, _)| *s != site);
                self.windows.push((site, window));
                Admit::Write
            }
        }
    }

    /// Closes the windows that have ended: the summaries of those that
    /// counted lines, with their level. Windows that counted nothing are
    /// dropped, so the map holds only the kinds logged lately.
    fn ended(&mut self, now: Instant) -> Vec<(Level, String)> {
        let mut out = Vec::new();
        self.windows.retain(|(_, w)| {
            if now.duration_since(w.start) < WINDOW {
                return true;
            }
            if w.suppressed > 0 {
                out.push((
                    w.level,
                    format!(
                        "… {} more in the last {} s like: {}",
                        grouped(w.suppressed),
                        WINDOW.as_secs(),
                        w.sample
                    ),
                ));
            }
            false
        });
        out
    }
}

/// `8975` as `8,975`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

struct Logger {
    sink: Sink,
    limiter: Mutex<Limiter>,
}

impl Logger {
    fn write(&self, level: Level, msg: &str) {
        match &self.sink {
            Sink::Stderr => {
                let line = format!("{} {:<5} {msg}\n", utc_now(), level);
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog(s) => {
                let msg = msg.to_string();
                let Ok(mut s) = s.lock() else { return };
                let _ = match level {
                    Level::Error => s.err(msg),
                    Level::Warn => s.warning(msg),
                    Level::Info => s.info(msg),
                    Level::Debug | Level::Trace => s.debug(msg),
                };
            }
        }
    }

    /// Writes the summaries of the windows that have ended.
    fn close_windows(&self, now: Instant) {
        let ended = match self.limiter.lock() {
            Ok(mut l) if !l.windows.is_empty() => l.ended(now),
            _ => return,
        };
        for (level, line) in ended {
            self.write(level, &line);
        }
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let now = Instant::now();
        self.close_windows(now);
        // The daemon's own lines (start, reload, stop) are bounded by the
        // config's size and every one counts: a reload's list of problems
        // is never cut.
        if r.level() <= Level::Warn && r.module_path_static() != Some(UNLIMITED) {
            let site = (
                r.file_static().or(r.module_path_static()).unwrap_or("?"),
                r.line().unwrap_or(0),
            );
            let admit = match self.limiter.lock() {
                Ok(mut l) => l.admit(site, r.level(), now, || r.args().to_string()),
                Err(_) => Admit::Write,
            };
            if admit == Admit::Count {
                return;
            }
        }
        self.write(r.level(), &r.args().to_string());
    }

    /// Writes what the rate limit still owes: the summaries of ended
    /// windows.
    fn flush(&self) {
        self.close_windows(Instant::now());
    }
}

/// Writes the summaries of rate-limited warnings whose window has ended
/// (the daemon calls it every few seconds, so a burst's summary comes even
/// when nothing else is logged after it).
pub fn tick() {
    log::logger().flush();
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
    let logger = Logger {
        sink,
        limiter: Mutex::new(Limiter::default()),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
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
    use super::{Admit, Limiter, BURST, WINDOW};
    use log::Level;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_is_cut_and_summed_up_per_kind() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a = ("src/a.rs", 1);
        let b = ("src/b.rs", 2);
        let mut written = 0;
        for i in 0..10_000u32 {
            let at = t0 + Duration::from_micros(u64::from(i) * 100);
            if l.admit(a, Level::Warn, at, || format!("a {i}")) == Admit::Write {
                written += 1;
            }
        }
        assert_eq!(written, BURST);
        // Another kind has a window of its own.
        assert_eq!(l.admit(b, Level::Error, t0, || "b".into()), Admit::Write);
        assert!(l.ended(t0 + Duration::from_secs(1)).is_empty());
        let ended = l.ended(t0 + WINDOW);
        assert_eq!(
            ended,
            vec![(
                Level::Warn,
                format!("… 9,995 more in the last {} s like: a 0", WINDOW.as_secs())
            )]
        );
        assert!(l.windows.is_empty(), "kind b counted nothing: no summary");
        // The next line of kind a opens a new window.
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(l.admit(a, Level::Warn, later, || "a".into()), Admit::Write);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::grouped(0), "0");
        assert_eq!(super::grouped(999), "999");
        assert_eq!(super::grouped(8975), "8,975");
        assert_eq!(super::grouped(1_234_567), "1,234,567");
    }

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
