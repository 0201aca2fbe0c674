//! The direct dialer: plain UDP and TCP sockets carrying the configured
//! socket mark (`so_mark`), so the router's policy routing and our TC
//! program know this traffic is ours and never send it back into the proxy,
//! and bound to the WAN device when `wan_interface` names one (so nothing
//! of ours can leave by another interface). Proxy nodes reach their servers
//! through it too.
//!
//! Neighbours: `forwarder` (sockets to an upstream), `node` (sockets to a
//! proxy server).

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Straight out of the router, with our socket mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    pub mark: u32,
    /// `SO_BINDTODEVICE` to this interface, when set.
    pub device: Option<std::ffi::OsString>,
}

thread_local! {
    static MARK_WARNED: Cell<bool> = const { Cell::new(false) };
}

impl Direct {
    pub fn new(mark: u32, device: Option<&str>) -> Direct {
        Direct {
            mark,
            device: device.map(std::ffi::OsString::from),
        }
    }

    /// The mark, and the device binding if there is one.
    fn prepare<F: AsFd>(&self, fd: &F) -> io::Result<()> {
        self.apply_mark(fd)?;
        if let Some(dev) = &self.device {
            setsockopt(fd, sockopt::BindToDevice, dev).map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("cannot bind to interface {}: {e}", dev.to_string_lossy()),
                )
            })?;
        }
        Ok(())
    }

    /// Sets the mark. Without CAP_NET_ADMIN the kernel refuses; then nothing
    /// of ours is intercepted either (loading the TC program needs the same
    /// capability), so we warn once and go on unmarked.
    fn apply_mark<F: AsFd>(&self, fd: &F) -> io::Result<()> {
        if self.mark == 0 {
            return Ok(());
        }
        match setsockopt(fd, sockopt::Mark, &self.mark) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EPERM) => {
                if !MARK_WARNED.with(|w| w.replace(true)) {
                    log::warn!(
                        "cannot set socket mark {:#x} (needs CAP_NET_ADMIN); upstream traffic goes unmarked",
                        self.mark
                    );
                }
                Ok(())
            }
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// A UDP socket on a fresh random local port, connected to `remote`
    /// (so the kernel drops datagrams from anyone else, and an ICMP
    /// port-unreachable comes back as ECONNREFUSED).
    pub fn udp(&self, remote: SocketAddr) -> io::Result<UdpSocket> {
        UdpSocket::from_std(self.udp_std(remote)?)
    }

    /// The same socket before tokio registers it, for callers that register
    /// it themselves (the UDP forwarder watches only for readability).
    pub fn udp_std(&self, remote: SocketAddr) -> io::Result<std::net::UdpSocket> {
        let local: SocketAddr = match remote {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = std::net::UdpSocket::bind(local)?;
        self.prepare(&sock)?;
        sock.connect(remote)?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    }

    /// A UDP socket on a fresh random local port of `remote`'s family,
    /// not connected (QUIC connects by itself), non-blocking.
    pub fn udp_unconnected(&self, remote: SocketAddr) -> io::Result<std::net::UdpSocket> {
        let local: SocketAddr = match remote {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = std::net::UdpSocket::bind(local)?;
        self.prepare(&sock)?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    }

    /// A TCP connection to `remote`, given up after `timeout`.
    pub async fn tcp(&self, remote: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let sock = match remote {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        self.prepare(&sock)?;
        let stream = tokio::time::timeout(timeout, sock.connect(remote))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
