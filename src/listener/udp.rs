//! The UDP serving loop: reads queries in batches, answers what the
//! controller can answer at once, and spawns a task for each query that must
//! wait for an upstream.
//!
//! On a plain listener the immediate answers go out in one batched send. On
//! a transparent listener each datagram carries the address the client
//! asked, and the answer goes out from that address (`tproxy::AnyFrom`).
//!
//! Neighbours: `listener` (binds the socket), `mmsg` (batched I/O),
//! `tproxy` (reply sockets), `controller` (decides).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::mmsg::{RecvBatch, SendBatch, BATCH};
use super::tproxy::AnyFrom;
use crate::controller::{Client, Controller, Step, Transport};

/// Serves one socket. With `anyfrom`, the socket is transparent: queries
/// carry their original destination and answers leave from it.
pub async fn serve(sock: Rc<UdpSocket>, controller: Rc<Controller>, anyfrom: Option<Rc<AnyFrom>>) {
    let fd = sock.as_raw_fd();
    let local = sock.local_addr().ok();
    let mut inbox = RecvBatch::with_control(anyfrom.is_some());
    let mut outbox = SendBatch::default();
    let mut reply = Vec::with_capacity(512);
    loop {
        if let Err(e) = sock.readable().await {
            log::error!("udp {local:?}: {e}");
            return;
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
                let Some((query, from)) = inbox.get(i) else {
                    log::debug!("udp {local:?}: dropped an oversized or foreign datagram");
                    continue;
                };
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
                    (Step::Replied, None, _) => outbox.push(&reply, from),
                    (Step::Replied, Some(anyfrom), Some(dst)) => {
                        anyfrom.send(dst, from, &reply).await
                    }
                    (Step::Pending(p), _, _) => {
                        let sock = sock.clone();
                        let controller = controller.clone();
                        let anyfrom = anyfrom.clone();
                        tokio::task::spawn_local(async move {
                            let reply = controller.finish(p, client).await;
                            match (anyfrom, client.asked) {
                                (Some(anyfrom), Some(dst)) => anyfrom.send(dst, from, &reply).await,
                                _ => send_one(&sock, &reply, from).await,
                            }
                        });
                    }
                    _ => {}
                }
            }
            flush(&sock, &mut outbox).await;
            if n < BATCH {
                break;
            }
        }
    }
}

async fn send_one(sock: &UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(reply, to).await {
        log::debug!("udp: reply to {to}: {e}");
    }
}

/// Sends every queued reply, waiting for room in the socket buffer if needed.
async fn flush(sock: &UdpSocket, outbox: &mut SendBatch) {
    let fd = sock.as_raw_fd();
    let mut done = 0;
    while done < outbox.len() {
        match sock.try_io(Interest::WRITABLE, || outbox.send(fd, done)) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if sock.writable().await.is_err() {
                    break;
                }
            }
            Err(e) => {
                // This reply cannot go (no route, say); skip it, send the rest.
                log::debug!("udp: reply to {}: {e}", outbox.dest(done));
                done += 1;
            }
        }
    }
    outbox.clear();
}
