//! HTTPS between nodes for cluster formation.
//!
//! * Joiner → member: pinned to the fingerprint the operator gave (`keel join --fingerprint`);
//!   the handshake fails before any request (and so any secret) is sent if the member presents
//!   another certificate.
//! * Member → member: the server is verified against the cluster CA (name = the member's link0
//!   address, in its certificate's SANs); the caller presents its CA-signed node certificate
//!   (mutual TLS) and signs the request with an HMAC-SHA256 keyed with the corosync authkey
//!   (read at each use, so a rotated key takes effect at once), which only members hold (0400
//!   root). The MAC covers the sender, time, a random nonce, method, path with query, the user
//!   the request acts for and the body's SHA-256 (or the word `streamed` for an upload whose
//!   body is not buffered). Requests more than [`PEER_MAX_SKEW_S`] off are refused, and a nonce
//!   seen within that window ([`NonceCache`]) is refused as a replay.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const PEER_HEADER: &str = "X-Keel-Peer";
/// Set (to [`STREAMED`]) on a forwarded upload whose body is streamed, not digested.
pub const PEER_BODY_HEADER: &str = "X-Keel-Peer-Body";
/// The body token of a streamed (upload) body.
pub const STREAMED: &str = "streamed";
/// Bodies up to this size are buffered and their digest signed.
pub const MAX_SIGNED_BODY: usize = 1 << 20;
pub const PEER_MAX_SKEW_S: i64 = 300;
/// Nonces kept per sender within the skew window; beyond, its requests are refused.
pub const MAX_NONCES_PER_SENDER: usize = 100_000;

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

/// The body token a MAC covers: the body's SHA-256 in hex.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// What a peer request's MAC covers besides sender, time and nonce.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// Path with query.
    pub path: &'a str,
    /// The user the request acts for ("" for a member's own call).
    pub user: &'a str,
    /// [`body_digest`] of the body, or [`STREAMED`].
    pub body: &'a str,
}

/// A verified peer header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSig {
    pub node: String,
    pub ts: i64,
    pub nonce: String,
}

fn mac(key: &[u8], node: &str, ts: i64, nonce: &str, r: &Signed) -> Result<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::Internal(format!("HMAC key: {e}")))?;
    // newline-separated; none of the fields can hold a newline (header values, paths)
    m.update(
        format!(
            "keel-peer-v2\n{node}\n{ts}\n{nonce}\n{}\n{}\n{}\n{}",
            r.method, r.path, r.user, r.body
        )
        .as_bytes(),
    );
    Ok(m)
}

/// A fresh random nonce (128 bits, hex).
pub fn new_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// `X-Keel-Peer: NODE:TS:NONCE:HMAC` for a request, with a fresh nonce.
pub fn peer_header(key: &[u8], node: &str, ts: i64, r: &Signed) -> Result<String> {
    peer_header_with_nonce(key, node, ts, &new_nonce(), r)
}

/// [`peer_header`] with a given nonce (tests).
pub fn peer_header_with_nonce(
    key: &[u8],
    node: &str,
    ts: i64,
    nonce: &str,
    r: &Signed,
) -> Result<String> {
    let m = mac(key, node, ts, nonce, r)?;
    Ok(format!(
        "{node}:{ts}:{nonce}:{}",
        hex::encode(m.finalize().into_bytes())
    ))
}

/// Verify a peer header's time and MAC (not yet its nonce: [`NonceCache::admit`]).
pub fn check_peer_header(key: &[u8], header: &str, now: i64, r: &Signed) -> Result<PeerSig> {
    let mut it = header.splitn(4, ':');
    let (Some(node), Some(ts), Some(nonce), Some(mac_hex)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(Error::Unauthorized(format!(
            "malformed {PEER_HEADER} header (NODE:TIME:NONCE:MAC)"
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
    if nonce.len() < 16 || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Unauthorized(format!(
            "malformed {PEER_HEADER} nonce"
        )));
    }
    let want =
        hex::decode(mac_hex).map_err(|_| Error::Unauthorized("malformed peer MAC".into()))?;
    mac(key, node, ts, nonce, r)?
        .verify_slice(&want)
        .map_err(|_| {
            Error::Unauthorized(
                "peer request not signed with this cluster's key (or altered on the way)".into(),
            )
        })?;
    Ok(PeerSig {
        node: node.to_string(),
        ts,
        nonce: nonce.to_string(),
    })
}

/// The nonces of authentic peer requests seen within the skew window, per sender: a request
/// whose nonce is already here is a replay. Bounded: a nonce is kept until its header's time
/// can no longer be accepted (at most 2 × [`PEER_MAX_SKEW_S`] after it arrived), and at most
/// [`MAX_NONCES_PER_SENDER`] are kept per sender (only requests whose MAC verified get here,
/// so only a member can fill its own slot).
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: std::sync::Mutex<std::collections::HashMap<String, SenderNonces>>,
}

#[derive(Debug, Default)]
struct SenderNonces {
    /// (forget after, nonce), in arrival order.
    order: std::collections::VecDeque<(i64, String)>,
    set: std::collections::HashSet<String>,
}

impl NonceCache {
    /// Record `sig`'s nonce at time `now`; Err if it was seen already (a replay).
    pub fn admit(&self, sig: &PeerSig, now: i64) -> Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mine = seen.entry(sig.node.clone()).or_default();
        // a header accepted now has ts <= now + skew: it is refused as stale after
        // ts + skew <= now + 2 × skew, so its nonce is needed until then (arrival order =
        // expiry order)
        while mine.order.front().is_some_and(|(until, _)| *until < now) {
            if let Some((_, n)) = mine.order.pop_front() {
                mine.set.remove(&n);
            }
        }
        if mine.set.contains(&sig.nonce) {
            tracing::warn!(from = %sig.node, "replayed peer request refused");
            return Err(Error::Unauthorized("replayed peer request".into()));
        }
        if mine.set.len() >= MAX_NONCES_PER_SENDER {
            // 401 like every other refusal of a peer request (documented on every endpoint)
            return Err(Error::Unauthorized(format!(
                "too many peer requests from {} within {}s: refused until older ones expire",
                sig.node,
                2 * PEER_MAX_SKEW_S
            )));
        }
        mine.set.insert(sig.nonce.clone());
        mine.order
            .push_back((now + 2 * PEER_MAX_SKEW_S, sig.nonce.clone()));
        Ok(())
    }

    /// Nonces kept for `node` (tests).
    pub fn len_for(&self, node: &str) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(node).map(|m| m.set.len()).unwrap_or(0)
    }
}

/// This process's nonce cache (every peer and forwarded request a member receives).
pub fn seen_nonces() -> &'static NonceCache {
    static SEEN: std::sync::OnceLock<NonceCache> = std::sync::OnceLock::new();
    SEEN.get_or_init(NonceCache::default)
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
    let digest = body_digest(&bytes);
    let signed = Signed {
        method: "POST",
        path,
        user: "",
        body: &digest,
    };
    let h = peer_header(key, me, crate::db::now(), &signed)?;
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

    const KEY: [u8; 128] = [3u8; 128];

    fn req<'a>(path: &'a str, user: &'a str, body: &'a str) -> Signed<'a> {
        Signed {
            method: "POST",
            path,
            user,
            body,
        }
    }

    #[test]
    fn peer_mac_round_trip_and_refusals() -> Result<()> {
        let d = body_digest(b"{}");
        let ok = req("/p?x=1", "alice@keel", &d);
        let h = peer_header(&KEY, "node1", 1000, &ok)?;
        let sig = check_peer_header(&KEY, &h, 1010, &ok)?;
        assert_eq!(sig.node, "node1");
        assert_eq!(sig.ts, 1000);
        let unauthorized = |r: Result<PeerSig>, what: &str| match r {
            Err(Error::Unauthorized(m)) => m,
            other => panic!("{what}: expected 401, got {other:?}"),
        };
        // tampered body, path, query, user, method
        let other = body_digest(b"{x}");
        unauthorized(
            check_peer_header(&KEY, &h, 1010, &req("/p?x=1", "alice@keel", &other)),
            "body",
        );
        unauthorized(
            check_peer_header(&KEY, &h, 1010, &req("/q?x=1", "alice@keel", &d)),
            "path",
        );
        unauthorized(
            check_peer_header(&KEY, &h, 1010, &req("/p?x=2", "alice@keel", &d)),
            "query",
        );
        unauthorized(
            check_peer_header(&KEY, &h, 1010, &req("/p?x=1", "root@keel", &d)),
            "user",
        );
        unauthorized(
            check_peer_header(&KEY, &h, 1010, &req("/p?x=1", "alice@keel", STREAMED)),
            "streamed",
        );
        let get = Signed {
            method: "GET",
            ..ok
        };
        unauthorized(check_peer_header(&KEY, &h, 1010, &get), "method");
        // another key (a rotated authkey, or a removed node's old one)
        unauthorized(check_peer_header(&[4u8; 128], &h, 1010, &ok), "key");
        // skew, both ways
        let m = unauthorized(
            check_peer_header(&KEY, &h, 1000 + PEER_MAX_SKEW_S + 1, &ok),
            "late",
        );
        assert!(m.contains("check NTP"), "{m}");
        unauthorized(
            check_peer_header(&KEY, &h, 1000 - PEER_MAX_SKEW_S - 1, &ok),
            "early",
        );
        // tampered sender, time or nonce in the header itself
        let parts: Vec<&str> = h.splitn(4, ':').collect();
        for bad in [
            format!("node2:{}:{}:{}", parts[1], parts[2], parts[3]),
            format!("{}:1001:{}:{}", parts[0], parts[2], parts[3]),
            format!("{}:{}:{}:{}", parts[0], parts[1], "00".repeat(16), parts[3]),
            format!("{}:{}:{}", parts[0], parts[1], parts[3]),
        ] {
            unauthorized(check_peer_header(&KEY, &bad, 1010, &ok), &bad);
        }
        Ok(())
    }

    #[test]
    fn nonces_differ_per_request() -> Result<()> {
        let d = body_digest(b"");
        let r = req("/p", "", &d);
        assert_ne!(
            peer_header(&KEY, "n", 1, &r)?,
            peer_header(&KEY, "n", 1, &r)?
        );
        Ok(())
    }

    #[test]
    fn nonce_cache_refuses_replays_within_the_window() -> Result<()> {
        let cache = NonceCache::default();
        let d = body_digest(b"{}");
        let r = req("/p", "", &d);
        let h = peer_header(&KEY, "node1", 1000, &r)?;
        let sig = check_peer_header(&KEY, &h, 1000, &r)?;
        cache.admit(&sig, 1000)?;
        match cache.admit(&sig, 1001) {
            Err(Error::Unauthorized(m)) => assert_eq!(m, "replayed peer request"),
            other => panic!("replay admitted: {other:?}"),
        }
        // the same nonce from another sender is another request
        let other = PeerSig {
            node: "node2".into(),
            ..sig.clone()
        };
        cache.admit(&other, 1001)?;
        // a fresh nonce from node1 passes
        let sig2 = check_peer_header(&KEY, &peer_header(&KEY, "node1", 1002, &r)?, 1002, &r)?;
        cache.admit(&sig2, 1002)?;
        assert_eq!(cache.len_for("node1"), 2);
        // once the window passed, old nonces are forgotten (their time is refused anyway)
        let late = 1002 + 2 * PEER_MAX_SKEW_S + 1;
        assert!(check_peer_header(&KEY, &h, late, &r).is_err());
        let sig3 = check_peer_header(&KEY, &peer_header(&KEY, "node1", late, &r)?, late, &r)?;
        cache.admit(&sig3, late)?;
        assert_eq!(cache.len_for("node1"), 1);
        Ok(())
    }

    #[test]
    fn nonce_cache_is_bounded_per_sender() -> Result<()> {
        let cache = NonceCache::default();
        for i in 0..MAX_NONCES_PER_SENDER {
            let sig = PeerSig {
                node: "node1".into(),
                ts: 1000,
                nonce: format!("{i:032x}"),
            };
            cache.admit(&sig, 1000)?;
        }
        let one_more = PeerSig {
            node: "node1".into(),
            ts: 1000,
            nonce: "f".repeat(32),
        };
        assert!(matches!(
            cache.admit(&one_more, 1000),
            Err(Error::Unauthorized(m)) if m.contains("too many")
        ));
        // other senders are not affected
        cache.admit(
            &PeerSig {
                node: "node2".into(),
                ..one_more
            },
            1000,
        )?;
        Ok(())
    }
}
