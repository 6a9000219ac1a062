//! The API's TLS identity: a bring-your-own certificate, or a self-signed one generated on
//! first start (key 0600), whose SHA-256 fingerprint is printed and stored for pinning.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

fn generate(cert_path: &PathBuf, key_path: &PathBuf, names: &[String]) -> Result<()> {
    if let Some(d) = cert_path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| Error::Internal(format!("certificate: {e}")))?;
    let tmp_key = key_path.with_extension("key.tmp");
    std::fs::write(&tmp_key, ck.key_pair.serialize_pem())?;
    std::fs::set_permissions(&tmp_key, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp_key, key_path)?;
    std::fs::write(cert_path, ck.cert.pem())?;
    Ok(())
}
