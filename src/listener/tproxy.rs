//! The transparent listeners: where the TC program hands LAN port-53 traffic
//! and the TCP and UDP flows it routed to a group (those go on to `relay`).
//!
//! UDP and TCP sockets on `tproxy_port` (IPv4 and IPv6) with IP_TRANSPARENT.
//! A datagram arrives with the client's own source and, in a control
//! message, the address the client sent it to (no NAT happened); a TCP
//! connection's local address is that original destination. Replies must
//! come back from the address the client asked, so UDP replies leave by
//! `AnyFrom` sockets bound to that address (IP_TRANSPARENT lets us bind
//! addresses that are not ours), kept while in use and closed when idle;
//! each has a reply queue the serving loops send with `sendmmsg`.
//!
//! Neighbours: `udp`/`tcp` (the serving loops), `ebpf` (hands packets here),
//! `controller` (decides).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::socket::SockType;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::udp::ReplyQueue;
use super::{bind, open, Role};
use crate::controller::Controller;
use crate::relay::Relay;

/// A reply socket unused this long is closed: a remote silent for a
/// minute has likely gone, and reopening one costs four system calls.
const ANYFROM_IDLE: Duration = Duration::from_secs(60);
/// At most this many reply sockets (one per address clients ask, and one
/// per remote that answers a relayed UDP flow: a full-cone endpoint may
/// hear from many, a DHT node from hundreds). Past it the least recently
/// used goes. A socket that has only relayed UDP holds no reply batch, so
/// each costs a descriptor, a kernel socket and about 200 bytes here.
const ANYFROM_MAX: usize = 2048;

/// Reply sockets by the local address they send from, each with its queue
/// of answers for the serving loops to send in batches.
#[derive(Default)]
pub struct AnyFrom {
    socks: RefCell<HashMap<SocketAddr, (Rc<ReplyQueue>, Instant)>>,
    /// The queues handed out since the last `flush`.
    used: RefCell<Vec<Rc<ReplyQueue>>>,
}

impl AnyFrom {
    /// The reply queue of the socket that sends from `from`, opened if
    /// needed; `None` (logged) if it cannot be.
    pub fn queue(&self, from: SocketAddr) -> Option<Rc<ReplyQueue>> {
        let q = match self.open(from) {
            Ok(q) => q,
            Err(e) => {
                log::warn!("cannot reply from {from}: {e}");
                return None;
            }
        };
        let mut used = self.used.borrow_mut();
        if !used.iter().any(|u| Rc::ptr_eq(u, &q)) {
            used.push(q.clone());
        }
        Some(q)
    }

    /// The socket that sends from `from`, opened if needed, for a relayed
    /// UDP reply sent at once (not queued for the next batch); `None`
    /// (logged) if it cannot be opened.
    pub fn sender(&self, from: SocketAddr) -> Option<Rc<UdpSocket>> {
        match self.open(from) {
            Ok(q) => Some(q.sock.clone()),
            Err(e) => {
                log::warn!("cannot reply from {from}: {e}");
                None
            }
        }
    }

    fn open(&self, from: SocketAddr) -> io::Result<Rc<ReplyQueue>> {
        let now = Instant::now();
        let mut socks = self.socks.borrow_mut();
        if let Some((q, used)) = socks.get_mut(&from) {
            *used = now;
            return Ok(q.clone());
        }
        if socks.len() >= ANYFROM_MAX {
            let oldest = socks.iter().min_by_key(|(_, (_, t))| *t).map(|(a, _)| *a);
            if let Some(a) = oldest {
                socks.remove(&a);
            }
        }
        let fd = open(from, SockType::Datagram, Role::AnyFrom)?;
        // SAFETY: a fresh UDP socket owned by nobody else.
        let std = unsafe { std::net::UdpSocket::from_raw_fd(fd.into_raw_fd()) };
        let q = Rc::new(ReplyQueue::new(Rc::new(UdpSocket::from_std(std)?)));
        socks.insert(from, (q.clone(), now));
        Ok(q)
    }

    /// Sends what the queues handed out since the last call hold.
    pub async fn flush(&self) {
        let used = std::mem::take(&mut *self.used.borrow_mut());
        for q in used {
            q.flush().await;
        }
    }

    /// Closes the sockets idle for longer than `ANYFROM_IDLE`.
    fn sweep(&self) {
        let now = Instant::now();
        self.socks
            .borrow_mut()
            .retain(|_, (_, used)| now.duration_since(*used) < ANYFROM_IDLE);
    }

    pub fn len(&self) -> usize {
        self.socks.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The running transparent listeners on one port.
pub struct TproxyListeners {
    pub port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl TproxyListeners {
    /// Binds UDP and TCP on `port` for IPv4 and IPv6 (IPv6 is skipped with a
    /// warning where the kernel has none) and starts serving.
    /// `relay` takes the TCP connections and the UDP datagrams that are
    /// not DNS (the flows the TC program routed to a group).
    pub fn start(
        port: u16,
        controller: &Rc<Controller>,
        relay: Option<Rc<Relay>>,
    ) -> Result<TproxyListeners, String> {
        let anyfrom = Rc::new(AnyFrom::default());
        let mut tasks = Vec::new();
        let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        for addr in [v4, v6] {
            let bound = match bind(addr, Role::Transparent) {
                Ok(b) => b,
                Err(e) if addr.is_ipv6() => {
                    log::warn!("no IPv6 transparent listener on {addr}: {e}");
                    continue;
                }
                Err(e) => {
                    for t in &tasks {
                        JoinHandle::abort(t);
                    }
                    return Err(format!("cannot listen transparently on {addr}: {e}"));
                }
            };
            let udp = UdpSocket::from_std(bound.udp).map_err(|e| e.to_string())?;
            let tcp = tokio::net::TcpListener::from_std(bound.tcp).map_err(|e| e.to_string())?;
            tasks.push(tokio::task::spawn_local(super::udp::serve(
                Rc::new(udp),
                controller.clone(),
                Some(anyfrom.clone()),
                None,
                relay.clone(),
            )));
            tasks.push(tokio::task::spawn_local(super::tcp::serve(
                tcp,
                controller.clone(),
                true,
                None,
                relay.clone(),
            )));
            log::info!("transparent listener on {addr} (udp, tcp)");
        }
        let sweeper = anyfrom.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(ANYFROM_IDLE / 4);
            loop {
                tick.tick().await;
                sweeper.sweep();
            }
        }));
        Ok(TproxyListeners { port, tasks })
    }

    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for TproxyListeners {
    fn drop(&mut self) {
        self.stop();
    }
}
