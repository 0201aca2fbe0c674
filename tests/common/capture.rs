//! Watching what reaches a DNS server on loopback: a packet socket
//! (`AF_PACKET`) on `lo` sees every IPv4 datagram there, as tcpdump would;
//! the DNS queries sent to one UDP port are kept with their source port
//! and their raw bytes. Needs root (CAP_NET_RAW); tests run as root.
//!
//! Other tests run at the same time on loopback: only datagrams to the
//! watched port (a free port of this test's server) are kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One query seen on its way to the watched port.
#[derive(Debug, Clone)]
pub struct Seen {
    pub src_port: u16,
    /// The DNS message as sent.
    pub dns: Vec<u8>,
}

impl Seen {
    /// The question name in wire form, as sent (letter case kept).
    pub fn qname(&self) -> &[u8] {
        let mut at = 12;
        while let Some(&len) = self.dns.get(at) {
            at += 1 + usize::from(len);
            if len == 0 || len > 63 {
                break;
            }
        }
        &self.dns[12..at.min(self.dns.len())]
    }
}

/// A running capture; `stop` ends it and hands over what it saw.
pub struct Capture {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    /// Starts watching UDP datagrams to 127.0.0.1:`port` on `lo`; `None`
    /// (the test then says it skips) without the right to open a packet
    /// socket.
    pub fn start(port: u16) -> Option<Capture> {
        // SAFETY: plain socket calls on a descriptor this function owns.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM,
                i32::from((libc::ETH_P_IP as u16).to_be()),
            )
        };
        if fd < 0 {
            eprintln!(
                "SKIPPED: no packet socket: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        let name = std::ffi::CString::new("lo").unwrap();
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: zeroed sockaddr_ll is valid; the fields are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        sll.sll_ifindex = index as i32;
        let size: libc::c_int = 32 << 20;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: the pointers and lengths describe the values above.
        unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                4,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: zeroed sockaddr_ll is valid for recvfrom to fill.
                    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                    // SAFETY: the buffer and address are ours, sizes given.
                    let n = unsafe {
                        libc::recvfrom(
                            fd,
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            0,
                            (&mut from as *mut libc::sockaddr_ll).cast(),
                            &mut len,
                        )
                    };
                    if n <= 0 {
                        continue;
                    }
                    // Loopback shows each datagram leaving and arriving:
                    // keep the arrival only.
                    if from.sll_pkttype == libc::PACKET_OUTGOING {
                        continue;
                    }
                    if let Some(s) = parse(&buf[..n as usize], port) {
                        seen.lock().unwrap().push(s);
                    }
                }
                // SAFETY: the descriptor is ours and closed once.
                unsafe { libc::close(fd) };
            })
        };
        Some(Capture {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// Stops watching (after a moment for the last datagrams to be read)
    /// and returns what was seen, in order.
    pub fn stop(mut self) -> Vec<Seen> {
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IPv4 UDP datagram to 127.0.0.1:`port` carrying a DNS query.
fn parse(ip: &[u8], port: u16) -> Option<Seen> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 || ip[16..20] != [127, 0, 0, 1] {
        return None;
    }
    let udp = &ip[usize::from(ip[0] & 0x0f) * 4..];
    if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    let dns = &udp[8..];
    // Queries only (QR clear).
    if dns.len() < 12 || dns[2] & 0x80 != 0 {
        return None;
    }
    Some(Seen {
        src_port: u16::from_be_bytes([udp[0], udp[1]]),
        dns: dns.to_vec(),
    })
}
