//! DNS over UDP to one upstream.
//!
//! Each round of queries leaves from a socket of its own, on a fresh random
//! local port: a new query joins the socket the pool has open for the next
//! send round; the socket's reader task sends the round's queries with one
//! `sendmmsg` and seals the socket (it never takes another query), reads
//! the answers with `recvmmsg` and closes it when the last one is done. A
//! query alone on the wire thus has a port nobody saw before, and a burst
//! of queries shares one as long as it takes to send them, so an off-path
//! spoofer never learns a port it could aim at: it must guess the port
//! (Linux picks one at random among ~28,000 ephemeral ports), the random
//! id, and the random letter case of the name (0x20, `udp_wire`), which an
//! answer must echo exactly: at least 2^30 combinations per query.
//!
//! A query is sent again every second while no answer has come (the
//! socket's reader keeps those clocks, so a query needs no timer of its
//! own), on the same socket. Only an answer with our id and our question
//! (name in the case we sent, type, class) is accepted; other datagrams are
//! ignored (late answers or spoofs). An answer that echoes the name in
//! another case is a spoof that guessed port and id, or comes from an
//! upstream that does not keep the case: it is ignored and the query sent
//! again at once. After `CASE_GIVE_UP` such answers in a row (with no
//! answer in our case between them, which a spoofer cannot prevent: the
//! real upstream keeps answering) the upstream is taken not to keep the
//! case: answers are then compared ignoring case, and for `CASE_OFF` its
//! queries go in the client's case (unbound's `use-caps-for-id` falls back
//! to asking without 0x20 likewise, and has a list of such servers). An ICMP
//! port-unreachable fails the queries waiting on that socket at once. An
//! answer longer than a receive buffer ends its query with `Oversize`
//! (the forwarder asks again over TCP, as for a truncated one).
//!
//! The queries offer a UDP payload size of 1232 upstream whatever the
//! client offered (`udp_wire`); the client's query is handed back as it
//! came (case and size restored).
//!
//! A query is waited for in one of two ways: by a task (`exchange`, which
//! the reader wakes with the outcome), or by nobody (`send_then`: the
//! reader removes the wait and calls the query's callback with the outcome,
//! which is how the controller follows plain-UDP misses without a task).
//!
//! Neighbours: `forwarder` (the caller), `udp_wire` (case and EDNS bytes),
//! `dialer::Direct` (the sockets).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use std::task::{Poll, Waker};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::udp_wire::{self, Echo, Flips, OFFERED_UDP_PAYLOAD};
use super::ForwardError;
use crate::controller::cache::SeededHash;
use crate::dialer::Direct;
use crate::listener::mmsg::{self, RecvBatch, BATCH};
use crate::wire::{self, QueryInfo, HEADER_LEN};

/// How long to wait before sending a query again.
const RETRANSMIT: Duration = Duration::from_secs(1);
/// Queries one socket carries at most (all sent in its one round).
const MAX_PER_PORT: u32 = BATCH as u32;
/// Sockets one upstream may have open at once; past this, new queries
/// share the newest socket (ports then repeat, but only under a load that
/// would otherwise run the process out of descriptors).
const MAX_SOCKETS: usize = 256;
/// Queries waiting on one socket at most (ids must stay guessable only by
/// chance).
const MAX_WAITING: usize = 4096;
/// Answers in the wrong letter case in a row after which an upstream is
/// taken not to keep the question's case ...
const CASE_GIVE_UP: u32 = 4;
/// ... and is asked without 0x20 for this long.
const CASE_OFF: Duration = Duration::from_secs(600);

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
    /// Our query as sent (with our id, the name's random case and our
    /// payload size), for retransmits and to check the answer's question by.
    query: Box<[u8]>,
    question_end: usize,
    /// The letters whose case was flipped; `None`: sent in the client's
    /// case, and the answer's question is compared ignoring case.
    flips: Option<Flips>,
    /// Where the OPT record's payload size is (0: no OPT), and the size the
    /// client offered there.
    opt_size_at: u16,
    client_udp_size: u16,
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

    /// The query as the client sent it (but with our id): the name's case
    /// and the offered payload size put back.
    fn into_client_query(self) -> (Box<[u8]>, Then) {
        let mut query = self.query;
        if let Some(flips) = &self.flips {
            udp_wire::restore_case(&mut query[HEADER_LEN..self.question_end - 4], flips);
        }
        if self.opt_size_at != 0 {
            udp_wire::swap_udp_size(&mut query, self.opt_size_at.into(), self.client_udp_size);
        }
        (query, self.then)
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
                if let (query, Then::Call(call)) = w.into_client_query() {
                    due.push((call, outcome, query));
                }
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

/// What one upstream's answers told about its keeping the letter case of
/// questions (0x20), shared by its sockets.
#[derive(Default)]
struct CaseMemory {
    /// Answers in another case since the last one in ours.
    wrong_in_a_row: Cell<u32>,
    /// Until when queries go in the client's case.
    off_until: Cell<Option<Instant>>,
}

impl CaseMemory {
    fn randomize(&self, now: Instant) -> bool {
        !matches!(self.off_until.get(), Some(until) if now < until)
    }

    fn kept(&self) {
        self.wrong_in_a_row.set(0);
    }

    /// Counts an answer in another case than asked; whether the upstream
    /// is (now) taken not to keep the case.
    fn changed(&self, now: Instant, remote: SocketAddr) -> bool {
        if !self.randomize(now) {
            return true;
        }
        let n = self.wrong_in_a_row.get() + 1;
        self.wrong_in_a_row.set(n);
        if n >= CASE_GIVE_UP {
            self.off_until.set(Some(now + CASE_OFF));
            self.wrong_in_a_row.set(0);
            log::warn!(
                "udp upstream {remote}: its answers do not keep the letter case of the \
                 question; asking it without 0x20 case randomization for {} minutes",
                CASE_OFF.as_secs() / 60
            );
            return true;
        }
        false
    }
}

/// One socket (one random local port) and the queries waiting on it.
struct Shared {
    /// Watched for readability only: a socket registered for writability
    /// too would be woken (and wake the reactor) for every datagram it
    /// sends, as its buffer space comes back. A full buffer is handled by
    /// sending again later.
    sock: AsyncFd<std::net::UdpSocket>,
    waiting: RefCell<Waiting>,
    uses: Cell<u32>,
    /// Its round was sent: it takes no new query (but when crowded).
    sealed: Cell<bool>,
    /// Its reader ended (a socket error, or its last query was done): it
    /// takes no query at all.
    ended: Cell<bool>,
    /// Numbers the waits, so a query that ends removes its own wait and
    /// never a newer one that took the same id after it was answered.
    next_seq: Cell<u64>,
    /// Queries waiting for their first send (id and wait number), sent by
    /// the reader.
    outbox: RefCell<Vec<(u16, u64)>>,
    /// Tells the reader that queries were queued (its timers change too) or
    /// that its last query ended.
    wake: tokio::sync::Notify,
    case: Rc<CaseMemory>,
    /// The pool's count of open sockets, this one included.
    open: Rc<Cell<usize>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
    }
}

impl Shared {
    /// Whether a new query may join this socket.
    fn takes_queries(&self, crowded: bool) -> bool {
        if self.ended.get() {
            return false;
        }
        if crowded {
            // Too many sockets open: share this one while its reader runs.
            return !self.sealed.get() || self.waiting.borrow().len() < MAX_WAITING;
        }
        !self.sealed.get() && self.uses.get() < MAX_PER_PORT
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
    /// The socket taking queries for its round, if any (its reader owns it).
    current: RefCell<Weak<Shared>>,
    /// Sockets of this pool open now.
    open: Rc<Cell<usize>>,
    case: Rc<CaseMemory>,
}

impl UdpPool {
    pub fn new(remote: SocketAddr, dialer: Direct) -> UdpPool {
        UdpPool {
            remote,
            dialer,
            current: RefCell::new(Weak::new()),
            open: Rc::new(Cell::new(0)),
            case: Rc::default(),
        }
    }

    /// The socket of the round being gathered, or a fresh one (a fresh
    /// random local port) with its reader.
    fn pick(&self) -> io::Result<Rc<Shared>> {
        let crowded = self.open.get() >= MAX_SOCKETS;
        if let Some(s) = self.current.borrow().upgrade() {
            if s.takes_queries(crowded) {
                return Ok(s);
            }
        }
        let sock = watch_readable(self.dialer.udp_std(self.remote)?)?;
        self.open.set(self.open.get() + 1);
        let shared = Rc::new(Shared {
            sock,
            waiting: RefCell::new(HashMap::with_hasher(SeededHash::random())),
            uses: Cell::new(0),
            sealed: Cell::new(false),
            ended: Cell::new(false),
            next_seq: Cell::new(0),
            outbox: RefCell::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            case: self.case.clone(),
            open: self.open.clone(),
        });
        tokio::task::spawn_local(read_answers(shared.clone(), self.remote));
        *self.current.borrow_mut() = Rc::downgrade(&shared);
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
            let (shared, id) = self.reserve()?;
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
    /// first). The wait keeps `query` meanwhile and hands it back as it
    /// came, but for its id, replaced here. `now` is the time (the caller
    /// has read the clock already).
    pub fn send_then(
        &self,
        query: Box<[u8]>,
        question_end: usize,
        now: Instant,
        deadline: Instant,
        then: Callback,
    ) {
        match self.reserve() {
            Ok((shared, id)) => {
                let then = Then::Call(then);
                wait(&shared, id, query, question_end, now, deadline, then);
            }
            Err(e) => then(Err(e), query),
        }
    }

    /// A socket with room for one more query, and a free id on it.
    fn reserve(&self) -> Result<(Rc<Shared>, u16), ForwardError> {
        let shared = self.pick()?;
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
/// timer. The query leaves with our id, our payload size and (unless the
/// upstream does not keep it) a random letter case. Returns the wait's
/// number.
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
    let (opt_size_at, client_udp_size) = match udp_wire::opt_size_at(&query, question_end) {
        Some(at) => (
            at,
            udp_wire::swap_udp_size(&mut query, at, OFFERED_UDP_PAYLOAD),
        ),
        None => (0, 0),
    };
    let flips = shared
        .case
        .randomize(now)
        .then(|| udp_wire::randomize_case(&mut query[HEADER_LEN..question_end - 4]));
    let seq = shared.next_seq.get();
    shared.next_seq.set(seq + 1);
    shared.waiting.borrow_mut().insert(
        id,
        Box::new(Waiter {
            query,
            question_end,
            flips,
            // A query is at most 65535 bytes.
            opt_size_at: opt_size_at as u16,
            client_udp_size,
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
            // Let the reader see that its last query is done, and close.
            self.0.wake.notify_one();
        }
    }
}

/// Sends the queries queued since the reader last ran, `BATCH` per
/// `sendmmsg`, and seals the socket (its round is gathered). A full socket
/// buffer leaves the rest due at once (the next sweep sends them); any
/// other error fails the query it stopped at.
fn send_queued(shared: &Shared) {
    shared.sealed.set(true);
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

/// Sends a socket's round, reads the socket and hands each answer to the
/// query waiting for it; every `TICK` while queries wait, sends again what
/// is due and times out what is late. Ends (and closes the socket) when
/// its last query is done.
async fn read_answers(shared: Rc<Shared>, remote: SocketAddr) {
    let mut next_sweep = Instant::now() + TICK;
    loop {
        send_queued(&shared);
        if shared.waiting.borrow().is_empty() {
            shared.ended.set(true);
            return;
        }
        let now = Instant::now();
        if now >= next_sweep {
            sweep(&shared, now);
            next_sweep = now + TICK;
        }
        let wait = next_sweep.saturating_duration_since(now);
        let mut ready = tokio::select! {
            r = shared.sock.readable() => match r {
                Ok(guard) => guard,
                Err(e) => {
                    shared.ended.set(true);
                    log::debug!("udp {remote}: {e}");
                    shared.fail_all(|| ForwardError::Closed);
                    return;
                }
            },
            // Queries were queued (sent at the top of the loop), or the
            // last one ended. The sweep keeps its own clock: a wake per
            // batch must not put it off.
            _ = shared.wake.notified() => continue,
            _ = tokio::time::sleep(wait) => continue,
        };
        loop {
            let mut due = Due::new();
            let got = ready.try_io(|sock| {
                INBOX.with(|inbox| {
                    let mut inbox = inbox.borrow_mut();
                    let fd = sock.as_raw_fd();
                    let n = inbox.recv(fd)?;
                    let mut waiting = shared.waiting.borrow_mut();
                    let now = Instant::now();
                    for i in 0..n {
                        let answer = match inbox.get(i) {
                            Some((answer, _)) => Received::Whole(answer),
                            None => match inbox.cut_short(i) {
                                Some(head) => Received::CutShort(head),
                                None => continue,
                            },
                        };
                        deliver(
                            &mut waiting,
                            answer,
                            &shared.case,
                            fd,
                            now,
                            remote,
                            &mut due,
                        );
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
                    shared.ended.set(true);
                    log::debug!("udp {remote}: {e}");
                    shared.fail_all(|| ForwardError::Closed);
                    return;
                }
            }
        }
    }
}

/// A datagram as it was read.
enum Received<'a> {
    Whole(&'a [u8]),
    /// Longer than a receive buffer: the part that fit.
    CutShort(&'a [u8]),
}

/// Hands an answer to the query it answers. An answer that echoes the name
/// in another case than we sent is not taken: the query is sent again at
/// once in the client's case (and checked ignoring case from then on).
fn deliver(
    waiting: &mut Waiting,
    answer: Received,
    case: &CaseMemory,
    fd: std::os::fd::RawFd,
    now: Instant,
    remote: SocketAddr,
    due: &mut Due,
) {
    let (bytes, cut_short) = match answer {
        Received::Whole(b) => (b, false),
        Received::CutShort(b) => (b, true),
    };
    if bytes.len() < wire::HEADER_LEN {
        return;
    }
    let id = wire::id(bytes);
    let Some(w) = waiting.get_mut(&id).filter(|w| w.is_open()) else {
        log::debug!(
            "udp {remote}: ignored a {}-byte datagram that answers no query of ours",
            bytes.len()
        );
        return;
    };
    let echo = udp_wire::echo(bytes, id, &w.query[HEADER_LEN..w.question_end]);
    match (echo, &w.flips) {
        (Echo::Exact, flips) => {
            if flips.is_some() {
                case.kept();
            }
        }
        (Echo::OtherCase, None) => {}
        (Echo::OtherCase, Some(_)) => {
            if !case.changed(now, remote) {
                log::debug!(
                    "udp {remote}: ignored an answer to {} in another letter case \
                     than we asked (a spoof?); asking again",
                    wire::NameText(&w.query[HEADER_LEN..w.question_end - 4])
                );
                // An upstream that does not keep the case answers the same
                // way again, and is soon known for it.
                w.next_send = now + RETRANSMIT;
                let _ = mmsg::send_connected(fd, &[&w.query]);
                return;
            }
            // The upstream does not keep the case: checked ignoring it.
        }
        (Echo::No, _) => {
            log::debug!(
                "udp {remote}: ignored a {}-byte datagram with a foreign question",
                bytes.len()
            );
            return;
        }
    }
    let outcome = if cut_short {
        Err(ForwardError::Oversize)
    } else {
        Ok(bytes.to_vec())
    };
    settle(waiting, id, outcome, due);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(sock: AsyncFd<std::net::UdpSocket>) -> Shared {
        Shared {
            sock,
            waiting: RefCell::new(HashMap::with_hasher(SeededHash::random())),
            uses: Cell::new(0),
            sealed: Cell::new(false),
            ended: Cell::new(false),
            next_seq: Cell::new(0),
            outbox: RefCell::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            case: Rc::default(),
            open: Rc::new(Cell::new(1)),
        }
    }

    fn waiter(seq: u64, then: Then) -> Box<Waiter> {
        let now = Instant::now();
        Box::new(Waiter {
            query: Box::new([0; 12]),
            question_end: 12,
            flips: None,
            opt_size_at: 0,
            client_udp_size: 0,
            next_send: now,
            deadline: now,
            seq,
            then,
        })
    }

    fn wait(s: &Shared, id: u16, seq: u64) {
        let then = Then::Wake {
            outcome: None,
            waker: None,
        };
        s.waiting.borrow_mut().insert(id, waiter(seq, then));
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
        let seen = calls.clone();
        let then = Then::Call(Box::new(move |a, _| seen.borrow_mut().push(a)));
        waiting.insert(9, waiter(0, then));
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
