//! Shadowsocks AEAD: a stream to one target, or a datagram path to any
//! (full cone), through a Shadowsocks server (the AEAD construction of shadowsocks.org,
//! "AEAD ciphers"; the SIP022 `2022-blake3-*` methods are not supported).
//!
//! Keys: the master key comes from the password by OpenSSL's
//! `EVP_BytesToKey` with MD5 (key length per cipher); each direction of a
//! session picks a random salt as long as the key, and its subkey is
//! HKDF-SHA1(salt, master key, info "ss-subkey").
//!
//! - TCP, each direction: `salt`, then chunks
//!   `[AEAD(2-byte big-endian length) + tag][AEAD(payload) + tag]`, payload
//!   at most 0x3FFF bytes; the nonce is a 12-byte little-endian counter
//!   that starts at zero and goes up after every seal or open. The client's
//!   stream starts with the target (SOCKS5 style: ATYP, address or
//!   length-prefixed name, port), sent here in the same chunk as the first
//!   data; the server looks a name up.
//! - UDP, each datagram: `salt + AEAD(ATYP addr port | payload) + tag`
//!   with a fresh salt and nonce zero; replies carry the address of the
//!   host they come from.
//!
//! Neighbours: `node` calls `connect` and `cone` over a socket already
//! connected to the server; `link` describes the node (`SsConfig`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use md5::{Digest, Md5};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;

use super::{scratch, BoxStream, ConePackets, ConeRx, ConeTx, LocalFuture, Target};
use crate::config::link::{SsConfig, SsMethod};

const TAG_LEN: usize = 16;
const MAX_KEY_LEN: usize = 32;
/// The largest payload of one TCP chunk (the spec's cap).
const MAX_PAYLOAD: usize = 0x3FFF;
/// An encrypted length: 2 bytes and their tag.
const LENGTH_LEN: usize = 2 + TAG_LEN;
/// Room for four of the largest chunks on the wire (and, before them, the
/// salt): one read from the server brings several chunks, and one
/// `poll_read` hands them all over when the caller has room.
const READ_BUF_LEN: usize = 4 * (LENGTH_LEN + MAX_PAYLOAD + TAG_LEN);
/// Chunks sealed by one `poll_write` at most (64 KiB of caller data).
const CHUNKS_PER_WRITE: usize = 4;
/// The largest UDP datagram we send or take.
const MAX_DATAGRAM: usize = 65535;

/// Opens a Shadowsocks stream to `target` over `stream`, which is connected
/// to the server. No bytes go out yet: the salt and the target address
/// leave with the first write (or a flush, if the caller writes nothing).
///
/// Like any buffered writer, the returned stream needs `flush` to be sure
/// everything written has reached the socket.
pub async fn connect(
    stream: BoxStream,
    config: &SsConfig,
    target: &Target,
) -> io::Result<BoxStream> {
    let header = AddrHeader::new(target)?;
    let cipher = Cipher::new(config);
    let mut salt = [0u8; MAX_KEY_LEN];
    let salt = &mut salt[..cipher.key_len()];
    random(salt)?;
    Ok(Box::new(SsStream::new(stream, cipher, salt, header)?))
}

/// A datagram path to any target through the Shadowsocks server `socket`
/// is connected to (the server must have its UDP relay on): each datagram
/// names its target, each reply its source (full cone).
pub fn cone(socket: UdpSocket, config: &SsConfig) -> ConePackets {
    let socket = Rc::new(socket);
    let cipher = Cipher::new(config);
    ConePackets {
        tx: Box::new(DatagramTx {
            socket: socket.clone(),
            cipher: cipher.clone(),
        }),
        rx: Box::new(DatagramRx { socket, cipher }),
        full_cone: true,
    }
}

fn random(out: &mut [u8]) -> io::Result<()> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| io::Error::other("shadowsocks: no random bytes for a salt"))
}

fn decrypt_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "shadowsocks: the server's reply failed to decrypt (wrong password or cipher?)",
    )
}

/// The AEAD algorithm and the master key from the password.
#[derive(Clone)]
pub(crate) struct Cipher {
    alg: &'static aead::Algorithm,
    key: [u8; MAX_KEY_LEN],
}

impl Cipher {
    pub(crate) fn new(config: &SsConfig) -> Cipher {
        let alg = match config.method {
            SsMethod::Aes128Gcm => &aead::AES_128_GCM,
            SsMethod::Aes256Gcm => &aead::AES_256_GCM,
            SsMethod::Chacha20IetfPoly1305 => &aead::CHACHA20_POLY1305,
        };
        let mut key = [0u8; MAX_KEY_LEN];
        evp_bytes_to_key(config.password.as_bytes(), &mut key[..alg.key_len()]);
        Cipher { alg, key }
    }

    /// Key length, and salt length too.
    pub(crate) fn key_len(&self) -> usize {
        self.alg.key_len()
    }

    /// The subkey of the session (or datagram) that starts with `salt`.
    pub(crate) fn session_key(&self, salt: &[u8]) -> io::Result<LessSafeKey> {
        let len = self.key_len();
        let mut subkey = [0u8; MAX_KEY_LEN];
        hkdf_sha1(salt, &self.key[..len], b"ss-subkey", &mut subkey[..len])?;
        let key = UnboundKey::new(self.alg, &subkey[..len])
            .map_err(|_| io::Error::other("shadowsocks: bad subkey length"))?;
        Ok(LessSafeKey::new(key))
    }
}

/// OpenSSL's `EVP_BytesToKey` with MD5, one round, no salt:
/// `D1 = MD5(password)`, `Di = MD5(Di-1 | password)`, key = D1 | D2 | ...
fn evp_bytes_to_key(password: &[u8], out: &mut [u8]) {
    let mut prev = [0u8; 16];
    for (i, part) in out.chunks_mut(16).enumerate() {
        let mut md5 = Md5::new();
        if i > 0 {
            md5.update(prev);
        }
        md5.update(password);
        prev.copy_from_slice(md5.finalize().as_slice());
        part.copy_from_slice(&prev[..part.len()]);
    }
}

/// An HKDF output length for ring.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA1 (RFC 5869) filling `out`.
fn hkdf_sha1(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> io::Result<()> {
    hkdf::Salt::new(hkdf::HKDF_SHA1_FOR_LEGACY_USE_ONLY, salt)
        .extract(ikm)
        .expand(&[info], OkmLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| io::Error::other("shadowsocks: HKDF failed"))
}

/// One direction of a TCP session: its subkey and nonce counter.
struct Session {
    key: LessSafeKey,
    nonce: [u8; 12],
}

impl Session {
    fn new(key: LessSafeKey) -> Session {
        Session {
            key,
            nonce: [0; 12],
        }
    }

    /// The current nonce; the counter (little-endian) goes up.
    fn next_nonce(&mut self) -> Nonce {
        let nonce = Nonce::assume_unique_for_key(self.nonce);
        for byte in self.nonce.iter_mut() {
            *byte = byte.wrapping_add(1);
            if *byte != 0 {
                break;
            }
        }
        nonce
    }

    /// Encrypts `buf` in place; returns the tag.
    fn seal(&mut self, buf: &mut [u8]) -> io::Result<aead::Tag> {
        let nonce = self.next_nonce();
        self.key
            .seal_in_place_separate_tag(nonce, Aad::empty(), buf)
            .map_err(|_| io::Error::other("shadowsocks: encryption failed"))
    }

    /// Decrypts `buf` (ciphertext and tag) in place; returns the plaintext
    /// length.
    fn open(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let nonce = self.next_nonce();
        self.key
            .open_in_place(nonce, Aad::empty(), buf)
            .map(|plain| plain.len())
            .map_err(|_| decrypt_error())
    }
}

/// A target in SOCKS5 form: ATYP (1 IPv4, 3 name, 4 IPv6), address, port.
#[derive(Clone)]
struct AddrHeader(Vec<u8>);

impl AddrHeader {
    /// Fails for a name no length byte can announce, or not a host name.
    fn new(target: &Target) -> io::Result<AddrHeader> {
        let mut bytes = Vec::with_capacity(1 + 1 + 255 + 2);
        target.put_socks(&mut bytes)?;
        Ok(AddrHeader(bytes))
    }

    fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

/// Reads the address at the start of `b`: the address (`None` for a
/// domain name) and the header length.
fn parse_addr(b: &[u8]) -> io::Result<(Option<SocketAddr>, usize)> {
    let short = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "shadowsocks: the address header is cut short",
        )
    };
    let (ip, at) = match b.first() {
        Some(1) => {
            let o: [u8; 4] = b
                .get(1..5)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?;
            (Some(IpAddr::V4(Ipv4Addr::from(o))), 5)
        }
        Some(4) => {
            let o: [u8; 16] = b
                .get(1..17)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?;
            (Some(IpAddr::V6(Ipv6Addr::from(o))), 17)
        }
        Some(3) => {
            let n = usize::from(*b.get(1).ok_or_else(short)?);
            (None, 2 + n)
        }
        Some(t) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shadowsocks: unknown address type {t}"),
            ))
        }
        None => return Err(short()),
    };
    let port = b.get(at..at + 2).ok_or_else(short)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok((ip.map(|ip| SocketAddr::new(ip, port)), at + 2))
}

/// The stream `connect` returns.
struct SsStream {
    inner: BoxStream,
    w: Writer,
    r: Reader,
}

impl SsStream {
    fn new(
        inner: BoxStream,
        cipher: Cipher,
        salt: &[u8],
        header: AddrHeader,
    ) -> io::Result<SsStream> {
        Ok(SsStream {
            inner,
            w: Writer::new(&cipher, salt, header)?,
            r: Reader::new(cipher),
        })
    }

    /// Writes out the sealed bytes waiting in `w.out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.w.sent < self.w.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.w.out[self.w.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "shadowsocks: the connection to the server takes no more bytes",
                )));
            }
            self.w.sent += n;
        }
        self.w.out.clear();
        self.w.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals the target address alone if no data has carried it yet, and
    /// writes out everything sealed.
    fn poll_send_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.w.header.is_some() {
            self.w.seal(&[])?;
        }
        self.poll_drain(cx)
    }
}

/// The sending half of the TCP session.
struct Writer {
    session: Session,
    /// Sealed bytes not yet written (`out[sent..]`); starts with the salt.
    out: Vec<u8>,
    sent: usize,
    /// The target address, until a chunk carries it.
    header: Option<AddrHeader>,
}

impl Writer {
    fn new(cipher: &Cipher, salt: &[u8], header: AddrHeader) -> io::Result<Writer> {
        Ok(Writer {
            session: Session::new(cipher.session_key(salt)?),
            out: salt.to_vec(),
            sent: 0,
            header: Some(header),
        })
    }

    /// Seals up to `CHUNKS_PER_WRITE` chunks of `data` (the first one led by
    /// the target address if it has not gone yet) onto `out`; returns how
    /// many bytes of `data` it took.
    fn seal(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        for _ in 0..CHUNKS_PER_WRITE {
            let header = self.header.take();
            let header = header.as_ref().map_or(&[][..], AddrHeader::as_slice);
            let take = (data.len() - taken).min(MAX_PAYLOAD - header.len());
            let len = header.len() + take;
            if len == 0 {
                break;
            }
            let at = self.out.len();
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
            let tag = self.session.seal(&mut self.out[at..])?;
            self.out.extend_from_slice(tag.as_ref());
            let at = self.out.len();
            self.out.extend_from_slice(header);
            self.out.extend_from_slice(&data[taken..taken + take]);
            let tag = self.session.seal(&mut self.out[at..])?;
            self.out.extend_from_slice(tag.as_ref());
            taken += take;
            if taken == data.len() {
                break;
            }
        }
        Ok(taken)
    }
}

/// What the reader waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    Salt,
    /// An encrypted chunk length and its tag.
    Length,
    /// An encrypted payload of this many bytes and its tag.
    Payload(usize),
    /// The server closed the stream between chunks.
    Eof,
    /// A chunk failed to decrypt; the stream is unusable.
    Failed,
}

/// The receiving half of the TCP session.
struct Reader {
    cipher: Cipher,
    session: Option<Session>,
    state: ReadState,
    /// Bytes from the server (`buf.len()` of them): `buf[start..]` not yet
    /// decrypted; `buf[plain]` decrypted and not yet given to the caller.
    /// No capacity while nothing is in hand.
    buf: Vec<u8>,
    start: usize,
    plain: Range<usize>,
    /// Why the stream failed, kept for the next read when the chunks
    /// before the bad one were handed over first.
    failure: Option<io::Error>,
}

impl Reader {
    fn new(cipher: Cipher) -> Reader {
        Reader {
            cipher,
            session: None,
            state: ReadState::Salt,
            // Taken when a read starts, freed when it waits with nothing.
            buf: Vec::new(),
            start: 0,
            plain: 0..0,
            failure: None,
        }
    }

    /// Frees the buffer while it holds nothing: a stream waiting for the
    /// server keeps no buffer (a thousand idle relays would otherwise hold
    /// up to 64 MiB), like the relay's own.
    fn release_if_empty(&mut self) {
        if self.start == self.buf.len() && self.plain.is_empty() {
            self.buf = Vec::new();
            self.start = 0;
            self.plain = 0..0;
        }
    }

    /// How many undecrypted bytes the current state needs (`None` when
    /// no more will be read).
    fn need(&self) -> Option<usize> {
        match self.state {
            ReadState::Salt => Some(self.cipher.key_len()),
            ReadState::Length => Some(LENGTH_LEN),
            ReadState::Payload(n) => Some(n + TAG_LEN),
            ReadState::Eof | ReadState::Failed => None,
        }
    }

    /// Consumes the `need` bytes at `start` for the current state.
    fn step(&mut self, need: usize) -> io::Result<()> {
        let at = self.start;
        let bytes = &mut self.buf[at..at + need];
        match self.state {
            ReadState::Salt => {
                self.session = Some(Session::new(self.cipher.session_key(bytes)?));
                self.state = ReadState::Length;
            }
            ReadState::Length | ReadState::Payload(_) => {
                let session = self.session.as_mut().ok_or_else(decrypt_error)?;
                let n = match session.open(bytes) {
                    Ok(n) => n,
                    Err(e) => {
                        self.state = ReadState::Failed;
                        return Err(e);
                    }
                };
                if self.state == ReadState::Length {
                    let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                    if len > MAX_PAYLOAD {
                        self.state = ReadState::Failed;
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "shadowsocks: the server sent a {len}-byte chunk (at most 0x3FFF)"
                            ),
                        ));
                    }
                    self.state = ReadState::Payload(len);
                } else {
                    self.plain = at..at + n;
                    self.state = ReadState::Length;
                }
            }
            ReadState::Eof | ReadState::Failed => {}
        }
        self.start += need;
        Ok(())
    }
}

impl AsyncRead for SsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = &mut this.r;
        // Whether `out` got bytes in this call: then the chunks already in
        // hand are handed over too, but the server is not read again.
        let mut gave = false;
        loop {
            if !r.plain.is_empty() {
                let n = r.plain.len().min(out.remaining());
                out.put_slice(&r.buf[r.plain.start..r.plain.start + n]);
                r.plain.start += n;
                gave = true;
                if !r.plain.is_empty() || out.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            let need = match r.need() {
                Some(need) => need,
                None if r.state == ReadState::Failed && !gave => {
                    return Poll::Ready(Err(r.failure.take().unwrap_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "shadowsocks: the stream from the server broke at an earlier chunk",
                        )
                    })))
                }
                None => return Poll::Ready(Ok(())),
            };
            if r.buf.len() - r.start >= need {
                match r.step(need) {
                    Ok(()) => continue,
                    // What was given goes first; the next read fails.
                    Err(e) if gave => {
                        r.state = ReadState::Failed;
                        r.failure = Some(e);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if gave {
                return Poll::Ready(Ok(()));
            }
            // More bytes from the server; first make room for the whole
            // piece (nothing decrypted is pending here).
            if r.buf.capacity() == 0 {
                r.buf = Vec::with_capacity(READ_BUF_LEN);
            }
            if r.buf.capacity() - r.start < need || r.start == r.buf.len() {
                r.buf.drain(..r.start);
                r.start = 0;
                r.plain = 0..0;
            }
            let had = r.buf.len();
            let mut rb = ReadBuf::uninit(r.buf.spare_capacity_mut());
            let got = match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => rb.filled().len(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    r.release_if_empty();
                    return Poll::Pending;
                }
            };
            // SAFETY: the reader initialised the first `got` bytes of the
            // spare capacity (what `ReadBuf::filled` promises).
            unsafe { r.buf.set_len(had + got) };
            if got == 0 {
                // Between chunks (or before any reply) it is a clean end.
                if r.start == r.buf.len() && matches!(r.state, ReadState::Salt | ReadState::Length)
                {
                    r.state = ReadState::Eof;
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "shadowsocks: the server closed the connection in the middle of a chunk",
                )));
            }
        }
    }
}

impl AsyncWrite for SsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Earlier output goes first. While the address waits, `out` holds
        // only the salt, which leaves with the first chunk.
        if this.w.header.is_none() {
            ready!(this.poll_drain(cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = this.w.seal(data)?;
        // The bytes are ours now: what the socket does not take yet stays
        // in `out` for the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_all(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_all(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// `salt | AEAD(ATYP addr port | payload) | tag` onto `out` (cleared
/// first, then reused: no allocation once it has grown).
fn seal_datagram(
    cipher: &Cipher,
    salt: &[u8],
    to: &Target,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    out.extend_from_slice(salt);
    to.put_socks(out)?;
    if out.len() + payload.len() + TAG_LEN > MAX_DATAGRAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("shadowsocks: a {}-byte datagram is too long", payload.len()),
        ));
    }
    out.extend_from_slice(payload);
    let tag = cipher
        .session_key(salt)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut out[salt.len()..],
        )
        .map_err(|_| io::Error::other("shadowsocks: encryption failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Decrypts a datagram in place; returns the address it comes from and
/// where its payload is. A reply naming a host, not an address, is an
/// error (no one could answer from a name).
pub(crate) fn open_datagram(
    cipher: &Cipher,
    datagram: &mut [u8],
) -> io::Result<(SocketAddr, Range<usize>)> {
    let salt_len = cipher.key_len();
    if datagram.len() < salt_len + TAG_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "shadowsocks: a datagram too short for salt and tag",
        ));
    }
    let (salt, body) = datagram.split_at_mut(salt_len);
    let plain = cipher
        .session_key(salt)?
        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), body)
        .map_err(|_| decrypt_error())?;
    match parse_addr(plain)? {
        (Some(from), header_len) => Ok((from, salt_len + header_len..salt_len + plain.len())),
        (None, _) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "shadowsocks: a datagram from a host name, not an address",
        )),
    }
}

/// The sending half of `cone`.
struct DatagramTx {
    socket: Rc<UdpSocket>,
    cipher: Cipher,
}

impl ConeTx for DatagramTx {
    fn send_to<'a>(
        &'a mut self,
        datagram: &'a [u8],
        to: &'a Target,
    ) -> LocalFuture<'a, io::Result<()>> {
        Box::pin(async move {
            loop {
                self.socket.writable().await?;
                // Sealed anew after a spurious wake: the buffer is shared.
                let sent = scratch::tx(|buf| {
                    let mut salt = [0u8; MAX_KEY_LEN];
                    let salt = &mut salt[..self.cipher.key_len()];
                    random(salt)?;
                    seal_datagram(&self.cipher, salt, to, datagram, buf)?;
                    let sent = self.socket.try_send(buf)?;
                    Ok::<bool, io::Error>(sent == buf.len())
                });
                match sent {
                    Ok(true) => return Ok(()),
                    Ok(false) => {
                        return Err(io::Error::other(
                            "shadowsocks: a datagram went out cut short",
                        ))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

/// The receiving half of `cone`.
struct DatagramRx {
    socket: Rc<UdpSocket>,
    cipher: Cipher,
}

impl ConeRx for DatagramRx {
    fn recv_from(&mut self) -> LocalFuture<'_, io::Result<(Vec<u8>, SocketAddr)>> {
        Box::pin(async move {
            loop {
                self.socket.readable().await?;
                let got = scratch::rx(|buf| {
                    let n = self.socket.try_recv(buf)?;
                    Ok::<_, io::Error>(match open_datagram(&self.cipher, &mut buf[..n]) {
                        Ok((from, payload)) => Some((buf[payload].to_vec(), from)),
                        Err(e) => {
                            log::debug!("{e}; datagram dropped");
                            None
                        }
                    })
                });
                match got {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn config(method: SsMethod, password: &str) -> SsConfig {
        SsConfig {
            method,
            password: password.to_string(),
        }
    }

    const METHODS: [SsMethod; 3] = [
        SsMethod::Aes128Gcm,
        SsMethod::Aes256Gcm,
        SsMethod::Chacha20IetfPoly1305,
    ];

    /// Keys printed by `openssl enc -aes-256-cbc -k PASSWORD -md md5
    /// -nosalt -P` (the AES-128 keys are their first 16 bytes).
    #[test]
    fn master_key_is_evp_bytes_to_key_md5() {
        for (password, key) in [
            (
                "foobar",
                "3858F62230AC3C915F300C664312C63F568378529614D22DDB49237D2F60BFDF",
            ),
            (
                "barfoo!",
                "B3ADC47839E047EB228870526DC8FC30B347287FFCA3045DCEA06B3FDF090ACB",
            ),
            (
                "a much longer password, 45 bytes of text here",
                "B94398610118D9AE558DBFBC06EC30D7A311908681068CEC5FF80F61512D0B08",
            ),
        ] {
            let key = hex(key);
            let c = Cipher::new(&config(SsMethod::Aes256Gcm, password));
            assert_eq!(c.key[..], key[..], "{password}");
            let c = Cipher::new(&config(SsMethod::Aes128Gcm, password));
            assert_eq!(c.key_len(), 16);
            assert_eq!(c.key[..16], key[..16], "{password}");
        }
    }

    /// RFC 5869, test case 4 (HKDF-SHA1).
    #[test]
    fn hkdf_sha1_matches_rfc5869() {
        let salt: Vec<u8> = (0..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf_sha1(&salt, &[0x0b; 11], &info, &mut okm).unwrap();
        let want =
            "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896";
        assert_eq!(okm[..], hex(want)[..]);
    }

    /// The first TCP chunk and a datagram for 127.0.0.1:53 + "hello",
    /// password "foobar", salt 00 01 02 ...: bytes computed independently
    /// with Python's `cryptography` (OpenSSL) and hashlib/hmac.
    #[test]
    fn sealed_bytes_match_an_independent_implementation() {
        let vectors = [
            (
                SsMethod::Aes128Gcm,
                "f8424075e0216eed27e65e0fe3d04b430a553e7badda4db70cf14668575e3b6b06c54b2faea17d4b67d9aa3bfc1e",
                "f9316b061987775be3d09b0ea84863ef6160c50404e781fa7f4d70d7",
            ),
            (
                SsMethod::Aes256Gcm,
                "26f0c5edea3c39fa5f3dcd5f0d9760910b63266c70c82c409c1651a08dd8ac8ffc5b3108fc8c14d40a5566a565b3",
                "27834b349ff5d1ea51746a573f82ae143016f0180028508efe64c1c8",
            ),
            (
                SsMethod::Chacha20IetfPoly1305,
                "5d9bfa40e3e8c4f766b44555586ae806ab8aaefdb15c71f9dafb2daaaae21977f4f6d77a94d6f4ee69e79dcd029a",
                "5ce824f542006cc64faa23132fe251b95b9ea3f3450adc905849a455",
            ),
        ];
        let target: SocketAddr = "127.0.0.1:53".parse().unwrap();
        for (method, tcp, udp) in vectors {
            let cipher = Cipher::new(&config(method, "foobar"));
            let salt: Vec<u8> = (0..cipher.key_len() as u8).collect();
            let mut w = Writer::new(&cipher, &salt, header_of(target)).unwrap();
            assert_eq!(w.seal(b"hello").unwrap(), 5);
            assert_eq!(w.out[..salt.len()], salt[..]);
            assert_eq!(w.out[salt.len()..], hex(tcp)[..], "{method:?} tcp");

            let mut out = Vec::new();
            seal_datagram(&cipher, &salt, &target.into(), b"hello", &mut out).unwrap();
            assert_eq!(out[salt.len()..], hex(udp)[..], "{method:?} udp");
            let (from, payload) = open_datagram(&cipher, &mut out).unwrap();
            assert_eq!((from, &out[payload]), (target, &b"hello"[..]));
        }
    }

    /// A client stream and a "server" stream of our own over a small pipe
    /// (so writes go Pending): the server sees the target (a name, in
    /// SOCKS5 form), then the data; the client reads back a reply of many
    /// chunks, a few bytes at a time.
    #[tokio::test]
    async fn stream_round_trip_over_many_chunks() {
        let target = Target::Name("target.lab.example".into(), 853);
        let header = AddrHeader::new(&target).unwrap();
        assert_eq!(header.as_slice(), b"\x03\x12target.lab.example\x03\x55");
        let request: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let reply: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        for method in METHODS {
            let conf = config(method, "round trip");
            let (a, b) = tokio::io::duplex(1000);
            let mut client = connect(Box::new(a), &conf, &target).await.unwrap();
            let salt = [7u8; MAX_KEY_LEN];
            let salt = &salt[..Cipher::new(&conf).key_len()];
            let mut server =
                SsStream::new(Box::new(b), Cipher::new(&conf), salt, header.clone()).unwrap();
            server.w.header = None;

            let client_side = async {
                client.write_all(&request).await.unwrap();
                client.flush().await.unwrap();
                let mut got = Vec::new();
                let mut small = [0u8; 333];
                loop {
                    let n = client.read(&mut small).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&small[..n]);
                }
                got
            };
            let server_side = async {
                let mut got = vec![0u8; header.0.len() + request.len()];
                server.read_exact(&mut got).await.unwrap();
                server.write_all(&reply).await.unwrap();
                server.shutdown().await.unwrap();
                got
            };
            let both = async { tokio::join!(client_side, server_side) };
            let (client_got, server_got) =
                tokio::time::timeout(std::time::Duration::from_secs(10), both)
                    .await
                    .expect("the round trip stalls");
            assert_eq!(&server_got[..header.0.len()], header.as_slice());
            assert!(
                server_got[header.0.len()..] == request[..],
                "{method:?} request"
            );
            assert!(client_got == reply, "{method:?} reply");
        }
    }

    /// The address goes out on flush even when nothing was written.
    #[tokio::test]
    async fn flush_alone_sends_the_address() {
        let target: SocketAddr = "192.0.2.1:53".parse().unwrap();
        let conf = config(SsMethod::Aes128Gcm, "x");
        let (a, b) = tokio::io::duplex(4096);
        let mut client = connect(Box::new(a), &conf, &Target::Addr(target))
            .await
            .unwrap();
        client.flush().await.unwrap();
        let header = header_of(target);
        let mut server = SsStream::new(Box::new(b), Cipher::new(&conf), &[1; 16], header).unwrap();
        let mut got = [0u8; 7];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1, 192, 0, 2, 1, 0, 53]);
    }

    /// A stream waiting for the server holds no read buffer (bench/proxy.sh
    /// measured 18.7 KiB per idle relay with one); one waiting in the
    /// middle of a chunk keeps what it has.
    #[tokio::test]
    async fn a_waiting_stream_holds_no_read_buffer() {
        let conf = config(SsMethod::Aes256Gcm, "idle");
        let wire = server_bytes(&conf, &[b"hello"]);
        let (a, mut b) = tokio::io::duplex(4096);
        let target = header_of("127.0.0.1:1".parse().unwrap());
        let mut client = SsStream::new(Box::new(a), Cipher::new(&conf), &[1; 32], target).unwrap();
        let mut out = [0u8; 64];
        let mut poll_once = |client: &mut SsStream| {
            let mut rb = ReadBuf::new(&mut out);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match Pin::new(client).poll_read(&mut cx, &mut rb) {
                Poll::Ready(r) => Some(r.map(|()| rb.filled().to_vec())),
                Poll::Pending => None,
            }
        };
        assert!(poll_once(&mut client).is_none());
        assert_eq!(client.r.buf.capacity(), 0, "waiting before any byte");
        b.write_all(&wire[..wire.len() - 3]).await.unwrap();
        assert!(poll_once(&mut client).is_none());
        assert!(!client.r.buf.is_empty(), "half a chunk is kept");
        b.write_all(&wire[wire.len() - 3..]).await.unwrap();
        assert_eq!(poll_once(&mut client).unwrap().unwrap(), b"hello");
        assert!(poll_once(&mut client).is_none());
        assert_eq!(client.r.buf.capacity(), 0, "waiting after a chunk");
    }

    /// Chunks that came in one read from the server leave in one read.
    #[tokio::test]
    async fn one_read_hands_over_every_chunk_in_hand() {
        let conf = config(SsMethod::Aes128Gcm, "many");
        let chunks: [&[u8]; 5] = [b"one", b"two", b"three", b"four", b"five"];
        let wire = server_bytes(&conf, &chunks);
        let three = 16
            + chunks[..3]
                .iter()
                .map(|c| LENGTH_LEN + c.len() + TAG_LEN)
                .sum::<usize>();
        let (a, mut b) = tokio::io::duplex(4096);
        b.write_all(&wire[..three]).await.unwrap();
        let target: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut client = connect(Box::new(a), &conf, &target.into()).await.unwrap();
        let mut out = [0u8; 64];
        let n = client.read(&mut out).await.unwrap();
        assert_eq!(&out[..n], b"onetwothree");
        // A caller with less room gets the rest next time.
        b.write_all(&wire[three..]).await.unwrap();
        let n = client.read(&mut out[..6]).await.unwrap();
        assert_eq!(&out[..n], b"fourfi");
        let n = client.read(&mut out).await.unwrap();
        assert_eq!(&out[..n], b"ve");
    }

    /// Sealed server bytes, as a client would receive them.
    fn server_bytes(conf: &SsConfig, chunks: &[&[u8]]) -> Vec<u8> {
        let cipher = Cipher::new(conf);
        let salt = [9u8; MAX_KEY_LEN];
        let salt = &salt[..cipher.key_len()];
        let mut w = Writer::new(&cipher, salt, header_of("127.0.0.1:1".parse().unwrap())).unwrap();
        w.header = None;
        for c in chunks {
            w.seal(c).unwrap();
        }
        w.out
    }

    async fn read_all(conf: &SsConfig, wire: &[u8]) -> io::Result<Vec<u8>> {
        let (a, mut b) = tokio::io::duplex(wire.len() + 1);
        b.write_all(wire).await.unwrap();
        drop(b);
        let target = Target::Addr("127.0.0.1:1".parse().unwrap());
        let mut client = connect(Box::new(a), conf, &target).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.map(|_| got)
    }

    #[tokio::test]
    async fn a_name_over_255_bytes_is_refused() {
        let conf = config(SsMethod::Aes128Gcm, "x");
        let (a, _) = tokio::io::duplex(64);
        let target = Target::Name("a".repeat(256), 443);
        let e = connect(Box::new(a), &conf, &target).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("at most 255"), "{e}");
    }

    #[tokio::test]
    async fn bad_server_bytes_give_errors() {
        let conf = config(SsMethod::Chacha20IetfPoly1305, "right");
        let wire = server_bytes(&conf, &[b"one", b"two"]);
        assert_eq!(read_all(&conf, &wire).await.unwrap(), b"onetwo");
        // Nothing at all, or a close between chunks: a clean end.
        assert_eq!(read_all(&conf, &[]).await.unwrap(), b"");
        let first = 32 + LENGTH_LEN + 3 + TAG_LEN;
        assert_eq!(read_all(&conf, &wire[..first]).await.unwrap(), b"one");
        // Cut inside a chunk.
        let e = read_all(&conf, &wire[..first + 5]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        // A flipped byte in the second chunk, and another password.
        let mut bad = wire.clone();
        bad[first + 3] ^= 1;
        let e = read_all(&conf, &bad).await.unwrap_err();
        assert!(e.to_string().contains("failed to decrypt"), "{e}");
        let e = read_all(&config(conf.method, "wrong"), &wire)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("shadowsocks: the server's reply failed to decrypt"),
            "{e}"
        );
        // A length over the cap.
        let cipher = Cipher::new(&conf);
        let mut over = vec![9u8; 32];
        let mut s = Session::new(cipher.session_key(&over).unwrap());
        let mut len = 0x4000u16.to_be_bytes();
        let tag = s.seal(&mut len).unwrap();
        over.extend_from_slice(&len);
        over.extend_from_slice(tag.as_ref());
        let e = read_all(&conf, &over).await.unwrap_err();
        assert!(e.to_string().contains("16384-byte chunk"), "{e}");
    }

    fn header_of(a: SocketAddr) -> AddrHeader {
        AddrHeader::new(&a.into()).unwrap()
    }

    fn addr(text: &str) -> Target {
        Target::Addr(text.parse().unwrap())
    }

    #[test]
    fn datagrams_name_their_source_and_garbled_ones_are_refused() {
        let target: SocketAddr = "[2001:db8::53]:53".parse().unwrap();
        for method in METHODS {
            let cipher = Cipher::new(&config(method, "pw"));
            let salt = vec![3u8; cipher.key_len()];
            let mut out = Vec::new();
            seal_datagram(&cipher, &salt, &target.into(), b"dns", &mut out).unwrap();
            let mut good = out.clone();
            let (from, payload) = open_datagram(&cipher, &mut good).unwrap();
            assert_eq!((from, &good[payload]), (target, &b"dns"[..]));

            let mut bad = out.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x80;
            assert!(open_datagram(&cipher, &mut bad).is_err());
            assert!(open_datagram(&cipher, &mut out[..10].to_vec()).is_err());

            // A reply naming a host says nothing we could answer from.
            let name = Target::Name("a.example".into(), 53);
            seal_datagram(&cipher, &salt, &name, b"dns", &mut out).unwrap();
            let e = open_datagram(&cipher, &mut out).unwrap_err();
            assert!(e.to_string().contains("host name"), "{e}");
        }
    }

    #[test]
    fn a_datagram_too_long_for_udp_is_refused() {
        let cipher = Cipher::new(&config(SsMethod::Aes128Gcm, "pw"));
        let mut out = Vec::new();
        let to = addr("192.0.2.1:53");
        // 16 salt + 7 header + 16 tag around the payload.
        let fits = vec![0u8; MAX_DATAGRAM - 16 - 7 - TAG_LEN];
        seal_datagram(&cipher, &[1; 16], &to, &fits, &mut out).unwrap();
        assert_eq!(out.len(), MAX_DATAGRAM);
        let over = vec![0u8; fits.len() + 1];
        let e = seal_datagram(&cipher, &[1; 16], &to, &over, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    /// Over real sockets, one path: datagrams to two targets and a name
    /// carry each its own header; replies come back with their sources;
    /// garbage and a reply naming a host are skipped.
    #[tokio::test]
    async fn one_path_to_many_targets() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(server.local_addr().unwrap()).await.unwrap();
        let conf = config(SsMethod::Aes256Gcm, "pw");
        let cipher = Cipher::new(&conf);
        let ConePackets { mut tx, mut rx, .. } = cone(client, &conf);
        let mut buf = [0u8; 2048];
        let targets = [
            addr("192.0.2.53:53"),
            addr("[2001:db8::1]:443"),
            Target::Name("a.example".into(), 443),
        ];
        for t in &targets {
            tx.send_to(b"query", t).await.unwrap();
            let (n, _) = server.recv_from(&mut buf).await.unwrap();
            let salt = cipher.key_len();
            let plain = cipher
                .session_key(&buf[..salt])
                .unwrap()
                .open_in_place(
                    Nonce::assume_unique_for_key([0; 12]),
                    Aad::empty(),
                    &mut buf[salt..n],
                )
                .unwrap()
                .to_vec();
            let mut want = Vec::new();
            t.put_socks(&mut want).unwrap();
            want.extend_from_slice(b"query");
            assert_eq!(plain, want);
        }
        let to_client = client_addr(&server, &mut tx).await;
        let mut out = Vec::new();
        server.send_to(&[0u8; 80], to_client).await.unwrap();
        seal_datagram(&cipher, &[5; 32], &targets[2], b"named", &mut out).unwrap();
        server.send_to(&out, to_client).await.unwrap();
        for (i, t) in targets[..2].iter().enumerate() {
            seal_datagram(&cipher, &[6; 32], t, &[i as u8], &mut out).unwrap();
            server.send_to(&out, to_client).await.unwrap();
        }
        let (d, from) = rx.recv_from().await.unwrap();
        assert_eq!((d, Target::Addr(from)), (vec![0], targets[0].clone()));
        let (d, from) = rx.recv_from().await.unwrap();
        assert_eq!((d, Target::Addr(from)), (vec![1], targets[1].clone()));
    }

    /// The client's address as the server sees it (one more datagram).
    async fn client_addr(server: &UdpSocket, tx: &mut Box<dyn ConeTx>) -> SocketAddr {
        tx.send_to(b"hello", &addr("192.0.2.1:1")).await.unwrap();
        let mut buf = [0u8; 2048];
        server.recv_from(&mut buf).await.unwrap().1
    }

    #[test]
    fn nonce_counts_up_little_endian() {
        let cipher = Cipher::new(&config(SsMethod::Aes128Gcm, "pw"));
        let mut s = Session::new(cipher.session_key(&[0; 16]).unwrap());
        s.nonce = [0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let _ = s.next_nonce();
        assert_eq!(s.nonce, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
