//! DNS over UDP to one upstream: a fresh connected socket on a random port
//! per query, a random id, the query sent again every second while no answer
//! has come, and only an answer with our id and question accepted. Datagrams
//! that do not match are ignored (they may be late answers or spoofs); an
//! ICMP port-unreachable ends the exchange at once.
//!
//! Neighbours: `forwarder` (the caller), `dialer::Direct` (the socket).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ForwardError;
use crate::dialer::Direct;
use crate::wire::{self, QueryInfo};

/// How long to wait before sending the query again.
const RETRANSMIT: Duration = Duration::from_secs(1);

thread_local! {
    /// One receive buffer for every exchange: a datagram is copied out of it
    /// right after `try_recv`, before anything else can run.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 65535]);
}

pub async fn exchange(
    dialer: &Direct,
    remote: SocketAddr,
    query: &[u8],
    info: &QueryInfo,
    deadline: Instant,
) -> Result<Vec<u8>, ForwardError> {
    let sock = dialer.udp(remote)?;
    let id = crate::rand::u16();
    let mut q = query.to_vec();
    wire::set_id(&mut q, id);
    sock.send(&q).await?;
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut next_send = tokio::time::Instant::now() + RETRANSMIT;
    loop {
        tokio::select! {
            biased;
            ready = sock.readable() => {
                ready?;
                let got = SCRATCH.with(|s| {
                    let mut buf = s.borrow_mut();
                    match sock.try_recv(&mut buf) {
                        Ok(n) => Ok(Some(buf[..n].to_vec())),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                        Err(e) => Err(e),
                    }
                });
                match got? {
                    Some(reply) if wire::response_matches(&reply, id, query, info) => return Ok(reply),
                    Some(reply) => log::debug!(
                        "{remote}: ignored a {}-byte datagram that does not answer our query",
                        reply.len()
                    ),
                    None => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Err(ForwardError::Timeout),
            _ = tokio::time::sleep_until(next_send) => {
                next_send += RETRANSMIT;
                sock.send(&q).await?;
            }
        }
    }
}
