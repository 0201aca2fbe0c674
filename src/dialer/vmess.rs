//! VMess with the AEAD header (alterId 0, v2ray 4.28+ "VMess AEAD"): asks a
//! VMess server for a stream (command 1, TCP) or a datagram path (command 2,
//! UDP) to one target. Follows the v2fly protocol description
//! (developer/protocols/vmess) and the AEAD header design; the legacy MD5
//! authentication (alterId > 0) is not spoken.
//!
//! Wire format, client to server:
//! - `authid(16) | seal(len u16 BE) (18) | nonce(8) | seal(command header)`,
//!   where authid is AES-128-ECB of `time u64 BE | random 4 | CRC32`, and
//!   both seals are AES-128-GCM (AAD authid) with keys and nonces from the
//!   KDF (nested HMAC-SHA256) of cmdKey = MD5(uuid ++ magic), authid, nonce;
//! - command header: `1 | body IV 16 | body key 16 | V | option 0x01 |
//!   P<<4 | security | 0 | command | port BE | address type | address |
//!   P random bytes | FNV1a-32 of all before` (address type 1 IPv4, 2 a
//!   name with a length byte before it, which the server looks up, 3 IPv6);
//! - body: chunks `len u16 BE | data (+16-byte tag)`, AEAD nonce
//!   `count u16 BE | IV[2..12]`; an empty chunk ends the stream.
//!
//! Server to client: `seal(len u16 BE) | seal(V | option | command |
//! command length | command)` under keys from the response key and IV
//! (SHA-256 of the body key and IV, first 16 bytes), then body chunks as
//! above under the response key and IV. A UDP datagram is one chunk.
//!
//! Neighbours: `node` calls `connect` and `cone` on a stream already
//! connected to the server (TLS on it when the link asks); `link` describes
//! the node (`VmessConfig`).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use aes::cipher::{BlockEncrypt, KeyInit};
use md5::{Digest, Md5};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};

use super::{
    only_target, reply_source, BoxStream, ConePackets, ConeRx, FrameTx, LocalFuture, Target,
};
use crate::config::link::{VmessConfig, VmessSecurity};

/// Appended to the uuid to make the command key.
const CMD_KEY_MAGIC: &[u8] = b"c48619fe-8f02-49e0-b9e9-edf763e17e21";
/// The root key of the KDF's nested HMACs.
const KDF_ROOT: &[u8] = b"VMess AEAD KDF";
/// AEAD tag length (AES-128-GCM and ChaCha20-Poly1305).
const TAG: usize = 16;
/// Plain data per body chunk we send.
const MAX_PAYLOAD: usize = 16 * 1024;
/// The largest datagram one chunk can carry (its length is a u16).
const MAX_DATAGRAM: usize = u16::MAX as usize - TAG;

const COMMAND_TCP: u8 = 1;
const COMMAND_UDP: u8 = 2;
/// Request option: chunked body (no chunk masking, no padding).
const OPTION_CHUNK_STREAM: u8 = 0x01;

/// A stream to `target` through the VMess server at the other end of
/// `stream`. The request header goes out with the first write (or flush);
/// the response header is read and checked before the first data is
/// returned.
pub async fn connect(
    stream: BoxStream,
    config: &VmessConfig,
    target: &Target,
) -> io::Result<BoxStream> {
    let (write, read) = prepare(config, target, COMMAND_TCP)?;
    Ok(Box::new(VmessStream {
        io: stream,
        read,
        pending: 0..0,
        write,
    }))
}

/// A datagram path to `target` (UDP) through the VMess server: each
/// datagram is one body chunk, both ways, so one target only (not full
/// cone). The request header goes out with the first datagram.
pub fn cone(stream: BoxStream, config: &VmessConfig, target: &Target) -> io::Result<ConePackets> {
    let (write, read) = prepare(config, target, COMMAND_UDP)?;
    let (r, w) = tokio::io::split(stream);
    Ok(ConePackets {
        tx: Box::new(VmessTx {
            io: w,
            write,
            target: target.clone(),
        }),
        rx: Box::new(VmessRx {
            io: r,
            read,
            from: reply_source(target),
        }),
        full_cone: false,
    })
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn crypto_failed() -> io::Error {
    io::Error::other("vmess: cipher setup failed")
}

/// Builds the sealed request (waiting in the write side's buffer) and the
/// state of both directions.
fn prepare(
    config: &VmessConfig,
    target: &Target,
    command: u8,
) -> io::Result<(WriteSide, ReadSide)> {
    let mut body_key = [0u8; 16];
    let mut body_iv = [0u8; 16];
    let mut extra = [0u8; 2];
    random(&mut body_key);
    random(&mut body_iv);
    random(&mut extra);
    let auth_v = extra[0];
    let padding = usize::from(extra[1] & 0x0f);

    let header = command_header(
        &CommandFields {
            body_key: &body_key,
            body_iv: &body_iv,
            auth_v,
            security: config.security,
            command,
            target,
        },
        padding,
    )?;
    let cmd_key = cmd_key(&config.uuid);
    let mut buf = Vec::with_capacity(16 + 18 + 8 + header.len() + TAG);
    seal_request_header(&cmd_key, &header, now(), &mut buf)?;

    let resp_key = sha256_16(&body_key);
    let resp_iv = sha256_16(&body_iv);
    let write = WriteSide {
        body: BodyCipher::new(config.security, &body_key, body_iv)?,
        buf,
        sent: 0,
        has_data: false,
        started: false,
        ended: false,
    };
    let read = ReadSide {
        resp: ResponseKeys {
            key: resp_key,
            iv: resp_iv,
            auth_v,
        },
        body: BodyCipher::new(config.security, &resp_key, resp_iv)?,
        step: Step::RespLen,
        buf: vec![0u8; 18],
        filled: 0,
        need: 18,
    };
    Ok((write, read))
}

/// Fills `buf` from the kernel's CSPRNG.
fn random(buf: &mut [u8]) {
    for part in buf.chunks_mut(8) {
        let r = crate::rand::u64().to_ne_bytes();
        part.copy_from_slice(&r[..part.len()]);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn sha256_16(data: &[u8]) -> [u8; 16] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// cmdKey = MD5(uuid ++ magic).
pub(crate) fn cmd_key(uuid: &[u8; 16]) -> [u8; 16] {
    md5(&[uuid, CMD_KEY_MAGIC])
}

/// One level of the KDF's hash tower over the concatenation of `msg`:
/// level 0 is SHA-256, level i is HMAC keyed with `keys[i-1]` whose hash
/// function is level i-1 (block size 64, output 32 at every level).
fn nested_hash(keys: &[&[u8]], msg: &[&[u8]]) -> [u8; 32] {
    let Some((key, inner_keys)) = keys.split_last() else {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for m in msg {
            ctx.update(m);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        return out;
    };
    let mut k0 = [0u8; 64];
    if key.len() > 64 {
        k0[..32].copy_from_slice(&nested_hash(inner_keys, &[key]));
    } else {
        k0[..key.len()].copy_from_slice(key);
    }
    let ipad = k0.map(|b| b ^ 0x36);
    let opad = k0.map(|b| b ^ 0x5c);
    // The message grows by one part per level: at most 1 + 4 parts here.
    let mut parts: [&[u8]; 8] = [&[]; 8];
    debug_assert!(msg.len() < parts.len());
    parts[0] = &ipad;
    let n = msg.len().min(parts.len() - 1);
    parts[1..=n].copy_from_slice(&msg[..n]);
    let inner = nested_hash(inner_keys, &parts[..=n]);
    nested_hash(inner_keys, &[&opad, &inner])
}

/// KDF(key, path...): the nested HMAC tower rooted at "VMess AEAD KDF",
/// one level per path element, over `key`.
pub(crate) fn kdf(key: &[u8], path: &[&[u8]]) -> [u8; 32] {
    let mut keys: [&[u8]; 4] = [KDF_ROOT; 4];
    debug_assert!(path.len() <= 3);
    let n = path.len().min(3);
    keys[1..=n].copy_from_slice(&path[..n]);
    nested_hash(&keys[..=n], &[key])
}

pub(crate) fn kdf16(key: &[u8], path: &[&[u8]]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&kdf(key, path)[..16]);
    out
}

/// CRC-32 (IEEE 802.3, reflected, as zlib).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// FNV-1a, 32 bits.
fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The authid: AES-128-ECB of `time | random 4 | CRC32 of those 12`.
fn auth_id(cmd_key: &[u8; 16], time: u64, rand: [u8; 4]) -> [u8; 16] {
    let mut plain = [0u8; 16];
    plain[..8].copy_from_slice(&time.to_be_bytes());
    plain[8..12].copy_from_slice(&rand);
    let crc = crc32(&plain[..12]);
    plain[12..].copy_from_slice(&crc.to_be_bytes());
    let key = kdf16(cmd_key, &[b"AES Auth ID Encryption"]);
    let mut block = aes::Block::from(plain);
    aes::Aes128::new(&key.into()).encrypt_block(&mut block);
    let mut out = [0u8; 16];
    out.copy_from_slice(&block);
    out
}

fn aead_key(alg: &'static aead::Algorithm, key: &[u8]) -> io::Result<LessSafeKey> {
    UnboundKey::new(alg, key)
        .map(LessSafeKey::new)
        .map_err(|_| crypto_failed())
}

/// Appends AES-128-GCM of `plain` (with its tag) to `out`.
pub(crate) fn gcm_seal(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plain: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let key = aead_key(&aead::AES_128_GCM, key)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| crypto_failed())?;
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut out[start..])
        .map_err(|_| crypto_failed())?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens AES-128-GCM in place; the plain text's length, or `None` if it
/// does not authenticate.
fn gcm_open(key: &[u8], nonce: &[u8], sealed: &mut [u8]) -> io::Result<Option<usize>> {
    let key = aead_key(&aead::AES_128_GCM, key)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| crypto_failed())?;
    Ok(key
        .open_in_place(nonce, Aad::empty(), sealed)
        .ok()
        .map(|p| p.len()))
}

/// What the command header asks for.
struct CommandFields<'a> {
    body_key: &'a [u8; 16],
    body_iv: &'a [u8; 16],
    auth_v: u8,
    security: VmessSecurity,
    command: u8,
    target: &'a Target,
}

/// The plain command header, with `padding` random bytes and its FNV1a.
fn command_header(f: &CommandFields, padding: usize) -> io::Result<Vec<u8>> {
    let security = match f.security {
        VmessSecurity::Aes128Gcm => 3,
        VmessSecurity::Chacha20Poly1305 => 4,
        VmessSecurity::None => 5,
    };
    let mut h = Vec::with_capacity(41 + 2 + 255 + 15 + 4);
    h.push(1);
    h.extend_from_slice(f.body_iv);
    h.extend_from_slice(f.body_key);
    h.push(f.auth_v);
    h.push(OPTION_CHUNK_STREAM);
    // `padding` is below 16 (4 bits).
    h.push(((padding as u8) << 4) | security);
    h.push(0);
    h.push(f.command);
    f.target.put_port_first(&mut h)?;
    let start = h.len();
    h.resize(start + padding, 0);
    random(&mut h[start..]);
    let check = fnv1a32(&h);
    h.extend_from_slice(&check.to_be_bytes());
    Ok(h)
}

/// Appends `authid | seal(len) | nonce | seal(header)` to `out`.
fn seal_request_header(
    cmd_key: &[u8; 16],
    header: &[u8],
    time: u64,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut r = [0u8; 12];
    random(&mut r);
    let id = auth_id(cmd_key, time, [r[0], r[1], r[2], r[3]]);
    let nonce = &r[4..12];
    let len = u16::try_from(header.len()).map_err(|_| invalid("vmess: request header too long"))?;
    out.extend_from_slice(&id);
    let key = kdf16(cmd_key, &[b"VMess Header AEAD Key_Length", &id, nonce]);
    let iv = kdf(cmd_key, &[b"VMess Header AEAD Nonce_Length", &id, nonce]);
    gcm_seal(&key, &iv[..12], &id, &len.to_be_bytes(), out)?;
    out.extend_from_slice(nonce);
    let key = kdf16(cmd_key, &[b"VMess Header AEAD Key", &id, nonce]);
    let iv = kdf(cmd_key, &[b"VMess Header AEAD Nonce", &id, nonce]);
    gcm_seal(&key, &iv[..12], &id, header, out)
}

/// The body's protection in one direction: an AEAD (or none) and its chunk
/// counter.
pub(crate) struct BodyCipher {
    /// `None` for security "none".
    key: Option<LessSafeKey>,
    iv: [u8; 16],
    /// Chunks so far; the nonce carries it as a u16.
    count: u32,
}

impl BodyCipher {
    pub(crate) fn new(
        security: VmessSecurity,
        key: &[u8; 16],
        iv: [u8; 16],
    ) -> io::Result<BodyCipher> {
        let key = match security {
            VmessSecurity::Aes128Gcm => Some(aead_key(&aead::AES_128_GCM, key)?),
            VmessSecurity::Chacha20Poly1305 => {
                let first = md5(&[key]);
                let second = md5(&[&first]);
                let mut full = [0u8; 32];
                full[..16].copy_from_slice(&first);
                full[16..].copy_from_slice(&second);
                Some(aead_key(&aead::CHACHA20_POLY1305, &full)?)
            }
            VmessSecurity::None => None,
        };
        Ok(BodyCipher { key, iv, count: 0 })
    }

    fn overhead(&self) -> usize {
        if self.key.is_some() {
            TAG
        } else {
            0
        }
    }

    fn nonce(&self) -> Nonce {
        let mut n = [0u8; 12];
        n[..2].copy_from_slice(&(self.count as u16).to_be_bytes());
        n[2..].copy_from_slice(&self.iv[2..12]);
        Nonce::assume_unique_for_key(n)
    }

    /// Appends one chunk carrying `data` (empty: the end of the stream).
    pub(crate) fn seal_chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let len = u16::try_from(data.len() + self.overhead())
            .map_err(|_| invalid("vmess: chunk too large"))?;
        out.extend_from_slice(&len.to_be_bytes());
        let start = out.len();
        out.extend_from_slice(data);
        if let Some(key) = &self.key {
            // The nonce holds 16 bits of counter: never reuse one.
            if self.count > u32::from(u16::MAX) {
                return Err(io::Error::other(
                    "vmess: 65536 chunks sent on one connection, the nonces are used up",
                ));
            }
            let tag = key
                .seal_in_place_separate_tag(self.nonce(), Aad::empty(), &mut out[start..])
                .map_err(|_| crypto_failed())?;
            out.extend_from_slice(tag.as_ref());
            self.count += 1;
        }
        Ok(())
    }

    /// Opens one chunk in place; the length of its data.
    fn open_chunk(&mut self, chunk: &mut [u8]) -> io::Result<usize> {
        let Some(key) = &self.key else {
            return Ok(chunk.len());
        };
        let nonce = self.nonce();
        // The server's counter wraps like its u16 nonce field.
        self.count = (self.count + 1) & 0xffff;
        key.open_in_place(nonce, Aad::empty(), chunk)
            .map(|p| p.len())
            .map_err(|_| {
                invalid("vmess: a chunk from the server failed to decrypt (corrupted, or another security?)")
            })
    }
}

/// What opens and checks the response header.
struct ResponseKeys {
    key: [u8; 16],
    iv: [u8; 16],
    /// The byte the server must echo.
    auth_v: u8,
}

impl ResponseKeys {
    /// The length of the response header, from its sealed 18 bytes.
    fn open_len(&self, sealed: &mut [u8]) -> io::Result<usize> {
        let key = kdf16(&self.key, &[b"AEAD Resp Header Len Key"]);
        let iv = kdf(&self.iv, &[b"AEAD Resp Header Len IV"]);
        match gcm_open(&key, &iv[..12], sealed)? {
            Some(2) => Ok(usize::from(u16::from_be_bytes([sealed[0], sealed[1]]))),
            _ => Err(invalid(
                "vmess: the server's response header failed to decrypt (not a VMess AEAD server?)",
            )),
        }
    }

    /// Opens the response header (`V | option | command | length | ...`)
    /// and checks that it answers our request.
    fn check(&self, sealed: &mut [u8]) -> io::Result<()> {
        let key = kdf16(&self.key, &[b"AEAD Resp Header Key"]);
        let iv = kdf(&self.iv, &[b"AEAD Resp Header IV"]);
        let Some(n) = gcm_open(&key, &iv[..12], sealed)? else {
            return Err(invalid(
                "vmess: the server's response header failed to decrypt",
            ));
        };
        if n < 4 || n != 4 + usize::from(sealed[3]) {
            return Err(invalid("vmess: malformed response header"));
        }
        if sealed[0] != self.auth_v {
            return Err(invalid(
                "vmess: the response header does not answer our request (auth byte differs)",
            ));
        }
        Ok(())
    }
}

/// Where the reading side is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The sealed response header length (18 bytes).
    RespLen,
    /// The sealed response header.
    RespHeader,
    /// A chunk's 2-byte length.
    ChunkLen,
    /// A chunk's body.
    Chunk,
    /// The end-of-stream chunk came, or the server closed between chunks.
    Ended,
    /// An earlier error; the stream is unusable.
    Failed,
}

/// The reading direction: response header, then chunks.
struct ReadSide {
    resp: ResponseKeys,
    body: BodyCipher,
    step: Step,
    /// Collects `need` bytes for the current step.
    buf: Vec<u8>,
    filled: usize,
    need: usize,
}

impl ReadSide {
    /// Polls until one whole chunk is open: the range of its data in
    /// `buf` (valid until the next call), or `None` at the end of the
    /// stream.
    fn poll_chunk(
        &mut self,
        io: &mut (dyn AsyncRead + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Range<usize>>>> {
        let r = self.poll_chunk_inner(io, cx);
        if let Poll::Ready(Err(_)) = r {
            self.step = Step::Failed;
        }
        r
    }

    fn expect(&mut self, step: Step, need: usize) {
        self.step = step;
        self.need = need;
        self.filled = 0;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
    }

    fn poll_chunk_inner(
        &mut self,
        io: &mut (dyn AsyncRead + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Range<usize>>>> {
        loop {
            match self.step {
                Step::Ended => return Poll::Ready(Ok(None)),
                Step::Failed => {
                    return Poll::Ready(Err(io::Error::other("vmess: the stream failed earlier")))
                }
                _ => {}
            }
            while self.filled < self.need {
                let mut rb = ReadBuf::new(&mut self.buf[self.filled..self.need]);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(self.eof());
                }
                self.filled += n;
            }
            match self.step {
                Step::RespLen => {
                    let len = self.resp.open_len(&mut self.buf[..18])?;
                    // V, option, command, command length, command (< 256).
                    if !(4..=4 + 255).contains(&len) {
                        return Poll::Ready(Err(invalid(
                            "vmess: the response header has an impossible length",
                        )));
                    }
                    self.expect(Step::RespHeader, len + TAG);
                }
                Step::RespHeader => {
                    self.resp.check(&mut self.buf[..self.need])?;
                    self.expect(Step::ChunkLen, 2);
                }
                Step::ChunkLen => {
                    let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
                    let overhead = self.body.overhead();
                    if len == overhead {
                        self.step = Step::Ended;
                        return Poll::Ready(Ok(None));
                    }
                    if len < overhead {
                        return Poll::Ready(Err(invalid(
                            "vmess: a chunk from the server is shorter than its tag",
                        )));
                    }
                    self.expect(Step::Chunk, len);
                }
                Step::Chunk => {
                    let n = self.body.open_chunk(&mut self.buf[..self.need])?;
                    self.expect(Step::ChunkLen, 2);
                    return Poll::Ready(Ok(Some(0..n)));
                }
                Step::Ended | Step::Failed => {}
            }
        }
    }

    /// The server closed its side where we are.
    fn eof(&mut self) -> io::Result<Option<Range<usize>>> {
        match self.step {
            Step::RespLen | Step::RespHeader => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "vmess: the server closed the connection before answering \
                 (wrong id, or clocks more than 2 minutes apart?)",
            )),
            Step::ChunkLen if self.filled == 0 => {
                self.step = Step::Ended;
                Ok(None)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "vmess: the server closed the connection in the middle of a chunk",
            )),
        }
    }
}

/// The writing direction: the sealed request header, then chunks, through
/// one buffer that holds at most the header and one chunk.
struct WriteSide {
    body: BodyCipher,
    /// Bytes to send: `buf[sent..]`.
    buf: Vec<u8>,
    sent: usize,
    /// `buf` holds a chunk the caller was told is written.
    has_data: bool,
    /// A chunk has been sealed (the header is on its way).
    started: bool,
    /// The end-of-stream chunk has been sealed.
    ended: bool,
}

impl WriteSide {
    /// Sends everything buffered.
    fn poll_drain(
        &mut self,
        io: &mut (dyn AsyncWrite + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        self.has_data = false;
        Poll::Ready(Ok(()))
    }

    /// Buffers one chunk of `data`.
    fn push(&mut self, data: &[u8]) -> io::Result<()> {
        self.body.seal_chunk(data, &mut self.buf)?;
        self.has_data = true;
        self.started = true;
        Ok(())
    }
}

/// The stream `connect` returns.
struct VmessStream {
    io: BoxStream,
    read: ReadSide,
    /// Data of the last opened chunk not yet returned (in `read.buf`).
    pending: Range<usize>,
    write: WriteSide,
}

impl AsyncRead for VmessStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            match ready!(this.read.poll_chunk(&mut this.io, cx))? {
                Some(range) => this.pending = range,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = out.remaining().min(this.pending.len());
        let start = this.pending.start;
        out.put_slice(&this.read.buf[start..start + n]);
        this.pending.start += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for VmessStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write.ended {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "vmess: write after shutdown",
            )));
        }
        if this.write.has_data {
            ready!(this.write.poll_drain(&mut this.io, cx))?;
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(MAX_PAYLOAD);
        this.write.push(&data[..n])?;
        // Start sending now; what the socket does not take yet goes out on
        // the next write or flush.
        if let Poll::Ready(Err(e)) = this.write.poll_drain(&mut this.io, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.write.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write.ended {
            if this.write.started {
                ready!(this.write.poll_drain(&mut this.io, cx))?;
                this.write.push(&[])?;
            }
            this.write.ended = true;
        }
        ready!(this.write.poll_drain(&mut this.io, cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The sending half of `cone`.
struct VmessTx {
    io: WriteHalf<BoxStream>,
    write: WriteSide,
    /// The one target, named in the request.
    target: Target,
}

impl VmessTx {
    /// Writes one datagram to `to` as one chunk, unflushed.
    async fn write(&mut self, datagram: &[u8], to: &Target) -> io::Result<()> {
        only_target("vmess", &self.target, to)?;
        if datagram.is_empty() {
            // An empty chunk would end the path.
            return Err(invalid("vmess: cannot send an empty datagram"));
        }
        if datagram.len() > MAX_DATAGRAM {
            return Err(invalid("vmess: datagram too large for one chunk"));
        }
        // Whatever an interrupted send left goes first.
        poll_fn(|cx| self.write.poll_drain(&mut self.io, cx)).await?;
        self.write.push(datagram)?;
        poll_fn(|cx| self.write.poll_drain(&mut self.io, cx)).await
    }
}

impl FrameTx for VmessTx {
    async fn write_frame(&mut self, datagram: &[u8], to: &Target) -> io::Result<()> {
        self.write(datagram, to).await
    }

    async fn flush_frames(&mut self) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await
    }
}

/// The receiving half of `cone`.
struct VmessRx {
    io: ReadHalf<BoxStream>,
    read: ReadSide,
    /// Where every reply comes from (see `ConeRx`).
    from: SocketAddr,
}

impl ConeRx for VmessRx {
    fn recv_from(&mut self) -> LocalFuture<'_, io::Result<(Vec<u8>, SocketAddr)>> {
        Box::pin(async move {
            match poll_fn(|cx| self.read.poll_chunk(&mut self.io, cx)).await? {
                Some(range) => Ok((self.read.buf[range].to_vec(), self.from)),
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "vmess: the server ended the datagram path",
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const UUID: [u8; 16] = [
        0xb8, 0x31, 0x38, 0x1d, 0x63, 0x24, 0x4d, 0x53, 0xad, 0x4f, 0x8c, 0xda, 0x48, 0xb3, 0x08,
        0x11,
    ];

    // Expected values computed independently with python3's hashlib/hmac:
    //
    //   import hmac, hashlib, uuid
    //   def make(keys):
    //       if not keys: return hashlib.sha256
    //       parent = make(keys[:-1]); k = keys[-1]
    //       return lambda d=b'': hmac.new(k, d, parent)
    //   def kdf(key, *path): return make([b"VMess AEAD KDF", *path])(key).digest()
    //   u = uuid.UUID("b831381d-6324-4d53-ad4f-8cda48b30811").bytes
    //   cmd = hashlib.md5(u + b"c48619fe-8f02-49e0-b9e9-edf763e17e21").digest()
    //
    // (hmac.new with a callable digestmod builds HMAC over that "hash",
    // which is exactly the nesting the VMess KDF does.)
    #[test]
    fn cmd_key_and_kdf_match_python() {
        let cmd = cmd_key(&UUID);
        assert_eq!(hex(&cmd), "b50d916ac0cec067981af8e5f38a758f");
        // kdf(cmd)
        assert_eq!(
            hex(&kdf(&cmd, &[])),
            "1e3858c2acb5e5338a1569aac055c295a0c0e2738b2d941c4bf461cdc363efb4"
        );
        // kdf(cmd, b"AES Auth ID Encryption")
        assert_eq!(
            hex(&kdf(&cmd, &[b"AES Auth ID Encryption"])),
            "1415ba74ca8b3d041a8f583fb4116315c589ae7b6e81765b601aa166c62871f7"
        );
        // kdf(cmd, b"VMess Header AEAD Key_Length", bytes(range(16)), bytes(range(100,108)))
        let id: Vec<u8> = (0..16).collect();
        let nonce: Vec<u8> = (100..108).collect();
        assert_eq!(
            hex(&kdf(&cmd, &[b"VMess Header AEAD Key_Length", &id, &nonce])),
            "92a3fcfc922ede05fa61e093cdccfac3d7a8c838a957ca2ccbf45b364ee3628a"
        );
        // kdf(b"key", b"x"*100): a key longer than the block is hashed
        // with the level below.
        assert_eq!(
            hex(&kdf(b"key", &[&[b'x'; 100]])),
            "28396e100f4e205d3abe0de4b157172a2615333c88f804e29e16c6a6ae2298d6"
        );
    }

    #[test]
    fn crc32_and_fnv1a() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn auth_id_decrypts_to_time_and_crc() {
        use aes::cipher::BlockDecrypt;
        let cmd = cmd_key(&UUID);
        let id = auth_id(&cmd, 1_700_000_000, [1, 2, 3, 4]);
        let key = kdf16(&cmd, &[b"AES Auth ID Encryption"]);
        let mut block = aes::Block::from(id);
        aes::Aes128::new(&key.into()).decrypt_block(&mut block);
        assert_eq!(block[..8], 1_700_000_000u64.to_be_bytes());
        assert_eq!(block[8..12], [1, 2, 3, 4]);
        assert_eq!(block[12..], crc32(&block[..12]).to_be_bytes());
    }

    /// One target per path: another is refused before a byte goes out,
    /// and the path still carries the first.
    #[tokio::test]
    async fn udp_carries_one_target() {
        use super::super::trojan::tests::mock;
        let (stream, writes) = mock(b"");
        let config = VmessConfig {
            uuid: UUID,
            security: VmessSecurity::Aes128Gcm,
        };
        let first = Target::Name("a.example".into(), 443);
        let mut p = cone(stream, &config, &first).unwrap();
        assert!(!p.full_cone);
        let other = Target::Addr("192.0.2.1:443".parse().unwrap());
        let e = p.tx.send_to(b"q", &other).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("vmess"), "{e}");
        assert!(writes.borrow().is_empty());
        p.tx.send_to(b"q", &first).await.unwrap();
        assert!(!writes.borrow().is_empty());
        // The server said nothing: the path ends.
        assert!(p.rx.recv_from().await.is_err());
    }

    #[test]
    fn chunks_round_trip_and_end() {
        for sec in [
            VmessSecurity::Aes128Gcm,
            VmessSecurity::Chacha20Poly1305,
            VmessSecurity::None,
        ] {
            let key = [7u8; 16];
            let iv = [9u8; 16];
            let mut tx = BodyCipher::new(sec, &key, iv).unwrap();
            let mut rx = BodyCipher::new(sec, &key, iv).unwrap();
            let mut wire = Vec::new();
            tx.seal_chunk(b"hello", &mut wire).unwrap();
            tx.seal_chunk(b"world!", &mut wire).unwrap();
            tx.seal_chunk(b"", &mut wire).unwrap();
            let mut at = 0;
            let mut got = Vec::new();
            loop {
                let len = usize::from(u16::from_be_bytes([wire[at], wire[at + 1]]));
                at += 2;
                if len == rx.overhead() {
                    break;
                }
                let n = rx.open_chunk(&mut wire[at..at + len]).unwrap();
                got.extend_from_slice(&wire[at..at + n]);
                at += len;
            }
            assert_eq!(got, b"helloworld!");
            assert_eq!(at + rx.overhead(), wire.len());
        }
    }

    #[test]
    fn command_header_layout() {
        let f = CommandFields {
            body_key: &[2; 16],
            body_iv: &[1; 16],
            auth_v: 0xab,
            security: VmessSecurity::Chacha20Poly1305,
            command: COMMAND_UDP,
            target: &Target::Addr("[2001:db8::1]:53".parse().unwrap()),
        };
        let h = command_header(&f, 5).unwrap();
        assert_eq!(h.len(), 38 + 2 + 1 + 16 + 5 + 4);
        assert_eq!(h[0], 1);
        assert_eq!(h[1..17], [1; 16]);
        assert_eq!(h[17..33], [2; 16]);
        assert_eq!(h[33..38], [0xab, 0x01, 0x54, 0, 2]);
        assert_eq!(h[38..41], [0, 53, 3]);
        let n = h.len();
        assert_eq!(h[n - 4..], fnv1a32(&h[..n - 4]).to_be_bytes());

        let name = Target::Name("target.lab.example".into(), 443);
        let h = command_header(
            &CommandFields {
                target: &name,
                command: COMMAND_TCP,
                ..f
            },
            0,
        )
        .unwrap();
        assert_eq!(h[33..38], [0xab, 0x01, 0x04, 0, 1]);
        assert_eq!(&h[38..h.len() - 4], b"\x01\xbb\x02\x12target.lab.example");
        let n = h.len();
        assert_eq!(h[n - 4..], fnv1a32(&h[..n - 4]).to_be_bytes());

        let long = Target::Name("a".repeat(256), 443);
        let e = command_header(&CommandFields { target: &long, ..f }, 0).unwrap_err();
        assert!(e.to_string().contains("at most 255"), "{e}");
    }
}
