//! SOCKS5 (RFC 1928, user/password RFC 1929): a stream (CONNECT) to a
//! target, or a datagram path (UDP ASSOCIATE) to any, through a SOCKS5
//! server.
//!
//! Wire format, client side:
//! - greeting `05 n methods...` (00 = none, 02 = user/password), answer
//!   `05 method` (FF = none acceptable);
//! - with 02: `01 ulen user plen password`, answer `01 status` (00 = ok);
//! - request `05 cmd 00 atyp addr port` (cmd 01 CONNECT, 03 UDP
//!   ASSOCIATE; atyp 01 IPv4, 04 IPv6, 03 name: a CONNECT to a name has
//!   the server look it up), reply `05 rep 00 atyp addr port` (rep 00 =
//!   ok; for UDP the address is the relay's);
//! - each UDP datagram to and from the relay: `00 00 frag atyp addr port
//!   data` (we never fragment, and drop fragments); ours name a target
//!   (an address, or a name the server looks up), the relay's name their
//!   source (one naming a host is dropped).
//!
//! The UDP association lives as long as its TCP control connection: the
//! receiving half holds it and fails when the server closes it.
//!
//! Neighbours: `node` calls it on a stream already connected to the server;
//! `link` describes the node (`Proto::Socks5`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::{scratch, BoxStream, ConePackets, ConeRx, ConeTx, Direct, LocalFuture, Target};
use crate::config::link::Auth;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASSWORD: u8 = 0x02;
const NONE_ACCEPTABLE: u8 = 0xFF;
const CMD_CONNECT: u8 = 0x01;
const CMD_UDP_ASSOCIATE: u8 = 0x03;
const ATYP_IPV4: u8 = 0x01;
const ATYP_NAME: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// The largest datagram we carry: a DNS message.
const MAX_DATAGRAM: usize = 65535;

fn error(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Asks the server for a TCP connection to `target` (CONNECT); returns the
/// same stream, carrying the target's bytes from now on.
pub async fn connect(
    mut stream: BoxStream,
    auth: Option<&Auth>,
    target: &Target,
) -> io::Result<BoxStream> {
    target.check()?;
    handshake(&mut stream, auth).await?;
    request(&mut stream, CMD_CONNECT, target).await?;
    Ok(stream)
}

/// Asks the server for a UDP relay (UDP ASSOCIATE on `control`) and returns
/// a datagram path to any target through it (full cone: each datagram
/// names its target, each reply its source). `server` is the SOCKS
/// server's address (the relay's when the reply names no address);
/// `direct` makes the UDP socket.
pub async fn associate(
    mut control: BoxStream,
    auth: Option<&Auth>,
    server: SocketAddr,
    direct: &Direct,
) -> io::Result<ConePackets> {
    handshake(&mut control, auth).await?;
    // We do not know our UDP source yet: all zeros (RFC 1928, section 7),
    // in the family of the server.
    let unknown = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let relay = match request(&mut control, CMD_UDP_ASSOCIATE, &Target::Addr(unknown)).await? {
        Bound::Ip(addr) if addr.ip().is_unspecified() => SocketAddr::new(server.ip(), addr.port()),
        Bound::Ip(addr) => addr,
        Bound::Name(name) => {
            return Err(error(format!(
                "socks5: the server's UDP relay is named '{name}', not an IP address"
            )))
        }
    };
    if relay.port() == 0 {
        return Err(error("socks5: the server's UDP relay has port 0"));
    }
    let socket =
        Rc::new(direct.udp(relay).map_err(|e| {
            io::Error::new(e.kind(), format!("socks5: UDP socket to {relay}: {e}"))
        })?);
    Ok(ConePackets {
        tx: Box::new(UdpTx {
            socket: socket.clone(),
        }),
        rx: Box::new(UdpRx { socket, control }),
        full_cone: true,
    })
}

/// Method selection, and user/password authentication if the server asks.
async fn handshake(stream: &mut BoxStream, auth: Option<&Auth>) -> io::Result<()> {
    let greeting: &[u8] = match auth {
        Some(_) => &[VERSION, 2, NO_AUTH, USER_PASSWORD],
        None => &[VERSION, 1, NO_AUTH],
    };
    send(stream, greeting).await?;
    let mut answer = [0u8; 2];
    read(stream, &mut answer).await?;
    if answer[0] != VERSION {
        return Err(error(format!(
            "socks5: the server answered with version {} (not a SOCKS5 server?)",
            answer[0]
        )));
    }
    match (answer[1], auth) {
        (NO_AUTH, _) => Ok(()),
        (USER_PASSWORD, Some(auth)) => user_password(stream, auth).await,
        (NONE_ACCEPTABLE, _) => Err(error(
            "socks5: the server accepts none of our authentication methods (needs a user and password?)",
        )),
        (method, _) => Err(error(format!(
            "socks5: the server chose authentication method {method:#04x}, which we did not offer"
        ))),
    }
}

/// RFC 1929.
async fn user_password(stream: &mut BoxStream, auth: &Auth) -> io::Result<()> {
    let (user, password) = (auth.user.as_bytes(), auth.password.as_bytes());
    if user.is_empty() || user.len() > 255 || password.is_empty() || password.len() > 255 {
        return Err(error(
            "socks5: the user name and password must each be 1 to 255 bytes",
        ));
    }
    let mut msg = Vec::with_capacity(3 + user.len() + password.len());
    msg.extend_from_slice(&[1, user.len() as u8]);
    msg.extend_from_slice(user);
    msg.push(password.len() as u8);
    msg.extend_from_slice(password);
    send(stream, &msg).await?;
    let mut answer = [0u8; 2];
    read(stream, &mut answer).await?;
    if answer[1] != 0 {
        return Err(error("socks5: wrong user name or password"));
    }
    Ok(())
}

/// The address in a reply.
enum Bound {
    Ip(SocketAddr),
    /// A name (its port is of no use without the address).
    Name(String),
}

/// Sends a request and reads the reply up to its end.
async fn request(stream: &mut BoxStream, cmd: u8, target: &Target) -> io::Result<Bound> {
    send(stream, &request_bytes(cmd, target)?).await?;
    let mut head = [0u8; 4];
    read(stream, &mut head).await?;
    if head[0] != VERSION {
        return Err(error(format!(
            "socks5: the server replied with version {} (not a SOCKS5 server?)",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(error(reply_message(head[1])));
    }
    let bound = match head[3] {
        ATYP_IPV4 => {
            let mut a = [0u8; 4 + 2];
            read(stream, &mut a).await?;
            let ip = IpAddr::from([a[0], a[1], a[2], a[3]]);
            Bound::Ip(SocketAddr::new(ip, u16::from_be_bytes([a[4], a[5]])))
        }
        ATYP_IPV6 => {
            let mut a = [0u8; 16 + 2];
            read(stream, &mut a).await?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[16], a[17]]);
            Bound::Ip(SocketAddr::new(IpAddr::from(ip), port))
        }
        ATYP_NAME => {
            let mut len = [0u8; 1];
            read(stream, &mut len).await?;
            let mut a = vec![0u8; usize::from(len[0]) + 2];
            read(stream, &mut a).await?;
            a.truncate(a.len() - 2);
            Bound::Name(String::from_utf8_lossy(&a).into_owned())
        }
        other => {
            return Err(error(format!(
                "socks5: the reply has an unknown address type {other}"
            )))
        }
    };
    Ok(bound)
}

/// RFC 1928, section 6.
fn reply_message(code: u8) -> String {
    let what = match code {
        1 => "general server failure",
        2 => "the server refused the connection (rule set)",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "the target refused the connection",
        6 => "TTL expired",
        7 => "the server does not support this command",
        8 => "the server does not support this address type",
        _ => return format!("socks5: the server failed the request (reply code {code})"),
    };
    format!("socks5: {what}")
}

/// `05 cmd 00 atyp addr port`.
fn request_bytes(cmd: u8, target: &Target) -> io::Result<Vec<u8>> {
    let mut msg = vec![VERSION, cmd, 0];
    target.put_socks(&mut msg)?;
    Ok(msg)
}

async fn send(stream: &mut BoxStream, msg: &[u8]) -> io::Result<()> {
    stream.write_all(msg).await?;
    stream.flush().await
}

async fn read(stream: &mut BoxStream, buf: &mut [u8]) -> io::Result<()> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "socks5: the server closed the connection during the handshake",
        )),
        Err(e) => Err(io::Error::new(e.kind(), format!("socks5: {e}"))),
    }
}

/// Sends datagrams to the relay, each with its target's UDP header.
struct UdpTx {
    socket: Rc<UdpSocket>,
}

impl ConeTx for UdpTx {
    fn send_to<'a>(
        &'a mut self,
        datagram: &'a [u8],
        to: &'a Target,
    ) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if datagram.len() > MAX_DATAGRAM {
                return Err(error("socks5: a datagram longer than 65535 bytes"));
            }
            loop {
                self.socket.writable().await.map_err(relay_error)?;
                // Built anew after a spurious wake: the buffer is shared.
                let sent = scratch::tx(|buf| {
                    buf.extend_from_slice(&[0, 0, 0]);
                    to.put_socks(buf)?;
                    buf.extend_from_slice(datagram);
                    self.socket.try_send(buf).map_err(relay_error)
                });
                match sent {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return other.map(|_| ()),
                }
            }
        })
    }
}

fn relay_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("socks5: UDP relay: {e}"))
}

/// Datagrams from the relay; holds the control connection, whose end is the
/// association's end.
struct UdpRx {
    socket: Rc<UdpSocket>,
    control: BoxStream,
}

impl ConeRx for UdpRx {
    fn recv_from(&mut self) -> LocalFuture<'_, io::Result<(Vec<u8>, SocketAddr)>> {
        Box::pin(async move {
            let mut byte = [0u8; 1];
            loop {
                tokio::select! {
                    r = self.socket.readable() => {
                        r.map_err(relay_error)?;
                        let got = scratch::rx(|buf| {
                            let n = self.socket.try_recv(buf)?;
                            Ok::<_, io::Error>(parse_udp(&buf[..n]).map(|(from, data)| (data.to_vec(), from)))
                        });
                        match got {
                            Ok(Some(reply)) => return Ok(reply),
                            Ok(None) => log::debug!("socks5: dropped a datagram from the relay (a fragment, from a host name, or garbled)"),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(relay_error(e)),
                        }
                    }
                    r = self.control.read(&mut byte) => match r {
                        // The server should send nothing more; ignore it if it does.
                        Ok(n) if n > 0 => {}
                        Ok(_) => return Err(error(
                            "socks5: the server closed the UDP association's control connection",
                        )),
                        Err(e) => return Err(io::Error::new(
                            e.kind(),
                            format!("socks5: the UDP association's control connection: {e}"),
                        )),
                    },
                }
            }
        })
    }
}

/// The source and data of a relayed datagram if it is whole (FRAG 0) and
/// from an address (not a host name).
pub(crate) fn parse_udp(packet: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (&[0, 0, 0, atyp], rest) = packet.split_first_chunk::<4>()? else {
        return None;
    };
    let (ip, rest) = match atyp {
        ATYP_IPV4 => {
            let (a, rest) = rest.split_first_chunk::<4>()?;
            (IpAddr::from(*a), rest)
        }
        ATYP_IPV6 => {
            let (a, rest) = rest.split_first_chunk::<16>()?;
            (IpAddr::from(*a), rest)
        }
        _ => return None,
    };
    let (port, data) = rest.split_first_chunk::<2>()?;
    Some((SocketAddr::new(ip, u16::from_be_bytes(*port)), data))
}

#[cfg(test)]
mod tests {
    use super::super::target::put_socks_addr;
    use super::*;

    #[test]
    fn udp_headers() {
        let target: SocketAddr = "192.0.2.53:53".parse().unwrap();
        let mut h = vec![0, 0, 0];
        put_socks_addr(&mut h, target);
        assert_eq!(h, [0, 0, 0, 1, 192, 0, 2, 53, 0, 53]);
        let mut p = h.clone();
        p.extend_from_slice(b"dns");
        assert_eq!(parse_udp(&p), Some((target, &b"dns"[..])));
        assert_eq!(parse_udp(&h), Some((target, &b""[..])));
        // a fragment, a name, truncated headers, reserved bytes set
        p[2] = 1;
        assert_eq!(parse_udp(&p), None);
        assert_eq!(parse_udp(&h[..9]), None);
        assert_eq!(parse_udp(&[0, 0, 0, 3, 1, b'a', 0, 53]), None);
        assert_eq!(parse_udp(&[0, 1, 0, 1, 192, 0, 2, 53, 0, 53]), None);
        assert_eq!(parse_udp(&[0, 0, 0]), None);
        // IPv6, and a name target written for the relay
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let mut m = vec![0, 0, 0];
        put_socks_addr(&mut m, v6);
        m.push(b'x');
        assert_eq!(parse_udp(&m), Some((v6, &b"x"[..])));
    }

    #[test]
    fn connect_request_to_a_name() {
        let target = Target::Name("target.lab.example".into(), 53);
        let mut want = vec![5, 1, 0, 3, 18];
        want.extend_from_slice(b"target.lab.example");
        want.extend_from_slice(&[0, 53]);
        assert_eq!(request_bytes(CMD_CONNECT, &target).unwrap(), want);
        let v6 = Target::Addr("[2001:db8::1]:443".parse().unwrap());
        let bytes = request_bytes(CMD_CONNECT, &v6).unwrap();
        assert_eq!(bytes[..4], [5, 1, 0, 4]);
        assert_eq!(bytes[20..], [1, 0xbb]);
    }

    /// A scripted server: the whole exchange for a CONNECT to a name.
    #[tokio::test]
    async fn connect_to_a_name_on_the_wire() {
        use tokio::io::duplex;
        let (client, mut server) = duplex(4096);
        let proxy = async move {
            let mut greeting = [0u8; 3];
            server.read_exact(&mut greeting).await.unwrap();
            assert_eq!(greeting, [5, 1, 0]);
            server.write_all(&[5, 0]).await.unwrap();
            let mut req = [0u8; 4 + 1 + 9 + 2];
            server.read_exact(&mut req).await.unwrap();
            server
                .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'h', b'i'])
                .await
                .unwrap();
            req
        };
        let target = Target::Name("a.example".into(), 443);
        let (stream, req) = tokio::join!(connect(Box::new(client), None, &target), proxy);
        assert_eq!(&req, b"\x05\x01\x00\x03\x09a.example\x01\xbb");
        let mut hi = [0u8; 2];
        stream.unwrap().read_exact(&mut hi).await.unwrap();
        assert_eq!(&hi, b"hi");
    }

    /// A name no length byte can announce goes nowhere: refused before a
    /// byte is sent.
    #[tokio::test]
    async fn a_name_over_255_bytes_is_refused() {
        let (client, mut server) = tokio::io::duplex(4096);
        let target = Target::Name("a".repeat(256), 80);
        let e = connect(Box::new(client), None, &target)
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("at most 255"), "{e}");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn reply_codes() {
        assert_eq!(
            reply_message(2),
            "socks5: the server refused the connection (rule set)"
        );
        assert_eq!(reply_message(4), "socks5: host unreachable");
        assert!(reply_message(42).contains("reply code 42"));
    }
}
