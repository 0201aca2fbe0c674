//! Sniffing: learn the domain a LAN flow is for from its first bytes, when
//! its destination address alone does not say it (a client may connect to an
//! address it did not learn through dae's DNS).
//!
//! Pure functions from bytes to a domain, no I/O: `tls` reads the
//! ClientHello's server_name, `http` the HTTP/1.x `Host` header, `quic`
//! decrypts a QUIC Initial packet and hands its ClientHello to `tls`.
//! Every read is bounds-checked; bad input gives `NotThis`, never a panic.
//!
//! A caller feeds what it has: for TCP, the growing prefix of the stream
//! (`sniff_stream`, again after each read, stopping at `STREAM_PREFIX_MAX`
//! bytes); for UDP, each datagram to one `QuicSniffer` per flow. `NeedMore`
//! says the bytes so far are a valid start and the answer lies further on.
//!
//! Neighbours: the relays (src/relay, to come) peek the bytes, feed them here
//! and decide the flow's route again with the domain found.

pub mod http;
pub mod quic;
pub mod tls;

pub use quic::QuicSniffer;

/// What the first bytes of a flow say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// The flow names this host: lowercase, a valid host name, never an
    /// address literal.
    Domain(String),
    /// A valid start of a protocol we read; the name lies further on.
    NeedMore,
    /// Not a protocol we read, malformed, or it carries no host name: route
    /// by address.
    NotThis,
}

/// The most a TCP relay need peek: a ClientHello with post-quantum key
/// shares is about 1.3 to 2 KB; a hello spanning several records, or a long
/// HTTP request head, fits well within this.
pub const STREAM_PREFIX_MAX: usize = 16 * 1024;

/// Sniffs the first bytes of a TCP stream: TLS, then HTTP/1.x. Past
/// `STREAM_PREFIX_MAX` bytes a `NeedMore` becomes `NotThis`.
pub fn sniff_stream(prefix: &[u8]) -> Sniffed {
    let found = match tls::sniff(prefix) {
        Sniffed::NotThis => http::sniff(prefix),
        other => other,
    };
    match found {
        Sniffed::NeedMore if prefix.len() >= STREAM_PREFIX_MAX => Sniffed::NotThis,
        other => other,
    }
}

/// `name` as a lowercase host name, or None when it is not one: 1 to 253
/// bytes (one trailing dot allowed and dropped), labels of 1 to 63 letters,
/// digits, `-` or `_`, and a last label that is not all digits (so no IPv4
/// literal passes as a name).
pub(crate) fn host_name(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut last = &name[..0];
    for label in name.split(|&b| b == b'.') {
        let ok = |&b: &u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if label.is_empty() || label.len() > 63 || !label.iter().all(ok) {
            return None;
        }
        last = label;
    }
    if last.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // All ASCII by now.
    Some(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// A bounds-checked reader over a byte slice; every read is `None` past
/// the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Option<usize> {
        let b = self.bytes(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Bytes behind a one-byte length.
    pub(crate) fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.bytes(n.into())
    }

    /// Bytes behind a two-byte length.
    pub(crate) fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.bytes(n.into())
    }

    /// A QUIC variable-length integer (RFC 9000 section 16).
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let first = *self.buf.first()?;
        let len = 1usize << (first >> 6);
        let b = self.bytes(len)?;
        let mut v = u64::from(first & 0x3f);
        for &byte in &b[1..] {
            v = v << 8 | u64::from(byte);
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked_and_lowercased() {
        assert_eq!(
            host_name(b"Www.Example.COM").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host_name(b"example.com.").as_deref(), Some("example.com"));
        assert_eq!(
            host_name(b"_srv.a-b.example").as_deref(),
            Some("_srv.a-b.example")
        );
        assert_eq!(host_name(b"localhost").as_deref(), Some("localhost"));
        for bad in [
            &b""[..],
            b".",
            b"a..b",
            b".a",
            b"a b",
            b"a\0b",
            b"a\r\nb",
            b"ex\xc3\xa9mple.com",
            b"192.0.2.1",
            b"1.2.3",
            b"2001:db8::1",
            b"[2001:db8::1]",
            b"a/b",
        ] {
            assert_eq!(host_name(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let label = "a".repeat(63);
        assert!(host_name(label.as_bytes()).is_some());
        assert!(host_name(format!("{label}a").as_bytes()).is_none());
        // 4 labels of 63 and the dots: 255 bytes, over the limit; 253 fits.
        let long = [label.as_str(); 4].join(".");
        assert!(host_name(long.as_bytes()).is_none());
        assert!(host_name(&long.as_bytes()[2..]).is_some());
    }

    #[test]
    fn varints_of_every_length() {
        // RFC 9000 appendix A.1's examples.
        for (bytes, value) in [
            (
                &b"\xc2\x19\x7c\x5e\xff\x14\xe8\x8c"[..],
                151_288_809_941_952_652,
            ),
            (b"\x9d\x7f\x3e\x7d", 494_878_333),
            (b"\x7b\xbd", 15_293),
            (b"\x25", 37),
            (b"\x40\x25", 37),
        ] {
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint(), Some(value));
            assert!(r.is_empty());
            assert_eq!(Reader::new(&bytes[..bytes.len() - 1]).varint(), None);
        }
    }

    #[test]
    fn the_stream_sniffer_stops_at_its_cap() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(STREAM_PREFIX_MAX - 1, b'a');
        assert_eq!(sniff_stream(&head), Sniffed::NeedMore);
        head.push(b'a');
        assert_eq!(sniff_stream(&head), Sniffed::NotThis);
        assert_eq!(sniff_stream(b""), Sniffed::NeedMore);
        assert_eq!(sniff_stream(b"\x00\x01garbage"), Sniffed::NotThis);
    }
}
