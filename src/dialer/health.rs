//! What the health checks found out about one node: per layer-4 protocol
//! and IP version, whether it works and how fast it answered.
//!
//! A node nobody has checked yet counts as alive (so the first queries
//! after a start do not wait for the checks) with no latency; one failed
//! check takes that path out of every group until a check succeeds again.
//!
//! Neighbours: `node` (owns one), `check` (records results), `group`
//! (reads them to pick a node).

use std::cell::RefCell;
use std::time::Duration;

use super::node::L4;

/// How many latencies `min_avg10` averages.
const KEEP: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct Record {
    /// A check has run on this path.
    pub checked: bool,
    /// The last check passed (or none has run).
    pub alive: bool,
    /// The last latencies, newest last.
    latencies: Vec<Duration>,
    /// Half the last latency plus half the previous average.
    moving_avg: Option<Duration>,
    /// Why the last check failed.
    pub error: Option<String>,
}

impl Record {
    pub fn last(&self) -> Option<Duration> {
        self.latencies.last().copied()
    }

    pub fn avg10(&self) -> Option<Duration> {
        let n = self.latencies.len() as u32;
        (n > 0).then(|| self.latencies.iter().sum::<Duration>() / n)
    }

    pub fn moving_avg(&self) -> Option<Duration> {
        self.moving_avg
    }
}

pub struct Health {
    /// Indexed by `slot(l4, v6)`.
    records: RefCell<[Record; 4]>,
}

/// Where a path's record is, per (layer-4 protocol, IP version); groups
/// keep their choices the same way.
pub(super) fn slot(l4: L4, v6: bool) -> usize {
    usize::from(l4 == L4::Udp) * 2 + usize::from(v6)
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        let fresh = Record {
            alive: true,
            ..Record::default()
        };
        Health {
            records: RefCell::new([fresh.clone(), fresh.clone(), fresh.clone(), fresh]),
        }
    }

    pub fn record(&self, l4: L4, v6: bool) -> Record {
        self.records.borrow()[slot(l4, v6)].clone()
    }

    pub fn alive(&self, l4: L4, v6: bool) -> bool {
        self.records.borrow()[slot(l4, v6)].alive
    }

    /// A check passed in `latency`. Returns whether the path was down.
    pub fn passed(&self, l4: L4, v6: bool, latency: Duration) -> bool {
        let mut records = self.records.borrow_mut();
        let r = &mut records[slot(l4, v6)];
        let was_down = !r.alive;
        r.checked = true;
        r.alive = true;
        r.error = None;
        if r.latencies.len() == KEEP {
            r.latencies.remove(0);
        }
        r.latencies.push(latency);
        r.moving_avg = Some(match r.moving_avg {
            Some(avg) => (avg + latency) / 2,
            None => latency,
        });
        was_down
    }

    /// A check failed. Returns whether the path was up.
    pub fn failed(&self, l4: L4, v6: bool, error: String) -> bool {
        let mut records = self.records.borrow_mut();
        let r = &mut records[slot(l4, v6)];
        let was_up = r.alive;
        r.checked = true;
        r.alive = false;
        r.error = Some(error);
        was_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchecked_is_alive_and_one_failure_takes_it_down() {
        let h = Health::new();
        assert!(h.alive(L4::Tcp, false) && h.alive(L4::Udp, true));
        assert!(h.failed(L4::Udp, false, "timed out".into()));
        assert!(!h.alive(L4::Udp, false));
        assert!(h.alive(L4::Tcp, false), "the other paths are untouched");
        assert!(h.passed(L4::Udp, false, Duration::from_millis(10)));
        assert!(h.alive(L4::Udp, false));
    }

    #[test]
    fn averages() {
        let h = Health::new();
        for ms in [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110] {
            h.passed(L4::Tcp, false, Duration::from_millis(ms));
        }
        let r = h.record(L4::Tcp, false);
        assert_eq!(r.last(), Some(Duration::from_millis(110)));
        // The last ten: 20..=110.
        assert_eq!(r.avg10(), Some(Duration::from_millis(65)));
        assert!(r.moving_avg().unwrap() > Duration::from_millis(90));
    }
}
