//! Trojan: a stream to one target, or a datagram path to any (full cone),
//! through a trojan server, on a stream the caller has already put TLS on.
//!
//! Wire format (trojan-gfw protocol document):
//!
//! ```text
//! request:  hex(SHA224(password)) CRLF CMD ATYP DST.ADDR DST.PORT CRLF payload...
//!           (56 lower-case hex digits; CMD 1 CONNECT, 3 UDP ASSOCIATE;
//!            ATYP 1 IPv4, 3 domain, 4 IPv6, as in SOCKS5; port big-endian)
//! UDP:      ATYP DST.ADDR DST.PORT LENGTH(2, big-endian) CRLF payload,
//!           one frame per datagram, both ways, after the request
//! ```
//!
//! The server never answers the request: it either relays, or (wrong
//! password, or not trojan at all) hands the whole connection to its
//! fallback web server. So a wrong password shows up only as an early close
//! or as bytes that are not trojan frames; both become errors here.
//!
//! The request goes out together with the first payload, in one TLS record,
//! through `FirstWrite` (which `vless` uses too). Besides saving a packet,
//! this keeps the request whole: trojan-gfw parses only what its first read
//! returns (one TLS record), and takes a request cut in two for a stranger.
//!
//! Neighbours: `node` calls `connect` and `cone`; `link` describes the
//! node (`Proto::Trojan`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

use super::{only_target, BoxStream, ConePackets, ConeRx, FrameTx, LocalFuture, Target};

const CMD_CONNECT: u8 = 1;
const CMD_UDP_ASSOCIATE: u8 = 3;

const ATYP_IPV4: u8 = 1;
const ATYP_DOMAIN: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// A stream to `target` through the trojan server at the other end of
/// `stream` (TLS already on it). The request is sent with the first write.
pub async fn connect(stream: BoxStream, password: &str, target: &Target) -> io::Result<BoxStream> {
    let header = request(password, CMD_CONNECT, target)?;
    Ok(Box::new(FirstWrite::new(stream, header)))
}

/// A datagram path to any target (UDP ASSOCIATE, full cone: each frame
/// names its target or source) through the trojan server at the other end
/// of `stream`. The request (naming `first`) is sent with the first
/// datagram.
pub fn cone(stream: BoxStream, password: &str, first: &Target) -> io::Result<ConePackets> {
    let (reader, writer) = tokio::io::split(stream);
    let buf = request(password, CMD_UDP_ASSOCIATE, first)?;
    Ok(ConePackets {
        tx: Box::new(HeaderFirstTx::new(writer, buf, None, udp_frame)),
        rx: Box::new(TrojanRx { reader }),
        full_cone: true,
    })
}

/// The request header: password hash, command, target.
fn request(password: &str, command: u8, target: &Target) -> io::Result<Vec<u8>> {
    let mut header = Vec::with_capacity(56 + 2 + 1 + 1 + 1 + 255 + 2 + 2);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for byte in sha224(password.as_bytes()) {
        header.push(HEX[usize::from(byte >> 4)]);
        header.push(HEX[usize::from(byte & 0xf)]);
    }
    header.extend_from_slice(b"\r\n");
    header.push(command);
    target.put_socks(&mut header)?;
    header.extend_from_slice(b"\r\n");
    Ok(header)
}

/// Appends one UDP frame: the target, the length, CRLF, the datagram.
fn udp_frame(buf: &mut Vec<u8>, to: &Target, datagram: &[u8]) -> io::Result<()> {
    let len = u16::try_from(datagram.len())
        .map_err(|_| invalid("trojan: a datagram over 65535 bytes does not fit a UDP frame"))?;
    to.put_socks(buf)?;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(datagram);
    Ok(())
}

/// The sending half of UDP inside a stream whose request header goes out
/// with the first datagram (Trojan, and VLESS): `frame` appends one
/// datagram's frame.
pub(super) struct HeaderFirstTx {
    writer: WriteHalf<BoxStream>,
    /// The protocol's name and the one target of a path whose frames name
    /// none (VLESS); None: each frame names its own (Trojan).
    only: Option<(&'static str, Target)>,
    /// The request header, then each frame being sent.
    buf: Vec<u8>,
    /// How much of `buf` is the request header still to send (0 once sent).
    header_len: usize,
    frame: Framer,
}

/// Appends one datagram's frame to `to`.
pub(super) type Framer = fn(&mut Vec<u8>, &Target, &[u8]) -> io::Result<()>;

impl HeaderFirstTx {
    pub(super) fn new(
        writer: WriteHalf<BoxStream>,
        header: Vec<u8>,
        only: Option<(&'static str, Target)>,
        frame: Framer,
    ) -> HeaderFirstTx {
        HeaderFirstTx {
            writer,
            only,
            header_len: header.len(),
            buf: header,
            frame,
        }
    }

    /// Writes one frame (after the header, the first time), unflushed.
    async fn write(&mut self, datagram: &[u8], to: &Target) -> io::Result<()> {
        if let Some((proto, only)) = &self.only {
            only_target(proto, only, to)?;
        }
        self.buf.truncate(self.header_len);
        (self.frame)(&mut self.buf, to, datagram)?;
        self.writer.write_all(&self.buf).await?;
        self.header_len = 0;
        Ok(())
    }
}

impl FrameTx for HeaderFirstTx {
    async fn write_frame(&mut self, datagram: &[u8], to: &Target) -> io::Result<()> {
        self.write(datagram, to).await
    }

    async fn flush_frames(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }
}

struct TrojanRx {
    reader: ReadHalf<BoxStream>,
}

impl ConeRx for TrojanRx {
    fn recv_from(&mut self) -> LocalFuture<'_, io::Result<(Vec<u8>, SocketAddr)>> {
        Box::pin(async move {
            loop {
                match read_frame(&mut self.reader).await? {
                    (Some(from), payload) => return Ok((payload, from)),
                    (None, _) => log::debug!("trojan: dropped a datagram from a host name"),
                }
            }
        })
    }
}

/// One UDP frame: its source (`None` for a domain name) and its payload.
async fn read_frame(r: &mut ReadHalf<BoxStream>) -> io::Result<(Option<SocketAddr>, Vec<u8>)> {
    let atyp = r.read_u8().await.map_err(closed)?;
    let ip = match atyp {
        ATYP_IPV4 => {
            let mut a = [0u8; 4];
            r.read_exact(&mut a).await.map_err(closed)?;
            Some(IpAddr::from(a))
        }
        ATYP_IPV6 => {
            let mut a = [0u8; 16];
            r.read_exact(&mut a).await.map_err(closed)?;
            Some(IpAddr::from(a))
        }
        ATYP_DOMAIN => {
            let mut name = [0u8; 255];
            let len = usize::from(r.read_u8().await.map_err(closed)?);
            r.read_exact(&mut name[..len]).await.map_err(closed)?;
            None
        }
        other => {
            return Err(invalid(format!(
                "trojan: the server sent address type {other:#04x} in a UDP frame \
                 (wrong password? then the server's fallback answers)"
            )))
        }
    };
    let port = r.read_u16().await.map_err(closed)?;
    let len = r.read_u16().await.map_err(closed)?;
    let mut crlf = [0u8; 2];
    r.read_exact(&mut crlf).await.map_err(closed)?;
    if crlf != *b"\r\n" {
        return Err(invalid(
            "trojan: a UDP frame from the server lacks its CRLF",
        ));
    }
    let mut payload = vec![0u8; usize::from(len)];
    r.read_exact(&mut payload).await.map_err(closed)?;
    Ok((ip.map(|ip| SocketAddr::new(ip, port)), payload))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// An end of stream where a frame was due.
fn closed(e: io::Error) -> io::Error {
    if matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    ) {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "trojan: the server closed the connection (wrong password?)",
        )
    } else {
        e
    }
}

/// A stream that sends a request header in front of the first bytes
/// written to it, so both leave in one TLS record and one TCP segment. A
/// read or flush before any write sends the header alone.
pub(super) struct FirstWrite {
    inner: BoxStream,
    out: Out,
}

/// Where the header is.
enum Out {
    /// Not sent: it waits for the first payload.
    Header(Vec<u8>),
    /// Being written (with the first payload, if any): `done` bytes are out.
    Sending { buf: Vec<u8>, done: usize },
    /// Written and flushed: everything goes straight through.
    Open,
}

/// At most this much of the first write joins the header.
const FIRST_PAYLOAD_MAX: usize = 16 * 1024;

impl FirstWrite {
    pub(super) fn new(inner: BoxStream, header: Vec<u8>) -> FirstWrite {
        FirstWrite {
            inner,
            out: Out::Header(header),
        }
    }

    /// Writes and flushes the header (and first payload) if not done yet.
    fn poll_header(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.out {
                Out::Open => return Poll::Ready(Ok(())),
                Out::Header(buf) => {
                    let buf = std::mem::take(buf);
                    self.out = Out::Sending { buf, done: 0 };
                }
                Out::Sending { buf, done } => {
                    while *done < buf.len() {
                        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[*done..]))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        *done += n;
                    }
                    ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
                    self.out = Out::Open;
                }
            }
        }
    }
}

impl AsyncWrite for FirstWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Out::Header(buf) = &mut this.out {
            let n = data.len().min(FIRST_PAYLOAD_MAX);
            buf.extend_from_slice(&data[..n]);
            // Taken: what cannot go out now goes on the next write or flush.
            return match this.poll_header(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(n)),
            };
        }
        ready!(this.poll_header(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_header(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_header(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for FirstWrite {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The server says nothing before it has the request.
        ready!(this.poll_header(cx))?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// SHA-224 (FIPS 180-4: SHA-256 with its own initial hash value, the
/// output cut to 224 bits). ring 0.17 has SHA-256 but no SHA-224, and
/// cannot start SHA-256 from other initial values.
fn sha224(data: &[u8]) -> [u8; 28] {
    let mut h: [u32; 8] = [
        0xc105_9ed8,
        0x367c_d507,
        0x3070_dd17,
        0xf70e_5939,
        0xffc0_0b31,
        0x6858_1511,
        0x64f9_8fa7,
        0xbefa_4fa4,
    ];
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        sha256_block(&mut h, block);
    }
    // Padding: 0x80, zeros, the length in bits as 64 bits big-endian.
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    let bits = (data.len() as u64).wrapping_mul(8);
    tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    for block in tail[..end].chunks_exact(64) {
        sha256_block(&mut h, block);
    }
    let mut out = [0u8; 28];
    for (o, word) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The SHA-256 constants: the first 32 bits of the fractional parts of the
/// cube roots of the first 64 primes.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The SHA-256 compression function on one 64-byte block.
fn sha256_block(h: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 64];
    for (wi, b) in w.iter_mut().zip(block.chunks_exact(4)) {
        *wi = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    for i in 16..64 {
        let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
        let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16]
            .wrapping_add(s0)
            .wrapping_add(w[i - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = *h;
    for (k, wi) in K.iter().zip(w) {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = hh
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(*k)
            .wrapping_add(wi);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        hh = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (x, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
        *x = x.wrapping_add(v);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::target::put_socks_addr;
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A fake connection to a server: reads hand out `input` one byte at a
    /// time (the worst split there is); each write is recorded on its own.
    struct Mock {
        input: Vec<u8>,
        pos: usize,
        writes: Writes,
    }

    /// Every write made to a `Mock`, one entry each.
    pub(in crate::dialer) type Writes = Rc<RefCell<Vec<Vec<u8>>>>;

    /// A `Mock` connection reading `input`, and its record of writes.
    pub(in crate::dialer) fn mock(input: &[u8]) -> (BoxStream, Writes) {
        let writes = Writes::default();
        let mock = Mock {
            input: input.to_vec(),
            pos: 0,
            writes: writes.clone(),
        };
        (Box::new(mock), writes)
    }

    impl AsyncRead for Mock {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(&b) = self.input.get(self.pos) {
                buf.put_slice(&[b]);
                self.pos += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Mock {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.borrow_mut().push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn target() -> SocketAddr {
        "192.0.2.1:53".parse().unwrap()
    }

    #[tokio::test]
    async fn request_rides_on_the_first_write() {
        let (mock, writes) = mock(b"reply");
        let mut s = connect(mock, "pw", &target().into()).await.unwrap();
        s.write_all(b"\x00\x05query").await.unwrap();
        s.write_all(b"more").await.unwrap();
        s.flush().await.unwrap();
        let mut want = request("pw", CMD_CONNECT, &target().into()).unwrap();
        want.extend_from_slice(b"\x00\x05query");
        assert_eq!(*writes.borrow(), [want, b"more".to_vec()]);
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"reply");
    }

    #[tokio::test]
    async fn a_read_first_sends_the_request_alone() {
        let (mock, writes) = mock(b"hello");
        let mut s = connect(mock, "pw", &target().into()).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        assert_eq!(
            *writes.borrow(),
            [request("pw", CMD_CONNECT, &target().into()).unwrap()]
        );
    }

    /// A UDP frame as the server sends it.
    fn frame(from: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_socks_addr(&mut f, from);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(b"\r\n");
        f.extend_from_slice(payload);
        f
    }

    /// The server's frames: from a stranger, from a host name (skipped),
    /// IPv4-mapped, from the target.
    fn server_frames() -> Vec<u8> {
        let mut input = frame("192.0.2.9:53".parse().unwrap(), b"stranger");
        input.extend_from_slice(&[
            ATYP_DOMAIN,
            3,
            b'a',
            b'.',
            b'b',
            0,
            53,
            0,
            1,
            b'\r',
            b'\n',
            b'd',
        ]);
        input.extend(frame("[::ffff:192.0.2.1]:53".parse().unwrap(), b"mapped"));
        input.extend(frame(target(), b"answer"));
        input
    }

    #[tokio::test]
    async fn udp_frames_to_and_from_many() {
        let (mock, writes) = mock(&server_frames());
        let mut p = cone(mock, "pw", &target().into()).unwrap();
        assert!(p.full_cone);
        let other: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let name = Target::Name("a.example".into(), 443);
        p.tx.send_to(b"q1", &target().into()).await.unwrap();
        p.tx.send_to(b"q2", &other.into()).await.unwrap();
        p.tx.send_to(b"q3", &name).await.unwrap();
        let mut first = request("pw", CMD_UDP_ASSOCIATE, &target().into()).unwrap();
        first.extend(frame(target(), b"q1"));
        let mut named = vec![ATYP_DOMAIN, 9];
        named.extend_from_slice(b"a.example\x01\xbb\x00\x02\r\nq3");
        assert_eq!(*writes.borrow(), [first, frame(other, b"q2"), named]);
        // Every source comes back; a host name is skipped.
        let got = p.rx.recv_from().await.unwrap();
        assert_eq!(got, (b"stranger".to_vec(), "192.0.2.9:53".parse().unwrap()));
        let got = p.rx.recv_from().await.unwrap();
        assert_eq!(got.0, b"mapped");
        assert_eq!(got.1.ip().to_canonical(), target().ip());
        assert_eq!(
            p.rx.recv_from().await.unwrap(),
            (b"answer".to_vec(), target())
        );
        let e = p.rx.recv_from().await.unwrap_err();
        assert!(
            e.to_string().starts_with("trojan: the server closed"),
            "{e}"
        );
    }

    /// The fixed-target path over the cone one: frames from elsewhere are
    /// dropped, IPv4-mapped IPv6 is the target.
    #[tokio::test]
    async fn fixed_target_frames() {
        let (mock, _) = mock(&server_frames());
        let mut p = cone(mock, "pw", &target().into())
            .unwrap()
            .to_target(target());
        p.tx.send(b"q1").await.unwrap();
        assert_eq!(p.rx.recv().await.unwrap(), b"mapped");
        assert_eq!(p.rx.recv().await.unwrap(), b"answer");
        assert!(p.rx.recv().await.is_err());
    }

    #[tokio::test]
    async fn udp_garbage_is_an_error() {
        for (input, says) in [
            (&b"HTTP/1.1 400 Bad Request\r\n"[..], "address type 0x48"),
            (&frame(target(), b"x")[..9], "closed the connection"),
            (
                &[1, 192, 0, 2, 1, 0, 53, 0, 1, b'\n', b'\r', b'x'][..],
                "lacks its CRLF",
            ),
        ] {
            let (mock, _) = mock(input);
            let mut p = cone(mock, "pw", &target().into()).unwrap();
            let e = p.rx.recv_from().await.unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha224_nist_vectors() {
        // FIPS 180-4 examples (NIST CSRC "SHA224.pdf").
        assert_eq!(
            hex(&sha224(b"abc")),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
        assert_eq!(
            hex(&sha224(b"")),
            "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"
        );
        assert_eq!(
            hex(&sha224(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "75388b16512776cc5dba5da1fd890150b0c6455cb4f58b1952522525"
        );
    }

    #[test]
    fn sha224_padding_edges() {
        // Lengths around the block and padding boundaries (Python hashlib).
        let cases = [
            (
                55,
                "fb0bd626a70c28541dfa781bb5cc4d7d7f56622a58f01a0b1ddd646f",
            ),
            (
                56,
                "d40854fc9caf172067136f2e29e1380b14626bf6f0dd06779f820dcd",
            ),
            (
                64,
                "a88cd5cde6d6fe9136a4e58b49167461ea95d388ca2bdb7afdc3cbf4",
            ),
            (
                119,
                "e000e6709d26667b631faa7fc1bd404eb4774003c5fb4f51a0184875",
            ),
            (
                1000,
                "4e8f0ce90b64661a2b5e84be6d93a7d9b76871062f1814433d04a03d",
            ),
        ];
        for (len, want) in cases {
            assert_eq!(hex(&sha224(&vec![b'a'; len])), want, "{len} bytes");
        }
    }

    #[test]
    fn request_header_layout() {
        let h = request("pw", CMD_CONNECT, &target().into()).unwrap();
        assert_eq!(h.len(), 56 + 2 + 1 + 7 + 2);
        assert_eq!(&h[..56], hex(&sha224(b"pw")).as_bytes());
        assert_eq!(&h[56..], b"\r\n\x01\x01\xc0\x00\x02\x01\x00\x35\r\n");
        let v6 = "[2001:db8::1]:53".parse::<SocketAddr>().unwrap().into();
        let h = request("pw", CMD_UDP_ASSOCIATE, &v6).unwrap();
        assert_eq!(h[58..60], [3, 4]);
        assert_eq!(h.len(), 56 + 2 + 1 + 19 + 2);
        let name = Target::Name("target.lab.example".into(), 443);
        let h = request("pw", CMD_CONNECT, &name).unwrap();
        assert_eq!(&h[..56], hex(&sha224(b"pw")).as_bytes());
        assert_eq!(&h[56..], b"\r\n\x01\x03\x12target.lab.example\x01\xbb\r\n");
        let long = Target::Name("a".repeat(256), 443);
        let e = request("pw", CMD_CONNECT, &long).unwrap_err();
        assert!(e.to_string().contains("at most 255"), "{e}");
    }
}
