//! VM consoles: one-time VNC tickets and the WebSocket ↔ VNC proxy.
//!
//! A VM's VNC server listens on 127.0.0.1 only. A logged-in user asks for a ticket for one VM
//! (`POST …/vms/{vmid}/vncproxy`), which comes with a fresh VNC password set on the running
//! domain for that ticket only ([`fresh_password`]); the browser then opens
//! `…/vms/{vmid}/vncwebsocket?vncticket=…` with its session. The ticket is single-use, expires
//! after 60 s and is bound to the VM and the user, so it cannot open another VM's console.
//!
//! A console of a VM on another member is asked for through any node: `vncproxy` is forwarded
//! like every node-scoped request (the owner issues the ticket), and the WebSocket is relayed:
//! the node the browser talks to opens the same WebSocket on the owner over mutual TLS (its
//! CA-signed client certificate, the peer signature, the user) and pipes the frames
//! ([`connect_member`], [`relay`]). The browser never needs to reach or trust the owner.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::db::now;
use crate::error::{Error, Result};

pub const TICKET_LIFETIME_S: i64 = 60;

#[derive(Default)]
pub struct Tickets(Mutex<HashMap<String, (u32, String, i64)>>);

impl Tickets {
    /// A new ticket for `vmid`, usable once by `user`.
    pub fn issue(&self, vmid: u32, user: &str) -> (String, i64) {
        let mut b = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut b);
        let t = hex::encode(b);
        let exp = now() + TICKET_LIFETIME_S;
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, (_, _, e)| *e > now());
        m.insert(t.clone(), (vmid, user.to_string(), exp));
        (t, exp)
    }

    /// Consume a ticket; true only if it was issued for this VM and user and has not expired.
    pub fn redeem(&self, ticket: &str, vmid: u32, user: &str) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.remove(ticket) {
            Some((v, u, exp)) => v == vmid && u == user && exp > now(),
            None => false,
        }
    }
}

/// A VNC password for one console ticket (as Proxmox does): 8 random letters and digits (VNC
/// authentication uses 8 characters), set live on the running domain and valid for new
/// connections until the ticket expires. The password in the domain's definition is never
/// handed out; each ticket replaces the previous ticket's password.
pub fn fresh_password(node: &crate::Node, vmid: u32, valid_to: i64) -> Result<String> {
    use rand::{distributions::Alphanumeric, Rng};
    let row = crate::vms::find(node, vmid)?;
    if !row.state.is_active() {
        return Err(Error::Conflict(format!(
            "VM {vmid} is {}: start it to open its console",
            row.state.as_str()
        )));
    }
    let parsed = crate::domain::parse(&node.hv.domain_xml(&row.name, false)?)?;
    if !parsed.spec.vnc {
        return Err(Error::Conflict(format!(
            "VM {vmid} has no VNC console (vnc is off in its spec)"
        )));
    }
    let pw: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    node.hv.set_vnc_password(&row.name, &pw, valid_to)?;
    Ok(pw)
}

/// Pipe a WebSocket to the VM's VNC server until either side closes.
pub async fn proxy(socket: WebSocket, mut tcp: TcpStream, vmid: u32) {
    info!(vmid, "console opened");
    let (mut rd, mut wr) = tcp.split();
    let (mut ws_tx, mut ws_rx) = socket.split();
    let to_vnc = async {
        while let Some(Ok(msg)) = ws_rx.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    let from_vnc = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(Message::Close(None)).await;
    };
    tokio::select! {
        _ = to_vnc => {},
        _ = from_vnc => {},
    }
    debug!(vmid, "console closed");
}

/// The console WebSocket of a member, over mutual TLS.
pub type MemberWs = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Open the WebSocket `pq` (path and query) on member `name` at `api` (`HOST:PORT`) with
/// `tls` (cluster CA, this node's client certificate) and the extra `headers` (peer signature,
/// user). An answer other than 101 becomes the error the member gave.
pub async fn connect_member(
    tls: rustls::ClientConfig,
    name: &str,
    api: &str,
    pq: &str,
    headers: &[(&str, String)],
) -> Result<MemberWs> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    let host = api
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(api)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let sn = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| Error::Internal(format!("member {name}: bad API address {api:?}")))?;
    let unreachable =
        |e: &dyn std::fmt::Display| Error::Internal(format!("console of {name} at {api}: {e}"));
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(api))
        .await
        .map_err(|_| unreachable(&"connection timed out after 10 s"))?
        .map_err(|e| unreachable(&e))?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(sn, tcp)
        .await
        .map_err(|e| unreachable(&crate::cluster_net::error_chain(&e)))?;
    let mut req = format!("wss://{api}{pq}")
        .into_client_request()
        .map_err(|e| unreachable(&e))?;
    for (k, v) in headers {
        let k = HeaderName::from_bytes(k.as_bytes()).map_err(|e| unreachable(&e))?;
        let v = HeaderValue::from_str(v).map_err(|e| unreachable(&e))?;
        req.headers_mut().insert(k, v);
    }
    req.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("binary"));
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            let body = r
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let msg = serde_json::from_str::<keel_api::ErrorBody>(&body)
                .map(|b| b.error.message)
                .unwrap_or(body);
            let msg = format!("{name} answered {}: {msg}", r.status());
            Err(match r.status().as_u16() {
                401 => Error::Unauthorized(msg),
                403 => Error::Forbidden(msg),
                404 => Error::NotFound(msg),
                409 => Error::Conflict(msg),
                _ => Error::Internal(msg),
            })
        }
        Err(e) => Err(unreachable(&e)),
    }
}

/// Answer the browser's upgrade with a relay to the same console on member `name` (see
/// [`connect_member`]); a refusal by the member is answered before the upgrade.
pub async fn forward_ws(
    ws: axum::extract::WebSocketUpgrade,
    tls: rustls::ClientConfig,
    name: &str,
    api: &str,
    pq: &str,
    headers: &[(&str, String)],
    vmid: u32,
) -> Result<axum::response::Response> {
    let up = connect_member(tls, name, api, pq, headers).await?;
    Ok(ws
        .protocols(["binary"])
        .on_upgrade(move |s| relay(s, up, vmid)))
}

/// Pipe the browser's WebSocket to a member's console WebSocket until either side closes.
pub async fn relay(socket: WebSocket, up: MemberWs, vmid: u32) {
    use tokio_tungstenite::tungstenite::Message as T;
    info!(vmid, "console relayed to its node");
    let (mut up_tx, mut up_rx) = up.split();
    let (mut tx, mut rx) = socket.split();
    let to_member = async {
        while let Some(Ok(msg)) = rx.next().await {
            let m = match msg {
                Message::Binary(b) => T::Binary(b),
                Message::Text(t) => T::Text(t.as_str().into()),
                Message::Close(_) => break,
                _ => continue,
            };
            if up_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = up_tx.close().await;
    };
    let from_member = async {
        while let Some(Ok(msg)) = up_rx.next().await {
            let m = match msg {
                T::Binary(b) => Message::Binary(b),
                T::Text(t) => Message::Text(t.as_str().into()),
                T::Close(_) => break,
                _ => continue,
            };
            if tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    };
    tokio::select! {
        _ = to_member => {},
        _ = from_member => {},
    }
    debug!(vmid, "relayed console closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_and_bound_to_vm_and_user() {
        let t = Tickets::default();
        let (a, _) = t.issue(100, "root");
        assert!(!t.redeem(&a, 101, "root"), "another VM");
        let (b, _) = t.issue(100, "root");
        assert!(!t.redeem(&b, 100, "alice"), "another user");
        let (c, _) = t.issue(100, "root");
        assert!(t.redeem(&c, 100, "root"));
        assert!(!t.redeem(&c, 100, "root"), "second use");
        assert!(!t.redeem("made-up", 100, "root"));
    }
}

#[cfg(test)]
mod password_tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::hv::Hypervisor;
    use crate::tests_support::fake_node;
    use std::sync::Arc;

    /// Each ticket gets its own password, set live on the running domain with the ticket's
    /// expiry; it is never the one in the domain's definition; a stopped VM gets none.
    #[test]
    fn a_fresh_password_per_ticket() -> Result<()> {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = fake_node(hv.clone())?;
        let spec: keel_api::vm::VmSpec =
            serde_json::from_value(serde_json::json!({"vmid": 100, "name": "a"}))
                .map_err(|e| Error::Internal(e.to_string()))?;
        let mut spec = spec;
        crate::vms::check_against_host(&node, &mut spec, None)?;
        let t = node.tasks.begin("vmcreate", "100", "root", true)?;
        crate::vms::create(&node, spec, false, &t)?;
        assert!(matches!(
            fresh_password(&node, 100, 1000),
            Err(Error::Conflict(_))
        ));
        crate::vms::power(&node, 100, crate::hv::Power::Start, &t)?;
        t.finish(&Ok(()));
        let defined = crate::domain::parse(&hv.domain_xml("a", true)?)?.vnc_password;
        let p1 = fresh_password(&node, 100, 1000)?;
        let p2 = fresh_password(&node, 100, 2000)?;
        assert_eq!(p1.len(), 8);
        assert_ne!(p1, p2);
        assert!(defined.is_some() && defined != Some(p1.clone()));
        let calls: Vec<String> = hv
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("set_vnc_password"))
            .collect();
        assert_eq!(
            calls,
            vec![
                format!("set_vnc_password a {p1} 1000"),
                format!("set_vnc_password a {p2} 2000")
            ]
        );
        Ok(())
    }
}
