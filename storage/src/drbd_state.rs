//! What a DRBD 8.4 resource is doing, read from `/proc/drbd` (the 8.4 kernel module's own
//! report: connection state, roles, disk states, and the resync's progress while it runs).

use serde::{Deserialize, Serialize};

/// One minor's line (and its resync lines) in `/proc/drbd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrbdState {
    pub minor: u32,
    /// `cs:` — `Connected`, `WFConnection`, `SyncSource`, `SyncTarget`, `StandAlone`,
    /// `Unconfigured`, …
    pub connection: String,
    /// `ro:` this node / the peer: `Primary`, `Secondary`, `Unknown`.
    pub role: String,
    pub peer_role: String,
    /// `ds:` this node / the peer: `UpToDate`, `Inconsistent`, `Outdated`, `DUnknown`, …
    pub disk: String,
    pub peer_disk: String,
    /// `sync'ed: N%` while a resync runs.
    pub sync_percent: Option<f64>,
    /// `finish: H:MM:SS` while a resync runs.
    pub sync_eta: Option<String>,
    /// `speed: N (avg) K/sec` while a resync runs.
    pub sync_kib_s: Option<u64>,
}

impl DrbdState {
    /// Both disks are UpToDate and the peers are connected.
    pub fn in_sync(&self) -> bool {
        self.connection == "Connected" && self.disk == "UpToDate" && self.peer_disk == "UpToDate"
    }

    /// A split brain leaves both sides StandAlone (after-sb-2pri disconnect) or one waiting
    /// for a peer that refuses it; DRBD logs it, `/proc/drbd` shows StandAlone.
    pub fn standalone(&self) -> bool {
        self.connection == "StandAlone"
    }
}

fn split_pair(v: &str) -> (String, String) {
    match v.split_once('/') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (v.to_string(), String::new()),
    }
}

/// Every minor `/proc/drbd` lists.
pub fn parse_proc_drbd(text: &str) -> Vec<DrbdState> {
    let mut out: Vec<DrbdState> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some((head, rest)) = t.split_once(": cs:") {
            let Ok(minor) = head.trim().parse::<u32>() else {
                continue;
            };
            let mut s = DrbdState {
                minor,
                ..Default::default()
            };
            let mut words = rest.split_whitespace();
            s.connection = words.next().unwrap_or_default().to_string();
            for w in words {
                if let Some(v) = w.strip_prefix("ro:") {
                    (s.role, s.peer_role) = split_pair(v);
                } else if let Some(v) = w.strip_prefix("ds:") {
                    (s.disk, s.peer_disk) = split_pair(v);
                }
            }
            out.push(s);
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if let Some(i) = t.find("sync'ed:") {
            let v = t[i + "sync'ed:".len()..].trim_start();
            cur.sync_percent = v.split('%').next().and_then(|p| p.trim().parse().ok());
        }
        if let Some(v) = t.strip_prefix("finish:") {
            let mut w = v.split_whitespace();
            cur.sync_eta = w.next().map(str::to_string);
            if w.next() == Some("speed:") {
                cur.sync_kib_s = w.next().and_then(|n| n.replace(',', "").parse().ok());
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Shapes of `/proc/drbd` from DRBD 8.4.11 (the lab guests' kernel module).
    const SYNCING: &str = "version: 8.4.11 (api:1/proto:86-101)
srcversion: 211FB288A383ED945B83420 
 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
    ns:143360 nr:0 dw:0 dr:145408 al:8 bm:0 lo:0 pe:2 ua:0 ap:0 ep:1 wo:f oos:380924
\t[====>...............] sync'ed: 27.6% (380924/524236)K
\tfinish: 0:00:12 speed: 30,412 (28,672) K/sec
 1: cs:Unconfigured
";
    const DUAL: &str = "version: 8.4.11 (api:1/proto:86-101)
 0: cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C r-----
    ns:524236 nr:0 dw:4 dr:525404 al:1 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
";

    #[test]
    fn syncing() {
        let s = parse_proc_drbd(SYNCING);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].connection, "SyncSource");
        assert_eq!(
            (s[0].role.as_str(), s[0].peer_role.as_str()),
            ("Primary", "Secondary")
        );
        assert_eq!(
            (s[0].disk.as_str(), s[0].peer_disk.as_str()),
            ("UpToDate", "Inconsistent")
        );
        assert_eq!(s[0].sync_percent, Some(27.6));
        assert_eq!(s[0].sync_eta.as_deref(), Some("0:00:12"));
        assert_eq!(s[0].sync_kib_s, Some(30412));
        assert!(!s[0].in_sync());
        assert_eq!(s[1].connection, "Unconfigured");
        assert_eq!(s[1].sync_percent, None);
    }

    #[test]
    fn dual_primary_in_sync() {
        let s = parse_proc_drbd(DUAL);
        assert!(s[0].in_sync());
        assert_eq!(s[0].peer_role, "Primary");
        assert!(parse_proc_drbd("version: 8.4.11\n").is_empty());
    }
}
