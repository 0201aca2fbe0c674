//! The address of an upstream given by host name (`tls://dns.example`),
//! looked up through another upstream: a plain one at an IP address, never
//! the system resolver (on a router that is ourselves, a loop).
//!
//! Looked up at the first query (A first, AAAA if there is no A) and kept;
//! forgotten when a connection to it fails after its TTL ran out, so the
//! next query looks again. Queries that arrive during a lookup wait for it.
//!
//! Proxy nodes given by host name are looked up the same way, through a
//! resolving forwarder that always goes direct (the node cannot carry the
//! lookup of its own address).
//!
//! Neighbours: `forwarder` (owns one per named upstream, and the resolving
//! forwarder), `dialer::node` (one per named proxy server).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{ForwardError, Forwarder};
use crate::wire;

/// An address is trusted at least this long, whatever its TTL says.
const MIN_KEEP: Duration = Duration::from_secs(60);

pub struct Lookup {
    name: String,
    port: u16,
    resolver: Rc<Forwarder>,
    /// The address found, and until when it is sure.
    current: RefCell<Option<(SocketAddr, Instant)>>,
    /// Held during a lookup, so concurrent queries share it.
    busy: tokio::sync::Mutex<()>,
}

impl Lookup {
    pub fn new(name: String, port: u16, resolver: Rc<Forwarder>) -> Lookup {
        Lookup {
            name,
            port,
            resolver,
            current: RefCell::new(None),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The host name looked up.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream's address, looked up if needed.
    pub async fn address(&self, deadline: Instant) -> Result<SocketAddr, ForwardError> {
        if let Some((a, _)) = &*self.current.borrow() {
            return Ok(*a);
        }
        let _busy = self.busy.lock().await;
        if let Some((a, _)) = &*self.current.borrow() {
            return Ok(*a);
        }
        let mut last = String::from("no address");
        for rtype in [RecordType::A, RecordType::AAAA] {
            match self.ask(rtype, deadline).await {
                Ok(Some((ip, ttl))) => {
                    let remote = SocketAddr::new(ip, self.port);
                    log::info!("upstream {}: looked up {remote} (TTL {ttl} s)", self.name);
                    let sure = Instant::now() + Duration::from_secs(ttl.into()).max(MIN_KEEP);
                    *self.current.borrow_mut() = Some((remote, sure));
                    return Ok(remote);
                }
                Ok(None) => {}
                Err(e) => last = e,
            }
        }
        Err(ForwardError::Lookup(format!("{}: {last}", self.name)))
    }

    /// A connection to `remote` failed: if the address is past its TTL,
    /// forget it so the next query looks again.
    pub fn failed(&self, remote: SocketAddr) {
        let mut current = self.current.borrow_mut();
        let stale = matches!(&*current, Some((a, sure)) if *a == remote && Instant::now() >= *sure);
        if stale {
            *current = None;
        }
    }

    /// One question to the resolver: the first address of this type and
    /// its TTL, or none.
    async fn ask(
        &self,
        rtype: RecordType,
        deadline: Instant,
    ) -> Result<Option<(IpAddr, u32)>, String> {
        let name = Name::from_str(&format!("{}.", self.name)).map_err(|e| e.to_string())?;
        let mut m = Message::new(crate::rand::u16(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name, rtype));
        let query = m.to_vec().map_err(|e| e.to_string())?;
        let info = wire::parse_query(&query).map_err(|_| "cannot build the query".to_string())?;
        let reply = Box::pin(self.resolver.exchange(&query, &info, false, deadline))
            .await
            .map_err(|e| e.to_string())?;
        let reply = Message::from_vec(&reply).map_err(|e| e.to_string())?;
        let rcode = reply.metadata.response_code;
        if rcode != ResponseCode::NoError {
            return Err(format!("{rtype} lookup answered {rcode}"));
        }
        Ok(reply.answers.iter().find_map(|r| match &r.data {
            RData::A(a) if rtype == RecordType::A => Some((IpAddr::V4(a.0), r.ttl)),
            RData::AAAA(a) if rtype == RecordType::AAAA => Some((IpAddr::V6(a.0), r.ttl)),
            _ => None,
        }))
    }
}
