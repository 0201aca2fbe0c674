//! Policy routing for handed-over packets, over rtnetlink.
//!
//! The TC program marks each packet it hands to our listener; these two
//! entries (per address family) make the kernel deliver such packets to this
//! host even though their destination is another host's address:
//!
//! ```text
//! ip rule add fwmark MARK/MARK lookup TABLE priority PRIO
//! ip route add local default dev lo table TABLE
//! ```
//!
//! Written with raw netlink messages (no `ip` binary needed on the router).
//! Adding is idempotent (an entry left by a crashed run is taken as is) and
//! so is removing.
//!
//! Neighbours: `ebpf` (installs them at start and removes them at stop).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

/// The fwmark the TC program puts on handed-over packets.
pub const TPROXY_MARK: u32 = 0x0800_0000;
/// The routing table holding the local default route.
pub const TABLE: u32 = 2023;
/// Priority of the fwmark rule (before the main table at 32766).
pub const RULE_PRIORITY: u32 = 2023;

const NLMSG_ERROR: u16 = 2;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWRULE: u16 = 32;
const RTM_DELRULE: u16 = 33;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FR_ACT_TO_TBL: u8 = 1;
const RTA_OIF: u16 = 4;
const RTA_TABLE: u16 = 15;
const RT_TABLE_UNSPEC: u8 = 0;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_HOST: u8 = 254;
const RTN_LOCAL: u8 = 2;

/// One netlink request under construction.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(ty: u16, flags: u16, header: &[u8]) -> Request {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
        buf.extend_from_slice(header);
        Request { buf }
    }

    fn attr_u32(mut self, ty: u16, v: u32) -> Request {
        self.buf.extend_from_slice(&8u16.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Sends one request and returns the kernel's answer (0 or -errno).
fn talk(msg: &[u8]) -> io::Result<i32> {
    let fd: OwnedFd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    sendto(
        fd.as_raw_fd(),
        msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = [0u8; 4096];
    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink answer",
        ));
    }
    Ok(i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]))
}

fn family_byte(v6: bool) -> u8 {
    if v6 {
        libc::AF_INET6 as u8
    } else {
        libc::AF_INET as u8
    }
}

fn rule(ty: u16, flags: u16, v6: bool) -> Vec<u8> {
    // struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2,
    // action, flags (u32).
    let hdr = [
        family_byte(v6),
        0,
        0,
        0,
        RT_TABLE_UNSPEC,
        0,
        0,
        FR_ACT_TO_TBL,
        0,
        0,
        0,
        0,
    ];
    Request::new(ty, flags, &hdr)
        .attr_u32(FRA_FWMARK, TPROXY_MARK)
        .attr_u32(FRA_FWMASK, TPROXY_MARK)
        .attr_u32(FRA_TABLE, TABLE)
        .attr_u32(FRA_PRIORITY, RULE_PRIORITY)
        .finish()
}

fn route(ty: u16, flags: u16, v6: bool, lo: u32) -> Vec<u8> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
    // type, flags (u32).
    let hdr = [
        family_byte(v6),
        0,
        0,
        0,
        RT_TABLE_UNSPEC,
        RTPROT_BOOT,
        RT_SCOPE_HOST,
        RTN_LOCAL,
        0,
        0,
        0,
        0,
    ];
    Request::new(ty, flags, &hdr)
        .attr_u32(RTA_TABLE, TABLE)
        .attr_u32(RTA_OIF, lo)
        .finish()
}

fn loopback_index() -> io::Result<u32> {
    nix::net::if_::if_nametoindex("lo").map_err(io::Error::from)
}

fn check(what: &str, code: i32, ok_also: i32) -> io::Result<()> {
    if code == 0 || code == -ok_also {
        Ok(())
    } else {
        let e = io::Error::from_raw_os_error(-code);
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// Installs the rule and route for IPv4 and IPv6. An IPv6 failure on a
/// kernel built without IPv6 is reported but not fatal.
pub fn install() -> io::Result<()> {
    let lo = loopback_index()?;
    check(
        "add ipv4 fwmark rule",
        talk(&rule(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, false))?,
        libc::EEXIST,
    )?;
    check(
        "add ipv4 local route",
        talk(&route(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_REPLACE,
            false,
            lo,
        ))?,
        0,
    )?;
    let v6 = check(
        "add ipv6 fwmark rule",
        talk(&rule(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, true))?,
        libc::EEXIST,
    )
    .and_then(|()| {
        check(
            "add ipv6 local route",
            talk(&route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, true, lo))?,
            0,
        )
    });
    if let Err(e) = v6 {
        log::warn!("IPv6 interception unavailable: {e}");
    }
    Ok(())
}

/// Removes what `install` added; missing entries are fine.
pub fn remove() {
    let lo = loopback_index().unwrap_or(1);
    for v6 in [false, true] {
        // A rule may have been added twice by hand; remove every copy.
        for _ in 0..8 {
            match talk(&rule(RTM_DELRULE, 0, v6)) {
                Ok(0) => continue,
                _ => break,
            }
        }
        let _ = talk(&route(RTM_DELROUTE, 0, v6, lo));
    }
}
