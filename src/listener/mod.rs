//! Packets in: the sockets queries arrive on.
//!
//! The plain DNS listeners: UDP and TCP on each `dns_listen` address, usable
//! on their own or behind dnsmasq; and the transparent listeners (`tproxy`)
//! that the TC program hands LAN traffic to. `PlainListeners` keeps
//! the running set and changes it on reload: new addresses are bound first
//! (if one fails, nothing changes), then removed ones are stopped, and
//! unchanged ones keep their sockets, so a reload loses no query. The
//! plain listeners answer only local sources unless the config says
//! otherwise (`acl`).
//!
//! Neighbours: `controller` (gets every query), `daemon` (owns the set).

pub mod acl;
pub mod mmsg;
mod tcp;
pub mod tproxy;
mod udp;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;

use nix::sys::socket::{self as sock, setsockopt, sockopt, AddressFamily, SockFlag, SockType};
use tokio::task::JoinHandle;

use crate::controller::Controller;

/// Kernel receive buffer for a UDP listener: room for bursts of queries.
const UDP_RCVBUF: usize = 1 << 20;

/// The UDP and TCP sockets bound to one address.
struct Bound {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

/// What a socket is for, which decides its options.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A plain listener.
    Plain,
    /// A transparent listener that gets packets addressed to other hosts
    /// and learns their original destination.
    Transparent,
    /// A reply socket bound to another host's address.
    AnyFrom,
}

/// Opens a socket with the options it needs before `bind`: SO_REUSEADDR,
/// IPV6_V6ONLY for IPv6 (so that `0.0.0.0` and `[::]` can both be listed),
/// and for transparent roles IP_TRANSPARENT and the original-destination
/// control messages.
fn open(addr: SocketAddr, ty: SockType, role: Role) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = sock::socket(
        family,
        ty,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if role != Role::Plain {
        set_transparent(&fd, addr.is_ipv6())?;
    }
    if ty == SockType::Datagram && role != Role::AnyFrom {
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &UDP_RCVBUF);
        if role == Role::Transparent {
            if addr.is_ipv6() {
                setsockopt(&fd, sockopt::Ipv6OrigDstAddr, &true)?;
            } else {
                setsockopt(&fd, sockopt::Ipv4OrigDstAddr, &true)?;
            }
        }
    }
    let sa = sock::SockaddrStorage::from(addr);
    sock::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa)?;
    Ok(fd)
}

/// IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN).
fn set_transparent(fd: &OwnedFd, v6: bool) -> io::Result<()> {
    if v6 {
        let one: libc::c_int = 1;
        // SAFETY: a valid fd and a c_int option value of the right size.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                libc::SOL_IPV6,
                libc::IPV6_TRANSPARENT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    } else {
        Ok(setsockopt(fd, sockopt::IpTransparent, &true)?)
    }
}

fn bind(addr: SocketAddr, role: Role) -> io::Result<Bound> {
    let udp = open(addr, SockType::Datagram, role)?;
    let tcp = open(addr, SockType::Stream, role)?;
    sock::listen(
        &tcp,
        sock::Backlog::new(128).unwrap_or(sock::Backlog::MAXCONN),
    )?;
    // SAFETY: each fd is a freshly made socket of the matching kind, owned
    // by nobody else.
    unsafe {
        Ok(Bound {
            udp: std::net::UdpSocket::from_raw_fd(udp.into_raw_fd()),
            tcp: std::net::TcpListener::from_raw_fd(tcp.into_raw_fd()),
        })
    }
}

/// The running plain listeners, by address, and who they answer.
#[derive(Default)]
pub struct PlainListeners {
    running: HashMap<SocketAddr, [JoinHandle<()>; 2]>,
    acl: Rc<acl::LocalOnly>,
}

impl PlainListeners {
    /// Who the listeners answer (at start and on reload).
    pub fn set_policy(&self, policy: acl::Policy) {
        self.acl.set_policy(policy);
    }

    /// Queries dropped because their source is not local.
    pub fn dropped_remote(&self) -> u64 {
        self.acl.dropped()
    }

    /// Makes the running set exactly `addrs`. Binds every new address first;
    /// on failure nothing changes and the error names the address.
    pub fn apply(
        &mut self,
        addrs: &[SocketAddr],
        controller: &Rc<Controller>,
    ) -> Result<(), String> {
        let mut fresh = Vec::new();
        for &addr in addrs {
            if self.running.contains_key(&addr) || fresh.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            let bound =
                bind(addr, Role::Plain).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            fresh.push((addr, bound));
        }
        self.running.retain(|addr, tasks| {
            let keep = addrs.contains(addr);
            if !keep {
                log::info!("stopped listening on {addr}");
                tasks.iter().for_each(JoinHandle::abort);
            }
            keep
        });
        for (addr, bound) in fresh {
            let udp = tokio::net::UdpSocket::from_std(bound.udp)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let tcp = tokio::net::TcpListener::from_std(bound.tcp)
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let acl = Some(self.acl.clone());
            let u = tokio::task::spawn_local(udp::serve(
                Rc::new(udp),
                controller.clone(),
                None,
                acl.clone(),
                None,
            ));
            let t = tokio::task::spawn_local(tcp::serve(tcp, controller.clone(), false, acl, None));
            log::info!("listening for DNS on {addr} (udp, tcp)");
            self.running.insert(addr, [u, t]);
        }
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for (_, tasks) in self.running.drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
}
