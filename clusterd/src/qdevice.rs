//! The node side of a QDevice (corosync-qdevice talking to a corosync-qnetd arbiter): the NSS
//! database corosync-qdevice reads (`<corosync_dir>/qdevice/net/nssdb`), made from the qnetd
//! CA certificate and the cluster's certificate with its key (a PKCS#12 file the qnetd host's
//! CA signed), and checks of both before anything is written.
//!
//! The certificate exchange with the qnetd host is the operator's (docs/cluster.md): Keel
//! receives the two files and installs them on every member with corosync's own
//! `corosync-qdevice-net-certutil -i` / `-m`.

use std::path::{Path, PathBuf};

use keel_runner::Runner;

use crate::commands;
use crate::form::{FormError, Paths};

/// `<corosync_dir>/qdevice/net/nssdb`, where corosync-qdevice looks.
pub fn nssdb_dir(paths: &Paths) -> PathBuf {
    paths.corosync_dir.join("qdevice/net/nssdb")
}

/// Where Keel keeps the qnetd CA certificate it was given.
pub fn ca_file(paths: &Paths) -> PathBuf {
    paths.cluster_dir.join("qnetd-cacert.crt")
}

/// Where Keel keeps the cluster's PKCS#12 (certificate + key) it was given.
pub fn p12_file(paths: &Paths) -> PathBuf {
    paths.cluster_dir.join("qdevice-net-node.p12")
}

/// The qnetd CA certificate must be one PEM certificate (`qnetd-cacert.crt`).
pub fn check_ca_pem(pem: &str) -> Result<(), String> {
    // corosync-qnetd-certutil writes `certutil -L`'s readable listing, then the PEM block
    let body = pem
        .split_once("-----BEGIN CERTIFICATE-----")
        .and_then(|(_, rest)| rest.split_once("-----END CERTIFICATE-----"))
        .map(|(b, _)| b);
    let Some(body) = body else {
        return Err(
            "not a PEM certificate: give the qnetd host's /etc/corosync/qnetd/nssdb/qnetd-cacert.crt"
                .into(),
        );
    };
    let b64: String = body.split_whitespace().collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("the PEM certificate's base64 is damaged: {e}"))?;
    if der.first() != Some(&0x30) {
        return Err("the PEM block is not a DER certificate".into());
    }
    Ok(())
}

/// The cluster's PKCS#12 file must be DER (a SEQUENCE) of a plausible size.
pub fn check_p12(der: &[u8]) -> Result<(), String> {
    if der.len() < 64 || der.first() != Some(&0x30) {
        return Err(
            "not a PKCS#12 file: give the qdevice-net-node.p12 that `corosync-qdevice-net-certutil -M` wrote"
                .into(),
        );
    }
    if der.len() > 64 * 1024 {
        return Err(format!(
            "{} bytes is too large for a PKCS#12 file",
            der.len()
        ));
    }
    Ok(())
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> FormError + '_ {
    move |e| FormError::Failed(format!("{}: {e}", p.display()))
}

/// (Re)make this node's NSS database from the CA and the PKCS#12: an old database is
/// removed first (`-i` refuses an existing one).
pub fn install(paths: &Paths, r: &dyn Runner, ca_pem: &str, p12: &[u8]) -> Result<(), FormError> {
    check_ca_pem(ca_pem).map_err(FormError::Failed)?;
    check_p12(p12).map_err(FormError::Failed)?;
    std::fs::create_dir_all(&paths.cluster_dir).map_err(io_err(&paths.cluster_dir))?;
    let ca = ca_file(paths);
    let pk = p12_file(paths);
    crate::ca::write_file_mode(&ca, ca_pem.as_bytes(), 0o644)
        .map_err(|e| FormError::Failed(e.to_string()))?;
    crate::ca::write_file_mode(&pk, p12, 0o600).map_err(|e| FormError::Failed(e.to_string()))?;
    let db = nssdb_dir(paths);
    if db.exists() {
        std::fs::remove_dir_all(&db).map_err(io_err(&db))?;
    }
    r.run_ok(&commands::qdevice_nss_init(&ca.display().to_string()))?;
    r.run_ok(&commands::qdevice_nss_import(&pk.display().to_string()))?;
    Ok(())
}

/// Forget the QDevice's certificates (its NSS database and Keel's copies).
pub fn uninstall(paths: &Paths) -> Result<(), FormError> {
    let db = nssdb_dir(paths);
    if db.exists() {
        std::fs::remove_dir_all(&db).map_err(io_err(&db))?;
    }
    for f in [ca_file(paths), p12_file(paths)] {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&f)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn certificate_checks() {
        assert!(check_ca_pem("hello").is_err());
        assert!(
            check_ca_pem("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----").is_err()
        );
        assert!(
            check_ca_pem("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").is_ok()
        );
        assert!(check_p12(b"not der").is_err());
        let mut der = vec![0x30u8];
        der.extend([0u8; 100]);
        assert!(check_p12(&der).is_ok());
    }
}
