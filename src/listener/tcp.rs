//! The plain TCP DNS listener (RFC 7766): length-prefixed queries, several
//! in flight per connection, answers written as they are ready (possibly out
//! of order), connections closed after a quiet spell.
//!
//! Neighbours: `listener` (binds the socket), `controller` (decides),
//! `relay` (takes the transparent connections that are not DNS).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::controller::{Client, Controller, Step, Transport};
use crate::relay::Relay;

/// A connection with no new query for this long is closed (once its
/// answers are out).
const IDLE: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed on arrival.
const MAX_CLIENTS: usize = 256;
/// Answers waiting to be written on one connection; when the client does
/// not read them, we stop reading its queries.
const QUEUE: usize = 64;

/// Serves one listening socket. `transparent`: connections were handed over
/// by the TC program, so the address they were made to is the server the
/// client asked.
///
/// On the transparent listener, `relay` takes the connections that are not
/// DNS (to a port other than 53): the flows the TC program routed to a
/// group.
pub async fn serve(
    listener: TcpListener,
    controller: Rc<Controller>,
    transparent: bool,
    relay: Option<Rc<Relay>>,
) {
    let clients = Rc::new(Cell::new(0usize));
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
        if clients.get() >= MAX_CLIENTS {
            log::debug!("tcp: {MAX_CLIENTS} clients already, closing {peer}");
            continue;
        }
        clients.set(clients.get() + 1);
        let clients = clients.clone();
        let controller = controller.clone();
        tokio::task::spawn_local(async move {
            let asked = if transparent {
                stream.local_addr().ok()
            } else {
                None
            };
            serve_client(stream, peer, asked, controller).await;
            clients.set(clients.get() - 1);
        });
    }
}

async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    asked: Option<SocketAddr>,
    controller: Rc<Controller>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (replies, queue) = mpsc::channel::<Vec<u8>>(QUEUE);
    let writer = tokio::task::spawn_local(write_replies(wr, queue));
    let client = Client {
        transport: Transport::Tcp,
        addr: peer,
        asked,
    };
    let mut len = [0u8; 2];
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(IDLE, rd.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        let n = usize::from(u16::from_be_bytes(len));
        let mut query = vec![0u8; n];
        match tokio::time::timeout(IDLE, rd.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
        match controller.handle(&query, &client, &mut out) {
            Step::Replied => {
                if replies.send(std::mem::take(&mut out)).await.is_err() {
                    break;
                }
            }
            Step::Dropped => {}
            Step::Pending(p) => {
                let replies = replies.clone();
                controller.pursue(p, client, move |reply| {
                    let reply = reply.to_vec();
                    Some(Box::pin(async move {
                        let _ = replies.send(reply).await;
                    }))
                });
            }
        }
    }
    // The writer ends once every pending answer is written.
    drop(replies);
    let _ = writer.await;
}

async fn write_replies(mut wr: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    let mut frame = Vec::new();
    while let Some(reply) = queue.recv().await {
        frame.clear();
        frame.extend_from_slice(&(reply.len() as u16).to_be_bytes());
        frame.extend_from_slice(&reply);
        if wr.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}
