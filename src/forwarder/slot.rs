//! The one connection a stream forwarder keeps to its upstream (TCP, DoT,
//! DoH, DoQ): handed to every query while it is alive, opened again when it
//! is not, by one query at a time while the others wait to share it.
//!
//! Neighbours: `tcp`, `https`, `quic` (each keeps one slot).

use std::cell::RefCell;
use std::future::Future;

use super::ForwardError;

pub struct Slot<C> {
    conn: RefCell<Option<C>>,
    /// Held while opening, so concurrent queries share one new connection.
    opening: tokio::sync::Mutex<()>,
}

impl<C: Clone> Slot<C> {
    pub fn new() -> Slot<C> {
        Slot {
            conn: RefCell::new(None),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// The kept connection if `alive` says it still is; a dead one is
    /// forgotten.
    pub fn current(&self, alive: impl Fn(&C) -> bool) -> Option<C> {
        let mut slot = self.conn.borrow_mut();
        match &*slot {
            Some(c) if alive(c) => Some(c.clone()),
            Some(_) => {
                *slot = None;
                None
            }
            None => None,
        }
    }

    /// The kept connection, or a new one from `open`, kept for the next
    /// queries.
    pub async fn get<F>(&self, alive: impl Fn(&C) -> bool, open: F) -> Result<C, ForwardError>
    where
        F: Future<Output = Result<C, ForwardError>>,
    {
        if let Some(c) = self.current(&alive) {
            return Ok(c);
        }
        let _opening = self.opening.lock().await;
        if let Some(c) = self.current(&alive) {
            return Ok(c);
        }
        let c = open.await?;
        *self.conn.borrow_mut() = Some(c.clone());
        Ok(c)
    }
}
