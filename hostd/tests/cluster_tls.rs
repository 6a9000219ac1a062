//! Member-to-member TLS on loopback, no corosync: two API servers with hostd's TLS stack
//! (`tls::server_config` + `tls::PeerCertAcceptor`, certificates from `clusterd::ca`), the
//! forwarded-request checks hostd applies (peer signature keyed by the cluster key + a
//! CA-verified client certificate issued for the signing member), and the console relay of
//! `console::forward_ws` from node A to a VNC server (a fake RFB listener) behind node B.
//!
//! * a forwarded request without a client certificate is refused (401), one with another
//!   cluster's certificate fails the handshake, one with a member certificate for another node
//!   than the signer is refused (401), the right one is accepted;
//! * a console WebSocket opened on A for a VM of B reaches B's VNC server: the RFB banner
//!   arrives through A and bytes typed on A come back (the fake echoes them);
//! * B's refusal (A without its certificate) reaches the browser as B's error, before any
//!   upgrade.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use axum_server::tls_rustls::RustlsConfig;
use clusterd::ca::{ClusterCa, NodeIdentity};
use futures_util::{SinkExt, StreamExt};
use hostd::cluster::FORWARDED_USER;
use hostd::cluster_net::{self, PEER_HEADER};
use hostd::tls::{self, ClusterClientVerifier, PeerCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const KEY: [u8; 64] = [7u8; 64];
/// Node B's revocation list: node-r was removed (its certificate is still CA-signed).
const REMOVED: [&str; 1] = ["node-r"];
/// Node B's nonce cache.
static NONCES: std::sync::LazyLock<cluster_net::NonceCache> =
    std::sync::LazyLock::new(cluster_net::NonceCache::default);
const BANNER: &[u8] = b"RFB 003.008\n";

fn ident(name: &str) -> NodeIdentity {
    NodeIdentity {
        name: name.into(),
        dns: vec!["localhost".into()],
        addrs: vec![std::net::IpAddr::from([127, 0, 0, 1])],
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Serve `app` with hostd's TLS stack on a free loopback port.
fn serve(
    cert: &str,
    key: &str,
    ca: Option<&str>,
    app: Router,
) -> (SocketAddr, axum_server::Handle) {
    let v = ClusterClientVerifier::new();
    v.set_ca(ca).unwrap();
    let cfg =
        RustlsConfig::from_config(tls::server_config(cert.as_bytes(), key.as_bytes(), v).unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let h = axum_server::Handle::new();
    tokio::spawn(
        axum_server::from_tcp(l)
            .acceptor(tls::PeerCertAcceptor::new(cfg))
            .handle(h.clone())
            .serve(app.into_make_service()),
    );
    (addr, h)
}

/// A fake VNC server: sends the RFB banner, then echoes. Returns its port.
async fn fake_vnc() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(BANNER).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[derive(Clone)]
struct VncPort(u16);

#[derive(Clone)]
struct Upstream {
    b_api: String,
    tls: rustls::ClientConfig,
}

#[derive(serde::Deserialize)]
struct Ticket {
    vncticket: String,
}

/// Node B's side of a forwarded console request: hostd's own check of a forwarded request
/// (`cluster::verify_forwarded`, what `check_forwarded` runs: the peer signature over method +
/// path + query, a member as signer, the connection's verified client certificate issued for
/// the signer); then the real WebSocket ↔ VNC proxy.
async fn b_console(
    Extension(pc): Extension<PeerCert>,
    Extension(VncPort(vnc_port)): Extension<VncPort>,
    Path((_node, vmid)): Path<(String, u32)>,
    Query(q): Query<Ticket>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let pq = uri.path_and_query().map(|x| x.as_str()).unwrap_or("");
    let members = ["node-a", "node-b", "node-c"];
    let trust = hostd::cluster::Trust {
        key: &KEY,
        members: &members,
        removed: &REMOVED.map(String::from),
        nonces: &NONCES,
    };
    let empty = cluster_net::body_digest(b"");
    let (from, user) =
        match hostd::cluster::verify_forwarded(&trust, &headers, &pc, "GET", pq, &empty, now()) {
            Ok(x) => x,
            // the JSON error hostd answers with (401 for these)
            Err(e) => return hostd::http::ApiError(e).into_response(),
        };
    assert_eq!((from.as_str(), user.as_str()), ("node-a", "root"));
    assert_eq!(q.vncticket, "t1");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", vnc_port))
        .await
        .unwrap();
    ws.protocols(["binary"])
        .on_upgrade(move |s| hostd::console::proxy(s, tcp, vmid))
}

/// Node A's side: what `cluster::forward_console` does for a VM of B.
async fn a_console(
    Extension(Upstream { b_api, tls }): Extension<Upstream>,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let pq = uri.path_and_query().map(|x| x.as_str()).unwrap_or("");
    let sig = cluster_net::peer_header(&KEY, "node-a", now(), &get_signed(pq)).unwrap();
    let headers = [(PEER_HEADER, sig), (FORWARDED_USER, "root".to_string())];
    match hostd::console::forward_ws(ws, tls, "node-b", &b_api, pq, &headers, 100).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// What a forwarded console GET for root signs.
fn get_signed(pq: &str) -> cluster_net::Signed<'_> {
    cluster_net::Signed {
        method: "GET",
        path: pq,
        user: "root",
        body: EMPTY_DIGEST,
    }
}

/// SHA-256 of an empty body.
const EMPTY_DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn signed(pq: &str, from: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            PEER_HEADER,
            cluster_net::peer_header(&KEY, from, now(), &get_signed(pq)).unwrap(),
        ),
        (FORWARDED_USER, "root".to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_need_the_member_certificate_and_consoles_are_relayed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = ClusterCa::generate("loop").unwrap();
    let other = ClusterCa::generate("elsewhere").unwrap();
    let (a_cert, a_key) = ca.issue(&ident("node-a")).unwrap();
    let (b_cert, b_key) = ca.issue(&ident("node-b")).unwrap();
    let (c_cert, c_key) = ca.issue(&ident("node-c")).unwrap();
    let (x_cert, x_key) = other.issue(&ident("node-a")).unwrap();
    let vnc_port = fake_vnc().await;

    // node B: a member API with the console route
    let b_app = Router::new()
        .route(
            "/api/v1/nodes/{node}/vms/{vmid}/vncwebsocket",
            get(b_console),
        )
        .layer(Extension(VncPort(vnc_port)));
    let (b_addr, b_h) = serve(&b_cert, &b_key, Some(ca.cert_pem()), b_app);
    let b_api = b_addr.to_string();
    let pq = "/api/v1/nodes/node-b/vms/100/vncwebsocket?vncticket=t1";

    let member = |id: Option<(&str, &str)>| {
        cluster_net::member_tls_config(
            ca.cert_pem(),
            id.map(|(c, k)| (c.as_bytes().to_vec(), k.as_bytes().to_vec())),
        )
        .unwrap()
    };
    // the CA-verified TLS to B alone, as hostd's member client does it
    let t = Instant::now();
    let r =
        hostd::console::connect_member(member(None), "node-b", &b_api, pq, &signed(pq, "node-a"))
            .await;
    let e = r
        .expect_err("no client certificate must be refused")
        .to_string();
    assert!(
        e.contains("401") && e.contains("without a client certificate"),
        "{e}"
    );
    eprintln!("no client certificate: refused in {:?}: {e}", t.elapsed());

    let other_cfg = cluster_net::member_tls_config(
        ca.cert_pem(),
        Some((x_cert.as_bytes().to_vec(), x_key.as_bytes().to_vec())),
    )
    .unwrap();
    let r = hostd::console::connect_member(other_cfg, "node-b", &b_api, pq, &signed(pq, "node-a"))
        .await;
    let e = r
        .expect_err("another CA's certificate must be refused")
        .to_string();
    eprintln!("another cluster's certificate: {e}");
    assert!(!e.contains("101"), "{e}");

    // a real member's certificate, but not the signer's
    let r = hostd::console::connect_member(
        member(Some((&c_cert, &c_key))),
        "node-b",
        &b_api,
        pq,
        &signed(pq, "node-a"),
    )
    .await;
    let e = r
        .expect_err("node-c's certificate cannot speak for node-a")
        .to_string();
    assert!(e.contains("not issued for node node-a"), "{e}");

    // a certificate of the cluster's CA and a valid signature, but not from a member
    let (d_cert, d_key) = ca.issue(&ident("node-d")).unwrap();
    let r = hostd::console::connect_member(
        member(Some((&d_cert, &d_key))),
        "node-b",
        &b_api,
        pq,
        &signed(pq, "node-d"),
    )
    .await;
    let e = r.expect_err("a non-member must be refused").to_string();
    assert!(
        e.contains("401") && e.contains("node-d is not a member"),
        "{e}"
    );

    // a removed node: its certificate is still signed by the cluster's CA, its signature valid
    // with the key it held (here the same key: the revocation alone must refuse it)
    let (r_cert, r_key) = ca.issue(&ident("node-r")).unwrap();
    let r = hostd::console::connect_member(
        member(Some((&r_cert, &r_key))),
        "node-b",
        &b_api,
        pq,
        &signed(pq, "node-r"),
    )
    .await;
    let e = r.expect_err("a removed node must be refused").to_string();
    assert!(
        e.contains("401") && e.contains("node-r was removed from the cluster"),
        "{e}"
    );

    // a replay: the same signed headers twice, over node-a's own certificate
    let once = signed(pq, "node-a");
    let mut ws = hostd::console::connect_member(
        member(Some((&a_cert, &a_key))),
        "node-b",
        &b_api,
        pq,
        &once,
    )
    .await
    .expect("first use of a signature");
    let _ = ws.close(None).await;
    let r = hostd::console::connect_member(
        member(Some((&a_cert, &a_key))),
        "node-b",
        &b_api,
        pq,
        &once,
    )
    .await;
    let e = r
        .expect_err("a replayed request must be refused")
        .to_string();
    assert!(
        e.contains("401") && e.contains("replayed peer request"),
        "{e}"
    );

    // the right certificate, but a bad signature
    let mut bad = signed(pq, "node-a");
    bad[0].1 = cluster_net::peer_header(&[9u8; 64], "node-a", now(), &get_signed(pq)).unwrap();
    let r =
        hostd::console::connect_member(member(Some((&a_cert, &a_key))), "node-b", &b_api, pq, &bad)
            .await;
    assert!(r.is_err(), "signature with another key accepted");

    // accepted: node-a's certificate and signature
    let t = Instant::now();
    let mut ws = hostd::console::connect_member(
        member(Some((&a_cert, &a_key))),
        "node-b",
        &b_api,
        pq,
        &signed(pq, "node-a"),
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().as_ref(), BANNER);
    eprintln!("direct member console: RFB banner after {:?}", t.elapsed());
    let _ = ws.close(None).await;

    // node A relays the browser's console WebSocket to B
    for (label, id) in [
        ("with", Some((a_cert.clone(), a_key.clone()))),
        ("without", None),
    ] {
        let tls_cfg = member(id.as_ref().map(|(c, k)| (c.as_str(), k.as_str())));
        let a_app = Router::new()
            .route(
                "/api/v1/nodes/{node}/vms/{vmid}/vncwebsocket",
                get(a_console),
            )
            .layer(Extension(Upstream {
                b_api: b_api.clone(),
                tls: tls_cfg,
            }));
        // A's own certificate (the browser is not a member: no client certificate)
        let (a_addr, a_h) = serve(&a_cert, &a_key, Some(ca.cert_pem()), a_app);
        let t = Instant::now();
        let browser =
            hostd::console::connect_member(member(None), "node-a", &a_addr.to_string(), pq, &[])
                .await;
        if label == "without" {
            let e = browser
                .expect_err("A without its certificate: refused")
                .to_string();
            assert!(
                e.contains("502") && e.contains("without a client certificate"),
                "{e}"
            );
            eprintln!("relay without A's certificate: the browser gets {e}");
            a_h.shutdown();
            continue;
        }
        let mut ws = browser.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            first.into_data().as_ref(),
            BANNER,
            "B's VNC banner through A"
        );
        let banner_at = t.elapsed();
        // typed on A, through B's proxy to the VNC server, echoed back
        let n = 200;
        let t2 = Instant::now();
        for i in 0..n {
            let msg = format!("key {i}");
            ws.send(Message::Binary(msg.clone().into_bytes().into()))
                .await
                .unwrap();
            let mut got = Vec::new();
            while got.len() < msg.len() {
                let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                got.extend_from_slice(&m.into_data());
            }
            assert_eq!(got, msg.as_bytes());
        }
        let rt = t2.elapsed() / n;
        eprintln!(
            "console through A to B's VNC: banner after {banner_at:?}, {n} echo round trips, {rt:?} each"
        );
        let _ = ws.close(None).await;
        a_h.shutdown();
    }
    b_h.shutdown();
}
