//! `keel vm cloud-init VMID [flags]`: show or change a VM's cloud-init settings (the spec's
//! `cloud_init`, PUT back). hostd rewrites the NoCloud seed at once; the guest applies it at its
//! next boot (docs/cloud-init.md).

use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use keel_api::cloudinit::{CloudInitSeed, CloudInitSpec, IpConfig};

use crate::client::{typed, Client};
use crate::task::Mode;
use crate::Outcome;

#[derive(Args, Debug)]
pub struct CloudInitArgs {
    pub vmid: u32,
    /// Host name [default: the VM's name]
    #[arg(long)]
    hostname: Option<String>,
    /// Account to create, with sudo [default: the image's own default user] (not --user: that
    /// is the login user of every keel command)
    #[arg(long, value_name = "USER")]
    ci_user: Option<String>,
    /// The account's password as a crypt hash (`mkpasswd -m sha-512` or `openssl passwd -6`)
    #[arg(long, value_name = "HASH")]
    password_hash: Option<String>,
    /// File of OpenSSH public keys, one per line (repeatable; replaces the keys)
    #[arg(long, value_name = "FILE")]
    ssh_keys: Vec<String>,
    /// Address of NIC N: N=dhcp or N=ADDRESS/PREFIX[,gw=GATEWAY], e.g. 0=192.0.2.10/24,gw=192.0.2.1
    /// (repeatable; NICs not named use DHCP)
    #[arg(long, value_name = "N=SPEC")]
    ip: Vec<String>,
    /// DNS server (repeatable, at most 3; replaces the list)
    #[arg(long, value_name = "IP")]
    dns: Vec<IpAddr>,
    /// DNS search domain (repeatable; replaces the list)
    #[arg(long, value_name = "DOMAIN")]
    search: Vec<String>,
    /// Your own user-data file, used instead of the one Keel writes (`-` reads stdin)
    #[arg(long, value_name = "FILE")]
    user_data: Option<String>,
    /// Directory pool for the seed ISO [default: the pool of the first disk]
    #[arg(long)]
    pool: Option<String>,
    /// Turn cloud-init on with the settings given (defaults for the rest)
    #[arg(long)]
    enable: bool,
    /// Print the seed Keel writes for the saved settings: meta-data, user-data, network-config
    #[arg(long, conflicts_with_all = ["hostname", "ci_user", "password_hash", "ssh_keys", "ip", "dns", "search", "user_data", "pool", "enable", "remove"])]
    dump: bool,
    /// Turn cloud-init off: the seed CD-ROM is removed and its ISO deleted
    #[arg(long, conflicts_with_all = ["hostname", "ci_user", "password_hash", "ssh_keys", "ip", "dns", "search", "user_data", "pool", "enable"])]
    remove: bool,
}

impl CloudInitArgs {
    fn changes(&self) -> bool {
        self.enable
            || self.remove
            || self.hostname.is_some()
            || self.ci_user.is_some()
            || self.password_hash.is_some()
            || !self.ssh_keys.is_empty()
            || !self.ip.is_empty()
            || !self.dns.is_empty()
            || !self.search.is_empty()
            || self.user_data.is_some()
            || self.pool.is_some()
    }
}

/// `0=dhcp` / `1=192.0.2.10/24,gw=192.0.2.1`.
pub fn parse_ip(s: &str) -> Result<(usize, IpConfig)> {
    let (n, rest) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("{s:?}: expected N=dhcp or N=ADDRESS/PREFIX[,gw=GATEWAY]"))?;
    let n: usize = n
        .parse()
        .map_err(|_| anyhow!("{s:?}: {n:?} is not a NIC number (0 for the first NIC)"))?;
    if rest == "dhcp" {
        return Ok((n, IpConfig::Dhcp {}));
    }
    let mut parts = rest.split(',');
    let address = parts.next().unwrap_or_default().to_string();
    let mut gateway = None;
    for p in parts {
        match p.split_once('=') {
            Some(("gw", g)) => {
                gateway = Some(
                    g.parse()
                        .map_err(|_| anyhow!("{s:?}: gateway {g:?} is not an IP address"))?,
                )
            }
            _ => bail!("{s:?}: unknown part {p:?} (only gw=GATEWAY)"),
        }
    }
    Ok((n, IpConfig::Static { address, gateway }))
}

/// The keys of an authorized_keys-style file: non-empty lines that are not comments.
pub fn keys_of(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn read(path: &str) -> Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))
}

/// Apply the flags to the current settings.
fn apply(a: &CloudInitArgs, cur: Option<CloudInitSpec>) -> Result<Option<CloudInitSpec>> {
    if a.remove {
        return Ok(None);
    }
    let mut ci = cur.unwrap_or_default();
    if let Some(h) = &a.hostname {
        ci.hostname = Some(h.clone());
    }
    if let Some(u) = &a.ci_user {
        ci.user = Some(u.clone());
    }
    if let Some(p) = &a.password_hash {
        ci.password_hash = Some(p.clone());
    }
    if !a.ssh_keys.is_empty() {
        ci.ssh_keys.clear();
        for f in &a.ssh_keys {
            ci.ssh_keys.extend(keys_of(&read(f)?));
        }
    }
    for s in &a.ip {
        let (n, c) = parse_ip(s)?;
        while ci.ipconfig.len() <= n {
            ci.ipconfig.push(IpConfig::Dhcp {});
        }
        ci.ipconfig[n] = c;
    }
    if !a.dns.is_empty() {
        ci.dns = a.dns.clone();
    }
    if !a.search.is_empty() {
        ci.search = a.search.clone();
    }
    if let Some(f) = &a.user_data {
        ci.user_data = Some(read(f)?);
    }
    if let Some(p) = &a.pool {
        ci.pool = Some(p.clone());
    }
    Ok(Some(ci))
}

fn show(vmid: u32, ci: Option<&CloudInitSpec>) {
    let Some(ci) = ci else {
        println!("VM {vmid}: cloud-init is off (turn it on with `keel vm cloud-init {vmid} --enable` and settings)");
        return;
    };
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    println!("hostname       {}", or(&ci.hostname, "(the VM's name)"));
    println!(
        "user           {}",
        or(&ci.user, "(the image's default user)")
    );
    println!(
        "password       {}",
        if ci.password_hash.is_some() {
            "set (hash)"
        } else {
            "locked"
        }
    );
    println!("ssh keys       {}", ci.ssh_keys.len());
    for k in &ci.ssh_keys {
        let mut w = k.split_whitespace();
        let kind = w.next().unwrap_or_default();
        let comment = w.nth(1).unwrap_or("");
        println!("  {kind} {comment}");
    }
    if ci.ipconfig.is_empty() {
        println!("addresses      dhcp on every NIC");
    }
    for (i, c) in ci.ipconfig.iter().enumerate() {
        match c {
            IpConfig::Dhcp {} => println!("net{i}           dhcp"),
            IpConfig::Static { address, gateway } => println!(
                "net{i}           {address}{}",
                gateway.map(|g| format!(" via {g}")).unwrap_or_default()
            ),
        }
    }
    if !ci.dns.is_empty() {
        let d: Vec<String> = ci.dns.iter().map(|d| d.to_string()).collect();
        println!("dns            {}", d.join(", "));
    }
    if !ci.search.is_empty() {
        println!("search         {}", ci.search.join(", "));
    }
    if let Some(u) = &ci.user_data {
        println!("user-data      your own ({} bytes)", u.len());
    }
    println!("seed pool      {}", or(&ci.pool, "(the first disk's pool)"));
}

pub async fn run(c: &Client, node: &str, a: &CloudInitArgs, mode: Mode) -> Result<Outcome> {
    if a.dump {
        let id = a.vmid.to_string();
        let seed: CloudInitSeed = typed(
            c.get(&["nodes", node, "vms", &id, "cloud-init"], &[])
                .await?,
        )?;
        if mode.json {
            crate::output::print_json(&serde_json::to_value(&seed)?);
        } else {
            println!(
                "# {}/{} (instance-id {})",
                seed.pool, seed.volume, seed.instance_id
            );
            for (name, text) in [
                ("meta-data", &seed.meta_data),
                ("user-data", &seed.user_data),
                ("network-config", &seed.network_config),
            ] {
                println!("--- {name}\n{}", text.trim_end());
            }
        }
        return Ok(Outcome::Done);
    }
    let mut spec = crate::hotplug::current(c, node, a.vmid).await?;
    if !a.changes() {
        if mode.json {
            crate::output::print_json(&serde_json::to_value(&spec.cloud_init)?);
        } else {
            show(a.vmid, spec.cloud_init.as_ref());
        }
        return Ok(Outcome::Done);
    }
    if a.remove && spec.cloud_init.is_none() {
        println!("VM {}: cloud-init is already off", a.vmid);
        return Ok(Outcome::Done);
    }
    spec.cloud_init = apply(a, spec.cloud_init.take())?;
    crate::hotplug::put(c, node, a.vmid, &spec, mode).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ip_flags() {
        assert_eq!(parse_ip("0=dhcp").ok(), Some((0, IpConfig::Dhcp {})));
        assert_eq!(
            parse_ip("1=192.0.2.10/24,gw=192.0.2.1").ok(),
            Some((
                1,
                IpConfig::Static {
                    address: "192.0.2.10/24".into(),
                    gateway: "192.0.2.1".parse().ok()
                }
            ))
        );
        assert!(parse_ip("192.0.2.10/24").is_err());
        assert!(parse_ip("0=192.0.2.10/24,via=1.2.3.4").is_err());
        assert!(parse_ip("0=192.0.2.10/24,gw=x").is_err());
    }

    #[test]
    fn key_files_skip_comments_and_blank_lines() {
        assert_eq!(
            keys_of("# mine\nssh-ed25519 AAAA a\n\n  ssh-rsa BBBB b  \n"),
            vec!["ssh-ed25519 AAAA a", "ssh-rsa BBBB b"]
        );
    }

    #[test]
    fn flags_change_only_what_they_name() {
        let a = CloudInitArgs {
            vmid: 100,
            hostname: None,
            ci_user: None,
            password_hash: None,
            ssh_keys: vec![],
            ip: vec!["1=10.0.0.5/8".into()],
            dns: vec![],
            search: vec![],
            user_data: None,
            pool: None,
            enable: false,
            dump: false,
            remove: false,
        };
        let cur = CloudInitSpec {
            hostname: Some("h".into()),
            ..Default::default()
        };
        let got = apply(&a, Some(cur)).ok().flatten().unwrap_or_default();
        assert_eq!(got.hostname.as_deref(), Some("h"));
        assert_eq!(got.ipconfig.len(), 2);
        assert_eq!(got.ipconfig[0], IpConfig::Dhcp {});
    }
}
