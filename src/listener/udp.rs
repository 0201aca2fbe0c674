//! The UDP serving loop: reads queries in batches, answers what the
//! controller can answer at once, and hands each query that must wait for
//! an upstream back to the controller (`Controller::pursue`) with the way
//! to deliver its reply.
//!
//! On a plain listener every answer, immediate or from a finished task, is
//! queued in one `SendBatch` that the loop sends with one `sendmmsg` each
//! time it wakes. On a transparent listener each datagram carries the
//! address the client asked, and the answer goes out from that address
//! (`tproxy::AnyFrom`).
//!
//! Neighbours: `listener` (binds the socket), `mmsg` (batched I/O),
//! `tproxy` (reply sockets), `controller` (decides).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::mmsg::{RecvBatch, SendBatch, BATCH};
use super::tproxy::AnyFrom;
use crate::controller::{Client, Controller, Sending, Step, Transport};

/// Answers queued at most for one `sendmmsg`, as many as one receive
/// batch brings. A full queue is sent at once, without waiting, when an
/// answer from an upstream finds it full.
const REPLY_BATCH: usize = BATCH;

/// Answers queued for the next `sendmmsg` of one plain socket.
struct Replies {
    batch: RefCell<SendBatch>,
    /// Wakes the loop when a task queued an answer.
    queued: Notify,
}

/// Serves one socket. With `anyfrom`, the socket is transparent: queries
/// carry their original destination and answers leave from it.
pub async fn serve(sock: Rc<UdpSocket>, controller: Rc<Controller>, anyfrom: Option<Rc<AnyFrom>>) {
    let fd = sock.as_raw_fd();
    let local = sock.local_addr().ok();
    let mut inbox = RecvBatch::with_control(anyfrom.is_some());
    let replies = Rc::new(Replies {
        batch: RefCell::new(SendBatch::with_capacity(REPLY_BATCH)),
        queued: Notify::new(),
    });
    let mut reply = Vec::with_capacity(512);
    loop {
        tokio::select! {
            ready = sock.readable() => {
                if let Err(e) = ready {
                    log::error!("udp {local:?}: {e}");
                    return;
                }
            }
            _ = replies.queued.notified() => {}
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
                let asked = match &anyfrom {
                    None => None,
                    Some(_) => match inbox.orig_dst(i) {
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
                let client = Client {
                    transport: Transport::Udp,
                    addr: from,
                    asked,
                };
                match (
                    controller.handle(query, &client, &mut reply),
                    &anyfrom,
                    asked,
                ) {
                    (Step::Replied, None, _) => queue(&sock, &replies, &reply, from).await,
                    (Step::Replied, Some(anyfrom), Some(dst)) => {
                        anyfrom.send(dst, from, &reply).await
                    }
                    (Step::Pending(p), _, _) => {
                        let sock = sock.clone();
                        let anyfrom = anyfrom.clone();
                        let replies = replies.clone();
                        let asked = client.asked;
                        // Into the reply batch at once; a send that may
                        // wait (a full batch, or the transparent path) is
                        // boxed, so the query's task or chase stays small.
                        let deliver = move |reply: &[u8]| -> Option<Sending> {
                            match (anyfrom, asked) {
                                (Some(anyfrom), Some(dst)) => {
                                    let reply = reply.to_vec();
                                    Some(Box::pin(
                                        async move { anyfrom.send(dst, from, &reply).await },
                                    ))
                                }
                                _ if push_or_send(&sock, &replies, reply, from) => {
                                    replies.queued.notify_one();
                                    None
                                }
                                _ => {
                                    let reply = reply.to_vec();
                                    Some(Box::pin(
                                        async move { send_one(&sock, &reply, from).await },
                                    ))
                                }
                            }
                        };
                        controller.pursue(p, client, deliver);
                    }
                    _ => {}
                }
            }
            if n < BATCH {
                break;
            }
            flush(&sock, &replies).await;
        }
        flush(&sock, &replies).await;
    }
}

/// Queues an answer, sending the queue first if it is full.
async fn queue(sock: &UdpSocket, replies: &Replies, reply: &[u8], to: SocketAddr) {
    if !replies.batch.borrow_mut().push(reply, to) {
        flush(sock, replies).await;
        replies.batch.borrow_mut().push(reply, to);
    }
}

async fn send_one(sock: &UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(reply, to).await {
        log::debug!("udp: reply to {to}: {e}");
    }
}

/// Queues an answer that came from an upstream; if the queue is full, it
/// is sent first, without waiting. False if there is still no room (the
/// socket buffer is full).
fn push_or_send(sock: &UdpSocket, replies: &Replies, reply: &[u8], to: SocketAddr) -> bool {
    let mut batch = replies.batch.borrow_mut();
    batch.push(reply, to) || (send_now(sock, &mut batch) && batch.push(reply, to))
}

/// Sends every queued answer, waiting for room in the socket buffer if
/// needed (the batch is never borrowed across a wait).
async fn flush(sock: &UdpSocket, replies: &Replies) {
    while !send_now(sock, &mut replies.batch.borrow_mut()) {
        if sock.writable().await.is_err() {
            return;
        }
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
