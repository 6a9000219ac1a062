//! Console prompts when no answer file was found: the essentials (disk, hostname, one management
//! address and gateway, root password), then the answer file that will be used, shown in full,
//! and an explicit confirmation. Generic over the input and output so tests feed it text.

use std::io::{BufRead, Write};

use crate::answer::{Answer, Cluster, Disk, DiskFilter, Global, Layout, Network, Nic, Ssh, Time};
use crate::hw::{human_size, Hardware, GIB};
use crate::util::{valid_dns_name, Cidr};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
    #[error("the console input ended before the answers were complete")]
    Eof,
    #[error("no disk to install on was found")]
    NoDisk,
    #[error("no network interface was found")]
    NoNic,
    #[error("not confirmed; nothing was written")]
    Declined,
}

/// Reads one line (without the newline); EOF is an error.
fn line<R: BufRead>(input: &mut R) -> Result<String, PromptError> {
    let mut s = String::new();
    if input.read_line(&mut s)? == 0 {
        return Err(PromptError::Eof);
    }
    Ok(s.trim().to_string())
}

fn ask<R: BufRead, W: Write, T>(
    input: &mut R,
    out: &mut W,
    question: &str,
    default: Option<&str>,
    mut check: impl FnMut(&str) -> Result<T, String>,
) -> Result<T, PromptError> {
    loop {
        match default {
            Some(d) => write!(out, "{question} [{d}]: ")?,
            None => write!(out, "{question}: ")?,
        }
        out.flush()?;
        let mut v = line(input)?;
        if v.is_empty() {
            if let Some(d) = default {
                v = d.to_string();
            }
        }
        match check(&v) {
            Ok(x) => return Ok(x),
            Err(e) => writeln!(out, "  {e}")?,
        }
    }
}

fn pick(v: &str, n: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(i) if (1..=n).contains(&i) => Ok(i - 1),
        _ => Err(format!("enter a number from 1 to {n}")),
    }
}

/// Ask for the essentials and return the confirmed answer. `read_secret` reads the password
/// (the console turns echo off around it; tests read a plain line).
pub fn prompt_answer<R: BufRead, W: Write>(
    input: &mut R,
    out: &mut W,
    hw: &Hardware,
    mut read_secret: impl FnMut(&mut R, &mut W) -> Result<String, PromptError>,
) -> Result<Answer, PromptError> {
    if hw.disks.is_empty() {
        return Err(PromptError::NoDisk);
    }
    if hw.nics.is_empty() {
        return Err(PromptError::NoNic);
    }
    writeln!(
        out,
        "No answer file was found; answer a few questions to install Keel."
    )?;
    writeln!(out, "Disks:")?;
    for (i, d) in hw.disks.iter().enumerate() {
        writeln!(out, "  {}) {d}", i + 1)?;
    }
    let di = ask(input, out, "Install on disk number", Some("1"), |v| {
        pick(v, hw.disks.len())
    })?;
    let disk = hw.disks[di].clone();
    let mut allow_wipe = false;
    if disk.partitions > 0 {
        allow_wipe = ask(
            input,
            out,
            &format!(
                "{} holds {} partition(s). Erase it? (yes/no)",
                disk.path, disk.partitions
            ),
            None,
            |v| match v {
                "yes" => Ok(true),
                "no" => Ok(false),
                _ => Err("type yes or no".into()),
            },
        )?;
        if !allow_wipe {
            return Err(PromptError::Declined);
        }
    }
    let (hostname, domain) = ask(
        input,
        out,
        "Host name (FQDN)",
        Some("keel1.localdomain"),
        |v| {
            let (h, d) = v
                .split_once('.')
                .ok_or_else(|| "write the full name, e.g. node1.example.com".to_string())?;
            if valid_dns_name(v) && !h.is_empty() && !d.is_empty() {
                Ok((h.to_string(), d.to_string()))
            } else {
                Err(format!("`{v}` is not a valid DNS name"))
            }
        },
    )?;
    writeln!(out, "Network interfaces:")?;
    for (i, n) in hw.nics.iter().enumerate() {
        writeln!(out, "  {}) {} ({})", i + 1, n.name, n.mac)?;
    }
    let ni = ask(input, out, "Management interface number", Some("1"), |v| {
        pick(v, hw.nics.len())
    })?;
    let nic = hw.nics[ni].clone();
    let addr = ask(
        input,
        out,
        "Management address (CIDR, e.g. 192.0.2.10/24)",
        None,
        |v| Cidr::parse(v).map(|_| v.to_string()),
    )?;
    let cidr = Cidr::parse(&addr).map_err(|_| PromptError::Eof)?;
    let gw = ask(input, out, "Gateway (empty for none)", Some("none"), |v| {
        if v == "none" {
            return Ok(None);
        }
        let ip: std::net::IpAddr = v
            .parse()
            .map_err(|_| format!("`{v}` is not an IP address"))?;
        if !cidr.contains(ip) {
            return Err(format!("{ip} is not in {addr}"));
        }
        Ok(Some(v.to_string()))
    })?;
    let key = ask(
        input,
        out,
        "SSH public key for root (empty: allow root's password over SSH)",
        Some("none"),
        |v| {
            if v == "none" {
                return Ok(None);
            }
            crate::util::check_ssh_public_key(v).map(|_| Some(v.to_string()))
        },
    )?;
    let password = loop {
        let a = read_secret(input, out)?;
        if a.len() < 8 {
            writeln!(out, "  at least 8 characters")?;
            continue;
        }
        write!(out, "Repeat: ")?;
        out.flush()?;
        let b = line(input)?;
        if a == b {
            break a;
        }
        writeln!(out, "  the passwords differ")?;
    };
    let size_gib = disk.size_bytes / GIB;
    let swap = if size_gib >= 64 { 4 } else { 1 };
    let root = 32.min(size_gib.saturating_sub(swap + 3) / 2).max(4);
    let answer = Answer {
        global: Global {
            hostname,
            domain,
            timezone: None,
            keyboard: "us".into(),
            locale: "en_US.UTF-8".into(),
            root_password_hash: None,
            root_password: Some(password),
            admin: None,
            reboot: "reboot".into(),
        },
        disk: Disk {
            filter: DiskFilter {
                path: Some(disk.path.clone()),
                ..Default::default()
            },
            allow_wipe,
            layout: Layout {
                root_size_gib: root,
                swap_size_gib: swap,
                ..Layout::default()
            },
        },
        network: Network {
            nics: vec![Nic {
                id: "nic0".into(),
                mac: Some(nic.mac.to_ascii_lowercase()),
                role: Some("management".into()),
                addresses: vec![addr.clone()],
                gateways: gw.iter().cloned().collect(),
                ..Default::default()
            }],
            dns_servers: gw.iter().cloned().collect(),
            ..Default::default()
        },
        time: Time {
            pools: vec!["2.debian.pool.ntp.org".into()],
            ..Time::default()
        },
        ssh: match key {
            Some(k) => Ssh {
                root_keys: vec![k],
                ..Ssh::default()
            },
            None => Ssh {
                permit_root_login: Some("yes".into()),
                password_authentication: true,
                ..Ssh::default()
            },
        },
        cluster: Cluster::default(),
        first_boot: None,
        post_install: None,
    };
    let mut shown = answer.clone();
    shown.global.root_password = Some("********".into());
    writeln!(
        out,
        "\nThe answer file that will be used (root password hidden):\n"
    )?;
    writeln!(
        out,
        "{}",
        toml::to_string(&shown).unwrap_or_else(|e| format!("(cannot show it: {e})"))
    )?;
    let ok = ask(
        input,
        out,
        &format!(
            "Install Keel on {} ({})? Everything on it is erased (yes/no)",
            disk.path,
            human_size(disk.size_bytes)
        ),
        None,
        |v| match v {
            "yes" => Ok(true),
            "no" => Ok(false),
            _ => Err("type yes or no".into()),
        },
    )?;
    if !ok {
        return Err(PromptError::Declined);
    }
    Ok(answer)
}

/// A plain line, for tests and non-terminal input.
pub fn plain_secret<R: BufRead, W: Write>(
    input: &mut R,
    out: &mut W,
) -> Result<String, PromptError> {
    write!(out, "Root password: ")?;
    out.flush()?;
    line(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::{DiskInfo, NicInfo};
    use std::io::Cursor;

    fn hw() -> Hardware {
        Hardware {
            nics: vec![
                NicInfo {
                    name: "ens3".into(),
                    mac: "52:54:00:12:34:56".into(),
                },
                NicInfo {
                    name: "ens4".into(),
                    mac: "52:54:00:12:34:57".into(),
                },
            ],
            disks: vec![
                DiskInfo {
                    path: "/dev/vda".into(),
                    size_bytes: 20 * GIB,
                    model: String::new(),
                    serial: "A".into(),
                    partitions: 0,
                },
                DiskInfo {
                    path: "/dev/vdb".into(),
                    size_bytes: 100 * GIB,
                    model: String::new(),
                    serial: "B".into(),
                    partitions: 2,
                },
            ],
        }
    }

    #[test]
    fn asks_retries_bad_input_and_builds_a_valid_answer() {
        // disk 3 (no such), then 2 (has partitions → yes); a bad name, then a good one; NIC 2;
        // a /33, then a good address; a gateway outside the subnet, then one inside; a short
        // password, then a good one twice; confirm.
        let input = "3\n2\nyes\nnode1\nnode1.lab.example\n2\n10.0.0.5/33\n10.0.0.5/24\n10.9.9.9\n10.0.0.1\nnot-a-key\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK8toH6YsoysZfExEwWMwB4O2QJqBH3GVuh9YzRmZDBF admin@lab\nshort\ncorrect horse\ncorrect horse\nyes\n";
        let mut out = Vec::new();
        let a =
            prompt_answer(&mut Cursor::new(input), &mut out, &hw(), plain_secret).expect("answer");
        let shown = String::from_utf8_lossy(&out);
        assert!(shown.contains("enter a number from 1 to 2"), "{shown}");
        assert!(shown.contains("write the full name"), "{shown}");
        assert!(
            shown.contains("prefix length `/33` is out of range"),
            "{shown}"
        );
        assert!(shown.contains("10.9.9.9 is not in 10.0.0.5/24"), "{shown}");
        assert!(shown.contains("at least 8 characters"), "{shown}");
        assert!(shown.contains("root_password = \"********\""), "{shown}");
        assert!(
            !shown.contains("correct horse\""),
            "the password must not be shown"
        );
        assert_eq!(a.global.hostname, "node1");
        assert_eq!(a.global.domain, "lab.example");
        assert_eq!(a.disk.filter.path.as_deref(), Some("/dev/vdb"));
        assert!(a.disk.allow_wipe);
        assert_eq!(a.network.nics[0].mac.as_deref(), Some("52:54:00:12:34:57"));
        assert_eq!(a.network.nics[0].gateways, vec!["10.0.0.1".to_string()]);
        assert_eq!(a.ssh.root_keys.len(), 1);
        // What it produced plans cleanly against the same hardware.
        let text = toml::to_string(&a).expect("toml");
        let parsed = crate::load_answer(&text).expect("valid answer");
        let plan = crate::plan::plan(&parsed, None, &hw()).expect("plan");
        assert_eq!(plan.disk.device.path, "/dev/vdb");
        assert_eq!(plan.hostname, "node1");
    }

    #[test]
    fn declining_writes_nothing() {
        let input = "1\nnode1.lab.example\n1\n10.0.0.5/24\n\n\npassword1\npassword1\nno\n";
        let r = prompt_answer(
            &mut Cursor::new(input),
            &mut Vec::new(),
            &hw(),
            plain_secret,
        );
        assert!(matches!(r, Err(PromptError::Declined)), "{r:?}");
        let r = prompt_answer(
            &mut Cursor::new("1\n"),
            &mut Vec::new(),
            &hw(),
            plain_secret,
        );
        assert!(matches!(r, Err(PromptError::Eof)), "{r:?}");
    }
}
