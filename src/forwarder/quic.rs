//! DNS over QUIC (RFC 9250) on quinn, with rustls (ring) for its TLS.
//!
//! One QUIC connection per upstream (ALPN `doq`), opened when first needed;
//! each query gets its own bidirectional stream carrying one message with a
//! 2-byte length prefix and id 0, as the RFC says. The connection closes
//! itself after a quiet spell (QUIC idle timeout) and is opened again on
//! demand; a query whose connection broke is tried once more on a fresh
//! one. The UDP socket under it carries the daemon's socket mark.
//!
//! Neighbours: `forwarder` (the caller), `tls` (the TLS client setup),
//! `dialer::Direct` (the socket), `h3` (DoH over HTTP/3 takes the QUIC
//! setup and the endpoint from here).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;

use super::slot::Slot;
use super::tls::TlsClient;
use super::ForwardError;
use crate::dialer::Direct;
use crate::wire::{self, QueryInfo};

/// QUIC closes a connection with no traffic for this long.
const IDLE: Duration = Duration::from_secs(30);
/// The largest answer: a DNS message and its length prefix.
const MAX_ANSWER: usize = 65535 + 2;

/// The QUIC client setup of one upstream: its TLS (which must allow TLS
/// 1.3) and the idle timeout.
pub fn client_config(tls: &TlsClient) -> Result<quinn::ClientConfig, String> {
    let crypto = QuicClientConfig::try_from(tls.config.clone())
        .map_err(|e| format!("QUIC TLS setup: {e}"))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(IDLE).map_err(|e| e.to_string())?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The DoQ path to one upstream address.
pub struct DoqClient {
    remote: SocketAddr,
    dialer: Direct,
    /// The host the certificate must name (and the SNI).
    server_name: String,
    config: quinn::ClientConfig,
    endpoint: RefCell<Option<quinn::Endpoint>>,
    conn: Slot<quinn::Connection>,
}

impl DoqClient {
    /// `config` comes from `client_config`, made once per upstream.
    pub fn new(
        remote: SocketAddr,
        dialer: Direct,
        config: quinn::ClientConfig,
        server_name: &str,
    ) -> DoqClient {
        DoqClient {
            remote,
            dialer,
            server_name: server_name.to_string(),
            config,
            endpoint: RefCell::new(None),
            conn: Slot::new(),
        }
    }

    fn current(&self) -> Option<quinn::Connection> {
        self.conn.current(alive)
    }

    fn endpoint(&self) -> Result<quinn::Endpoint, ForwardError> {
        endpoint(&self.endpoint, &self.dialer, self.remote)
    }

    async fn connection(&self, deadline: Instant) -> Result<quinn::Connection, ForwardError> {
        self.conn.get(alive, self.open(deadline)).await
    }

    async fn open(&self, deadline: Instant) -> Result<quinn::Connection, ForwardError> {
        let connecting = self
            .endpoint()?
            .connect_with(self.config.clone(), self.remote, &self.server_name)
            .map_err(|e| ForwardError::Quic(e.to_string()))?;
        let conn = tokio::time::timeout_at(deadline.into(), connecting)
            .await
            .map_err(|_| ForwardError::Timeout)?
            .map_err(from_connection_error)?;
        log::debug!("quic {}: connected", self.remote);
        Ok(conn)
    }

    pub async fn exchange(
        &self,
        query: &[u8],
        info: &QueryInfo,
        deadline: Instant,
    ) -> Result<Vec<u8>, ForwardError> {
        let mut message = Vec::with_capacity(query.len() + 2);
        message.extend_from_slice(&(query.len() as u16).to_be_bytes());
        message.extend_from_slice(query);
        wire::set_id(&mut message[2..], 0);
        let mut last_err = ForwardError::Closed;
        for _attempt in 0..2 {
            let reused = self.current().is_some();
            let conn = self.connection(deadline).await?;
            let ask = std::pin::pin!(ask(&conn, &message));
            match wait(ask, &conn, reused, deadline).await {
                Wait::Done(r) => match self.finish(r, &conn, query, info) {
                    Some(result) => return result,
                    None => last_err = ForwardError::Quic("the connection broke".into()),
                },
                Wait::Silent => {
                    log::debug!(
                        "quic {}: nothing heard on the connection, reconnecting",
                        self.remote
                    );
                    last_err = ForwardError::Timeout;
                }
                Wait::Timeout => return Err(ForwardError::Timeout),
            }
        }
        Err(last_err)
    }

    /// What one stream's outcome means: the result for the query, or
    /// `None` when the connection broke and a fresh one should be tried.
    fn finish(
        &self,
        outcome: Result<Vec<u8>, String>,
        conn: &quinn::Connection,
        query: &[u8],
        info: &QueryInfo,
    ) -> Option<Result<Vec<u8>, ForwardError>> {
        match outcome {
            Ok(framed) => Some(match unframe(&framed) {
                Ok(answer) if wire::response_matches(answer, 0, query, info) => Ok(answer.to_vec()),
                Ok(_) => Err(ForwardError::Quic(
                    "the stream did not carry an answer to the question".into(),
                )),
                Err(e) => Err(e),
            }),
            Err(e) => {
                // Closed, reset, timed out: once more on a fresh one.
                log::debug!("quic {}: {e}", self.remote);
                conn.close(0u32.into(), b"");
                None
            }
        }
    }
}

/// One query on its own stream; the framed answer.
async fn ask(conn: &quinn::Connection, message: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(message).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    recv.read_to_end(MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())
}

/// The client endpoint kept in `kept`, made on first use on a UDP socket
/// from `dialer` (which carries the socket mark).
pub(super) fn endpoint(
    kept: &RefCell<Option<quinn::Endpoint>>,
    dialer: &Direct,
    remote: SocketAddr,
) -> Result<quinn::Endpoint, ForwardError> {
    if let Some(e) = &*kept.borrow() {
        return Ok(e.clone());
    }
    let sock = dialer.udp_unconnected(remote)?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        sock,
        Arc::new(quinn::TokioRuntime),
    )?;
    *kept.borrow_mut() = Some(endpoint.clone());
    Ok(endpoint)
}

/// How waiting for one request on a QUIC connection (DoQ, DoH3) ended.
pub enum Wait<T> {
    Done(T),
    /// A reused connection heard nothing at all for half the time: it is
    /// dead (closed now), try a fresh one.
    Silent,
    /// The deadline passed.
    Timeout,
}

/// Waits for `ask` on `conn` until `deadline`. A server that restarted
/// knows nothing of a connection we kept and stays silent (QUIC has no
/// reset for that), while a live one acknowledges a request at once even
/// when the answer takes long: so on a `reused` connection, if half the
/// time passes with nothing heard at all, the connection is given up.
pub async fn wait<F: std::future::Future>(
    mut ask: std::pin::Pin<&mut F>,
    conn: &quinn::Connection,
    reused: bool,
    deadline: Instant,
) -> Wait<F::Output> {
    if reused {
        let heard = conn.stats().udp_rx.datagrams;
        let now = Instant::now();
        let half = now + deadline.saturating_duration_since(now) / 2;
        if let Ok(r) = tokio::time::timeout_at(half.into(), &mut ask).await {
            return Wait::Done(r);
        }
        if conn.stats().udp_rx.datagrams == heard {
            conn.close(0u32.into(), b"");
            return Wait::Silent;
        }
    }
    match tokio::time::timeout_at(deadline.into(), ask).await {
        Ok(r) => Wait::Done(r),
        Err(_) => Wait::Timeout,
    }
}

fn alive(c: &quinn::Connection) -> bool {
    c.close_reason().is_none()
}

pub(crate) fn unframe(framed: &[u8]) -> Result<&[u8], ForwardError> {
    let bad = || ForwardError::Quic(format!("{}-byte stream is no DNS message", framed.len()));
    if framed.len() < 2 + wire::HEADER_LEN {
        return Err(bad());
    }
    let len = usize::from(u16::from_be_bytes([framed[0], framed[1]]));
    if framed.len() != 2 + len {
        return Err(bad());
    }
    Ok(&framed[2..])
}

pub(super) fn from_connection_error(e: quinn::ConnectionError) -> ForwardError {
    match e {
        quinn::ConnectionError::TransportError(t) => ForwardError::Tls(t.to_string()),
        quinn::ConnectionError::TimedOut => ForwardError::Timeout,
        other => ForwardError::Quic(other.to_string()),
    }
}
