//! DNS over one connection to one upstream, many queries at once:
//! - a stream: TCP (RFC 7766) or TLS over TCP (DoT, RFC 7858), direct or
//!   through a proxy node, each message behind its 2-byte length;
//! - a proxy node's datagram path (UDP through SOCKS5, Shadowsocks, Trojan,
//!   VLESS, VMess), one message per datagram, sent again every second
//!   while no answer has come (datagrams may be lost on the way).
//!
//! The connection, opened when first needed, carries the queries pipelined
//! (each with its own id, answers matched by id in whatever order they
//! come) and is closed after a quiet spell. A query whose connection
//! breaks before its answer is tried once more on a fresh connection.
//!
//! Each connection has a writer task (queue → connection, and the idle
//! close) and a reader task (connection → the waiting query, by id).
//!
//! Neighbours: `forwarder` (the caller), `dialer::Via` (the way out:
//! direct or a node), `tls` (the TLS client setup).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::slot::Slot;
use super::tls::TlsClient;
use super::ForwardError;
use crate::dialer::{PacketRx, PacketTx, Via};
use crate::wire::{self, QueryInfo};

/// A TCP connection with nothing in flight for this long is closed.
const IDLE: Duration = Duration::from_secs(10);
/// ... a TLS one, dearer to open, after this.
const IDLE_TLS: Duration = Duration::from_secs(30);
/// How often the writer looks at the idle clock.
const TICK: Duration = Duration::from_secs(1);
/// Queries one connection may carry at once.
const MAX_IN_FLIGHT: usize = 1024;
/// A query on a datagram path is sent again after this long.
const RETRANSMIT: Duration = Duration::from_secs(1);

/// How messages travel on the connection.
#[derive(Clone)]
pub enum Framing {
    /// A stream, each message behind its length; TLS on it for DoT.
    Stream(Option<TlsClient>),
    /// A proxy's datagram path.
    Packets,
}

/// The receiving side of a connection.
enum Reader {
    Stream(Box<dyn AsyncRead + Unpin>),
    Packets(Box<dyn PacketRx>),
}

/// The sending side.
enum Writer {
    Stream(Box<dyn AsyncWrite + Unpin>),
    Packets(Box<dyn PacketTx>),
}

impl Reader {
    /// The next message, or None when the connection is gone.
    async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Reader::Stream(rd) => {
                let mut len = [0u8; 2];
                rd.read_exact(&mut len).await.ok()?;
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                rd.read_exact(&mut msg).await.ok()?;
                Some(msg)
            }
            Reader::Packets(rx) => rx.recv().await.ok(),
        }
    }
}

impl Writer {
    /// Writes one frame (length and message); `more` says another follows
    /// at once, so a stream need not flush yet.
    async fn send(&mut self, frame: &[u8], more: bool) -> std::io::Result<()> {
        match self {
            Writer::Stream(wr) => {
                wr.write_all(frame).await?;
                if !more {
                    wr.flush().await?;
                }
                Ok(())
            }
            Writer::Packets(tx) if more => tx.send_more(&frame[2..]).await,
            Writer::Packets(tx) => tx.send(&frame[2..]).await,
        }
    }

    async fn close(&mut self) {
        if let Writer::Stream(wr) = self {
            let _ = wr.shutdown().await;
        }
    }
}

/// The pipelined path to one upstream.
pub struct Pipeline {
    remote: SocketAddr,
    via: Via,
    framing: Framing,
    conn: Slot<Rc<Conn>>,
}

struct Conn {
    queue: mpsc::UnboundedSender<Vec<u8>>,
    waiting: RefCell<HashMap<u16, oneshot::Sender<Vec<u8>>>>,
    closed: Cell<bool>,
    last_used: Cell<Instant>,
}

impl Conn {
    fn close(&self) {
        self.closed.set(true);
        // Dropping the senders wakes every waiting query with an error.
        self.waiting.borrow_mut().clear();
    }
}

impl Pipeline {
    pub fn new(remote: SocketAddr, via: Via, framing: Framing) -> Pipeline {
        Pipeline {
            remote,
            via,
            framing,
            conn: Slot::new(),
        }
    }

    async fn connection(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let alive = |c: &Rc<Conn>| !c.closed.get();
        self.conn.get(alive, self.open(deadline)).await
    }

    async fn open(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let (rd, wr) = match (&self.framing, &self.via) {
            (Framing::Packets, via) => {
                let p = via.packets(self.remote, timeout).await?;
                (Reader::Packets(p.rx), Writer::Packets(p.tx))
            }
            (Framing::Stream(None), Via::Direct(d)) => {
                let (rd, wr) = d.tcp(self.remote, timeout).await?.into_split();
                (Reader::Stream(Box::new(rd)), Writer::Stream(Box::new(wr)))
            }
            (Framing::Stream(None), via) => {
                let (rd, wr) = tokio::io::split(via.stream(self.remote, timeout).await?);
                (Reader::Stream(Box::new(rd)), Writer::Stream(Box::new(wr)))
            }
            (Framing::Stream(Some(tls)), via) => {
                let stream = via.stream(self.remote, timeout).await?;
                let s = tokio::time::timeout_at(deadline.into(), tls.handshake(stream))
                    .await
                    .map_err(|_| ForwardError::Timeout)??;
                let (rd, wr) = tokio::io::split(s);
                (Reader::Stream(Box::new(rd)), Writer::Stream(Box::new(wr)))
            }
        };
        let idle = match self.framing {
            Framing::Stream(Some(_)) => IDLE_TLS,
            _ if self.via.node().is_some() => IDLE_TLS,
            _ => IDLE,
        };
        let (queue, rx) = mpsc::unbounded_channel();
        let conn = Rc::new(Conn {
            queue,
            waiting: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
            last_used: Cell::new(Instant::now()),
        });
        let kind = self.kind();
        let reader = tokio::task::spawn_local(read_answers(rd, conn.clone(), self.remote, kind));
        tokio::task::spawn_local(write_queries(wr, rx, conn.clone(), reader, idle));
        log::debug!("{kind} {}: connected{}", self.remote, self.through());
        Ok(conn)
    }

    fn kind(&self) -> &'static str {
        match self.framing {
            Framing::Stream(None) => "tcp",
            Framing::Stream(Some(_)) => "tls",
            Framing::Packets => "udp",
        }
    }

    fn through(&self) -> String {
        match self.via.node() {
            Some(n) => format!(" through node '{}'", n.name),
            None => String::new(),
        }
    }

    pub async fn exchange(
        &self,
        query: &[u8],
        info: &QueryInfo,
        deadline: Instant,
    ) -> Result<Vec<u8>, ForwardError> {
        let mut last_err = ForwardError::Closed;
        for _attempt in 0..2 {
            let conn = self.connection(deadline).await?;
            if conn.waiting.borrow().len() >= MAX_IN_FLIGHT {
                return Err(ForwardError::Busy);
            }
            let id = super::free_id(|id| conn.waiting.borrow().contains_key(&id));
            let (tx, rx) = oneshot::channel();
            conn.waiting.borrow_mut().insert(id, tx);
            conn.last_used.set(Instant::now());
            let mut frame = Vec::with_capacity(query.len() + 2);
            frame.extend_from_slice(&(query.len() as u16).to_be_bytes());
            frame.extend_from_slice(query);
            wire::set_id(&mut frame[2..], id);
            let resend = matches!(self.framing, Framing::Packets).then(|| frame.clone());
            if conn.queue.send(frame).is_err() {
                conn.close();
                continue;
            }
            let answer = match resend {
                None => tokio::time::timeout_at(deadline.into(), rx).await,
                Some(frame) => Box::pin(retransmitting(&conn, frame, rx, deadline)).await,
            };
            match answer {
                Ok(Ok(reply)) => {
                    if wire::response_matches(&reply, id, query, info) {
                        return Ok(reply);
                    }
                    // Same id, other question: the connection is confused.
                    log::debug!(
                        "{} {}{}: answer does not match its query",
                        self.kind(),
                        self.remote,
                        self.through()
                    );
                    conn.close();
                    last_err = ForwardError::Closed;
                }
                Ok(Err(_)) => last_err = ForwardError::Closed,
                Err(_) => {
                    conn.waiting.borrow_mut().remove(&id);
                    return Err(ForwardError::Timeout);
                }
            }
        }
        Err(last_err)
    }
}

/// Waits for the answer on a datagram path, sending the query again every
/// `RETRANSMIT` while none has come.
async fn retransmitting(
    conn: &Conn,
    frame: Vec<u8>,
    mut rx: oneshot::Receiver<Vec<u8>>,
    deadline: Instant,
) -> Result<Result<Vec<u8>, oneshot::error::RecvError>, tokio::time::error::Elapsed> {
    loop {
        let next = (Instant::now() + RETRANSMIT).min(deadline);
        match tokio::time::timeout_at(next.into(), &mut rx).await {
            Ok(answer) => return Ok(answer),
            Err(elapsed) if Instant::now() >= deadline => return Err(elapsed),
            Err(_) => {
                if conn.queue.send(frame.clone()).is_err() {
                    return Ok(rx.await);
                }
            }
        }
    }
}

async fn read_answers(mut rd: Reader, conn: Rc<Conn>, remote: SocketAddr, kind: &'static str) {
    while let Some(msg) = rd.next().await {
        if msg.len() < wire::HEADER_LEN {
            log::debug!("{kind} {remote}: {}-byte message, closing", msg.len());
            break;
        }
        let tx = conn.waiting.borrow_mut().remove(&wire::id(&msg));
        match tx {
            Some(tx) => {
                let _ = tx.send(msg);
            }
            None => log::debug!("{kind} {remote}: answer with an id nobody waits for"),
        }
        conn.last_used.set(Instant::now());
    }
    log::debug!("{kind} {remote}: connection closed");
    conn.close();
}

async fn write_queries(
    mut wr: Writer,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    conn: Rc<Conn>,
    reader: tokio::task::JoinHandle<()>,
    idle_after: Duration,
) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            frame = queue.recv() => match frame {
                Some(frame) => {
                    // Whatever else is queued goes in the same flush (for
                    // TLS, the same records).
                    let mut next = queue.try_recv().ok();
                    if wr.send(&frame, next.is_some()).await.is_err() {
                        break;
                    }
                    let mut ok = true;
                    while let Some(more) = next {
                        next = queue.try_recv().ok();
                        if wr.send(&more, next.is_some()).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok {
                        break;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                let idle = conn.waiting.borrow().is_empty()
                    && conn.last_used.get().elapsed() >= idle_after;
                if conn.closed.get() || idle {
                    break;
                }
            }
        }
    }
    conn.close();
    wr.close().await;
    reader.abort();
}
