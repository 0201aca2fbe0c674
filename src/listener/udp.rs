//! The UDP serving loop: reads queries in batches, answers what the
//! controller can answer at once, and hands each query that must wait for
//! an upstream back to the controller (`Controller::pursue`) with the way
//! to deliver its reply.
//!
//! Every answer, immediate or from an upstream, is queued in the
//! `ReplyQueue` of the socket it leaves by, and the loop sends each queue
//! with one `sendmmsg` each time it wakes. On a plain listener that is the
//! listener's own socket. On a transparent listener each datagram carries
//! the address the client asked, and the answer leaves from that address,
//! by the reply socket `tproxy::AnyFrom` keeps for it. A transparent
//! datagram to a port other than 53 is no DNS query: it is a LAN flow the
//! TC program routed to a group, and goes to the relay (`relay::udp`).
//!
//! Neighbours: `listener` (binds the socket), `mmsg` (batched I/O),
//! `tproxy` (reply sockets), `acl` (who a plain listener answers),
//! `controller` (decides), `relay` (the other LAN datagrams).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::acl::LocalOnly;
use super::mmsg::{RecvBatch, SendBatch, BATCH};
use super::tproxy::AnyFrom;
use crate::controller::{Client, Controller, Sending, Step, Transport};
use crate::relay::Relay;

/// The port of DNS: a transparent datagram to any other goes to the relay.
const DNS_PORT: u16 = 53;

/// Answers queued at most for one `sendmmsg`, as many as one receive
/// batch brings. A full queue is sent at once, without waiting, when an
/// answer from an upstream finds it full.
const REPLY_BATCH: usize = BATCH;

/// Answers waiting for one socket's next `sendmmsg`.
pub struct ReplyQueue {
    pub sock: Rc<UdpSocket>,
    /// Made at the first answer queued: a reply socket that only sends
    /// relayed UDP (at once, `AnyFrom::sender`) never needs one.
    batch: RefCell<Option<SendBatch>>,
}

impl ReplyQueue {
    pub fn new(sock: Rc<UdpSocket>) -> ReplyQueue {
        ReplyQueue {
            sock,
            batch: RefCell::new(None),
        }
    }

    /// The batch, made if it is not yet.
    fn batch(&self) -> std::cell::RefMut<'_, SendBatch> {
        std::cell::RefMut::map(self.batch.borrow_mut(), |b| {
            b.get_or_insert_with(|| SendBatch::with_capacity(REPLY_BATCH))
        })
    }

    /// Queues an answer, sending the queue first (waiting for room in the
    /// socket buffer if need be) when it is full.
    async fn push(&self, reply: &[u8], to: SocketAddr) {
        if !self.batch().push(reply, to) {
            self.flush().await;
            self.batch().push(reply, to);
        }
    }

    /// Queues an answer that came from an upstream; if the queue is full,
    /// it is sent first, without waiting. False if there is still no room
    /// (the socket buffer is full).
    fn push_or_send(&self, reply: &[u8], to: SocketAddr) -> bool {
        let mut batch = self.batch();
        batch.push(reply, to) || (send_now(&self.sock, &mut batch) && batch.push(reply, to))
    }

    /// Sends every queued answer, waiting for room in the socket buffer if
    /// needed (the batch is never borrowed across a wait).
    pub async fn flush(&self) {
        loop {
            let sent = match &mut *self.batch.borrow_mut() {
                Some(batch) => send_now(&self.sock, batch),
                None => true,
            };
            if sent || self.sock.writable().await.is_err() {
                return;
            }
        }
    }
}

/// Where the loop's answers leave by.
enum Out {
    /// The listener's own socket.
    Plain(Rc<ReplyQueue>),
    /// The reply socket for the address each client asked.
    Transparent(Rc<AnyFrom>),
}

impl Out {
    /// The queue for an answer to a query sent to `asked`.
    fn queue(&self, asked: Option<SocketAddr>) -> Option<Rc<ReplyQueue>> {
        match (self, asked) {
            (Out::Plain(q), _) => Some(q.clone()),
            (Out::Transparent(anyfrom), Some(dst)) => anyfrom.queue(dst),
            (Out::Transparent(_), None) => None,
        }
    }

    async fn flush(&self) {
        match self {
            Out::Plain(q) => q.flush().await,
            Out::Transparent(anyfrom) => anyfrom.flush().await,
        }
    }
}

/// Serves one socket. With `anyfrom`, the socket is transparent: queries
/// carry their original destination and answers leave from it, and
/// `relay` takes the datagrams to other ports than 53. With `acl`,
/// datagrams from sources it refuses are dropped.
pub async fn serve(
    sock: Rc<UdpSocket>,
    controller: Rc<Controller>,
    anyfrom: Option<Rc<AnyFrom>>,
    acl: Option<Rc<LocalOnly>>,
    relay: Option<Rc<Relay>>,
) {
    let fd = sock.as_raw_fd();
    let local = sock.local_addr().ok();
    let mut inbox = RecvBatch::with_control(anyfrom.is_some());
    let out = Rc::new(match anyfrom {
        Some(anyfrom) => Out::Transparent(anyfrom),
        None => Out::Plain(Rc::new(ReplyQueue::new(sock.clone()))),
    });
    // Wakes the loop when an answer from an upstream was queued.
    let queued = Rc::new(Notify::new());
    let mut reply = Vec::with_capacity(512);
    loop {
        tokio::select! {
            ready = sock.readable() => {
                if let Err(e) = ready {
                    log::error!("udp {local:?}: {e}");
                    return;
                }
            }
            _ = queued.notified() => {}
        }
        loop {
            let n = match sock.try_io(Interest::READABLE, || inbox.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ECONNREFUSED and the like, left by an ICMP error about
                    // an earlier reply: nothing to do with the next query.
                    log::debug!("udp {local:?}: receive: {e}");
                    continue;
                }
            };
            for i in 0..n {
                let asked = match &*out {
                    Out::Plain(_) => None,
                    Out::Transparent(_) => match inbox.orig_dst(i) {
                        Some(dst) => Some(dst),
                        None => {
                            log::debug!("udp {local:?}: datagram without its original destination");
                            continue;
                        }
                    },
                };
                let Some((query, from)) = inbox.get(i) else {
                    log::debug!("udp {local:?}: dropped an oversized or foreign datagram");
                    continue;
                };
                if acl.as_ref().is_some_and(|acl| !acl.allows(from.ip())) {
                    continue;
                }
                if let (Some(relay), Out::Transparent(anyfrom), Some(dst)) = (&relay, &*out, asked)
                {
                    if dst.port() != DNS_PORT {
                        relay.udp(query, from, dst, anyfrom);
                        continue;
                    }
                }
                let client = Client {
                    transport: Transport::Udp,
                    addr: from,
                    asked,
                };
                match controller.handle(query, &client, &mut reply) {
                    Step::Replied => {
                        if let Some(q) = out.queue(asked) {
                            q.push(&reply, from).await;
                        }
                    }
                    Step::Pending(p) => {
                        let out = out.clone();
                        let queued = queued.clone();
                        // Into the reply queue at once; a send that must
                        // wait (the socket buffer is full) is boxed, so
                        // the query's task or chase stays small.
                        let deliver = move |reply: &[u8]| -> Option<Sending> {
                            let q = out.queue(asked)?;
                            if q.push_or_send(reply, from) {
                                queued.notify_one();
                                return None;
                            }
                            let reply = reply.to_vec();
                            Some(Box::pin(
                                async move { send_one(&q.sock, &reply, from).await },
                            ))
                        };
                        controller.pursue(p, client, deliver);
                    }
                    Step::Dropped => {}
                }
            }
            if n < BATCH {
                break;
            }
            out.flush().await;
            // A full batch: more are waiting. Let the other tasks run
            // first (the relay's endpoints carry what this loop queued for
            // them; held back, their queues and sockets overflow).
            tokio::task::yield_now().await;
        }
        out.flush().await;
    }
}

async fn send_one(sock: &UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(reply, to).await {
        log::debug!("udp: reply to {to}: {e}");
    }
}

/// Sends what is queued as far as the socket buffer takes it; whether the
/// queue is empty afterwards.
fn send_now(sock: &UdpSocket, batch: &mut SendBatch) -> bool {
    let fd = sock.as_raw_fd();
    loop {
        if batch.done() {
            return true;
        }
        match sock.try_io(Interest::WRITABLE, || batch.send(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                // This answer cannot go (no route, say); skip it, send the rest.
                let to = batch.skip_one();
                log::debug!("udp: reply to {to:?}: {e}");
            }
        }
    }
}
