//! Certificate pinning: accept exactly the server certificate whose SHA-256 we were given.
//!
//! keel-hostd prints its certificate's SHA-256 fingerprint (also stored in
//! `<state_dir>/hostd.fingerprint`). The CLI (`--fingerprint`), the installer (answer URL and
//! webhook) and a joining node (`keel join --fingerprint`) trust that one certificate and nothing
//! else — no CA is consulted; the handshake signature is still verified, so the server must hold
//! the certificate's private key.

use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER encoding.
pub type Fingerprint = [u8; 32];

/// Parse a fingerprint as keel-hostd prints it (`AB:CD:…`, 32 colon-separated hex bytes).
/// Case does not matter; the colons may be left out altogether.
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a SHA-256 certificate fingerprint: expected 32 hex bytes such as \
             AB:CD:…:EF (as printed by keel-hostd and stored in <state_dir>/hostd.fingerprint)"
        )
    };
    let hex_digits: String = if t.contains(':') {
        let groups: Vec<&str> = t.split(':').collect();
        if groups.len() != 32 || groups.iter().any(|g| g.len() != 2) {
            return Err(bad());
        }
        groups.concat()
    } else {
        t.to_string()
    };
    if hex_digits.len() != 64 || !hex_digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(&hex_digits, &mut out).map_err(|_| bad())?;
    Ok(out)
}

/// `AB:CD:…`, upper case, as keel-hostd prints it.
pub fn format_fingerprint(fp: &[u8]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// The certificate did not have the pinned fingerprint.
#[derive(Debug)]
pub struct FingerprintMismatch {
    pub expected: String,
    pub presented: String,
}

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate fingerprint mismatch: expected {}, server presented {}",
            self.expected, self.presented
        )
    }
}

impl std::error::Error for FingerprintMismatch {}

/// Fingerprint of the last certificate a server presented (shared with the verifier, so the
/// client can explain a failed handshake).
pub type SeenSlot = Arc<Mutex<Option<String>>>;

/// Accepts exactly the certificate with the `expected` fingerprint. With `expected: None` it
/// accepts nothing and only records what the server presented (used to tell the user).
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
    seen: SeenSlot,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint_of(end_entity.as_ref());
        let presented = format_fingerprint(&got);
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(presented.clone());
        }
        match self.expected {
            Some(want) if want == got => Ok(ServerCertVerified::assertion()),
            want => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(FingerprintMismatch {
                    expected: want
                        .map(|w| format_fingerprint(&w))
                        .unwrap_or_else(|| "(none)".into()),
                    presented,
                })),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config (ring provider) that pins `expected`; see [`PinnedVerifier`].
pub fn pinned_config(expected: Option<Fingerprint>) -> Result<(ClientConfig, SeenSlot), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen: SeenSlot = Arc::new(Mutex::new(None));
    let verifier = PinnedVerifier {
        expected,
        provider: provider.clone(),
        seen: seen.clone(),
    };
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((cfg, seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str =
        "D7:47:35:E7:9D:41:B9:1B:9A:0D:A2:7D:4E:9B:A3:45:0F:FC:BD:41:4B:EB:3E:E0:2D:F0:CC:C6:39:7A:3F:11";

    #[test]
    fn parses_hostd_format_and_round_trips() {
        let fp = parse_fingerprint(FP).expect("valid");
        assert_eq!(fp[0], 0xD7);
        assert_eq!(fp[31], 0x11);
        assert_eq!(format_fingerprint(&fp), FP);
    }

    #[test]
    fn case_whitespace_and_colons_do_not_matter() {
        let a = parse_fingerprint(FP).expect("valid");
        let lower = parse_fingerprint(&format!("  {}\n", FP.to_lowercase())).expect("lower");
        let bare = parse_fingerprint(&FP.replace(':', "")).expect("bare");
        assert_eq!(a, lower);
        assert_eq!(a, bare);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "AB:CD",
            &FP[..FP.len() - 3],               // 31 bytes
            &format!("{FP}:00"),               // 33 bytes
            &FP.replacen("D7:47", "D:747", 1), // misgrouped
            &FP.replacen("D7", "G7", 1),       // not hex
            &FP.replace(':', "-"),             // other separator
        ] {
            assert!(parse_fingerprint(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn verifier_accepts_only_the_pinned_certificate() {
        let der = CertificateDer::from(vec![1u8, 2, 3, 4]);
        let other = CertificateDer::from(vec![9u8, 9, 9]);
        let name = ServerName::try_from("127.0.0.1").expect("ip name");
        let v = PinnedVerifier {
            expected: Some(fingerprint_of(der.as_ref())),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            seen: Arc::new(Mutex::new(None)),
        };
        assert!(v
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .is_ok());
        let err = v
            .verify_server_cert(&other, &[], &name, &[], UnixTime::now())
            .expect_err("must reject");
        let rustls::Error::InvalidCertificate(CertificateError::Other(o)) = &err else {
            panic!("unexpected error {err:?}");
        };
        let m = o.0.downcast_ref::<FingerprintMismatch>().expect("mismatch");
        assert!(m
            .to_string()
            .starts_with("certificate fingerprint mismatch: expected "));
        let seen = v.seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            Some(format_fingerprint(&fingerprint_of(other.as_ref())))
        );
    }

    #[test]
    fn verifier_without_pin_rejects_everything() {
        let der = CertificateDer::from(vec![1u8, 2, 3, 4]);
        let name = ServerName::try_from("localhost").expect("name");
        let v = PinnedVerifier {
            expected: None,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            seen: Arc::new(Mutex::new(None)),
        };
        assert!(v
            .verify_server_cert(&der, &[], &name, &[], UnixTime::now())
            .is_err());
    }
}
