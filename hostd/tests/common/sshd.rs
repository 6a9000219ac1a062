//! A real OpenSSH server for the sftp backup target's tests: started on a free loopback port
//! with its own host key, a client key in authorized_keys and a `remote/` directory, all in
//! the test's directory; killed (its own PID) when stopped or dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

/// Run a command that must succeed; its stderr in the panic otherwise.
pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (openssh-server and qemu-utils are installed by scripts/lib.sh)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(file.with_extension("pub"));
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(file),
    );
}

impl Sshd {
    /// Keys, authorized_keys and `remote/` in `dir`, and the server started.
    pub fn new(dir: &Path) -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: install openssh-server (scripts/lib.sh's test packages)"
        );
        std::fs::create_dir_all(dir.join("remote")).unwrap_or_else(|e| panic!("{e}"));
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
            .unwrap_or_else(|e| panic!("{e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let mut s = Sshd {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        s.start();
        s
    }

    pub fn start(&mut self) {
        // sshd refuses to start without its privilege separation directory
        std::fs::create_dir_all("/run/sshd").unwrap_or_else(|e| panic!("/run/sshd: {e}"));
        let d = &self.dir;
        let cfg = d.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n",
                self.port,
                d = d.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(d.join("sshd.log")).unwrap_or_else(|e| panic!("{e}"));
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("sshd: {e}"));
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "sshd exited ({st}): {}",
                    std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "sshd is not listening on 127.0.0.1:{}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new host key (the server must be restarted to present it).
    pub fn new_host_key(&self) {
        keygen(&self.dir.join("host_key"));
    }

    /// The host key's fingerprint as OpenSSH prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("host_key.pub"))
            .output()
            .unwrap_or_else(|e| panic!("ssh-keygen: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no fingerprint from ssh-keygen -lf"))
            .to_string()
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    pub fn remote(&self) -> PathBuf {
        self.dir.join("remote")
    }

    /// `root@127.0.0.1:PORT:<dir>/remote`, a target's `path`.
    pub fn location(&self) -> String {
        format!("root@127.0.0.1:{}:{}", self.port, self.remote().display())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
