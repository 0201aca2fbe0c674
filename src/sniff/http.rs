//! The `Host` header of an HTTP/1.x request, the name a plain-HTTP client
//! asks for.
//!
//! Reads the request line (a known method, `HTTP/1.0` or `HTTP/1.1`) and
//! the header lines up to the first `Host` (name matched without case, the
//! port stripped). A request head that ends without one, or a `Host` that is
//! an address literal (`[2001:db8::1]`, `192.0.2.1`) rather than a name,
//! gives `NotThis`: routing by address is then all there is. Lines may end in
//! CRLF or a bare LF, as servers accept both.

use super::{host_name, Sniffed};

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];
/// The longest method and its space.
const METHOD_MAX: usize = 8;

/// Sniffs a TCP stream's first bytes for an HTTP/1.x request's host.
pub fn sniff(stream: &[u8]) -> Sniffed {
    match stream.iter().take(METHOD_MAX).position(|&b| b == b' ') {
        Some(end) if METHODS.contains(&&stream[..end]) => {}
        None if stream.len() < METHOD_MAX && METHODS.iter().any(|m| m.starts_with(stream)) => {
            return Sniffed::NeedMore
        }
        _ => return Sniffed::NotThis,
    }
    let mut rest = stream;
    let mut request_line = true;
    loop {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            // No control bytes in what we have of the line so far.
            return match rest
                .iter()
                .any(|&b| b.is_ascii_control() && b != b'\r' && b != b'\t')
            {
                true => Sniffed::NotThis,
                false => Sniffed::NeedMore,
            };
        };
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Sniffed::NotThis;
        }
        if request_line {
            if !(line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0")) {
                return Sniffed::NotThis;
            }
            request_line = false;
            continue;
        }
        if line.is_empty() {
            return Sniffed::NotThis; // the head ended without a Host
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Sniffed::NotThis;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            return host(line[colon + 1..].trim_ascii());
        }
    }
}

/// A `Host` value's name: the port stripped; address literals are not
/// names.
fn host(value: &[u8]) -> Sniffed {
    if value.first() == Some(&b'[') {
        return Sniffed::NotThis;
    }
    let name = match value.iter().rposition(|&b| b == b':') {
        Some(colon) if value[colon + 1..].iter().all(u8::is_ascii_digit) => &value[..colon],
        Some(_) => return Sniffed::NotThis,
        None => value,
    };
    host_name(name).map_or(Sniffed::NotThis, Sniffed::Domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str) -> Sniffed {
        Sniffed::Domain(name.to_string())
    }

    #[test]
    fn reads_the_host_of_every_method() {
        for method in METHODS {
            let method = String::from_utf8_lossy(method);
            let head = format!(
                "{method} / HTTP/1.1\r\nUser-Agent: t\r\nhOsT: WWW.Example.com:8080\r\n\r\n"
            );
            assert_eq!(
                sniff(head.as_bytes()),
                domain("www.example.com"),
                "{method}"
            );
            let end = head.find("8080\r\n").unwrap() + 5;
            for cut in 0..end {
                assert_eq!(
                    sniff(&head.as_bytes()[..cut]),
                    Sniffed::NeedMore,
                    "{method} cut {cut}"
                );
            }
        }
        assert_eq!(
            sniff(b"GET / HTTP/1.0\nHost:\ta.example\n\n"),
            domain("a.example")
        );
        assert_eq!(
            sniff(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n"),
            domain("a.example")
        );
    }

    #[test]
    fn no_name_is_not_this() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a.example:8x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b.example\r\n\r\n",
            b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\nHost: late.example\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\nHost: a.example\r\n",
            b"GET / HTTP/2.0\r\nHost: a.example\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"get / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GETS / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\nHost: a.example\r\n\r\n",
            b"GET /\x01",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"\x16\x03\x01",
        ] {
            assert_eq!(
                sniff(head),
                Sniffed::NotThis,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
