//! A small HTTP/1.1 client for the daemon's own downloads (subscription
//! lists): one GET per connection (`Connection: close`), the body by
//! `Content-Length`, chunked, or read to the end; bounded in size, time
//! and redirects.
//!
//! Each connection leaves the way the `routing` rules send a dial of ours
//! (`Outbounds::choose`, with the URL's host as the domain): direct with
//! our socket mark, or through the node a group picks; `block` and a group
//! with no live node fail the fetch. A host name is looked up the way
//! proxy servers' names are (the first plain upstream at an IP address,
//! direct). `https://` is checked against the trusted roots (`ca_file`).
//!
//! Neighbours: `subscription` (fetches the lists), `outbound` (the way
//! out), `forwarder::tls` (the TLS client), `config::subscription` (URLs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::outbound::{Choice, Outbounds};
use super::{BoxStream, Target, L4};
use crate::config::subscription::SubUrl;
use crate::config::Host;
use crate::forwarder::lookup::Lookup;
use crate::forwarder::tls::TlsClient;
use crate::routing::Flow;

/// The bounds of one download.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The body, at most (bytes).
    pub max_body: usize,
    /// The whole download, redirects included.
    pub timeout: Duration,
    /// Redirects followed, at most.
    pub max_redirects: usize,
}

pub const LIMITS: Limits = Limits {
    max_body: 4 << 20,
    timeout: Duration::from_secs(30),
    max_redirects: 3,
};

/// The response head, at most.
const MAX_HEAD: usize = 16 * 1024;

/// Providers choose the format by the client; this one asks for the
/// share-link list v2rayN gets.
const USER_AGENT: &str = concat!("dae/", env!("CARGO_PKG_VERSION"), " (like v2rayN/6.0)");

/// GETs `url`, following redirects: the body, or why not.
pub async fn get(
    outbounds: &Outbounds,
    roots: Option<Arc<rustls::RootCertStore>>,
    url: &SubUrl,
    limits: Limits,
) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + limits.timeout;
    let run = async {
        let mut url = url.clone();
        for _ in 0..=limits.max_redirects {
            match once(outbounds, roots.clone(), &url, limits, deadline).await? {
                Reply::Body(body) => return Ok(body),
                Reply::Redirect(location) => {
                    let next = url.join(&location)?;
                    log::debug!("{}: redirected to {}", url.origin(), next.origin());
                    url = next;
                }
            }
        }
        Err(format!(
            "more than {} redirects (a loop?)",
            limits.max_redirects
        ))
    };
    tokio::time::timeout(limits.timeout, run)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no complete answer in {} s",
                limits.timeout.as_secs()
            ))
        })
}

enum Reply {
    Body(Vec<u8>),
    Redirect(String),
}

/// One request on one connection.
async fn once(
    outbounds: &Outbounds,
    roots: Option<Arc<rustls::RootCertStore>>,
    url: &SubUrl,
    limits: Limits,
    deadline: Instant,
) -> Result<Reply, String> {
    let stream = connect(outbounds, url, deadline).await?;
    let mut stream: BoxStream = if url.tls {
        let roots = roots.ok_or("https: no trusted certificates (ca_file)")?;
        let tls = TlsClient::new(&url.host_text(), Some(roots), &[b"http/1.1"])?;
        Box::new(
            tls.handshake(stream)
                .await
                .map_err(|e| format!("TLS: {e}"))?,
        )
    } else {
        stream
    };
    let default_port = if url.tls { 443 } else { 80 };
    let host = match (&url.host, url.port) {
        (Host::Ip(std::net::IpAddr::V6(ip)), p) if p != default_port => format!("[{ip}]:{p}"),
        (Host::Ip(std::net::IpAddr::V6(ip)), _) => format!("[{ip}]"),
        (_, p) if p != default_port => format!("{}:{p}", url.host_text()),
        _ => url.host_text(),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        url.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    stream.flush().await.map_err(|e| e.to_string())?;
    read_reply(&mut stream, limits.max_body).await
}

/// A stream to the URL's server, the way the routing rules say.
async fn connect(
    outbounds: &Outbounds,
    url: &SubUrl,
    deadline: Instant,
) -> Result<BoxStream, String> {
    let (remote, domain) = match &url.host {
        Host::Ip(ip) => (SocketAddr::new(*ip, url.port), None),
        Host::Name(name) => {
            let resolver = outbounds.resolver.clone().ok_or_else(|| {
                format!(
                    "'{name}' is a host name: define a plain upstream (udp, tcp) with an IP \
                     address to look it up, or put an IP address in the URL"
                )
            })?;
            let lookup = Lookup::new(name.clone(), url.port, resolver);
            let addr = lookup
                .address(deadline)
                .await
                .map_err(|e| format!("looking up {e}"))?;
            (addr, Some(name.as_str()))
        }
    };
    let flow = Flow {
        remote,
        l4: L4::Tcp,
        domain,
        lan: None,
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    let choice = outbounds.choose(&flow);
    log::debug!("{}: via {}", url.origin(), choice.describe());
    match choice {
        Choice::Direct => Ok(Box::new(
            outbounds
                .direct
                .tcp(remote, timeout)
                .await
                .map_err(|e| format!("connecting to {remote}: {e}"))?,
        )),
        Choice::Node(n) => n
            .stream(&outbounds.direct, &Target::Addr(remote), timeout)
            .await
            .map_err(|e| n.error(e).to_string()),
        Choice::Block => Err("a routing rule blocks it".into()),
        Choice::NoNode(g) => Err(format!(
            "group '{g}' has no node alive (if its nodes come from this subscription, \
             route the host direct: domain({}) -> direct)",
            url.host_text()
        )),
    }
}

/// What the head says.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    /// The head's length, its blank line included.
    len: usize,
    content_length: Option<usize>,
    chunked: bool,
    location: Option<String>,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "a response head that is not text")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP/1 answer: '{}'", printable(status_line)))?;
    let mut head = Head {
        status,
        len: end + 4,
        content_length: None,
        chunked: false,
        location: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                head.content_length = Some(
                    value
                        .parse()
                        .map_err(|_| format!("a bad Content-Length '{}'", printable(value)))?,
                )
            }
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "location" => head.location = Some(value.to_string()),
            _ => {}
        }
    }
    Ok(Some(head))
}

fn printable(s: &str) -> String {
    s.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Reads the answer: its body (200), where it redirects (3xx), or an error.
async fn read_reply<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_body: usize,
) -> Result<Reply, String> {
    let mut buf = Vec::with_capacity(8192);
    let head = loop {
        if let Some(h) = parse_head(&buf)? {
            break h;
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("a response head longer than {MAX_HEAD} bytes"));
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err("the server closed the connection before answering".into());
        }
    };
    match head.status {
        200 => {}
        301 | 302 | 303 | 307 | 308 => {
            return head
                .location
                .map(Reply::Redirect)
                .ok_or_else(|| format!("HTTP {} without a Location", head.status));
        }
        s => return Err(format!("HTTP {s}")),
    }
    buf.drain(..head.len);
    let too_large = || format!("the body is larger than {} KiB", max_body / 1024);
    if let Some(n) = head.content_length.filter(|_| !head.chunked) {
        if n > max_body {
            return Err(too_large());
        }
        while buf.len() < n {
            if read_more(stream, &mut buf).await? == 0 {
                return Err(format!("the body ended after {} of {n} bytes", buf.len()));
            }
        }
        buf.truncate(n);
        return Ok(Reply::Body(buf));
    }
    // Chunk headers take a little room besides the body.
    let max_raw = max_body + max_body / 8 + 1024;
    loop {
        if head.chunked {
            if let Some(body) = dechunk(&buf)? {
                if body.len() > max_body {
                    return Err(too_large());
                }
                return Ok(Reply::Body(body));
            }
        }
        if buf.len() > max_raw {
            return Err(too_large());
        }
        if read_more(stream, &mut buf).await? == 0 {
            if head.chunked {
                return Err("the chunked body ended before its last chunk".into());
            }
            if buf.len() > max_body {
                return Err(too_large());
            }
            return Ok(Reply::Body(buf));
        }
    }
}

/// Reads what is there into `buf`; 0 at the end. A TLS peer that closes
/// without close_notify ends the body too (many servers do).
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(format!("reading the answer: {e}")),
    }
}

/// The body of a complete chunked encoding in `raw`; None while the last
/// chunk has not come.
fn dechunk(raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&raw[at..at + eol]).map_err(|_| "a bad chunk size")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("a bad chunk size '{}'", printable(size_text)))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then a blank line.
            let rest = &raw[at..];
            let done = rest.starts_with(b"\r\n") || rest.windows(4).any(|w| w == b"\r\n\r\n");
            return Ok(done.then_some(body));
        }
        let end = at.checked_add(size).ok_or("a bad chunk size")?;
        if raw.len() < end + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[at..end]);
        at = end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reply(raw: &[u8], max: usize) -> Result<Reply, String> {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let raw = raw.to_vec();
        let writer = tokio::spawn(async move {
            let _ = b.write_all(&raw).await;
        });
        let r = read_reply(&mut a, max).await;
        writer.abort();
        r
    }

    fn body(r: Result<Reply, String>) -> Vec<u8> {
        match r {
            Ok(Reply::Body(b)) => b,
            Ok(Reply::Redirect(l)) => panic!("redirect to {l}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn bodies_by_length_chunks_and_end() {
        let b = body(reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello!!", 100).await);
        assert_eq!(b, b"hello");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                        3;x=1\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        assert_eq!(body(reply(chunked, 100).await), b"hello");
        let to_end = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello";
        assert_eq!(body(reply(to_end, 100).await), b"hello");
    }

    #[tokio::test]
    async fn limits_and_errors() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        assert!(reply(big, 100).await.err().unwrap().contains("larger than"));
        let mut no_length = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        no_length.extend(std::iter::repeat(b'x').take(5000));
        assert!(reply(&no_length, 1024)
            .await
            .err()
            .unwrap()
            .contains("larger than"));
        let notfound = reply(b"HTTP/1.1 404 Not Found\r\n\r\n", 100).await;
        assert_eq!(notfound.err().unwrap(), "HTTP 404");
        let garbage = reply(b"SSH-2.0-OpenSSH\r\n\r\n", 100).await;
        assert!(garbage.err().unwrap().contains("not an HTTP/1 answer"));
        let short = reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 100).await;
        assert!(short.err().unwrap().contains("ended after 3 of 10"));
        match reply(b"HTTP/1.1 302 Found\r\nLocation: /next\r\n\r\n", 100).await {
            Ok(Reply::Redirect(l)) => assert_eq!(l, "/next"),
            _ => panic!("not a redirect"),
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    held.push(s); // accepted, never answered
                }
            }
        });
        let out = Outbounds::direct_only(super::super::Direct::new(0, None));
        let url = crate::config::subscription::url(&format!("http://127.0.0.1:{port}/")).unwrap();
        let limits = Limits {
            timeout: Duration::from_millis(300),
            ..LIMITS
        };
        let e = get(&out, None, &url, limits).await.unwrap_err();
        assert!(e.starts_with("no complete answer"), "{e}");
        server.abort();
    }

    #[test]
    fn chunks_arriving_in_pieces() {
        let raw = b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(dechunk(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(dechunk(raw).unwrap().unwrap(), b"hello");
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
