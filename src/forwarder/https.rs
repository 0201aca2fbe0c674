//! DNS over HTTPS (RFC 8484) over HTTP/2, on the h2 crate and rustls.
//!
//! One HTTP/2 connection per upstream, opened when first needed, carries
//! every query as its own stream (`POST path`, `application/dns-message`,
//! id 0 as the RFC recommends) and is closed after a quiet spell. A query
//! whose connection broke is tried once more on a fresh connection; an
//! HTTP error status or a body that is not the answer to our question is a
//! failure (the client gets SERVFAIL).
//!
//! Each connection has one driver task (h2's connection future, and the
//! idle close).
//!
//! Neighbours: `forwarder` (the caller), `doh` (the request and the checks
//! of the reply, shared with `h3`), `tls` (the TLS client setup, ALPN
//! `h2`), `dialer::Direct` (the socket).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use super::doh::{self, DohTarget, MAX_ANSWER};
use super::slot::Slot;
use super::tls::TlsClient;
use super::ForwardError;
use crate::dialer::Via;
use crate::wire::{self, QueryInfo};

/// A connection with no stream open for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// How often the driver looks at the idle clock.
const TICK: Duration = Duration::from_secs(1);

struct Conn {
    send: SendRequest<Bytes>,
    in_flight: Cell<usize>,
    last_used: Cell<Instant>,
    closed: Cell<bool>,
}

/// The DoH path to one upstream address.
pub struct DohClient {
    remote: SocketAddr,
    via: Via,
    tls: TlsClient,
    target: DohTarget,
    conn: Slot<Rc<Conn>>,
}

/// Counts a stream open on a connection while it lives.
struct Open<'a>(&'a Conn);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
        self.0.last_used.set(Instant::now());
    }
}

impl DohClient {
    pub fn new(remote: SocketAddr, via: Via, tls: TlsClient, target: DohTarget) -> DohClient {
        DohClient {
            remote,
            via,
            tls,
            target,
            conn: Slot::new(),
        }
    }

    async fn connection(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let alive = |c: &Rc<Conn>| !c.closed.get();
        self.conn.get(alive, self.open(deadline)).await
    }

    async fn open(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let tcp = self.via.stream(self.remote, timeout).await?;
        let setup = async {
            let tls = self.tls.handshake(tcp).await?;
            h2::client::Builder::new()
                .enable_push(false)
                .handshake::<_, Bytes>(tls)
                .await
                .map_err(|e| ForwardError::Http(format!("HTTP/2 handshake: {e}")))
        };
        let (send, connection) = tokio::time::timeout_at(deadline.into(), setup)
            .await
            .map_err(|_| ForwardError::Timeout)??;
        let conn = Rc::new(Conn {
            send,
            in_flight: Cell::new(0),
            last_used: Cell::new(Instant::now()),
            closed: Cell::new(false),
        });
        tokio::task::spawn_local(drive(connection, conn.clone(), self.remote));
        log::debug!("https {}: connected", self.remote);
        Ok(conn)
    }

    pub async fn exchange(
        &self,
        query: &[u8],
        info: &QueryInfo,
        deadline: Instant,
    ) -> Result<Vec<u8>, ForwardError> {
        let body = doh::body(query);
        let mut last_err = ForwardError::Closed;
        for _attempt in 0..2 {
            let conn = self.connection(deadline).await?;
            conn.in_flight.set(conn.in_flight.get() + 1);
            let _open = Open(&conn);
            let ask = self.ask(&conn, body.clone());
            match tokio::time::timeout_at(deadline.into(), ask).await {
                Err(_) => return Err(ForwardError::Timeout),
                Ok(Ok(answer)) => {
                    if wire::response_matches(&answer, 0, query, info) {
                        return Ok(answer);
                    }
                    return Err(ForwardError::Http(
                        "the body is not an answer to the question".into(),
                    ));
                }
                Ok(Err(Failure::Connection(e))) => {
                    // The connection is gone (reset, GOAWAY): once more on
                    // a fresh one.
                    log::debug!("https {}: {e}", self.remote);
                    conn.closed.set(true);
                    last_err = ForwardError::Http(e);
                }
                Ok(Err(Failure::Answer(e))) => return Err(e),
            }
        }
        Err(last_err)
    }

    async fn ask(&self, conn: &Conn, body: Bytes) -> Result<Vec<u8>, Failure> {
        let request = self
            .target
            .request(body.len())
            .map_err(|e| Failure::Answer(ForwardError::Http(e)))?;
        let mut send = conn.send.clone().ready().await.map_err(Failure::from_h2)?;
        let (response, mut stream) = send
            .send_request(request, false)
            .map_err(Failure::from_h2)?;
        stream.send_data(body, true).map_err(Failure::from_h2)?;
        let response = response.await.map_err(Failure::from_h2)?;
        doh::check_status(response.status()).map_err(|e| Failure::Answer(ForwardError::Http(e)))?;
        let mut body = response.into_body();
        let mut answer = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(Failure::from_h2)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(Failure::Answer(ForwardError::Http(
                    "answer too long".into(),
                )));
            }
            answer.extend_from_slice(&chunk);
        }
        doh::check_body(&answer).map_err(|e| Failure::Answer(ForwardError::Http(e)))?;
        Ok(answer)
    }
}

/// Why one request failed: the connection (try again on a new one) or the
/// answer (give up).
enum Failure {
    Connection(String),
    Answer(ForwardError),
}

impl Failure {
    fn from_h2(e: h2::Error) -> Failure {
        if e.is_io() || e.is_go_away() || e.is_remote() && e.is_reset() {
            Failure::Connection(e.to_string())
        } else {
            Failure::Answer(ForwardError::Http(e.to_string()))
        }
    }
}

/// Runs one HTTP/2 connection until it breaks or stays idle too long.
async fn drive<T>(connection: h2::client::Connection<T, Bytes>, conn: Rc<Conn>, remote: SocketAddr)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut connection = std::pin::pin!(connection);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            r = &mut connection => {
                if let Err(e) = r {
                    log::debug!("https {remote}: connection ended: {e}");
                }
                break;
            }
            _ = tick.tick() => {
                let idle = conn.in_flight.get() == 0 && conn.last_used.get().elapsed() >= IDLE;
                if conn.closed.get() || idle {
                    break;
                }
            }
        }
    }
    conn.closed.set(true);
}
