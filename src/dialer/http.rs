//! HTTP proxies: a stream to a target through an HTTP/1.1 CONNECT tunnel
//! (RFC 9110, section 9.3.6; Basic authentication, RFC 7617). An
//! `https://` proxy is the same inside TLS, which the caller puts on.
//!
//! Wire format:
//! ```text
//! CONNECT 192.0.2.1:53 HTTP/1.1\r\nHost: 192.0.2.1:53\r\n
//! [Proxy-Authorization: Basic base64(user:password)\r\n]\r\n
//! ```
//! (or `CONNECT example.com:443`, and the proxy looks the name up);
//! answered by `HTTP/1.1 200 ...\r\n` headers `\r\n`; any 2xx opens the
//! tunnel, and every byte after the blank line is the target's. The reply
//! head is read byte by byte so that none of those is taken, and bounded
//! to 8 KiB. HTTP proxies carry no UDP.
//!
//! Neighbours: `node` calls it on a stream already connected to the proxy;
//! `link` describes the node (`Proto::Http`).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxStream, Target};
use crate::config::link::Auth;
use crate::config::url::base64_encode as base64;

/// The longest reply head we read.
const MAX_HEAD: usize = 8 * 1024;

fn error(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Opens a CONNECT tunnel to `target`; returns the same stream, carrying
/// the target's bytes from now on.
pub async fn connect(
    mut stream: BoxStream,
    auth: Option<&Auth>,
    target: &Target,
) -> io::Result<BoxStream> {
    // A checked name holds no space, colon or line break.
    target.check()?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = auth {
        let credentials = format!("{}:{}", auth.user, auth.password);
        request.push_str("Proxy-Authorization: Basic ");
        request.push_str(&base64(credentials.as_bytes()));
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let head = read_head(&mut stream).await?;
    let status_line = head.lines().next().unwrap_or("").trim_end();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .filter(|rest| rest.as_bytes().get(1) == Some(&b' '))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| {
            error(format!(
                "http proxy: the reply is not HTTP ('{}')",
                printable(status_line)
            ))
        })?;
    match status {
        200..=299 => Ok(stream),
        407 if auth.is_none() => Err(error("http proxy: authentication required")),
        407 => Err(error(
            "http proxy: authentication failed (wrong user name or password?)",
        )),
        _ => Err(error(format!(
            "http proxy: the proxy refused the tunnel: '{}'",
            printable(status_line)
        ))),
    }
}

/// Reads up to and including the blank line that ends the reply head, and
/// not one byte more.
async fn read_head(stream: &mut BoxStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if head.is_empty() {
                        "http proxy: the proxy closed the connection without a reply".to_string()
                    } else {
                        format!(
                            "http proxy: the proxy closed the connection in its reply ('{}')",
                            printable(String::from_utf8_lossy(&head).lines().next().unwrap_or(""))
                        )
                    },
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(io::Error::new(e.kind(), format!("http proxy: {e}"))),
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        if head.len() >= MAX_HEAD {
            return Err(error("http proxy: the reply head is longer than 8 KiB"));
        }
    }
}

/// A status line fit for a log line: at most 100 characters, no controls.
fn printable(s: &str) -> String {
    s.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[test]
    fn base64_vectors() {
        // RFC 4648, section 10, and RFC 7617's example.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    /// A scripted proxy: checks the request, sends `reply` in one write.
    async fn scripted(
        reply: &'static [u8],
        auth: Option<&Auth>,
    ) -> (io::Result<BoxStream>, String) {
        let target = Target::Addr("[2001:db8::53]:53".parse().unwrap());
        scripted_to(&target, reply, auth).await
    }

    async fn scripted_to(
        target: &Target,
        reply: &'static [u8],
        auth: Option<&Auth>,
    ) -> (io::Result<BoxStream>, String) {
        let (client, mut server) = duplex(64 * 1024);
        let proxy = async move {
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                server.read_exact(&mut b).await.unwrap();
                req.push(b[0]);
            }
            server.write_all(reply).await.unwrap();
            // closed now: what the client has not read stays readable
            String::from_utf8(req).unwrap()
        };
        let (result, req) = tokio::join!(connect(Box::new(client), auth, target), proxy);
        (result, req)
    }

    #[tokio::test]
    async fn connect_to_a_name() {
        let target = Target::Name("target.lab.example".into(), 8080);
        let (r, req) = scripted_to(&target, b"HTTP/1.1 200 OK\r\n\r\n", None).await;
        assert!(r.is_ok());
        assert_eq!(
            req,
            "CONNECT target.lab.example:8080 HTTP/1.1\r\nHost: target.lab.example:8080\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn names_that_would_break_the_request_are_refused() {
        for name in ["a.example\r\nX-Evil: 1", "a b", &"a".repeat(256)] {
            let (client, _) = duplex(1024);
            let target = Target::Name(name.to_string(), 80);
            let e = connect(Box::new(client), None, &target)
                .await
                .err()
                .unwrap();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}: {e}");
        }
    }

    #[tokio::test]
    async fn bytes_after_the_head_belong_to_the_tunnel() {
        let auth = Auth {
            user: "Aladdin".into(),
            password: "open sesame".into(),
        };
        let (r, req) = scripted(
            b"HTTP/1.1 200 Connection established\r\nX-A: b\r\n\r\n\x00\x02hi",
            Some(&auth),
        )
        .await;
        assert_eq!(
            req,
            "CONNECT [2001:db8::53]:53 HTTP/1.1\r\nHost: [2001:db8::53]:53\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
        let mut stream = r.unwrap();
        let mut tunnel = [0u8; 4];
        stream.read_exact(&mut tunnel).await.unwrap();
        assert_eq!(&tunnel, b"\x00\x02hi");
    }

    #[tokio::test]
    async fn refusals() {
        for (reply, expect) in [
            (
                &b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"[..],
                "authentication required",
            ),
            (
                b"HTTP/1.0 403 Forbidden\r\n\r\n",
                "'HTTP/1.0 403 Forbidden'",
            ),
            (
                b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                "not HTTP ('SSH-2.0-OpenSSH_9.2')",
            ),
            (b"HTTP/1.1x200 OK\r\n\r\n", "not HTTP"),
            (
                b"HTTP/1.1 502 Bad",
                "closed the connection in its reply ('HTTP/1.1 502 Bad')",
            ),
            (&[b'x'; 9000], "longer than 8 KiB"),
        ] {
            let (r, _) = scripted(reply, None).await;
            let e = r.err().expect("an error");
            assert!(e.to_string().contains(expect), "{e}");
        }
    }
}
