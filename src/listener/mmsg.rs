//! Batched datagram I/O: `recvmmsg` fills up to `BATCH` datagrams with one
//! system call, `sendmmsg` sends up to `BATCH` replies with one. This is what
//! lets a cache hit cost less than one `recvfrom` + one `sendto`.
//!
//! All the unsafe code of batched datagram I/O is here: the kernel
//! structures point into buffers owned by `RecvBatch`/`SendBatch` (or, for
//! `send_connected`, borrowed for the call), and the pointers are set right
//! before each call so they never dangle.
//!
//! Neighbours: `listener::udp` (queries in, answers out) and
//! `forwarder::udp` (queries to an upstream, its answers back).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Room for one datagram. Larger datagrams arrive cut short and are dropped.
pub const SLOT: usize = 4096;
/// The first bytes of every datagram land in a dense area of `BATCH` heads;
/// only the bytes of a longer one spill into its own slot. Memory that is
/// never written costs nothing, so a batch of ordinary DNS messages touches
/// four pages instead of one page per datagram.
const HEAD: usize = 512;

/// Room for the control messages of one datagram (an original destination
/// address is 16 or 28 bytes plus its header).
const CONTROL: usize = 64;

/// An IPv4 or IPv6 socket address as the kernel reads and writes it: the
/// room of a `sockaddr_in6`, a quarter of a `sockaddr_storage`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union SockAddrIn {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl SockAddrIn {
    fn zeroed() -> SockAddrIn {
        // SAFETY: all-zero bytes are a valid sockaddr_in6 (family AF_UNSPEC).
        unsafe { mem::zeroed() }
    }
}

/// Receive buffers for one `recvmmsg`.
pub struct RecvBatch {
    /// `BATCH` heads of `HEAD` bytes, back to back.
    heads: Vec<u8>,
    /// `BATCH` slots of `SLOT` bytes, allocated but never initialised by us:
    /// a datagram longer than `HEAD` has its remaining bytes written at
    /// offset `HEAD` of its slot by the kernel, and `get` copies its head in
    /// front of them. Only bytes the kernel or `get` wrote are ever read.
    tails: Vec<u8>,
    addrs: Vec<SockAddrIn>,
    iovs: Vec<[libc::iovec; 2]>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control-message buffers, when the socket reports original
    /// destinations (transparent listeners); u64 for cmsghdr alignment.
    control: Vec<[u64; CONTROL / 8]>,
}

impl RecvBatch {
    /// A batch that also receives control messages (for
    /// `IP_RECVORIGDSTADDR`/`IPV6_RECVORIGDSTADDR` sockets).
    pub fn with_control(control: bool) -> RecvBatch {
        let empty_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        RecvBatch {
            control: if control {
                vec![[0; CONTROL / 8]; BATCH]
            } else {
                Vec::new()
            },
            heads: vec![0; BATCH * HEAD],
            tails: Vec::with_capacity(BATCH * SLOT),
            addrs: vec![SockAddrIn::zeroed(); BATCH],
            iovs: vec![[empty_iov; 2]; BATCH],
            // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
            hdrs: vec![unsafe { mem::zeroed() }; BATCH],
        }
    }

    /// Reads up to `BATCH` datagrams without blocking; `WouldBlock` when
    /// there are none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let tails = self.tails.as_mut_ptr();
        for i in 0..BATCH {
            self.iovs[i] = [
                libc::iovec {
                    iov_base: self.heads[i * HEAD..].as_mut_ptr().cast(),
                    iov_len: HEAD,
                },
                libc::iovec {
                    // SAFETY: within the `BATCH * SLOT` bytes reserved above.
                    iov_base: unsafe { tails.add(i * SLOT + HEAD) }.cast(),
                    iov_len: SLOT - HEAD,
                },
            ];
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut SockAddrIn).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<SockAddrIn>() as libc::socklen_t;
            h.msg_hdr.msg_iov = self.iovs[i].as_mut_ptr();
            h.msg_hdr.msg_iovlen = 2;
            match self.control.get_mut(i) {
                Some(c) => {
                    h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = CONTROL as _;
                }
                None => {
                    h.msg_hdr.msg_control = std::ptr::null_mut();
                    h.msg_hdr.msg_controllen = 0;
                }
            }
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at buffers of the stated sizes owned by
        // `self`, which outlives the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The i-th datagram of the last `recv`: its bytes and sender, or `None`
    /// if it did not fit a slot or came from an unknown address family.
    pub fn get(&mut self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (h.msg_len as usize).min(SLOT);
        let from = from_sockaddr(&self.addrs[i])?;
        Some((self.bytes(i, len), from))
    }

    /// The i-th datagram of the last `recv` if it was longer than a slot:
    /// the `SLOT` bytes that fit (a forwarder can still read which query
    /// it answers, and ask again another way).
    pub fn cut_short(&mut self, i: usize) -> Option<&[u8]> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC == 0 {
            return None;
        }
        Some(self.bytes(i, SLOT))
    }

    /// The first `len` (at most `SLOT`) bytes of the i-th datagram.
    fn bytes(&mut self, i: usize, len: usize) -> &[u8] {
        let head = &self.heads[i * HEAD..(i + 1) * HEAD];
        if len <= HEAD {
            return &head[..len];
        }
        // SAFETY: the kernel wrote bytes HEAD..len of slot i (the second
        // iovec); the copy writes bytes 0..HEAD, so all `len` bytes are
        // initialised, within the reserved capacity, and borrowed from
        // `self` mutably for as long as the slice lives.
        unsafe {
            let slot = self.tails.as_mut_ptr().add(i * SLOT);
            std::ptr::copy_nonoverlapping(head.as_ptr(), slot, HEAD);
            std::slice::from_raw_parts(slot, len)
        }
    }
}

impl RecvBatch {
    /// The original destination of the i-th datagram of the last `recv`
    /// (from an `IP_ORIGDSTADDR`/`IPV6_ORIGDSTADDR` control message).
    pub fn orig_dst(&self, i: usize) -> Option<SocketAddr> {
        let h = &self.hdrs[i].msg_hdr;
        if h.msg_control.is_null() {
            return None;
        }
        // SAFETY: the kernel filled `msg_control` up to `msg_controllen`;
        // the CMSG_* macros stay within that and the header is ours.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                let data = libc::CMSG_DATA(c);
                if (level == libc::SOL_IP && ty == libc::IP_ORIGDSTADDR)
                    || (level == libc::SOL_IPV6 && ty == libc::IPV6_ORIGDSTADDR)
                {
                    let mut addr = SockAddrIn::zeroed();
                    let len = ((*c).cmsg_len as usize)
                        .saturating_sub(data.offset_from(c.cast::<u8>()) as usize)
                        .min(mem::size_of::<SockAddrIn>());
                    std::ptr::copy_nonoverlapping(data, (&mut addr as *mut SockAddrIn).cast(), len);
                    return from_sockaddr(&addr);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }
}

/// Replies waiting for `sendmmsg`, sent in order.
pub struct SendBatch {
    arena: Vec<u8>,
    items: Vec<(usize, usize, SocketAddr)>,
    /// How many of `items` are out already.
    sent: usize,
    addrs: Vec<SockAddrIn>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// A batch of at most `capacity` replies (at most 1024, the kernel's
    /// limit for one `sendmmsg`).
    pub fn with_capacity(capacity: usize) -> SendBatch {
        let capacity = capacity.min(1024);
        SendBatch {
            arena: Vec::with_capacity(capacity * 256),
            items: Vec::with_capacity(capacity),
            sent: 0,
            addrs: vec![SockAddrIn::zeroed(); capacity],
            // SAFETY: all-zero bytes are a valid iovec and mmsghdr.
            iovs: vec![unsafe { mem::zeroed() }; capacity],
            hdrs: vec![unsafe { mem::zeroed() }; capacity],
        }
    }

    /// Queues a reply; `false` if the batch is full.
    pub fn push(&mut self, reply: &[u8], to: SocketAddr) -> bool {
        if self.items.len() >= self.hdrs.len() {
            return false;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(reply);
        self.items.push((start, reply.len(), to));
        true
    }

    /// Whether every queued reply is out (then the batch is emptied).
    pub fn done(&mut self) -> bool {
        if self.sent < self.items.len() {
            return false;
        }
        self.arena.clear();
        self.items.clear();
        self.sent = 0;
        true
    }

    /// Gives up on the next reply (its destination cannot be reached).
    pub fn skip_one(&mut self) -> Option<SocketAddr> {
        let to = self.items.get(self.sent).map(|i| i.2);
        self.sent += 1;
        to
    }

    /// Sends what is still queued without blocking; returns how many went
    /// out (`WouldBlock` if the socket buffer is full).
    pub fn send(&mut self, fd: RawFd) -> io::Result<usize> {
        let items = &self.items[self.sent..];
        for (i, &(start, len, to)) in items.iter().enumerate() {
            let namelen = to_sockaddr(to, &mut self.addrs[i]);
            self.iovs[i] = libc::iovec {
                iov_base: self.arena[start..].as_mut_ptr().cast(),
                iov_len: len,
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut SockAddrIn).cast();
            h.msg_hdr.msg_namelen = namelen;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at `self.arena` and `self.addrs`,
        // which outlive the call; `items.len()` is at most the capacity.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                items.len() as libc::c_uint,
                libc::MSG_DONTWAIT as _,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.sent += n as usize;
        Ok(n as usize)
    }
}

/// Sends datagrams on a connected socket with one `sendmmsg` (at most
/// `BATCH` of them); returns how many went out (`WouldBlock` if none could).
pub fn send_connected(fd: RawFd, datagrams: &[&[u8]]) -> io::Result<usize> {
    let n = datagrams.len().min(BATCH);
    // SAFETY: all-zero iovec and mmsghdr are valid (null pointers, zero
    // lengths); they are filled in below before the call.
    let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: datagrams[i].as_ptr() as *mut libc::c_void,
            iov_len: datagrams[i].len(),
        };
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the headers point at `iovs` and at the callers' buffers, which
    // outlive the call; the kernel only reads them.
    let sent = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as _,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// The address in `a`, if its family is IPv4 or IPv6.
pub fn from_sockaddr(a: &SockAddrIn) -> Option<SocketAddr> {
    // SAFETY: both members start with the family field; the family says
    // which member the kernel (or `to_sockaddr`) wrote.
    unsafe {
        match i32::from(a.v4.sin_family) {
            libc::AF_INET => {
                let a = &a.v4;
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = &a.v6;
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Writes `addr` into `out`; returns the length the kernel is to read.
pub fn to_sockaddr(addr: SocketAddr, out: &mut SockAddrIn) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            out.v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            out.v6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_round_trip() {
        for a in ["192.0.2.1:53", "[2001:db8::5]:5353"] {
            let a: SocketAddr = a.parse().unwrap();
            let mut s = SockAddrIn::zeroed();
            to_sockaddr(a, &mut s);
            assert_eq!(from_sockaddr(&s), Some(a));
        }
    }

    #[test]
    fn batches_go_through_a_real_socket() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = SendBatch::with_capacity(8);
        for i in 0..5u8 {
            assert!(out.push(&[i; 3], b.local_addr().unwrap()));
        }
        assert!(!out.done());
        assert_eq!(out.send(a.as_raw_fd()).unwrap(), 5);
        assert!(out.done());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut inb = RecvBatch::with_control(false);
        assert_eq!(inb.recv(b.as_raw_fd()).unwrap(), 5);
        for i in 0..5 {
            let (data, from) = inb.get(i).unwrap();
            assert_eq!(data, &[i as u8; 3]);
            assert_eq!(from, a.local_addr().unwrap());
        }
        assert_eq!(
            inb.recv(b.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn long_datagrams_come_whole_and_oversized_ones_are_refused() {
        // Around the head size, the largest that fits, and one too large;
        // over IPv6, so the longer address form goes through as well.
        let a = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let b = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let sizes = [1, HEAD - 1, HEAD, HEAD + 1, 3000, SLOT, SLOT + 1, 7];
        let datagram =
            |i: usize, n: usize| -> Vec<u8> { (0..n).map(|k| (k * 7 + i * 13) as u8).collect() };
        let mut out = SendBatch::with_capacity(sizes.len());
        for (i, &n) in sizes.iter().enumerate() {
            assert!(out.push(&datagram(i, n), b.local_addr().unwrap()));
        }
        assert_eq!(out.send(a.as_raw_fd()).unwrap(), sizes.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut inb = RecvBatch::with_control(false);
        assert_eq!(inb.recv(b.as_raw_fd()).unwrap(), sizes.len());
        for (i, &n) in sizes.iter().enumerate() {
            match inb.get(i) {
                Some((data, from)) => {
                    assert!(n <= SLOT, "{n} bytes should have been refused");
                    assert_eq!(data, &datagram(i, n)[..], "datagram {i} of {n} bytes");
                    assert_eq!(from, a.local_addr().unwrap());
                }
                None => assert!(n > SLOT, "{n} bytes were refused"),
            }
        }
        // Asked again, a long datagram reads the same.
        assert_eq!(inb.get(4).unwrap().0, &datagram(4, 3000)[..]);
    }
}
