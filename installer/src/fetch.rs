//! HTTPS with certificate pinning, for the answer URL (`keel.answer_url=` on the kernel command
//! line) and the post-install webhook: the server must present exactly the certificate whose
//! SHA-256 fingerprint was given (self-signed is fine: no CA is consulted), and must hold its
//! private key (the handshake signature is verified). A plain HTTP/1.0 exchange over
//! rustls, so no chunked encoding and no redirects: the pinned server answers itself.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::CertificateError;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    BadInput(String),
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {host}: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} presented a certificate with fingerprint {presented}, not the pinned {expected}; refusing it")]
    PinMismatch {
        host: String,
        expected: String,
        presented: String,
    },
    #[error("{url}: bad HTTP response: {message}")]
    BadResponse { url: String, message: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
}

/// Parse `AB:CD:…` (32 hex pairs; case and colons do not matter).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], FetchError> {
    keel_pin::parse_fingerprint(s).map_err(FetchError::BadInput)
}

pub use keel_pin::format_fingerprint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl HttpsUrl {
    pub fn parse(url: &str) -> Result<HttpsUrl, FetchError> {
        let bad = |why: &str| FetchError::BadInput(format!("`{url}` is not a usable URL: {why}"));
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("only https:// is accepted (the certificate is pinned)"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            (h.to_string(), p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse()
                .map_err(|_| bad("the port is not a number 1-65535"))?,
        };
        Ok(HttpsUrl {
            host,
            port,
            path: path.to_string(),
        })
    }
}

/// One HTTPS request to a pinned server; returns the body of a 2xx answer.
pub fn request(
    url: &str,
    fingerprint: &str,
    method: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let u = HttpsUrl::parse(url)?;
    let expected = parse_fingerprint(fingerprint)?;
    let (cfg, _seen) = keel_pin::pinned_config(Some(expected))
        .map_err(|e| FetchError::BadInput(format!("TLS setup: {e}")))?;
    let name = ServerName::try_from(u.host.clone())
        .map_err(|_| FetchError::BadInput(format!("`{}` is not a host name", u.host)))?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name)
        .map_err(|e| FetchError::BadInput(format!("TLS setup: {e}")))?;
    let addr = format!("{}:{}", u.host, u.port);
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| FetchError::Connect {
            addr: addr.clone(),
            source: e,
        })?
        .next()
        .ok_or_else(|| FetchError::BadInput(format!("{addr} resolves to nothing")))?;
    let tcp = TcpStream::connect_timeout(&sock, timeout).map_err(|e| FetchError::Connect {
        addr: addr.clone(),
        source: e,
    })?;
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!(
        "{method} {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: keel-installer\r\nConnection: close\r\n",
        u.path, u.host
    );
    if let Some((ctype, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let tls_err = |e: std::io::Error| -> FetchError {
        if let Some(m) = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .and_then(|r| match r {
                rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
                    o.0.downcast_ref::<keel_pin::FingerprintMismatch>()
                        .map(|m| m.presented.clone())
                }
                _ => None,
            })
        {
            return FetchError::PinMismatch {
                host: addr.clone(),
                expected: format_fingerprint(&expected),
                presented: m,
            };
        }
        FetchError::Tls {
            host: addr.clone(),
            source: e,
        }
    };
    tls.write_all(req.as_bytes()).map_err(tls_err)?;
    if let Some((_, b)) = body {
        tls.write_all(b).map_err(tls_err)?;
    }
    tls.flush().map_err(tls_err)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // Servers that close without close_notify: the data read so far is complete if the
            // Content-Length says so (checked below).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(tls_err(e)),
        }
    }
    parse_response(url, &raw)
}

fn parse_response(url: &str, raw: &[u8]) -> Result<Vec<u8>, FetchError> {
    let bad = |m: &str| FetchError::BadResponse {
        url: url.to_string(),
        message: m.to_string(),
    };
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line `{status_line}`")))?;
    let mut len: Option<usize> = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
            if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad(
                    "chunked transfer encoding is not supported (HTTP/1.0 was requested)",
                ));
            }
        }
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Status {
            url: url.to_string(),
            status,
        });
    }
    match len {
        Some(n) if body.len() < n => {
            Err(bad(&format!("body cut short: {} of {n} bytes", body.len())))
        }
        Some(n) => Ok(body[..n].to_vec()),
        None => Ok(body.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            HttpsUrl::parse("https://10.0.0.1:8443/a/answer.toml").ok(),
            Some(HttpsUrl {
                host: "10.0.0.1".into(),
                port: 8443,
                path: "/a/answer.toml".into()
            })
        );
        assert_eq!(
            HttpsUrl::parse("https://[2001:db8::1]/x")
                .ok()
                .map(|u| (u.host, u.port)),
            Some(("2001:db8::1".into(), 443))
        );
        assert!(HttpsUrl::parse("http://x/").is_err());
        assert!(HttpsUrl::parse("https://x:99999/").is_err());
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(parse_response("u", ok).ok(), Some(b"abc".to_vec()));
        assert!(matches!(
            parse_response("u", b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(FetchError::Status { status: 404, .. })
        ));
        assert!(parse_response("u", b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
    }
}
