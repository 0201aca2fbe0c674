//! DNS over HTTPS (RFC 8484) over HTTP/3 (RFC 9114), on the h3 crate over
//! quinn, with rustls (ring) for its TLS.
//!
//! One QUIC connection per upstream (ALPN `h3`), opened when first needed,
//! carries every query as its own request stream: `POST path`,
//! `application/dns-message`, id 0 (the request and the checks of the
//! reply are `doh`'s, shared with HTTP/2). The connection closes itself
//! after a quiet spell (QUIC idle timeout) and is opened again on demand.
//! A query whose connection broke (closed, GOAWAY, stream reset), or whose
//! reused connection stays silent for half its time (a server that
//! restarted knows nothing of it and says nothing), is tried once more on a
//! fresh one; an HTTP error status or a body that is not the answer to our
//! question is a failure (the client gets SERVFAIL).
//!
//! Each connection has one driver task (h3's control streams), which closes
//! the QUIC connection when HTTP/3 ends it. QUIC cannot go through a proxy
//! node: these upstreams go direct, on a UDP socket that carries the
//! daemon's socket mark.
//!
//! Neighbours: `forwarder` (the caller), `doh` (request, checks), `quic`
//! (the QUIC client setup and endpoint), `tls` (certificates),
//! `dialer::Direct` (the socket).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use ::h3::error::StreamError;
use bytes::{Buf, Bytes};

use super::doh::{self, DohTarget, MAX_ANSWER};
use super::quic::{self, Wait};
use super::slot::Slot;
use super::ForwardError;
use crate::dialer::Direct;
use crate::wire::{self, QueryInfo};

/// The largest response header section we take (a DoH reply has a few
/// short fields).
const MAX_HEADERS: u64 = 16 * 1024;

type Sender = ::h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type Driver = ::h3::client::Connection<h3_quinn::Connection, Bytes>;

/// One HTTP/3 connection.
struct Conn {
    quic: quinn::Connection,
    /// Cloned for each request; when the last copy goes, h3 closes the
    /// connection.
    send: Sender,
}

fn alive(c: &Rc<Conn>) -> bool {
    c.quic.close_reason().is_none()
}

/// The DoH3 path to one upstream address.
pub struct Doh3Client {
    remote: SocketAddr,
    dialer: Direct,
    /// The host the certificate must name (and the SNI).
    server_name: String,
    /// From `quic::client_config` with ALPN `h3`.
    config: quinn::ClientConfig,
    target: DohTarget,
    endpoint: RefCell<Option<quinn::Endpoint>>,
    conn: Slot<Rc<Conn>>,
}

impl Doh3Client {
    pub fn new(
        remote: SocketAddr,
        dialer: Direct,
        config: quinn::ClientConfig,
        server_name: &str,
        target: DohTarget,
    ) -> Doh3Client {
        Doh3Client {
            remote,
            dialer,
            server_name: server_name.to_string(),
            config,
            target,
            endpoint: RefCell::new(None),
            conn: Slot::new(),
        }
    }

    async fn connection(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        self.conn.get(alive, self.open(deadline)).await
    }

    async fn open(&self, deadline: Instant) -> Result<Rc<Conn>, ForwardError> {
        let connecting = quic::endpoint(&self.endpoint, &self.dialer, self.remote)?
            .connect_with(self.config.clone(), self.remote, &self.server_name)
            .map_err(|e| ForwardError::Quic(e.to_string()))?;
        let setup = async {
            let quic = connecting.await.map_err(quic::from_connection_error)?;
            let (driver, send) = ::h3::client::builder()
                .max_field_section_size(MAX_HEADERS)
                .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
                .await
                .map_err(|e| ForwardError::Http(format!("HTTP/3 setup: {e}")))?;
            Ok::<_, ForwardError>((quic, driver, send))
        };
        let (quic, driver, send) = tokio::time::timeout_at(deadline.into(), setup)
            .await
            .map_err(|_| ForwardError::Timeout)??;
        tokio::task::spawn_local(drive(driver, quic.clone(), self.remote));
        log::debug!("h3 {}: connected", self.remote);
        Ok(Rc::new(Conn { quic, send }))
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
            let reused = self.conn.current(alive).is_some();
            let conn = self.connection(deadline).await?;
            let ask = std::pin::pin!(ask(&conn, &self.target, body.clone()));
            match quic::wait(ask, &conn.quic, reused, deadline).await {
                Wait::Done(r) => match self.finish(r, &conn, query, info) {
                    Some(result) => return result,
                    None => last_err = ForwardError::Http("the connection broke".into()),
                },
                Wait::Silent => {
                    log::debug!(
                        "h3 {}: nothing heard on the connection, reconnecting",
                        self.remote
                    );
                    last_err = ForwardError::Timeout;
                }
                Wait::Timeout => return Err(ForwardError::Timeout),
            }
        }
        Err(last_err)
    }

    /// What one request's outcome means: the result for the query, or
    /// `None` when the connection broke and a fresh one should be tried.
    fn finish(
        &self,
        outcome: Result<Vec<u8>, Failure>,
        conn: &Conn,
        query: &[u8],
        info: &QueryInfo,
    ) -> Option<Result<Vec<u8>, ForwardError>> {
        match outcome {
            Ok(answer) if wire::response_matches(&answer, 0, query, info) => Some(Ok(answer)),
            Ok(_) => Some(Err(ForwardError::Http(
                "the body is not an answer to the question".into(),
            ))),
            Err(Failure::Answer(e)) => Some(Err(e)),
            Err(Failure::Connection(e)) => {
                log::debug!("h3 {}: {e}", self.remote);
                conn.quic.close(0u32.into(), b"");
                None
            }
        }
    }
}

/// One query on its own request stream; the reply's body.
async fn ask(conn: &Conn, target: &DohTarget, body: Bytes) -> Result<Vec<u8>, Failure> {
    let request = target
        .request(body.len())
        .map_err(|e| Failure::Answer(ForwardError::Http(e)))?;
    let mut send = conn.send.clone();
    let mut stream = send.send_request(request).await.map_err(Failure::from)?;
    stream.send_data(body).await.map_err(Failure::from)?;
    stream.finish().await.map_err(Failure::from)?;
    let response = stream.recv_response().await.map_err(Failure::from)?;
    doh::check_status(response.status()).map_err(|e| Failure::Answer(ForwardError::Http(e)))?;
    let mut answer = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.map_err(Failure::from)? {
        if answer.len() + chunk.remaining() > MAX_ANSWER {
            return Err(Failure::Answer(ForwardError::Http(
                "answer too long".into(),
            )));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            answer.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    doh::check_body(&answer).map_err(|e| Failure::Answer(ForwardError::Http(e)))?;
    Ok(answer)
}

/// Why one request failed: the connection (try again on a new one) or the
/// answer (give up).
enum Failure {
    Connection(String),
    Answer(ForwardError),
}

impl From<StreamError> for Failure {
    fn from(e: StreamError) -> Failure {
        match e {
            // The connection closed or is closing (GOAWAY), the server
            // reset our stream (it may refuse requests it will not serve),
            // or QUIC failed under it.
            StreamError::ConnectionError { .. }
            | StreamError::RemoteClosing { .. }
            | StreamError::RemoteTerminate { .. }
            | StreamError::Undefined { .. } => Failure::Connection(e.to_string()),
            _ => Failure::Answer(ForwardError::Http(e.to_string())),
        }
    }
}

/// Runs one HTTP/3 connection's control streams until it ends.
async fn drive(mut driver: Driver, quic: quinn::Connection, remote: SocketAddr) {
    let e = driver.wait_idle().await;
    if !e.is_h3_no_error() {
        log::debug!("h3 {remote}: connection ended: {e}");
    }
    quic.close(0u32.into(), b"");
}
