//! Answer sources that need a peer: HTTPS with a pinned certificate (a rustls server on
//! loopback in this test), and the post-install webhook's POST.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};

use installer::fetch::{self, format_fingerprint, FetchError};
use installer::source::{fetch_answer, SourceError};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

const ANSWER: &str = "[global]\nhostname = \"node{NN}\"\ndomain = \"lab\"\n[disk]\n";

/// A one-thread HTTPS server answering `n` requests with `ANSWER`; sends each request's raw
/// text back through the channel. Returns (port, fingerprint).
fn server(n: usize) -> (u16, String, mpsc::Receiver<String>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert = ck.cert.der().clone();
    let fp = format_fingerprint(&Sha256::digest(cert.as_ref()));
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("server config");
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((sock, _)) = l.accept() else { return };
            let conn = rustls::ServerConnection::new(cfg.clone()).expect("conn");
            let mut tls = rustls::StreamOwned::new(conn, sock);
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read headers (and a body announced by Content-Length).
            loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => req.extend_from_slice(&buf[..k]),
                }
                let text = String::from_utf8_lossy(&req).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if req.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&req).to_string());
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{ANSWER}",
                ANSWER.len()
            );
            let _ = tls.write_all(resp.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, fp, rx)
}

#[test]
fn https_answer_with_the_right_pin_is_fetched() {
    let (port, fp, rx) = server(1);
    let url = format!("https://127.0.0.1:{port}/answers/node.toml");
    let text = fetch_answer(&url, &fp, 1).expect("fetch");
    assert_eq!(text, ANSWER);
    let req = rx.recv().expect("request");
    assert!(
        req.starts_with("GET /answers/node.toml HTTP/1.0\r\n"),
        "{req}"
    );
    // Lower case and without colons is the same pin.
    let (port, fp, _rx) = server(1);
    let bare = fp.replace(':', "").to_lowercase();
    let url = format!("https://127.0.0.1:{port}/a");
    assert_eq!(fetch_answer(&url, &bare, 1).expect("fetch"), ANSWER);
}

#[test]
fn https_answer_with_a_wrong_pin_is_refused() {
    let (port, fp, _rx) = server(1);
    let wrong = format!("00{}", &fp[2..]);
    let url = format!("https://127.0.0.1:{port}/a");
    let err = fetch_answer(&url, &wrong, 3).expect_err("must refuse");
    match &err {
        SourceError::Fetch(FetchError::PinMismatch {
            expected,
            presented,
            ..
        }) => {
            assert_eq!(expected, &wrong);
            assert_eq!(presented, &fp);
        }
        e => panic!("expected a pin mismatch, got {e:?}"),
    }
    assert!(err.to_string().contains("refusing it"), "{err}");
}

#[test]
fn webhook_post_carries_the_body() {
    let (port, fp, rx) = server(1);
    let url = format!("https://127.0.0.1:{port}/installed");
    fetch::request(
        &url,
        &fp,
        "POST",
        Some(("application/json", br#"{"hostname":"node11"}"#)),
        std::time::Duration::from_secs(10),
    )
    .expect("post");
    let req = rx.recv().expect("request");
    assert!(req.starts_with("POST /installed HTTP/1.0\r\n"), "{req}");
    assert!(req.ends_with(r#"{"hostname":"node11"}"#), "{req}");
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let fp = "AB:".repeat(31) + "AB";
    let err = fetch_answer(&format!("https://127.0.0.1:{port}/a"), &fp, 1).expect_err("no server");
    assert!(
        matches!(err, SourceError::Fetch(FetchError::Connect { .. })),
        "{err:?}"
    );
}
