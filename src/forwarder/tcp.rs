//! DNS over a stream to one upstream: TCP (RFC 7766) or TLS over TCP (DoT,
//! RFC 7858). One connection, opened when first needed, carries many
//! queries at once (pipelined, each with its own id, answers matched by id
//! in whatever order they come) and is closed after a quiet spell. A query
//! whose connection breaks before its answer is tried once more on a fresh
//! connection.
//!
//! Each connection has a writer task (queue → stream, and the idle close)
//! and a reader task (stream → the waiting query, by id).
//!
//! Neighbours: `forwarder` (the caller), `dialer::Direct` (the socket),
//! `tls` (the TLS client setup).

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
use crate::dialer::Direct;
use crate::wire::{self, QueryInfo};

/// A TCP connection with nothing in flight for this long is closed.
const IDLE: Duration = Duration::from_secs(10);
/// ... a TLS one, dearer to open, after this.
const IDLE_TLS: Duration = Duration::from_secs(30);
/// How often the writer looks at the idle clock.
const TICK: Duration = Duration::from_secs(1);
/// Queries one connection may carry at once.
const MAX_IN_FLIGHT: usize = 1024;

type Reader = Box<dyn AsyncRead + Unpin>;
type Writer = Box<dyn AsyncWrite + Unpin>;

/// The stream path to one upstream.
pub struct TcpPipeline {
    remote: SocketAddr,
    dialer: Direct,
    /// DoT when set.
    tls: Option<TlsClient>,
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

impl TcpPipeline {
    pub fn new(remote: SocketAddr, dialer: Direct, tls: Option<TlsClient>) -> TcpPipeline {
        TcpPipeline {
            remote,
            dialer,
            tls,
            conn: Slot::new(),
        }
    }

    async fn connection(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let alive = |c: &Rc<Conn>| !c.closed.get();
        self.conn.get(alive, self.open(deadline)).await
    }

    async fn open(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let stream = self.dialer.tcp(self.remote, timeout).await?;
        let (rd, wr): (Reader, Writer) = match &self.tls {
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
            Some(tls) => {
                let s = tokio::time::timeout_at(deadline.into(), tls.handshake(stream))
                    .await
                    .map_err(|_| ForwardError::Timeout)??;
                let (rd, wr) = tokio::io::split(s);
                (Box::new(rd), Box::new(wr))
            }
        };
        let idle = if self.tls.is_some() { IDLE_TLS } else { IDLE };
        let (queue, rx) = mpsc::unbounded_channel();
        let conn = Rc::new(Conn {
            queue,
            waiting: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
            last_used: Cell::new(Instant::now()),
        });
        let reader = tokio::task::spawn_local(read_answers(rd, conn.clone(), self.remote));
        tokio::task::spawn_local(write_queries(wr, rx, conn.clone(), reader, idle));
        log::debug!("{} {}: connected", self.kind(), self.remote);
        Ok(conn)
    }

    fn kind(&self) -> &'static str {
        if self.tls.is_some() {
            "tls"
        } else {
            "tcp"
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
            let id = loop {
                let id = crate::rand::u16();
                if !conn.waiting.borrow().contains_key(&id) {
                    break id;
                }
            };
            let (tx, rx) = oneshot::channel();
            conn.waiting.borrow_mut().insert(id, tx);
            conn.last_used.set(Instant::now());
            let mut frame = Vec::with_capacity(query.len() + 2);
            frame.extend_from_slice(&(query.len() as u16).to_be_bytes());
            frame.extend_from_slice(query);
            wire::set_id(&mut frame[2..], id);
            if conn.queue.send(frame).is_err() {
                conn.close();
                continue;
            }
            match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(reply)) => {
                    if wire::response_matches(&reply, id, query, info) {
                        return Ok(reply);
                    }
                    // Same id, other question: the connection is confused.
                    log::debug!(
                        "{} {}: answer does not match its query",
                        self.kind(),
                        self.remote
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

async fn read_answers(mut rd: Reader, conn: Rc<Conn>, remote: SocketAddr) {
    let mut len = [0u8; 2];
    loop {
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = usize::from(u16::from_be_bytes(len));
        let mut msg = vec![0u8; n];
        if rd.read_exact(&mut msg).await.is_err() {
            break;
        }
        if n < wire::HEADER_LEN {
            log::debug!("tcp {remote}: {n}-byte message, closing");
            break;
        }
        let tx = conn.waiting.borrow_mut().remove(&wire::id(&msg));
        match tx {
            Some(tx) => {
                let _ = tx.send(msg);
            }
            None => log::debug!("tcp {remote}: answer with an id nobody waits for"),
        }
        conn.last_used.set(Instant::now());
    }
    log::debug!("tcp {remote}: connection closed");
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
                    if wr.write_all(&frame).await.is_err() {
                        break;
                    }
                    // Whatever else is queued goes in the same flush (for
                    // TLS, the same records).
                    let mut ok = true;
                    while let Ok(more) = queue.try_recv() {
                        if wr.write_all(&more).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok || wr.flush().await.is_err() {
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
    let _ = wr.shutdown().await;
    reader.abort();
}
