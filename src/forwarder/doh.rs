//! What DNS over HTTPS (RFC 8484) over HTTP/2 (`https.rs`) and over HTTP/3
//! (`h3.rs`) share: where the requests go, how they look, and which reply
//! bodies are taken.
//!
//! Every query is a `POST` to the URL's path with the DNS message as its
//! body (`application/dns-message`, id 0, as RFC 8484 section 4.1
//! recommends, so that caches could share it); only a `200` whose body is
//! a DNS message no longer than the largest one is an answer.
//!
//! Neighbours: `https`, `h3` (the clients), `forwarder` (builds the target
//! from the upstream's URL).

use http::{header, Method, Request, StatusCode, Uri};

use crate::wire;

/// The media type of queries and answers.
pub const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message.
pub const MAX_ANSWER: usize = 65535;

/// Where DoH requests go: `https://authority/path`.
#[derive(Debug, Clone)]
pub struct DohTarget {
    pub uri: Uri,
}

impl DohTarget {
    pub fn new(host: &str, port: u16, path: &str) -> Result<DohTarget, String> {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = if port == 443 {
            host
        } else {
            format!("{host}:{port}")
        };
        let uri = Uri::builder()
            .scheme("https")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|e| format!("https://{authority}{path}: {e}"))?;
        Ok(DohTarget { uri })
    }

    /// The request head for a query of `len` bytes (the body follows).
    pub fn request(&self, len: usize) -> Result<Request<()>, String> {
        Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, DNS_MESSAGE)
            .header(header::ACCEPT, DNS_MESSAGE)
            .header(header::CONTENT_LENGTH, len)
            .body(())
            .map_err(|e| e.to_string())
    }
}

/// Why a reply's head is not an answer: any status but 200.
/// A request's body: the query with id 0.
pub fn body(query: &[u8]) -> bytes::Bytes {
    let mut body = query.to_vec();
    wire::set_id(&mut body, 0);
    bytes::Bytes::from(body)
}

pub fn check_status(status: StatusCode) -> Result<(), String> {
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// Why a reply's body is not a DNS message: too short.
pub fn check_body(body: &[u8]) -> Result<(), String> {
    if body.len() < wire::HEADER_LEN {
        return Err(format!("{}-byte body is no DNS message", body.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_the_authority_and_path() {
        let t = DohTarget::new("dns.example", 443, "/dns-query").unwrap();
        assert_eq!(t.uri.to_string(), "https://dns.example/dns-query");
        let t = DohTarget::new("2001:db8::53", 8443, "/q").unwrap();
        assert_eq!(t.uri.to_string(), "https://[2001:db8::53]:8443/q");
        let r = t.request(33).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.headers()[header::CONTENT_TYPE], DNS_MESSAGE);
        assert_eq!(r.headers()[header::ACCEPT], DNS_MESSAGE);
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "33");
        assert!(check_status(StatusCode::OK).is_ok());
        assert_eq!(
            check_status(StatusCode::NOT_FOUND).unwrap_err(),
            "HTTP status 404 Not Found"
        );
        assert!(check_body(&[0; 11]).is_err());
        assert!(check_body(&[0; 12]).is_ok());
    }
}
