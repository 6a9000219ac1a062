//! HTTPS between nodes for cluster formation.
//!
//! * Joiner → member: pinned to the fingerprint the operator gave (`keel join --fingerprint`);
//!   the handshake fails before any request (and so any secret) is sent if the member presents
//!   another certificate.
//! * Member → member: the server is verified against the cluster CA (name = the member's link0
//!   address, in its certificate's SANs); the caller proves membership with an HMAC-SHA256 over
//!   the request (method, path, time, body hash) keyed with the corosync authkey, which only
//!   members hold (0400 root). Requests older than [`PEER_MAX_SKEW_S`] are refused.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const PEER_HEADER: &str = "X-Keel-Peer";
pub const PEER_MAX_SKEW_S: i64 = 300;

/// What the pinned verifier saw (to explain a mismatch).
pub type Seen = keel_pin::SeenSlot;

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
}

/// A client that accepts only the certificate with SHA-256 `fingerprint` (`AB:CD:…`).
pub fn pinned_client(fingerprint: &str) -> Result<(reqwest::Client, Seen)> {
    let want = keel_pin::parse_fingerprint(fingerprint)
        .map_err(|m| Error::validation("fingerprint", m))?;
    let (cfg, seen) = keel_pin::pinned_config(Some(want))
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?;
    let c = builder()
        .use_preconfigured_tls(cfg)
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
    Ok((c, seen))
}

/// A client that trusts only the cluster CA.
pub fn ca_client(ca_pem: &str) -> Result<reqwest::Client> {
    ca_client_as(ca_pem, None)
}

/// A client that trusts only the cluster CA and, given `identity` (certificate and key PEM),
/// presents it as its TLS client certificate.
pub fn ca_client_as(ca_pem: &str, identity: Option<(Vec<u8>, Vec<u8>)>) -> Result<reqwest::Client> {
    let cfg = member_tls_config(ca_pem, identity)?;
    builder()
        .use_preconfigured_tls(cfg)
        .build()
        .map_err(|e| Error::Internal(format!("HTTP client: {e}")))
}

/// TLS to another member: only the cluster CA is trusted; `identity` (certificate and key PEM)
/// is presented as the client certificate. No ALPN (HTTP/1.1, so WebSocket upgrades work).
pub fn member_tls_config(
    ca_pem: &str,
    identity: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<ClientConfig> {
    let der = clusterd::ca::first_cert_der(ca_pem).map_err(|e| Error::Internal(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .map_err(|e| Error::Internal(format!("cluster CA: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    let cfg = match identity {
        None => cfg.with_no_client_auth(),
        Some((cert, key)) => {
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_slice_iter(&cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("node certificate: {e}")))?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| Error::Internal(format!("node key: {e}")))?;
            cfg.with_client_auth_cert(certs, key)
                .map_err(|e| Error::Internal(format!("node certificate: {e}")))?
        }
    };
    Ok(cfg)
}

fn mac_input(node: &str, ts: i64, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let bh = hex::encode(Sha256::digest(body));
    format!("{node}\n{ts}\n{method}\n{path}\n{bh}").into_bytes()
}

/// `X-Keel-Peer: NODE:TS:HMAC` for a request.
pub fn peer_header(
    key: &[u8],
    node: &str,
    ts: i64,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String> {
    let mut m = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::Internal(format!("HMAC key: {e}")))?;
    m.update(&mac_input(node, ts, method, path, body));
    Ok(format!(
        "{node}:{ts}:{}",
        hex::encode(m.finalize().into_bytes())
    ))
}

/// Verify a peer header; returns the calling node's name.
pub fn check_peer_header(
    key: &[u8],
    header: &str,
    now: i64,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String> {
    let mut it = header.splitn(3, ':');
    let (Some(node), Some(ts), Some(mac)) = (it.next(), it.next(), it.next()) else {
        return Err(Error::Unauthorized(format!(
            "malformed {PEER_HEADER} header"
        )));
    };
    let ts: i64 = ts
        .parse()
        .map_err(|_| Error::Unauthorized(format!("malformed {PEER_HEADER} time")))?;
    if (now - ts).abs() > PEER_MAX_SKEW_S {
        return Err(Error::Unauthorized(format!(
            "peer request time is {}s off this node's clock (limit {PEER_MAX_SKEW_S}s): check NTP",
            now - ts
        )));
    }
    let mac = hex::decode(mac).map_err(|_| Error::Unauthorized("malformed peer MAC".into()))?;
    let mut m = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::Internal(format!("HMAC key: {e}")))?;
    m.update(&mac_input(node, ts, method, path, body));
    m.verify_slice(&mac).map_err(|_| {
        Error::Unauthorized("peer request not signed with this cluster's key".into())
    })?;
    Ok(node.to_string())
}

/// POST JSON to a member's peer endpoint, signed with the cluster key.
pub async fn peer_post<T: serde::Serialize>(
    client: &reqwest::Client,
    key: &[u8],
    me: &str,
    api: &str,
    path: &str,
    body: &T,
) -> Result<()> {
    let bytes = serde_json::to_vec(body).map_err(|e| Error::Internal(e.to_string()))?;
    let h = peer_header(key, me, crate::db::now(), "POST", path, &bytes)?;
    let r = client
        .post(format!("https://{api}{path}"))
        .header(PEER_HEADER, h)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .map_err(|e| Error::Internal(format!("member at {api}: {}", error_chain(&e))))?;
    if !r.status().is_success() {
        let st = r.status();
        let msg = api_error_message(r).await;
        return Err(Error::Internal(format!(
            "member at {api} answered {st}: {msg}"
        )));
    }
    Ok(())
}

/// The `error.message` of a Keel API error body, or the raw body.
pub async fn api_error_message(r: reqwest::Response) -> String {
    let text = r.text().await.unwrap_or_default();
    serde_json::from_str::<keel_api::ErrorBody>(&text)
        .map(|b| b.error.message)
        .unwrap_or(text)
}

/// An error with its sources (reqwest hides the TLS reason in them).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_mac_round_trip_and_refusals() -> Result<()> {
        let key = [3u8; 128];
        let h = peer_header(&key, "node1", 1000, "POST", "/p", b"{}")?;
        assert_eq!(
            check_peer_header(&key, &h, 1010, "POST", "/p", b"{}")?,
            "node1"
        );
        assert!(check_peer_header(&key, &h, 1010, "POST", "/p", b"{x}").is_err());
        assert!(check_peer_header(&key, &h, 1010, "POST", "/q", b"{}").is_err());
        assert!(check_peer_header(&[4u8; 128], &h, 1010, "POST", "/p", b"{}").is_err());
        assert!(check_peer_header(&key, &h, 2000, "POST", "/p", b"{}").is_err());
        Ok(())
    }
}
