//! VM consoles: one-time VNC tickets and the WebSocket ↔ VNC proxy.
//!
//! A VM's VNC server listens on 127.0.0.1 only, with a per-VM password. A logged-in user asks
//! for a ticket for one VM (`POST …/vms/{vmid}/vncproxy`); the browser then opens
//! `…/vms/{vmid}/vncwebsocket?vncticket=…` with its session. The ticket is single-use, expires
//! after 60 s and is bound to the VM and the user, so it cannot open another VM's console.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::db::now;

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
