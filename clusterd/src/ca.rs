//! The cluster CA: an ECDSA P-256 authority created by `keel cluster init`, whose certificate
//! and key every member holds (`<state>/cluster/ca.crt` 0644, `ca.key` 0600), and which signs
//! every node's API certificate (SANs: node name, extra names, link and API addresses).
//! Joiners send a CSR (their key never leaves them); members sign it after the join is
//! authorized. The SHA-256 fingerprint format matches hostd's (`AB:CD:…` of the DER).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |err| CaError::Io {
        path: path.display().to_string(),
        err,
    }
}

/// Write `data` to `path` atomically with `mode` (set before the content lands).
pub fn write_file_mode(path: &Path, data: &[u8], mode: u32) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let tmp = path.with_extension("keel-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// `AB:CD:…`: SHA-256 of a certificate's DER, as hostd prints it.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// DER of the first CERTIFICATE block of a PEM text.
pub fn first_cert_der(pem: &str) -> Result<Vec<u8>, CaError> {
    use base64::Engine;
    const B: &str = "-----BEGIN CERTIFICATE-----";
    const E: &str = "-----END CERTIFICATE-----";
    let start = pem
        .find(B)
        .ok_or_else(|| CaError::Invalid("no CERTIFICATE block in the PEM text".into()))?;
    let rest = &pem[start + B.len()..];
    let end = rest
        .find(E)
        .ok_or_else(|| CaError::Invalid("unterminated CERTIFICATE block".into()))?;
    let b64: String = rest[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| CaError::Invalid(format!("bad base64 in certificate: {e}")))
}

pub fn fingerprint_of_pem(pem: &str) -> Result<String, CaError> {
    Ok(fingerprint_of_der(&first_cert_der(pem)?))
}

/// The cluster certificate authority (certificate + private key).
pub struct ClusterCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What a node certificate is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    /// More DNS names (FQDN, `localhost`).
    pub dns: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

impl NodeIdentity {
    fn params(&self) -> Result<CertificateParams, CaError> {
        let mut sans = vec![self.name.clone()];
        for d in &self.dns {
            if !sans.contains(d) {
                sans.push(d.clone());
            }
        }
        for a in &self.addrs {
            let s = a.to_string();
            if !sans.contains(&s) {
                sans.push(s);
            }
        }
        let mut p = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.name.clone());
        dn.push(DnType::OrganizationName, "Keel cluster node");
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        // keyEncipherment too: libvirt's and QEMU 7's GnuTLS checks refuse a TLS certificate
        // whose critical key usage lacks it (migration between members uses this certificate)
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2049, 12, 31);
        Ok(p)
    }
}

/// What keeps a node certificate from serving libvirt's and QEMU's TLS (migration between
/// members) for `name`: the problems, one sentence each (empty: usable). libvirt and QEMU
/// check that the key usage allows digital signature and key encipherment, that the extended
/// key usage allows both TLS server and client, and that the name connected to is in the
/// subject alternative names.
pub fn tls_usage_problems(cert_pem: &str, name: &str) -> Result<Vec<String>, CaError> {
    let p = CertificateParams::from_ca_cert_pem(cert_pem)?;
    let mut out = vec![];
    for (k, what) in [
        (KeyUsagePurpose::DigitalSignature, "digital signature"),
        (KeyUsagePurpose::KeyEncipherment, "key encipherment"),
    ] {
        if !p.key_usages.is_empty() && !p.key_usages.contains(&k) {
            out.push(format!("its key usage does not allow {what}"));
        }
    }
    for (k, what) in [
        (ExtendedKeyUsagePurpose::ServerAuth, "TLS server"),
        (ExtendedKeyUsagePurpose::ClientAuth, "TLS client"),
    ] {
        if !p.extended_key_usages.is_empty() && !p.extended_key_usages.contains(&k) {
            out.push(format!("its extended key usage does not allow {what}"));
        }
    }
    let has_name = p.subject_alt_names.iter().any(|s| match s {
        rcgen::SanType::DnsName(d) => d.as_str() == name,
        rcgen::SanType::IpAddress(a) => a.to_string() == name,
        _ => false,
    });
    if !has_name {
        out.push(format!(
            "{name:?} is not among its subject alternative names"
        ));
    }
    Ok(out)
}

/// A fresh node key (ECDSA P-256, PEM) and a CSR for `id`. The key stays on the node.
pub fn node_csr(id: &NodeIdentity) -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    // a CSR carries only names; usages and validity are the CA's decision
    let mut p = CertificateParams::new(vec![id.name.clone()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.name.clone());
    p.distinguished_name = dn;
    let csr = p.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

impl ClusterCa {
    /// A new CA for cluster `name`.
    pub fn generate(name: &str) -> Result<ClusterCa, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("Keel cluster CA {name}"));
        dn.push(DnType::OrganizationName, "Keel");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2074, 12, 31);
        let cert = p.self_signed(&key)?;
        let cert_pem = cert.pem();
        Ok(ClusterCa {
            cert,
            key,
            cert_pem,
        })
    }

    /// Load a CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa, CaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing reproduces issuer name and key identifier; the original PEM is kept as is.
        let cert = params.self_signed(&key)?;
        if cert.der().is_empty() {
            return Err(CaError::Invalid("empty CA certificate".into()));
        }
        let want = first_cert_der(cert_pem)?;
        if !contains(&want, &key.public_key_der()) {
            return Err(CaError::Invalid(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        Ok(ClusterCa {
            cert,
            key,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// `<dir>/ca.crt` and `<dir>/ca.key`.
    pub fn load(dir: &Path) -> Result<ClusterCa, CaError> {
        let c = dir.join("ca.crt");
        let k = dir.join("ca.key");
        let cert = std::fs::read_to_string(&c).map_err(io(&c))?;
        let key = std::fs::read_to_string(&k).map_err(io(&k))?;
        ClusterCa::from_pem(&cert, &key)
    }

    /// Write `ca.crt` (0644) and `ca.key` (0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        write_file_mode(
            &dir.join("ca.key"),
            self.key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file_mode(&dir.join("ca.crt"), self.cert_pem.as_bytes(), 0o644)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key (PEM) — only ever sent to a joining member over the pinned, authorized channel.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn fingerprint(&self) -> Result<String, CaError> {
        fingerprint_of_pem(&self.cert_pem)
    }

    /// Issue a certificate + new key for `id` (used by the node holding the CA for itself).
    pub fn issue(&self, id: &NodeIdentity) -> Result<(String, String), CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = id.params()?.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Sign a joiner's CSR. The names come from `id` (what the member authorized), never from
    /// the CSR; only its public key is used, after its self-signature is verified.
    pub fn sign_csr(&self, csr_pem: &str, id: &NodeIdentity) -> Result<String, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::Invalid(format!("cannot parse the CSR: {e}")))?;
        let cert = id
            .params()?
            .signed_by(&csr.public_key, &self.cert, &self.key)?;
        Ok(cert.pem())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> NodeIdentity {
        NodeIdentity {
            name: name.into(),
            dns: vec!["localhost".into()],
            addrs: "192.0.2.1".parse().ok().into_iter().collect(),
        }
    }

    #[test]
    fn ca_round_trip_sign_and_files() -> Result<(), CaError> {
        let dir = tempfile::tempdir().map_err(|e| CaError::Invalid(e.to_string()))?;
        let ca = ClusterCa::generate("c1")?;
        ca.save(dir.path())?;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .map_err(io(dir.path()))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca2 = ClusterCa::load(dir.path())?;
        assert_eq!(ca2.fingerprint()?, ca.fingerprint()?);
        let (csr, key) = node_csr(&id("node2"))?;
        assert!(key.contains("PRIVATE KEY"));
        let cert = ca2.sign_csr(&csr, &id("node2"))?;
        assert_eq!(fingerprint_of_pem(&cert)?.len(), 95);
        let other = ClusterCa::generate("c2")?;
        assert!(ClusterCa::from_pem(ca.cert_pem(), &other.key_pem()).is_err());
        assert!(ca.sign_csr("garbage", &id("x")).is_err());
        assert!(!format!("{ca:?}").contains("PRIVATE"));
        Ok(())
    }

    /// A node certificate serves libvirt/QEMU TLS for its name and addresses, not for others.
    #[test]
    fn node_certificates_suit_libvirt_tls() -> Result<(), CaError> {
        let ca = ClusterCa::generate("c1")?;
        let (csr, _key) = node_csr(&id("node2"))?;
        let cert = ca.sign_csr(&csr, &id("node2"))?;
        assert_eq!(tls_usage_problems(&cert, "node2")?, Vec::<String>::new());
        assert!(tls_usage_problems(&cert, "192.0.2.1")?.is_empty());
        let p = tls_usage_problems(&cert, "node3")?;
        assert!(p.len() == 1 && p[0].contains("node3"), "{p:?}");
        // the CA certificate itself is no TLS server certificate
        let p = tls_usage_problems(ca.cert_pem(), "c1")?;
        assert!(p.iter().any(|x| x.contains("key encipherment")), "{p:?}");
        Ok(())
    }

    /// The signed certificate verifies against the CA with openssl (when installed).
    #[test]
    fn openssl_verifies_chain() -> Result<(), CaError> {
        let dir = tempfile::tempdir().map_err(|e| CaError::Invalid(e.to_string()))?;
        let ca = ClusterCa::generate("c1")?;
        let (csr, _key) = node_csr(&id("node2"))?;
        let cert = ca.sign_csr(&csr, &id("node2"))?;
        let (cert1, _) = ca.issue(&id("node1"))?;
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).map_err(io(dir.path()))?;
        for (n, c) in [("n2.pem", cert), ("n1.pem", cert1)] {
            std::fs::write(dir.path().join(n), c).map_err(io(dir.path()))?;
            let out = std::process::Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(dir.path().join("ca.pem"))
                .arg(dir.path().join(n))
                .output();
            match out {
                Ok(o) => assert!(
                    o.status.success(),
                    "openssl verify: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => panic!("openssl verify cannot run ({e}): install openssl"),
            }
        }
        Ok(())
    }
}
