//! VLESS: a stream or a datagram path (not full cone: the frames name no
//! address) to one target through a VLESS server (plain TCP or with TLS, as the caller set it up).
//!
//! Wire format (v2fly/XTLS VLESS, version 0, no flow, no addons):
//!
//! ```text
//! request:  VER(0) UUID(16) ADDONS_LEN(0) CMD PORT(2, big-endian) ATYP ADDR payload...
//!           (CMD 1 TCP, 2 UDP; ATYP 1 IPv4, 2 domain (a length byte, then
//!            the name, which the server looks up), 3 IPv6: port before
//!            address, and other type numbers than SOCKS5)
//! response: VER ADDONS_LEN ADDONS(ADDONS_LEN) payload...
//!           (sent only with the server's first bytes of payload)
//! UDP:      LENGTH(2, big-endian) payload, one datagram each, both ways
//!           (after the request and the response header)
//! ```
//!
//! An unknown UUID makes the server close the connection (or hand it to
//! its fallback): an early close or a wrong version byte becomes an error.
//! The request goes out with the first payload, through `trojan`'s
//! `FirstWrite`.
//!
//! Neighbours: `node` calls `connect` and `cone`; `link` describes the
//! node (`Proto::Vless`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf, ReadHalf};

use super::trojan::{FirstWrite, HeaderFirstTx};
use super::{reply_source, BoxStream, ConePackets, ConeRx, LocalFuture, Target};

const VERSION: u8 = 0;

const CMD_TCP: u8 = 1;
const CMD_UDP: u8 = 2;

/// A stream to `target` through the VLESS server at the other end of
/// `stream`. The request goes out with the first write; the response
/// header is taken off the first bytes read.
pub async fn connect(stream: BoxStream, uuid: &[u8; 16], target: &Target) -> io::Result<BoxStream> {
    let header = request(uuid, CMD_TCP, target)?;
    Ok(Box::new(VlessStream {
        inner: FirstWrite::new(stream, header),
        response: Response::Version,
    }))
}

/// A datagram path to `target` (command UDP) through the VLESS server at
/// the other end of `stream`: one target only (the frames name none), so
/// not full cone. The request goes out with the first datagram.
pub fn cone(stream: BoxStream, uuid: &[u8; 16], target: &Target) -> io::Result<ConePackets> {
    let (reader, writer) = tokio::io::split(stream);
    let buf = request(uuid, CMD_UDP, target)?;
    let only = Some(("vless", target.clone()));
    Ok(ConePackets {
        tx: Box::new(HeaderFirstTx::new(writer, buf, only, udp_frame)),
        rx: Box::new(VlessRx {
            reader,
            response: Response::Version,
            from: reply_source(target),
        }),
        full_cone: false,
    })
}

/// The request header: version, user, no addons, command, target.
fn request(uuid: &[u8; 16], command: u8, target: &Target) -> io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(1 + 16 + 1 + 1 + 2 + 1 + 1 + 255);
    header.push(VERSION);
    header.extend_from_slice(uuid);
    header.push(0);
    header.push(command);
    target.put_port_first(&mut header)?;
    Ok(header)
}

/// How far the server's response header has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Response {
    /// Waiting for the version byte.
    Version,
    /// Waiting for the length of the addons.
    AddonsLen,
    /// Skipping this many more bytes of addons (at least 1).
    Addons(u8),
    /// Header done: what follows is payload.
    Payload,
}

impl Response {
    /// Takes header bytes off the front of `bytes`; returns how many.
    fn take(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut used = 0;
        for &b in bytes {
            *self = match *self {
                Response::Payload => break,
                Response::Version if b == VERSION => Response::AddonsLen,
                Response::Version => {
                    return Err(invalid(format!(
                        "vless: the server answered with version {b}, not {VERSION} \
                         (unknown uuid, and its fallback answered? or not VLESS)"
                    )))
                }
                Response::AddonsLen if b == 0 => Response::Payload,
                Response::AddonsLen => Response::Addons(b),
                Response::Addons(1) => Response::Payload,
                Response::Addons(n) => Response::Addons(n - 1),
            };
            used += 1;
        }
        Ok(used)
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn closed_before_response() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "vless: the server closed the connection before answering (unknown uuid?)",
    )
}

/// A VLESS TCP stream: the request rides on the first write; the response
/// header comes off the first bytes read.
struct VlessStream {
    inner: FirstWrite,
    response: Response,
}

impl AsyncRead for VlessStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Read into the caller's buffer, then move any payload down over
        // the header bytes.
        while this.response != Response::Payload && buf.remaining() > 0 {
            let start = buf.filled().len();
            // A reset, or TLS ending without close_notify, before the
            // response is the same refusal as a plain close.
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf)).map_err(|e| match e.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => {
                    closed_before_response()
                }
                _ => e,
            })?;
            let end = buf.filled().len();
            if end == start {
                return Poll::Ready(Err(closed_before_response()));
            }
            let used = match this.response.take(&buf.filled()[start..]) {
                Ok(used) => used,
                Err(e) => {
                    // An error hands back no bytes.
                    buf.set_filled(start);
                    return Poll::Ready(Err(e));
                }
            };
            buf.filled_mut().copy_within(start + used..end, start);
            buf.set_filled(end - used);
            if end - start > used {
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for VlessStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Appends one UDP frame: the length, the datagram (the target is in the
/// request header).
fn udp_frame(buf: &mut Vec<u8>, _to: &Target, datagram: &[u8]) -> io::Result<()> {
    let len = u16::try_from(datagram.len())
        .map_err(|_| invalid("vless: a datagram over 65535 bytes cannot be framed"))?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(datagram);
    Ok(())
}

struct VlessRx {
    reader: ReadHalf<BoxStream>,
    response: Response,
    /// Where every reply comes from (see `ConeRx`).
    from: SocketAddr,
}

impl ConeRx for VlessRx {
    fn recv_from(&mut self) -> LocalFuture<'_, io::Result<(Vec<u8>, SocketAddr)>> {
        Box::pin(async move {
            while self.response != Response::Payload {
                let b = self
                    .reader
                    .read_u8()
                    .await
                    .map_err(|e| eof_or(e, closed_before_response))?;
                self.response.take(&[b])?;
            }
            let closed = || {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "vless: the server closed the connection",
                )
            };
            let len = self
                .reader
                .read_u16()
                .await
                .map_err(|e| eof_or(e, closed))?;
            let mut payload = vec![0u8; usize::from(len)];
            self.reader
                .read_exact(&mut payload)
                .await
                .map_err(|e| eof_or(e, closed))?;
            Ok((payload, self.from))
        })
    }
}

/// `e`, or the error `eof` makes if `e` is an end of stream.
fn eof_or(e: io::Error, eof: impl Fn() -> io::Error) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    ) {
        eof()
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::super::trojan::tests::mock;
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn target() -> SocketAddr {
        "192.0.2.1:53".parse().unwrap()
    }

    fn to(addr: SocketAddr) -> Target {
        Target::Addr(addr)
    }

    #[tokio::test]
    async fn stream_sends_request_and_strips_response() {
        let uuid = [7; 16];
        // Version, two bytes of addons, then payload; read a byte at a time.
        let (mock, writes) = mock(&[0, 2, 0xaa, 0xbb, b'o', b'k']);
        let mut s = connect(mock, &uuid, &to(target())).await.unwrap();
        s.write_all(b"query").await.unwrap();
        s.flush().await.unwrap();
        let mut want = request(&uuid, CMD_TCP, &to(target())).unwrap();
        want.extend_from_slice(b"query");
        assert_eq!(*writes.borrow(), [want]);
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ok");
    }

    #[tokio::test]
    async fn stream_errors_before_the_response() {
        for (input, says) in [
            (&[0][..], "closed the connection before answering"),
            (&b"HTTP/1.1"[..], "answered with version 72"),
        ] {
            let (mock, _) = mock(input);
            let mut s = connect(mock, &[7; 16], &to(target())).await.unwrap();
            let e = s.read_to_end(&mut Vec::new()).await.unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[tokio::test]
    async fn udp_packets_both_ways_to_one_target() {
        let uuid = [7; 16];
        let (mock, writes) = mock(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 9]);
        let mut p = cone(mock, &uuid, &to(target())).unwrap();
        assert!(!p.full_cone);
        // Another target is refused, before and after the request went out.
        let other = to("192.0.2.2:53".parse().unwrap());
        let e = p.tx.send_to(b"q0", &other).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        p.tx.send_to(b"q1", &to(target())).await.unwrap();
        p.tx.send_to(b"q2", &to(target())).await.unwrap();
        let e = p.tx.send_to(b"q3", &other).await.unwrap_err();
        assert!(e.to_string().contains("one target (192.0.2.1:53)"), "{e}");
        let mut first = request(&uuid, CMD_UDP, &to(target())).unwrap();
        first.extend_from_slice(b"\x00\x02q1");
        assert_eq!(*writes.borrow(), [first, b"\x00\x02q2".to_vec()]);
        assert_eq!(p.rx.recv_from().await.unwrap(), (b"hi".to_vec(), target()));
        assert_eq!(p.rx.recv_from().await.unwrap().0, b"");
        let e = p.rx.recv_from().await.unwrap_err();
        assert!(e.to_string().starts_with("vless: the server closed"), "{e}");
    }

    /// A path to a name: the request names it; replies come from the
    /// unspecified address and the name's port.
    #[tokio::test]
    async fn udp_to_a_name() {
        let (mock, writes) = mock(&[0, 0, 0, 1, b'x']);
        let name = Target::Name("a.example".into(), 443);
        let mut p = cone(mock, &[7; 16], &name).unwrap();
        p.tx.send_to(b"q", &name).await.unwrap();
        assert!(writes.borrow()[0].ends_with(b"\x02\x01\xbb\x02\x09a.example\x00\x01q"));
        let (d, from) = p.rx.recv_from().await.unwrap();
        assert_eq!((d, from), (b"x".to_vec(), "0.0.0.0:443".parse().unwrap()));
    }

    #[test]
    fn request_header_layout() {
        let uuid = [0x11; 16];
        let h = request(&uuid, CMD_UDP, &to(target())).unwrap();
        let mut want = vec![0];
        want.extend_from_slice(&uuid);
        want.extend_from_slice(&[0, 2, 0, 53, 1, 192, 0, 2, 1]);
        assert_eq!(h, want);
        let h = request(&uuid, CMD_TCP, &to("[2001:db8::1]:853".parse().unwrap())).unwrap();
        assert_eq!(h[17..22], [0, 1, 3, 0x55, 3]);
        assert_eq!(h.len(), 22 + 16);
        let name = Target::Name("target.lab.example".into(), 443);
        let h = request(&uuid, CMD_TCP, &name).unwrap();
        assert_eq!(&h[17..], b"\x00\x01\x01\xbb\x02\x12target.lab.example");
        let long = Target::Name("a".repeat(256), 443);
        let e = request(&uuid, CMD_TCP, &long).unwrap_err();
        assert!(e.to_string().contains("at most 255"), "{e}");
    }

    #[test]
    fn response_header_is_taken_across_reads() {
        let mut r = Response::Version;
        assert_eq!(r.take(&[0]).unwrap(), 1);
        assert_eq!(r.take(&[2, 9]).unwrap(), 2);
        assert_eq!(r.take(&[9, b'x', b'y']).unwrap(), 1);
        assert_eq!(r, Response::Payload);
        assert_eq!(r.take(b"more").unwrap(), 0);

        let mut r = Response::Version;
        assert_eq!(r.take(&[0, 0, b'p']).unwrap(), 2);
        assert!(Response::Version.take(b"HTTP/1.1").is_err());
    }
}
