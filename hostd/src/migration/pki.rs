//! libvirt's and QEMU's TLS files from the node's cluster certificate: libvirtd serves
//! `listen_tls` with it, a source libvirtd presents it to the target's as its client
//! certificate (`qemu+tls://…`), and QEMU uses it for the native TLS migration stream and the
//! NBD disk copy. Every file comes from what init/join already put in `<state>/cluster/`
//! (CA certificate, node certificate and key signed by the cluster CA): no second PKI.

use std::path::PathBuf;

use clusterd::ca::write_file_mode;
use clusterd::form::Paths;

use crate::config::MigrationConfig;
use crate::error::{Error, Result};

/// Where the TLS files go (from `[migration]`) and whose certificate they carry.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cfg: MigrationConfig,
    pub node: String,
}

impl TlsFiles {
    /// Every file written, with its content and mode, from the CA, certificate and key PEMs.
    fn plan(&self, ca: &str, cert: &str, key: &str) -> Vec<(PathBuf, String, u32)> {
        let c = &self.cfg;
        let q = &c.qemu_tls_dir;
        let mut v = vec![
            (c.ca_file.clone(), ca.to_string(), 0o644),
            (c.server_cert.clone(), cert.to_string(), 0o644),
            (c.server_key.clone(), key.to_string(), 0o600),
            (c.client_cert.clone(), cert.to_string(), 0o644),
            (c.client_key.clone(), key.to_string(), 0o600),
            (q.join("ca-cert.pem"), ca.to_string(), 0o644),
            (q.join("server-cert.pem"), cert.to_string(), 0o644),
            (q.join("server-key.pem"), key.to_string(), 0o600),
            (q.join("client-cert.pem"), cert.to_string(), 0o644),
            (q.join("client-key.pem"), key.to_string(), 0o600),
        ];
        if let Some(p) = &c.client_pkipath {
            v.push((p.join("cacert.pem"), ca.to_string(), 0o644));
            v.push((p.join("clientcert.pem"), cert.to_string(), 0o644));
            v.push((p.join("clientkey.pem"), key.to_string(), 0o600));
        }
        v
    }

    /// Write the files from the cluster material in `paths` (a member only). Refuses, naming
    /// the reason, a node certificate libvirt or QEMU would reject (key usage, extended key
    /// usage, the node's name missing from its names): a certificate from before Keel issued
    /// them for TLS migration must be renewed by joining again.
    pub fn write(&self, paths: &Paths) -> Result<Vec<PathBuf>> {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .map_err(|e| Error::Internal(format!("{}: {e}", p.display())))
        };
        let ca = read(paths.cluster_dir.join("ca.crt"))?;
        let cert = read(paths.node_cert())?;
        let key = read(paths.node_key())?;
        let problems = clusterd::ca::tls_usage_problems(&cert, &self.node)
            .map_err(|e| Error::Internal(format!("the node certificate: {e}")))?;
        if !problems.is_empty() {
            return Err(Error::Conflict(format!(
                "the node certificate {} cannot serve libvirt/QEMU TLS: {}",
                paths.node_cert().display(),
                problems.join("; ")
            )));
        }
        let mut out = vec![];
        for (p, content, mode) in self.plan(&ca, &cert, &key) {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)
                    .map_err(|e| Error::Internal(format!("{}: {e}", d.display())))?;
            }
            write_file_mode(&p, content.as_bytes(), mode)
                .map_err(|e| Error::Internal(e.to_string()))?;
            out.push(p);
        }
        Ok(out)
    }

    /// The libvirt URI of `host`'s libvirtd over TLS (`?pkipath=` when configured).
    pub fn peer_uri(&self, host: &str) -> String {
        let h = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        match &self.cfg.client_pkipath {
            Some(p) => format!("qemu+tls://{h}/system?pkipath={}", p.display()),
            None => format!("qemu+tls://{h}/system"),
        }
    }
}

/// Write the TLS files of a member, logging the outcome (start of hostd, init, join): a
/// failure is a warning, since only migration needs them.
pub fn write_logged(files: &TlsFiles, paths: &Paths) {
    if !paths.record().exists() {
        return;
    }
    match files.write(paths) {
        Ok(v) => tracing::info!(
            files = v.len(),
            "libvirt/QEMU TLS files written for migration"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "libvirt/QEMU TLS files not written: migration will fail")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_files() -> Result<()> {
        let d = tempfile::tempdir()?;
        let cfg = MigrationConfig {
            client_pkipath: Some(d.path().join("pki")),
            ca_file: d.path().join("CA/cacert.pem"),
            server_cert: d.path().join("libvirt/servercert.pem"),
            server_key: d.path().join("libvirt/private/serverkey.pem"),
            client_cert: d.path().join("libvirt/clientcert.pem"),
            client_key: d.path().join("libvirt/private/clientkey.pem"),
            qemu_tls_dir: d.path().join("qemu"),
        };
        let f = TlsFiles {
            cfg,
            node: "node2".into(),
        };
        assert_eq!(
            f.peer_uri("fd00::2"),
            format!(
                "qemu+tls://[fd00::2]/system?pkipath={}",
                d.path().join("pki").display()
            )
        );
        // a member's cluster material
        let cluster = d.path().join("cluster");
        std::fs::create_dir_all(&cluster)?;
        let ca =
            clusterd::ca::ClusterCa::generate("c").map_err(|e| Error::Internal(e.to_string()))?;
        let id = |n: &str| clusterd::ca::NodeIdentity {
            name: n.into(),
            dns: vec![],
            addrs: vec![],
        };
        let (cert, key) = ca
            .issue(&id("node2"))
            .map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(cluster.join("ca.crt"), ca.cert_pem())?;
        std::fs::write(cluster.join("node.crt"), &cert)?;
        std::fs::write(cluster.join("node.key"), &key)?;
        std::fs::write(cluster.join("cluster.json"), "{}")?;
        let paths = Paths {
            corosync_dir: d.path().into(),
            pacemaker_dir: d.path().into(),
            pacemaker_cib_dir: d.path().into(),
            cluster_dir: cluster.clone(),
            ssh_dir: d.path().into(),
            known_hosts: d.path().into(),
            root_ssh_dir: d.path().into(),
            sbd_defaults: d.path().join("sbd"),
        };
        let written = f.write(&paths)?;
        assert_eq!(written.len(), 13);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("qemu/server-key.pem"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(d.path().join("pki/clientcert.pem"))?,
            cert
        );
        // a certificate for another name is refused with the reason
        let (cert3, _) = ca
            .issue(&id("node3"))
            .map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(cluster.join("node.crt"), &cert3)?;
        let e = f
            .write(&paths)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("\"node2\" is not among"), "{e}");
        Ok(())
    }
}
