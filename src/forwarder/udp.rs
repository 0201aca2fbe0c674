//! DNS over UDP to one upstream.
//!
//! A small pool of connected sockets, each on its own random local port,
//! carries the queries: a query takes a random socket and a random id that
//! is free on it, is sent again every second while no answer has come (the
//! socket's reader task keeps those clocks, so a query needs no timer of its
//! own), and only an answer with our id and our question (name, type,
//! class) is accepted; other datagrams are ignored (late answers or spoofs). Each
//! socket is retired after `MAX_USES` queries or `MAX_AGE`, so the ports in
//! use keep changing (an off-path spoofer must guess port and id). An ICMP
//! port-unreachable fails the queries waiting on that socket at once.
//!
//! Reusing sockets saves the 8 system calls a fresh socket per query costs
//! (socket, mark, bind, connect, non-blocking, epoll add and delete, close);
//! one reader task per socket reads answers in batches (`recvmmsg`) and
//! hands each to the query waiting on it. It also sends: a new query is
//! queued on its socket, and the reader, which runs after the queries the
//! listener started in the same batch, sends all that are queued with one
//! `sendmmsg`. Besides the system calls, that spares the upstream a wakeup
//! per query when it sleeps between them.
//!
//! A query is waited for in one of two ways: by a task (`exchange`, which
//! the reader wakes with the outcome), or by nobody (`send_then`: the
//! reader removes the wait and calls the query's callback with the outcome,
//! which is how the controller follows plain-UDP misses without a task).
//!
//! Neighbours: `forwarder` (the caller), `dialer::Direct` (the sockets).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use std::task::{Poll, Waker};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::ForwardError;
use crate::controller::cache::SeededHash;
use crate::dialer::Direct;
use crate::listener::mmsg::{self, RecvBatch, BATCH};
use crate::wire::{self, QueryInfo};

/// How long to wait before sending a query again.
const RETRANSMIT: Duration = Duration::from_secs(1);
/// Sockets per upstream.
const POOL: usize = 4;
/// A socket carries at most this many queries before a fresh port replaces it.
const MAX_USES: u32 = 1000;
/// ... and lives at most this long.
const MAX_AGE: Duration = Duration::from_secs(60);
/// Queries waiting on one socket at most (ids must stay guessable only by
/// chance).
const MAX_WAITING: usize = 4096;
/// How long a reader with nothing to wait for sleeps between checks.
const READER_IDLE: Duration = Duration::from_secs(5);
/// A waiting list that held more than this many queries gives its memory
/// back when it empties.
const WAITING_KEEP: usize = 256;

thread_local! {
    /// One batch of receive buffers for every socket: answers are handed on
    /// right after `recvmmsg`, before anything else can run.
    static INBOX: RefCell<RecvBatch> = RefCell::new(RecvBatch::with_control(false));
}

pub type Answer = Result<Vec<u8>, ForwardError>;

/// What `send_then` calls with a query's outcome, handing back the query
/// it was given (its id is ours).
pub type Callback = Box<dyn FnOnce(Answer, Box<[u8]>)>;

struct Waiter {
    /// Our query as sent (with our id), for retransmits and to check the
    /// answer's question by.
    query: Box<[u8]>,
    question_end: usize,
    next_send: Instant,
    deadline: Instant,
    /// Tells this wait from a later one that reuses its id.
    seq: u64,
    then: Then,
}

/// Who takes a query's outcome.
enum Then {
    /// A task: the reader puts the outcome here and wakes the task, which
    /// takes it and removes the wait (no channel to allocate per query).
    Wake {
        outcome: Option<Answer>,
        waker: Option<Waker>,
    },
    /// Nobody waits: the reader removes the wait and makes this call.
    Call(Callback),
}

impl Waiter {
    /// No outcome yet.
    fn is_open(&self) -> bool {
        !matches!(
            self.then,
            Then::Wake {
                outcome: Some(_),
                ..
            }
        )
    }
}

type Waiting = HashMap<u16, Box<Waiter>, SeededHash>;

/// Calls owed once the waiting list is let go (a call may start another
/// query on the same socket), with their queries.
type Due = Vec<(Callback, Answer, Box<[u8]>)>;

/// Ends the wait on `id` with `outcome`, if it is still open (the first
/// outcome counts): a task's wait keeps the outcome for the task; a
/// callback's wait is removed and its call added to `due`.
fn settle(waiting: &mut Waiting, id: u16, outcome: Answer, due: &mut Due) {
    let Some(w) = waiting.get_mut(&id) else {
        return;
    };
    match &mut w.then {
        Then::Wake {
            outcome: slot @ None,
            waker,
        } => {
            *slot = Some(outcome);
            if let Some(w) = waker.take() {
                w.wake();
            }
        }
        Then::Wake { .. } => {}
        Then::Call(_) => {
            if let Some(w) = waiting.remove(&id) {
                let Waiter { query, then, .. } = *w;
                if let Then::Call(call) = then {
                    due.push((call, outcome, query));
                }
            }
            if waiting.is_empty() && waiting.capacity() > WAITING_KEEP {
                waiting.shrink_to_fit();
            }
        }
    }
}

/// Makes the calls owed; no borrow of the socket's state may be held.
fn call_due(due: Due) {
    for (call, outcome, query) in due {
        call(outcome, query);
    }
}

/// One pooled socket and the queries waiting on it.
struct Shared {
    /// Watched for readability only: a socket registered for writability
    /// too would be woken (and wake the reactor) for every datagram it
    /// sends, as its buffer space comes back. A full buffer is handled by
    /// sending again later.
    sock: AsyncFd<std::net::UdpSocket>,
    waiting: RefCell<Waiting>,
    uses: Cell<u32>,
    born: Instant,
    broken: Cell<bool>,
    /// The pool has let go of it: it ends when its last query does.
    released: Cell<bool>,
    /// Numbers the waits, so a query that ends removes its own wait and
    /// never a newer one that took the same id after it was answered.
    next_seq: Cell<u64>,
    /// Queries waiting for their first send (id and wait number), sent by
    /// the reader.
    outbox: RefCell<Vec<(u16, u64)>>,
    /// Tells the reader that queries were queued (its timers change too) or
    /// that the pool let go of the socket.
    wake: tokio::sync::Notify,
}

impl Shared {
    fn retired(&self, now: Instant) -> bool {
        self.broken.get() || self.uses.get() >= MAX_USES || now.duration_since(self.born) >= MAX_AGE
    }

    /// Fails everything waiting on this socket.
    fn fail_all(&self, error: impl Fn() -> ForwardError) {
        let failed: Vec<_> = self
            .waiting
            .borrow()
            .keys()
            .map(|&id| (id, error()))
            .collect();
        self.fail(failed);
    }

    /// Ends these waits with their errors, then makes the calls owed (no
    /// borrow of the waiting list may be held).
    fn fail(&self, failed: Vec<(u16, ForwardError)>) {
        if failed.is_empty() {
            return;
        }
        let mut due = Due::new();
        {
            let mut waiting = self.waiting.borrow_mut();
            for (id, e) in failed {
                settle(&mut waiting, id, Err(e), &mut due);
            }
        }
        call_due(due);
    }
}

/// The UDP path to one upstream.
pub struct UdpPool {
    remote: SocketAddr,
    dialer: Direct,
    slots: RefCell<Vec<Option<Rc<Shared>>>>,
}

impl UdpPool {
    pub fn new(remote: SocketAddr, dialer: Direct) -> UdpPool {
        UdpPool {
            remote,
            dialer,
            slots: RefCell::new(vec![None; POOL]),
        }
    }

    /// A random socket of the pool, opened anew if its slot is empty or
    /// retired.
    fn pick(&self, now: Instant) -> io::Result<Rc<Shared>> {
        let i = usize::from(crate::rand::u16()) % POOL;
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = &slots[i] {
            if !s.retired(now) {
                return Ok(s.clone());
            }
        }
        // The retired socket's reader ends (and closes it) as soon as the
        // queries still waiting on it are done.
        if let Some(old) = slots[i].take() {
            old.released.set(true);
            old.wake.notify_one();
        }
        let shared = Rc::new(Shared {
            sock: watch_readable(self.dialer.udp_std(self.remote)?)?,
            waiting: RefCell::new(HashMap::with_hasher(SeededHash::random())),
            uses: Cell::new(0),
            born: now,
            broken: Cell::new(false),
            released: Cell::new(false),
            next_seq: Cell::new(0),
            outbox: RefCell::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        });
        tokio::task::spawn_local(read_answers(shared.clone(), self.remote));
        slots[i] = Some(shared.clone());
        Ok(shared)
    }

    ///
    /// A plain fn returning an `async move` block: an `async fn` keeps its
    /// arguments twice, and every waiting query carries this future.
    #[allow(clippy::manual_async_fn)]
    pub fn exchange<'a>(
        &'a self,
        query: &'a [u8],
        info: &'a QueryInfo,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, ForwardError>> + 'a {
        async move {
            let now = Instant::now();
            let (shared, id) = self.reserve(now)?;
            let seq = wait(
                &shared,
                id,
                query.into(),
                info.question_end,
                now,
                deadline,
                Then::Wake {
                    outcome: None,
                    waker: None,
                },
            );
            // Whatever happens below, this query stops waiting when we return.
            let _cleanup = Unwait(&shared, id, seq);
            std::future::poll_fn(|cx| {
                let mut waiting = shared.waiting.borrow_mut();
                let Some(Then::Wake { outcome, waker }) = waiting
                    .get_mut(&id)
                    .filter(|w| w.seq == seq)
                    .map(|w| &mut w.then)
                else {
                    return Poll::Ready(Err(ForwardError::Closed));
                };
                match outcome.take() {
                    Some(outcome) => Poll::Ready(outcome),
                    None => {
                        if !waker.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
                            *waker = Some(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                }
            })
            .await
        }
    }

    /// Sends `query` as `exchange` does, but no task waits: the socket's
    /// reader calls `then` with the outcome and the query. `then` is called
    /// once, at once if the query cannot be sent (unless the runtime stops
    /// first). The wait keeps `query` meanwhile; its id is replaced here.
    /// `now` is the time (the caller has read the clock already).
    pub fn send_then(
        &self,
        query: Box<[u8]>,
        question_end: usize,
        now: Instant,
        deadline: Instant,
        then: Callback,
    ) {
        match self.reserve(now) {
            Ok((shared, id)) => {
                let then = Then::Call(then);
                wait(&shared, id, query, question_end, now, deadline, then);
            }
            Err(e) => then(Err(e), query),
        }
    }

    /// A socket with room for one more query, and a free id on it.
    fn reserve(&self, now: Instant) -> Result<(Rc<Shared>, u16), ForwardError> {
        let shared = self.pick(now)?;
        if shared.waiting.borrow().len() >= MAX_WAITING {
            return Err(ForwardError::Busy);
        }
        let id = super::free_id(|id| shared.waiting.borrow().contains_key(&id));
        Ok((shared, id))
    }
}

/// Makes `query` wait on `id`, queued for the reader, which sends it with
/// the others of this round (`send_queued`), sends it again each
/// `RETRANSMIT` and ends the wait at the deadline, so waiting needs no
/// timer. Returns the wait's number.
fn wait(
    shared: &Shared,
    id: u16,
    mut query: Box<[u8]>,
    question_end: usize,
    now: Instant,
    deadline: Instant,
    then: Then,
) -> u64 {
    wire::set_id(&mut query, id);
    let seq = shared.next_seq.get();
    shared.next_seq.set(seq + 1);
    shared.waiting.borrow_mut().insert(
        id,
        Box::new(Waiter {
            query,
            question_end,
            next_send: now + RETRANSMIT,
            deadline,
            seq,
            then,
        }),
    );
    shared.uses.set(shared.uses.get() + 1);
    let first = {
        let mut outbox = shared.outbox.borrow_mut();
        outbox.push((id, seq));
        outbox.len() == 1
    };
    if first {
        shared.wake.notify_one();
    }
    seq
}

/// Registers a socket with the reactor for readability only.
fn watch_readable(sock: std::net::UdpSocket) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the socket owns its descriptor, which stays open and the same
    // for as long as the `AsyncFd` owns the socket.
    unsafe { AsyncFd::register_with_interest(sock, Interest::READABLE) }.map_err(io::Error::from)
}

/// Removes a query from its socket's waiting list when the exchange ends
/// (id and wait number: the id alone may already belong to a newer query).
struct Unwait<'a>(&'a Rc<Shared>, u16, u64);

impl Drop for Unwait<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.waiting.borrow_mut();
        if waiting.get(&self.1).is_some_and(|w| w.seq == self.2) {
            waiting.remove(&self.1);
        }
        if waiting.is_empty() {
            if waiting.capacity() > WAITING_KEEP {
                waiting.shrink_to_fit();
            }
            if self.0.released.get() {
                // Let the reader see it is the last owner and close.
                self.0.wake.notify_one();
            }
        }
    }
}

/// Sends the queries queued since the reader last ran, `BATCH` per
/// `sendmmsg`. A full socket buffer leaves the rest due at once (the next
/// sweep sends them); any other error fails the query it stopped at.
fn send_queued(shared: &Shared) {
    let mut outbox = shared.outbox.borrow_mut();
    if outbox.is_empty() {
        return;
    }
    let fd = shared.sock.as_raw_fd();
    // Decided while the waiting list is borrowed for the datagrams, done after.
    let mut unsent: Vec<u16> = Vec::new();
    let mut failed: Vec<(u16, ForwardError)> = Vec::new();
    {
        let waiting = shared.waiting.borrow();
        for chunk in outbox.chunks(BATCH) {
            let mut ids = [0u16; BATCH];
            let mut datagrams: [&[u8]; BATCH] = [&[]; BATCH];
            let mut n = 0;
            for &(id, seq) in chunk {
                if let Some(w) = waiting.get(&id) {
                    if w.seq == seq && w.is_open() {
                        ids[n] = id;
                        datagrams[n] = &w.query;
                        n += 1;
                    }
                }
            }
            let mut done = 0;
            while done < n {
                match mmsg::send_connected(fd, &datagrams[done..n]) {
                    Ok(k) => done += k.max(1),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        unsent.extend_from_slice(&ids[done..n]);
                        break;
                    }
                    Err(e) => {
                        failed.push((ids[done], e.into()));
                        done += 1;
                    }
                }
            }
        }
    }
    outbox.clear();
    drop(outbox);
    if !unsent.is_empty() {
        let now = Instant::now();
        let mut waiting = shared.waiting.borrow_mut();
        for id in unsent {
            if let Some(w) = waiting.get_mut(&id) {
                w.next_send = now;
            }
        }
    }
    shared.fail(failed);
}

/// How often, at most, the reader looks for queries to send again or to
/// time out.
const TICK: Duration = Duration::from_millis(200);

/// Sends again what is due and fails what is past its deadline. An ICMP
/// port-unreachable leaves an error on the socket with nothing to read, so
/// the error is looked for here too.
fn sweep(shared: &Shared, now: Instant) {
    if let Ok(Some(e)) = shared.sock.get_ref().take_error() {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            shared.fail_all(|| ForwardError::Refused);
            return;
        }
    }
    let mut late = Vec::new();
    for (&id, w) in shared.waiting.borrow_mut().iter_mut() {
        if !w.is_open() {
            // Answered; the query has yet to take it.
        } else if now >= w.deadline {
            late.push((id, ForwardError::Timeout));
        } else if now >= w.next_send {
            w.next_send = now + RETRANSMIT;
            // A full socket buffer only delays the next try; a refusal is
            // picked up by the reader.
            let _ = mmsg::send_connected(shared.sock.as_raw_fd(), &[&w.query]);
        }
    }
    shared.fail(late);
}

/// Reads a pooled socket and hands each answer to the query waiting for
/// it; every `TICK` while queries wait, sends again what is due and times
/// out what is late.
async fn read_answers(shared: Rc<Shared>, remote: SocketAddr) {
    let mut next_sweep = Instant::now();
    loop {
        if shared.waiting.borrow().is_empty() && Rc::strong_count(&shared) == 1 {
            // Retired by the pool and nobody waits: done.
            return;
        }
        send_queued(&shared);
        let now = Instant::now();
        if now >= next_sweep {
            sweep(&shared, now);
            next_sweep = now + TICK;
        }
        let idle = shared.waiting.borrow().is_empty();
        let wait = if idle {
            READER_IDLE
        } else {
            next_sweep.saturating_duration_since(now)
        };
        let mut ready = tokio::select! {
            r = shared.sock.readable() => match r {
                Ok(guard) => guard,
                Err(e) => {
                    shared.broken.set(true);
                    log::debug!("udp {remote}: {e}");
                    shared.fail_all(|| ForwardError::Closed);
                    return;
                }
            },
            // Queries were queued (sent at the top of the loop), or the
            // pool let go of the socket. The sweep keeps its own clock: a
            // wake per batch must not put it off.
            _ = shared.wake.notified() => continue,
            _ = tokio::time::sleep(wait) => continue,
        };
        loop {
            let mut due = Due::new();
            let got = ready.try_io(|sock| {
                INBOX.with(|inbox| {
                    let mut inbox = inbox.borrow_mut();
                    let n = inbox.recv(sock.as_raw_fd())?;
                    let mut waiting = shared.waiting.borrow_mut();
                    for i in 0..n {
                        if let Some((answer, _)) = inbox.get(i) {
                            deliver(&mut waiting, answer, remote, &mut due);
                        }
                    }
                    Ok(n)
                })
            });
            call_due(due);
            match got {
                // Nothing more to read (readiness cleared).
                Err(_would_block) => break,
                Ok(Ok(n)) if n < BATCH => {
                    // A short read emptied the socket: no need to ask it
                    // again to hear "would block". A datagram that comes
                    // later raises readiness anew.
                    ready.clear_ready();
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // ICMP port unreachable: the upstream is not there.
                    shared.fail_all(|| ForwardError::Refused);
                }
                Ok(Err(e)) => {
                    shared.broken.set(true);
                    log::debug!("udp {remote}: {e}");
                    shared.fail_all(|| ForwardError::Closed);
                    return;
                }
            }
        }
    }
}

/// Hands an answer to the query it answers.
fn deliver(waiting: &mut Waiting, answer: &[u8], remote: SocketAddr, due: &mut Due) {
    if answer.len() < wire::HEADER_LEN {
        return;
    }
    let id = wire::id(answer);
    let answers = waiting.get(&id).is_some_and(|w| {
        w.is_open()
            && wire::response_answers(answer, id, &w.query[wire::HEADER_LEN..w.question_end])
    });
    if answers {
        settle(waiting, id, Ok(answer.to_vec()), due);
    } else {
        log::debug!(
            "udp {remote}: ignored a {}-byte datagram that answers no query of ours",
            answer.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(sock: AsyncFd<std::net::UdpSocket>) -> Shared {
        Shared {
            sock,
            waiting: RefCell::new(HashMap::with_hasher(SeededHash::random())),
            uses: Cell::new(0),
            born: Instant::now(),
            broken: Cell::new(false),
            released: Cell::new(false),
            next_seq: Cell::new(0),
            outbox: RefCell::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn wait(s: &Shared, id: u16, seq: u64) {
        let now = Instant::now();
        let w = Waiter {
            query: Box::new([0; 12]),
            question_end: 12,
            next_send: now,
            deadline: now,
            seq,
            then: Then::Wake {
                outcome: None,
                waker: None,
            },
        };
        s.waiting.borrow_mut().insert(id, Box::new(w));
    }

    #[test]
    fn an_ended_query_never_removes_a_newer_wait_on_its_id() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_nonblocking(true).unwrap();
            let sock = watch_readable(sock).unwrap();
            let s = Rc::new(shared(sock));
            // Query 0 waits on id 7 and is answered: the reader took its wait.
            wait(&s, 7, 0);
            s.waiting.borrow_mut().remove(&7);
            // Before query 0's task runs again, query 1 takes id 7.
            wait(&s, 7, 1);
            // Query 0 ends: its wait is gone; query 1's stays, unsettled.
            drop(Unwait(&s, 7, 0));
            assert!(s
                .waiting
                .borrow()
                .get(&7)
                .is_some_and(|w| w.seq == 1 && w.is_open()));
            drop(Unwait(&s, 7, 1));
            assert!(s.waiting.borrow().is_empty());
        });
    }

    /// A callback's wait is removed when it settles, and the call is made
    /// later, once, with the first outcome only.
    #[test]
    fn a_callback_is_called_once_after_the_waiting_list_is_let_go() {
        let calls: Rc<RefCell<Vec<Answer>>> = Rc::default();
        let mut waiting: Waiting = HashMap::with_hasher(SeededHash::random());
        let now = Instant::now();
        let seen = calls.clone();
        waiting.insert(
            9,
            Box::new(Waiter {
                query: Box::new([0; 12]),
                question_end: 12,
                next_send: now,
                deadline: now,
                seq: 0,
                then: Then::Call(Box::new(move |a, _| seen.borrow_mut().push(a))),
            }),
        );
        let mut due = Due::new();
        settle(&mut waiting, 9, Ok(vec![1]), &mut due);
        settle(&mut waiting, 9, Err(ForwardError::Timeout), &mut due);
        assert!(waiting.is_empty());
        assert!(calls.borrow().is_empty(), "called under the borrow");
        call_due(due);
        let calls = calls.borrow();
        assert_eq!(calls.len(), 1);
        assert!(matches!(&calls[0], Ok(a) if a == &[1]));
    }
}
