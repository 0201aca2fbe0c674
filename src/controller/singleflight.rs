//! Single-flight: identical queries in flight share one upstream exchange.
//!
//! The first query for a cache key becomes the leader and goes upstream; any
//! query with the same key arriving before it finishes follows: it waits for
//! the leader's outcome and answers its own client from it. If the leader
//! fails, or is dropped before finishing, every follower gets the failure
//! (and answers SERVFAIL) rather than waiting forever.
//!
//! Neighbours: `controller` (leads and follows), `cache::Entry` (the shared
//! outcome).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use tokio::sync::oneshot;

use super::cache::{Entry, SeededHash};

/// What a flight ends with: the answer to share, or a failure.
pub type Outcome = Result<Entry, ()>;

/// The flights in progress, by cache key.
pub struct Flights {
    /// The key is the one the leading query carries (no copy).
    followers: HashMap<Rc<[u8]>, Vec<oneshot::Sender<Outcome>>, SeededHash>,
}

impl Default for Flights {
    fn default() -> Flights {
        Flights {
            followers: HashMap::with_hasher(SeededHash::random()),
        }
    }
}

pub enum Join {
    /// Nobody was asking: go upstream and `finish` the lead.
    Lead(Lead),
    /// Someone is: wait for their outcome.
    Follow(oneshot::Receiver<Outcome>),
}

impl Flights {
    pub fn join(this: &Rc<RefCell<Flights>>, key: &Rc<[u8]>) -> Join {
        let mut flights = this.borrow_mut();
        if let Some(waiting) = flights.followers.get_mut(&**key) {
            let (tx, rx) = oneshot::channel();
            waiting.push(tx);
            return Join::Follow(rx);
        }
        flights.followers.insert(key.clone(), Vec::new());
        Join::Lead(Lead {
            flights: this.clone(),
            key: key.clone(),
        })
    }

    pub fn in_flight(&self, key: &[u8]) -> bool {
        self.followers.contains_key(key)
    }

    /// Number of distinct queries in flight.
    pub fn len(&self) -> usize {
        self.followers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.followers.is_empty()
    }
}

/// The right and duty to answer everyone waiting on one key.
pub struct Lead {
    flights: Rc<RefCell<Flights>>,
    key: Rc<[u8]>,
}

impl Lead {
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Ends the flight and hands the outcome to every follower.
    pub fn finish(self, outcome: &Outcome) {
        let waiting = self.flights.borrow_mut().followers.remove(&self.key);
        for tx in waiting.into_iter().flatten() {
            let _ = tx.send(outcome.clone());
        }
        // Drop sees the key already gone.
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        // A lead dropped without `finish` (task cancelled): followers see
        // their channel closed and answer SERVFAIL.
        if let Ok(mut f) = self.flights.try_borrow_mut() {
            f.followers.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn key(k: &str) -> Rc<[u8]> {
        k.as_bytes().into()
    }

    fn entry() -> Entry {
        Entry::new(&[], &[0; 12], &[], Instant::now(), 1, false)
    }

    #[test]
    fn followers_get_the_leaders_outcome() {
        let flights = Rc::new(RefCell::new(Flights::default()));
        let Join::Lead(lead) = Flights::join(&flights, &key("k")) else {
            panic!()
        };
        let mut rxs = Vec::new();
        for _ in 0..3 {
            match Flights::join(&flights, &key("k")) {
                Join::Follow(rx) => rxs.push(rx),
                Join::Lead(_) => panic!("second leader"),
            }
        }
        assert!(matches!(
            Flights::join(&flights, &key("other")),
            Join::Lead(_)
        ));
        lead.finish(&Ok(entry()));
        for mut rx in rxs {
            assert!(rx.try_recv().unwrap().is_ok());
        }
        assert!(!flights.borrow().in_flight(b"k"));
    }

    #[test]
    fn a_dropped_leader_releases_its_followers() {
        let flights = Rc::new(RefCell::new(Flights::default()));
        let Join::Lead(lead) = Flights::join(&flights, &key("k")) else {
            panic!()
        };
        let Join::Follow(mut rx) = Flights::join(&flights, &key("k")) else {
            panic!()
        };
        drop(lead);
        assert!(rx.try_recv().is_err());
        assert!(flights.borrow().is_empty());
        assert!(matches!(Flights::join(&flights, &key("k")), Join::Lead(_)));
    }
}
