//! The plain TCP DNS listener (RFC 7766): length-prefixed queries, several
//! in flight per connection, answers written as they are ready (possibly out
//! of order), connections closed after a quiet spell.
//!
//! A client that sends queries and never reads its answers must not pin
//! the daemon's memory or lock others out:
//! - each connection has at most `MAX_OUTSTANDING` queries whose answers
//!   are not yet written, and at most `MAX_QUEUED` bytes of answers waiting
//!   in dae; past either, its queries are no longer read;
//! - an answer the client does not take within `WRITE_TIMEOUT` closes the
//!   connection;
//! - when all connections are taken (`MAX_CLIENTS`), or the answers queued
//!   on all of them pass `TOTAL_QUEUED`, the worst offender is closed (the
//!   most bytes waiting, then the longest idle) instead of refusing the
//!   newcomer.
//!
//! Neighbours: `listener` (binds the socket), `acl` (who a plain listener
//! answers), `controller` (decides), `relay` (takes the transparent
//! connections that are not DNS).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::acl::LocalOnly;
use crate::controller::{Client, Controller, Step, Transport};
use crate::relay::Relay;

/// A connection with no new query for this long is closed (once its
/// answers are out).
const IDLE: Duration = Duration::from_secs(10);
/// An answer the client has not taken in this long closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; a newcomer past it closes the worst one.
const MAX_CLIENTS: usize = 256;
/// Queries of one connection whose answers are not yet written.
const MAX_OUTSTANDING: usize = 16;
/// Bytes of answers waiting in dae for one connection before its queries
/// are no longer read.
const MAX_QUEUED: usize = 64 * 1024;
/// Bytes of answers waiting on all the connections of one listener; past
/// it, the connection with the most is closed.
const TOTAL_QUEUED: usize = 4 * 1024 * 1024;

/// One connection, as the listener sees it.
struct Conn {
    peer: SocketAddr,
    /// Answers waiting to be written, oldest first.
    answers: RefCell<VecDeque<Vec<u8>>>,
    /// Bytes in `answers` (and in the frame being written).
    queued: Cell<usize>,
    /// Queries handed to the controller whose answers have not come yet.
    owed: Cell<usize>,
    /// Queries read whose answers are not written yet.
    outstanding: Cell<usize>,
    /// The reader is done: the writer ends once nothing is owed or queued.
    reading_done: Cell<bool>,
    /// When a query was last read or an answer last written.
    active: Cell<Instant>,
    /// Still in the listener's set (its bytes count in the total).
    registered: Cell<bool>,
    /// Wakes the writer: an answer came, or the reader is done.
    to_write: Notify,
    /// Wakes the reader: an answer went out.
    drained: Notify,
    /// The connection's task, to close it from outside.
    task: RefCell<Option<AbortHandle>>,
}

impl Conn {
    fn new(peer: SocketAddr) -> Conn {
        Conn {
            peer,
            answers: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            owed: Cell::new(0),
            outstanding: Cell::new(0),
            reading_done: Cell::new(false),
            active: Cell::new(Instant::now()),
            registered: Cell::new(true),
            to_write: Notify::new(),
            drained: Notify::new(),
            task: RefCell::new(None),
        }
    }

    fn over_limits(&self) -> bool {
        self.outstanding.get() >= MAX_OUTSTANDING || self.queued.get() >= MAX_QUEUED
    }
}

/// The connections of one listener.
#[derive(Default)]
struct Conns {
    /// By id (at most `MAX_CLIENTS`: a list).
    live: RefCell<Vec<(u64, Rc<Conn>)>>,
    next_id: Cell<u64>,
    /// Sum of `queued` over `live`.
    queued: Cell<usize>,
}

impl Conns {
    fn add(&self, conn: &Rc<Conn>) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.live.borrow_mut().push((id, conn.clone()));
        id
    }

    /// Forgets a connection that ended or is closed, and frees the answers
    /// it still had waiting.
    fn remove(&self, id: u64) -> Option<Rc<Conn>> {
        let conn = {
            let mut live = self.live.borrow_mut();
            let at = live.iter().position(|(i, _)| *i == id)?;
            live.swap_remove(at).1
        };
        conn.registered.set(false);
        self.queued.set(self.queued.get() - conn.queued.get());
        conn.answers.borrow_mut().clear();
        conn.queued.set(0);
        Some(conn)
    }

    /// Closes the worst connection: the most bytes waiting, then the most
    /// queries outstanding, then the longest idle.
    fn evict_worst(&self, why: &str) {
        let worst = self
            .live
            .borrow()
            .iter()
            .max_by_key(|(_, c)| {
                (
                    c.queued.get(),
                    c.outstanding.get(),
                    std::cmp::Reverse(c.active.get()),
                )
            })
            .map(|(id, _)| *id);
        let Some(conn) = worst.and_then(|id| self.remove(id)) else {
            return;
        };
        log::debug!("tcp: {why}: closing {}", conn.peer);
        let task = conn.task.borrow_mut().take();
        if let Some(task) = task {
            task.abort();
        }
    }

    /// Queues an answer for `conn` (dropped if the connection is closed);
    /// past the listener's budget the worst connection is closed.
    fn push(&self, conn: &Conn, reply: Vec<u8>) {
        if !conn.registered.get() {
            return;
        }
        conn.queued.set(conn.queued.get() + reply.len());
        self.queued.set(self.queued.get() + reply.len());
        conn.answers.borrow_mut().push_back(reply);
        conn.to_write.notify_one();
        if self.queued.get() > TOTAL_QUEUED {
            self.evict_worst("answers waiting on all connections pass the budget");
        }
    }

    /// Counts an answer of `bytes` written (or dropped) for `conn`.
    fn written(&self, conn: &Conn, bytes: usize) {
        if conn.registered.get() {
            conn.queued.set(conn.queued.get() - bytes);
            self.queued.set(self.queued.get() - bytes);
        }
    }
}

/// Removes the connection from the listener's set when its task ends or
/// is aborted.
struct Registration {
    conns: Rc<Conns>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

/// An answer the controller owes a connection. Paid, it is queued; dropped
/// unpaid (the query was given up), it is no longer waited for.
struct Owed {
    conns: Weak<Conns>,
    conn: Weak<Conn>,
}

impl Owed {
    fn new(conns: &Rc<Conns>, conn: &Rc<Conn>) -> Owed {
        conn.owed.set(conn.owed.get() + 1);
        Owed {
            conns: Rc::downgrade(conns),
            conn: Rc::downgrade(conn),
        }
    }

    fn pay(self, reply: &[u8]) {
        if let (Some(conns), Some(conn)) = (self.conns.upgrade(), self.conn.upgrade()) {
            // Counted as written when the answer goes out.
            conn.outstanding.set(conn.outstanding.get() + 1);
            conns.push(&conn, reply.to_vec());
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.upgrade() {
            conn.owed.set(conn.owed.get() - 1);
            conn.outstanding.set(conn.outstanding.get() - 1);
            conn.to_write.notify_one();
            conn.drained.notify_one();
        }
    }
}

/// Serves one listening socket. `transparent`: connections were handed over
/// by the TC program, so the address they were made to is the server the
/// client asked. With `acl`, connections from sources it refuses are
/// closed at once.
///
/// On the transparent listener, `relay` takes the connections that are not
/// DNS (to a port other than 53): the flows the TC program routed to a
/// group.
pub async fn serve(
    listener: TcpListener,
    controller: Rc<Controller>,
    transparent: bool,
    acl: Option<Rc<LocalOnly>>,
    relay: Option<Rc<Relay>>,
) {
    let conns = Rc::new(Conns::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Some(relay) = &relay {
            match stream.local_addr() {
                Ok(dst) if dst.port() != 53 => {
                    tokio::task::spawn_local(relay.clone().tcp(stream, peer, dst));
                    continue;
                }
                _ => {}
            }
        }
        if acl.as_ref().is_some_and(|acl| !acl.allows(peer.ip())) {
            continue;
        }
        if conns.live.borrow().len() >= MAX_CLIENTS {
            conns.evict_worst(&format!("{MAX_CLIENTS} clients already, {peer} comes"));
        }
        let conn = Rc::new(Conn::new(peer));
        let registration = Registration {
            id: conns.add(&conn),
            conns: conns.clone(),
        };
        let controller = controller.clone();
        let task_conn = conn.clone();
        let task = tokio::task::spawn_local(async move {
            let asked = if transparent {
                stream.local_addr().ok()
            } else {
                None
            };
            serve_client(stream, asked, controller, &registration.conns, task_conn).await;
            drop(registration);
        });
        *conn.task.borrow_mut() = Some(task.abort_handle());
    }
}

async fn serve_client(
    stream: TcpStream,
    asked: Option<SocketAddr>,
    controller: Rc<Controller>,
    conns: &Rc<Conns>,
    conn: Rc<Conn>,
) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let reading = read_queries(rd, asked, &controller, conns, &conn);
    let writing = write_replies(wr, conns, &conn);
    tokio::pin!(reading, writing);
    tokio::select! {
        // The client is done or quiet: its answers still go out (the
        // writer ends once every answer owed is written).
        _ = &mut reading => {
            conn.reading_done.set(true);
            conn.to_write.notify_one();
            writing.await
        }
        // The client does not take its answers, or is gone.
        _ = &mut writing => {}
    }
}

/// Reads queries until the client closes, goes quiet for `IDLE`, or sends
/// garbage; waits while the connection is over its limits.
async fn read_queries(
    mut rd: OwnedReadHalf,
    asked: Option<SocketAddr>,
    controller: &Rc<Controller>,
    conns: &Rc<Conns>,
    conn: &Rc<Conn>,
) {
    let client = Client {
        transport: Transport::Tcp,
        addr: conn.peer,
        asked,
    };
    let mut len = [0u8; 2];
    let mut out = Vec::new();
    loop {
        while conn.over_limits() {
            // Answers go out or fail within the upstream and write
            // timeouts; a connection stuck longer is given up.
            if tokio::time::timeout(IDLE, conn.drained.notified())
                .await
                .is_err()
            {
                return;
            }
        }
        match tokio::time::timeout(IDLE, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        let n = usize::from(u16::from_be_bytes(len));
        let mut query = vec![0u8; n];
        match tokio::time::timeout(IDLE, rd.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        conn.active.set(Instant::now());
        match controller.handle(&query, &client, &mut out) {
            Step::Replied => {
                // Handed over at its exact size (`out` grew by doubling),
                // and no buffer stays behind on a quiet connection.
                out.shrink_to_fit();
                conn.outstanding.set(conn.outstanding.get() + 1);
                conns.push(conn, std::mem::take(&mut out));
            }
            Step::Dropped => {}
            Step::Pending(p) => {
                conn.outstanding.set(conn.outstanding.get() + 1);
                let owed = Owed::new(conns, conn);
                controller.pursue(p, client, move |reply| {
                    owed.pay(reply);
                    None
                });
            }
        }
    }
}

/// Writes answers as they come; ends when the reader is done and nothing
/// is owed or queued, or when the client does not take an answer within
/// `WRITE_TIMEOUT`.
async fn write_replies(mut wr: OwnedWriteHalf, conns: &Conns, conn: &Conn) {
    loop {
        let next = conn.answers.borrow_mut().pop_front();
        let Some(reply) = next else {
            if conn.reading_done.get() && conn.owed.get() == 0 {
                break;
            }
            conn.to_write.notified().await;
            continue;
        };
        // A frame of its own per answer: a buffer kept for the next one
        // would pin the largest answer's size on every quiet connection.
        let mut frame = Vec::with_capacity(reply.len() + 2);
        frame.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        frame.extend_from_slice(&reply);
        drop(reply);
        let written = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&frame)).await;
        conns.written(conn, frame.len() - 2);
        conn.outstanding.set(conn.outstanding.get() - 1);
        conn.active.set(Instant::now());
        conn.drained.notify_one();
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                log::debug!(
                    "tcp: {} took no answer for {WRITE_TIMEOUT:?}; closing",
                    conn.peer
                );
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}
