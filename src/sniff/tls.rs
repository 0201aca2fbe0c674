//! The TLS ClientHello's server_name (RFC 6066 host_name), the name a TLS
//! client asks for in clear.
//!
//! `sniff` reads the record layer of a TCP stream (a large hello, such as
//! one with post-quantum key shares or sent with a small maximum fragment
//! length, spans several handshake records) and hands the joined handshake
//! bytes to `client_hello`, which QUIC's CRYPTO stream also feeds. Lengths
//! are checked strictly at every level: a hello whose lengths do not add up
//! gives `NotThis`, whatever name it carries.
//!
//! With Encrypted Client Hello the clear (outer) hello names the ECH
//! provider's public name, and that is what this returns: the inner name is
//! unreadable by design.

use super::{host_name, Reader, Sniffed, STREAM_PREFIX_MAX};

const RECORD_HANDSHAKE: u8 = 22;
const RECORD_HEADER: usize = 5;
/// RFC 8446 section 5.1: a plaintext fragment is at most 2^14 bytes.
const RECORD_MAX: usize = 1 << 14;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// Sniffs a TCP stream's first bytes for a ClientHello's server name.
pub fn sniff(stream: &[u8]) -> Sniffed {
    let mut handshake = Vec::new();
    let mut rest = stream;
    loop {
        if !record_header_ok(&rest[..rest.len().min(RECORD_HEADER)]) {
            return Sniffed::NotThis;
        }
        if rest.len() < RECORD_HEADER {
            return Sniffed::NeedMore;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > RECORD_MAX {
            return Sniffed::NotThis;
        }
        let Some(fragment) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            // Check what the record holds so far, so garbage stops early.
            return match client_hello(&[&handshake[..], &rest[RECORD_HEADER..]].concat()) {
                Sniffed::NotThis => Sniffed::NotThis,
                _ => Sniffed::NeedMore,
            };
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[RECORD_HEADER + len..];
        match client_hello(&handshake) {
            Sniffed::NeedMore => {}
            found => return found,
        }
    }
}

/// Whether the bytes present of a record header start a handshake record
/// with a 3.x legacy version (3.0 to 3.4).
fn record_header_ok(header: &[u8]) -> bool {
    header
        .first()
        .map_or(true, |&kind| kind == RECORD_HANDSHAKE)
        && header.get(1).map_or(true, |&major| major == 3)
        && header.get(2).map_or(true, |&minor| minor <= 4)
}

/// Reads a ClientHello from the start of a handshake byte stream (the
/// message with its 4-byte header, no record layer): `NeedMore` until the
/// whole message is there.
pub fn client_hello(handshake: &[u8]) -> Sniffed {
    let mut r = Reader::new(handshake);
    match r.u8() {
        None => return Sniffed::NeedMore,
        Some(HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Sniffed::NotThis,
    }
    let Some(len) = r.u24() else {
        return Sniffed::NeedMore;
    };
    if len > STREAM_PREFIX_MAX {
        return Sniffed::NotThis;
    }
    match r.bytes(len) {
        None => Sniffed::NeedMore,
        Some(body) => server_name(body).map_or(Sniffed::NotThis, Sniffed::Domain),
    }
}

/// The first host_name of a ClientHello body's server_name extension, if
/// the body is well-formed and the name valid.
fn server_name(body: &[u8]) -> Option<String> {
    let mut r = Reader::new(body);
    r.bytes(2 + 32)?; // legacy_version, random
    let session_id = r.vec8()?;
    let cipher_suites = r.vec16()?;
    let compression_methods = r.vec8()?;
    if session_id.len() > 32
        || cipher_suites.is_empty()
        || cipher_suites.len() % 2 != 0
        || compression_methods.is_empty()
    {
        return None;
    }
    // No extensions, no server name.
    let mut extensions = Reader::new(r.vec16()?);
    if !r.is_empty() {
        return None;
    }
    let mut found = None;
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == EXTENSION_SERVER_NAME {
            if found.is_some() {
                return None; // RFC 8446 4.2: no extension appears twice
            }
            found = Some(data);
        }
    }
    let mut extension = Reader::new(found?);
    let mut names = Reader::new(extension.vec16()?);
    if !extension.is_empty() {
        return None;
    }
    while !names.is_empty() {
        let name_type = names.u8()?;
        let name = names.vec16()?;
        if name_type == NAME_TYPE_HOST_NAME {
            return host_name(name);
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello message (handshake header included) with these
    /// extensions, as a test's raw material.
    pub(crate) fn hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.extend([32]);
        body.extend([9; 32]);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0]);
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend(kind.to_be_bytes());
            exts.extend((data.len() as u16).to_be_bytes());
            exts.extend(data);
        }
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
        msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend(body);
        msg
    }

    pub(crate) fn sni(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![NAME_TYPE_HOST_NAME];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        (EXTENSION_SERVER_NAME, list)
    }

    /// `msg` cut into handshake records of at most `fragment` bytes.
    pub(crate) fn records(msg: &[u8], fragment: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in msg.chunks(fragment) {
            out.extend([RECORD_HANDSHAKE, 3, 1]);
            out.extend((chunk.len() as u16).to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    fn domain(name: &str) -> Sniffed {
        Sniffed::Domain(name.to_string())
    }

    #[test]
    fn reads_the_server_name_in_one_record_or_many() {
        let msg = hello(&[
            (10, vec![0, 2, 0, 29]),
            sni(b"Www.Example.com"),
            (16, vec![0; 3]),
        ]);
        assert_eq!(client_hello(&msg), domain("www.example.com"));
        for fragment in [1, 2, 7, 100, RECORD_MAX] {
            let stream = records(&msg, fragment);
            assert_eq!(
                sniff(&stream),
                domain("www.example.com"),
                "fragment {fragment}"
            );
            for cut in 0..stream.len() {
                assert_eq!(
                    sniff(&stream[..cut]),
                    Sniffed::NeedMore,
                    "fragment {fragment} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn the_outer_name_of_an_encrypted_client_hello() {
        // encrypted_client_hello (0xfe0d), outer variant, beside the public name.
        let ech = (0xfe0d, vec![0, 0, 1, 0, 1, 7, 0, 0, 0, 0]);
        let msg = hello(&[sni(b"public.example"), ech]);
        assert_eq!(sniff(&records(&msg, 512)), domain("public.example"));
    }

    #[test]
    fn no_or_bad_names_are_not_this() {
        let cases: Vec<Vec<u8>> = vec![
            hello(&[]),
            hello(&[(10, vec![0, 2, 0, 29])]),
            hello(&[sni(b"192.0.2.1")]),
            hello(&[sni(b"bad name.example")]),
            hello(&[sni(b"nul\0.example")]),
            hello(&[sni(&[b'a'; 254])]),
            hello(&[sni(b"")]),
            // Two server_name extensions.
            hello(&[sni(b"a.example"), sni(b"b.example")]),
            // A name list whose length overruns the extension.
            hello(&[(0, vec![0, 9, 0, 0, 1, b'a'])]),
            // An extension after the name list inside server_name.
            hello(&[(0, [&sni(b"a.example").1[..], &[0]].concat())]),
        ];
        for msg in cases {
            assert_eq!(client_hello(&msg), Sniffed::NotThis, "{msg:02x?}");
            assert_eq!(sniff(&records(&msg, 64)), Sniffed::NotThis);
        }
    }

    #[test]
    fn lengths_that_do_not_add_up_are_not_this() {
        let msg = hello(&[sni(b"a.example")]);
        // Trailing bytes after the extensions, inside the message.
        let mut long = msg.clone();
        long.push(0);
        long[3] += 1;
        assert_eq!(client_hello(&long), Sniffed::NotThis);
        // Offsets in the test hello: header 4, version 2, random 32,
        // session id 1 + 32, cipher suites 2 + 4, compression 1 + 1.
        let (session_id_len, suites_len, compression_len, ext_len) = (38, 71, 77, 79);
        // An extensions block one byte short or long.
        let ext_len_at = ext_len;
        for delta in [-1i16, 1] {
            let mut bad = msg.clone();
            bad[ext_len_at + 1] = (bad[ext_len_at + 1] as i16 + delta) as u8;
            assert_eq!(client_hello(&bad), Sniffed::NotThis);
        }
        // A session id over 32 bytes, odd cipher suites, no compression.
        for (at, value) in [
            (session_id_len, 33u8),
            (suites_len + 1, 3),
            (compression_len, 0),
        ] {
            let mut bad = msg.clone();
            bad[at] = value;
            assert_eq!(client_hello(&bad), Sniffed::NotThis, "at {at}");
        }
    }

    #[test]
    fn other_records_and_messages_are_not_this() {
        let msg = hello(&[sni(b"a.example")]);
        let stream = records(&msg, 40);
        for (at, value) in [(0, 23u8), (1, 2), (2, 5), (5, 2)] {
            let mut bad = stream.clone();
            bad[at] = value;
            assert_eq!(sniff(&bad), Sniffed::NotThis, "at {at}");
            assert_eq!(sniff(&bad[..at + 1]), Sniffed::NotThis, "prefix to {at}");
        }
        // Zero-length and oversized records.
        assert_eq!(sniff(&[22, 3, 1, 0, 0]), Sniffed::NotThis);
        assert_eq!(sniff(&[22, 3, 1, 0x40, 1]), Sniffed::NotThis);
        // A second record of another type in the middle of the hello.
        let mut mixed = stream.clone();
        mixed[45] = 21;
        assert_eq!(sniff(&mixed), Sniffed::NotThis);
        // A hello longer than anything we would wait for.
        assert_eq!(client_hello(&[1, 0, 0x40, 1]), Sniffed::NotThis);
    }
}
