//! The API's TLS identity: a bring-your-own certificate, or a self-signed one generated on
//! first start (key 0600), whose SHA-256 fingerprint is printed and stored for pinning.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// `AB:CD:…` SHA-256 of the certificate's DER.
    pub fingerprint: String,
    pub generated: bool,
}

pub fn fingerprint_of_der(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn fingerprint_of_pem(pem: &[u8]) -> Result<String> {
    let mut rd = std::io::BufReader::new(pem);
    let cert = rustls_pemfile_first_cert(&mut rd)?;
    Ok(fingerprint_of_der(&cert))
}

/// First CERTIFICATE block of a PEM file, decoded.
fn rustls_pemfile_first_cert(rd: &mut impl std::io::BufRead) -> Result<Vec<u8>> {
    use base64::Engine;
    let mut text = String::new();
    rd.read_to_string(&mut text)?;
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .ok_or_else(|| Error::BadRequest("no CERTIFICATE block in the PEM file".into()))?;
    let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
    let end = rest
        .find("-----END CERTIFICATE-----")
        .ok_or_else(|| Error::BadRequest("unterminated CERTIFICATE block".into()))?;
    let b64: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Error::BadRequest(format!("bad base64 in certificate: {e}")))
}

pub fn load_or_generate(
    state_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    names: &[String],
) -> Result<TlsIdentity> {
    let (cert_path, key_path, byo) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), true),
        _ => (
            state_dir.join("tls/hostd.crt"),
            state_dir.join("tls/hostd.key"),
            false,
        ),
    };
    let mut generated = false;
    if !(byo || cert_path.exists() && key_path.exists()) {
        generate(&cert_path, &key_path, names)?;
        generated = true;
    }
    let cert_pem = std::fs::read(&cert_path)
        .map_err(|e| Error::Internal(format!("cannot read {}: {e}", cert_path.display())))?;
    let key_pem = std::fs::read(&key_path)
        .map_err(|e| Error::Internal(format!("cannot read {}: {e}", key_path.display())))?;
    let fingerprint = fingerprint_of_pem(&cert_pem)?;
    std::fs::write(
        state_dir.join("hostd.fingerprint"),
        format!("{fingerprint}\n"),
    )?;
    Ok(TlsIdentity {
        cert_pem,
        key_pem,
        fingerprint,
        generated,
    })
}

fn generate(cert_path: &Path, key_path: &Path, names: &[String]) -> Result<()> {
    if let Some(d) = cert_path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| Error::Internal(format!("certificate: {e}")))?;
    // the private key is 0600 from its first byte (created with that mode, then renamed)
    clusterd::ca::write_file_mode(key_path, ck.key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(|e| Error::Internal(format!("writing {}: {e}", key_path.display())))?;
    std::fs::write(cert_path, ck.cert.pem())?;
    Ok(())
}

// ------------------------------------------------------------------ client certificates

use std::sync::{Arc, RwLock};

use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// Optional client certificates, verified against the cluster CA of the moment.
///
/// Browsers and the CLI present none and are let through (they authenticate with tickets or
/// tokens); a member presents its CA-signed node certificate, and a certificate that does not
/// chain to the current CA fails the handshake. Without a CA (a standalone node) no client
/// certificate is asked for. `set_ca` follows `keel cluster init`/`join` without a restart.
pub struct ClusterClientVerifier {
    inner: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for ClusterClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClientVerifier")
            .field("has_ca", &self.current().is_some())
            .finish()
    }
}

impl ClusterClientVerifier {
    pub fn new() -> Arc<ClusterClientVerifier> {
        Arc::new(ClusterClientVerifier {
            inner: RwLock::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    fn current(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Trust client certificates signed by `ca_pem` from the next handshake on (None: ask for
    /// none).
    pub fn set_ca(&self, ca_pem: Option<&str>) -> Result<()> {
        let v = match ca_pem {
            None => None,
            Some(pem) => {
                let der = clusterd::ca::first_cert_der(pem)
                    .map_err(|e| Error::Internal(format!("cluster CA: {e}")))?;
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from(der))
                    .map_err(|e| Error::Internal(format!("cluster CA: {e}")))?;
                let v = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Internal(format!("client verifier: {e}")))?;
                Some(v)
            }
        };
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = v;
        Ok(())
    }
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current().is_some()
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // hints are optional; members know which certificate to present
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        match self.current() {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General(
                "this node is not in a cluster: client certificates are not accepted".into(),
            )),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The API's rustls configuration: `cert`/`key` (PEM) with optional client certificates.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    verifier: Arc<ClusterClientVerifier>,
) -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("API certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Internal(format!("API key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Internal(format!("API certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client certificate a connection presented (already verified against the cluster CA
/// during the handshake), as a request extension; `None` for browsers and the CLI.
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<Arc<CertificateDer<'static>>>);

impl PeerCert {
    /// The connection's verified certificate is issued for node `name` (a DNS name in its SANs,
    /// which the cluster CA sets to the node name). Err says why not.
    pub fn check_node(&self, name: &str) -> Result<()> {
        let Some(der) = &self.0 else {
            return Err(Error::Unauthorized(
                "member request without a client certificate: members present their CA-signed node certificate".into(),
            ));
        };
        let parsed = ParsedCertificate::try_from(der.as_ref())
            .map_err(|e| Error::Unauthorized(format!("client certificate: {e}")))?;
        let sn = ServerName::try_from(name.to_string())
            .map_err(|_| Error::Unauthorized(format!("peer name {name:?} is not a DNS name")))?;
        rustls::client::verify_server_name(&parsed, &sn).map_err(|_| {
            Error::Unauthorized(format!(
                "the client certificate is not issued for node {name}"
            ))
        })
    }
}

/// Accepts TLS (optional client certificates) and hands the verified client certificate to
/// the request handlers as [`PeerCert`].
#[derive(Clone)]
pub struct PeerCertAcceptor {
    inner: RustlsAcceptor,
}

impl PeerCertAcceptor {
    pub fn new(config: RustlsConfig) -> PeerCertAcceptor {
        PeerCertAcceptor {
            inner: RustlsAcceptor::new(config),
        }
    }
}

impl<I, S> Accept<I, S> for PeerCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, PeerCert>;
    type Future =
        futures_util::future::BoxFuture<'static, std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let acceptor = self.inner.clone();
        Box::pin(async move {
            let (stream, service) = acceptor.accept(stream, service).await?;
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.clone().into_owned()));
            let service = tower::Layer::layer(&axum::Extension(PeerCert(cert)), service);
            Ok((stream, service))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clusterd::ca::{ClusterCa, NodeIdentity};

    fn ident(name: &str) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            dns: vec!["localhost".into()],
            addrs: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from(clusterd::ca::first_cert_der(pem).unwrap())
    }

    /// The verifier's decisions: no CA → no client certificate asked for, any refused; a CA →
    /// asked for but optional, its certificates accepted, another CA's refused; a new CA
    /// (init/join) replaces the old one for the next handshake.
    #[test]
    fn client_verifier_follows_the_cluster_ca() {
        let ca1 = ClusterCa::generate("c1").unwrap();
        let ca2 = ClusterCa::generate("c2").unwrap();
        let (n1, _) = ca1.issue(&ident("node1")).unwrap();
        let (n2, _) = ca2.issue(&ident("node1")).unwrap();
        let now = UnixTime::now();
        let v = ClusterClientVerifier::new();
        assert!(!v.offer_client_auth(), "standalone: no client certificates");
        assert!(v.verify_client_cert(&der(&n1), &[], now).is_err());
        v.set_ca(Some(ca1.cert_pem())).unwrap();
        assert!(v.offer_client_auth() && !v.client_auth_mandatory());
        assert!(v.verify_client_cert(&der(&n1), &[], now).is_ok());
        assert!(
            v.verify_client_cert(&der(&n2), &[], now).is_err(),
            "another cluster's certificate"
        );
        // a self-signed certificate (a standalone node's) is refused too
        let ss = rcgen::generate_simple_self_signed(vec!["node1".into()]).unwrap();
        assert!(v
            .verify_client_cert(&ss.cert.der().clone(), &[], now)
            .is_err());
        v.set_ca(Some(ca2.cert_pem())).unwrap();
        assert!(v.verify_client_cert(&der(&n2), &[], now).is_ok());
        assert!(v.verify_client_cert(&der(&n1), &[], now).is_err());
        assert!(v.set_ca(Some("not a certificate")).is_err());
    }

    #[test]
    fn peer_cert_names_the_node() {
        let ca = ClusterCa::generate("c1").unwrap();
        let (n1, _) = ca.issue(&ident("node1")).unwrap();
        let pc = PeerCert(Some(Arc::new(der(&n1))));
        assert!(pc.check_node("node1").is_ok());
        let e = pc.check_node("node2").unwrap_err().to_string();
        assert!(e.contains("not issued for node node2"), "{e}");
        let e = PeerCert(None).check_node("node1").unwrap_err().to_string();
        assert!(e.contains("without a client certificate"), "{e}");
    }

    /// The API's TLS stack on loopback: a server with [`server_config`] + [`PeerCertAcceptor`]
    /// and clients without a certificate, with another CA's and with the right one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_handshakes() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = ClusterCa::generate("c1").unwrap();
        let other = ClusterCa::generate("c2").unwrap();
        let (srv_cert, srv_key) = ca.issue(&ident("node2")).unwrap();
        let (n1_cert, n1_key) = ca.issue(&ident("node1")).unwrap();
        let (x_cert, x_key) = other.issue(&ident("node1")).unwrap();
        let v = ClusterClientVerifier::new();
        v.set_ca(Some(ca.cert_pem())).unwrap();
        let cfg = RustlsConfig::from_config(
            server_config(srv_cert.as_bytes(), srv_key.as_bytes(), v).unwrap(),
        );
        let app = axum::Router::new().route(
            "/who",
            axum::routing::get(
                |axum::Extension(pc): axum::Extension<PeerCert>| async move {
                    match pc.check_node("node1") {
                        Ok(()) => (axum::http::StatusCode::OK, "node1".to_string()),
                        Err(e) => (axum::http::StatusCode::UNAUTHORIZED, e.to_string()),
                    }
                },
            ),
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = axum_server::Handle::new();
        let srv = tokio::spawn(
            axum_server::from_tcp(l)
                .acceptor(PeerCertAcceptor::new(cfg))
                .handle(h.clone())
                .serve(app.into_make_service()),
        );
        let url = format!("https://localhost:{}/who", addr.port());
        // browser/CLI: no certificate → let through TLS, refused by the member check
        let c = crate::cluster_net::ca_client(ca.cert_pem()).unwrap();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("without a client certificate"));
        // another cluster's certificate: the handshake fails
        let c = crate::cluster_net::ca_client_as(
            ca.cert_pem(),
            Some((x_cert.into_bytes(), x_key.into_bytes())),
        )
        .unwrap();
        let e = c.get(&url).send().await.unwrap_err();
        eprintln!("other CA refused: {}", crate::cluster_net::error_chain(&e));
        // the member's certificate
        let c = crate::cluster_net::ca_client_as(
            ca.cert_pem(),
            Some((n1_cert.into_bytes(), n1_key.into_bytes())),
        )
        .unwrap();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "node1");
        h.shutdown();
        let _ = srv.await;
    }
}
