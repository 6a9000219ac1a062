//! A connection hostd drops mid-request is an error the CLI reports (exit 1, a message on
//! stderr), never a silent death by SIGPIPE (exit 141): the CLI keeps SIGPIPE ignored, so a
//! write to a closed socket is an `EPIPE` error like any other.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

/// SIGPIPE (13) is bit 12 of the ignored-signals mask in /proc/PID/status.
fn sigpipe_ignored(pid: u32) -> Result<bool, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let mask = s
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .ok_or("no SigIgn line")?;
    let m = u64::from_str_radix(mask.trim(), 16).map_err(|e| e.to_string())?;
    Ok(m & (1 << 12) != 0)
}

#[test]
fn a_dropped_connection_is_reported_not_a_sigpipe_death() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("keel-cli-drop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("big.img");
    std::fs::write(&file, vec![0u8; 32 << 20]).map_err(|e| e.to_string())?;
    // a TLS server with a pinned self-signed certificate, as hostd serves
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).map_err(|e| e.to_string())?;
    let der = ck.cert.der().clone();
    let fp = keel_pin::format_fingerprint(&keel_pin::fingerprint_of(&der));
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
    let cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![der], key.into())
    .map_err(|e| e.to_string())?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let mut child = Command::new(KEEL)
        .args([
            "--url",
            &format!("https://127.0.0.1:{port}"),
            "--fingerprint",
            &fp,
            "--token",
            "root@pam!t=secret",
            "--node",
            "n1",
            "storage",
            "upload",
            "local",
        ])
        .arg(&file)
        .env("HOME", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {KEEL}: {e}"))?;
    // the server: answer the upload's preflight (pools, volumes) like hostd, then take the
    // upload's head and a little of its body and drop the connection
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let cfg = std::sync::Arc::new(cfg);
    let mut checked = false;
    let mut dropped = false;
    let t0 = Instant::now();
    while !dropped {
        let tcp = match l.accept() {
            Ok((s, _)) => s,
            Err(_) if t0.elapsed() < Duration::from_secs(30) => {
                if let Ok(Some(st)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err(format!("keel ended ({st}) before its upload: {err}"));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                let _ = child.kill();
                return Err(format!("keel did not upload within 30 s: {e}"));
            }
        };
        if !checked {
            assert!(
                sigpipe_ignored(child.id())?,
                "SIGPIPE must stay ignored in keel"
            );
            checked = true;
        }
        tcp.set_nonblocking(false).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(cfg.clone()).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf: Vec<u8> = vec![];
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match tls.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let line = head.lines().next().unwrap_or_default().to_string();
            let body = if line.starts_with("GET ") && line.contains("/content") {
                "[]".to_string()
            } else if line.starts_with("GET ") && line.contains("/storage") {
                r#"[{"name":"local","kind":"dir","path":"/x","active":true,"capacity":1099511627776,"allocation":0,"available":1099511627776}]"#.to_string()
            } else {
                // the upload: some of its body, then gone without a word (unread data makes
                // the kernel answer with a reset)
                let mut got = buf.len();
                while got < 256 * 1024 {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                assert!(
                    got >= 256 * 1024,
                    "the upload started ({got} bytes): {line}"
                );
                dropped = true;
                break;
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            std::io::Write::write_all(&mut tls, resp.as_bytes()).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut tls).map_err(|e| e.to_string())?;
        }
        drop(tls);
    }
    drop(l);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return Err("keel did not end within 60 s after the connection dropped".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = std::fs::remove_dir_all(&dir);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "killed by a signal; stderr: {err}");
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(err.starts_with("error:"), "a message on stderr: {err:?}");
    Ok(())
}
