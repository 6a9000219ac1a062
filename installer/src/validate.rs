//! Validation of a parsed answer: every problem, each naming its key path and what would be
//! valid. Nothing here depends on the hardware; see [`crate::plan`] for checks against it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::answer::{Answer, BondModeSpec};
use crate::util::{
    check_ssh_public_key, expand_hostname, is_hostname_pattern, valid_dns_name, valid_ifname,
    valid_label, valid_mac, valid_sha256_fingerprint, Cidr,
};
use crate::Issue;

pub use netcfg::{BondMode, Role, BOND_MODE_NAMES, DEFAULT_MTU, MTU_MAX, MTU_MIN};

/// The answer's bond mode (a kernel number or name) as a [`BondMode`].
pub fn bond_mode_from_spec(spec: &BondModeSpec) -> Result<BondMode, String> {
    let valid = "valid: 0–6 or balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb";
    match spec {
        BondModeSpec::Number(n) => {
            BondMode::from_number(*n).ok_or_else(|| format!("unknown bond mode {n}; {valid}"))
        }
        BondModeSpec::Name(s) => {
            BondMode::from_name(s).ok_or_else(|| format!("unknown bond mode `{s}`; {valid}"))
        }
    }
}

struct V {
    out: Vec<Issue>,
}

impl V {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.out.push(Issue::new(path, msg));
    }
}

/// What kind of thing a network name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nic,
    Bond,
    Vlan,
    Bridge,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Nic => "a NIC",
            Kind::Bond => "a bond",
            Kind::Vlan => "a VLAN",
            Kind::Bridge => "a bridge",
        }
    }
}

/// The fields every interface kind shares, seen uniformly.
struct L3<'a> {
    path: String,
    name: String,
    kind: Kind,
    role: Option<&'a String>,
    addresses: &'a [String],
    dhcp: bool,
    gateways: &'a [String],
    mtu: Option<u32>,
}

/// The name a VLAN gets when `name` is not set: `PARENT.ID`.
pub fn vlan_name(v: &crate::answer::Vlan) -> String {
    v.name
        .clone()
        .unwrap_or_else(|| format!("{}.{}", v.parent, v.id))
}

pub fn validate(a: &Answer) -> Vec<Issue> {
    let mut v = V { out: Vec::new() };
    global(&mut v, a);
    disk(&mut v, a);
    network(&mut v, a);
    time(&mut v, a);
    ssh(&mut v, a);
    cluster(&mut v, a);
    hooks(&mut v, a);
    v.out
}

fn valid_timezone(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-/".contains(c))
}

fn valid_locale(s: &str) -> bool {
    // ll[_CC][.codeset][@modifier], or C / C.UTF-8 / POSIX
    if s == "C" || s == "POSIX" || s == "C.UTF-8" {
        return true;
    }
    let (main, _modifier) = s.split_once('@').unwrap_or((s, ""));
    let (lc, codeset) = main.split_once('.').unwrap_or((main, "UTF-8"));
    let (lang, country) = lc.split_once('_').unwrap_or((lc, "XX"));
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && country.len() == 2
        && country.chars().all(|c| c.is_ascii_uppercase())
        && !codeset.is_empty()
        && codeset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_hash(v: &mut V, path: &str, h: &str) {
    const OK: [&str; 5] = ["$6$", "$5$", "$y$", "$gy$", "$2b$"];
    if h.starts_with("$1$") {
        v.err(
            path,
            "MD5-crypt ($1$) hashes are too weak; use SHA-512 ($6$, `openssl passwd -6`) or yescrypt ($y$, `mkpasswd -m yescrypt`)",
        );
    } else if !OK.iter().any(|p| h.starts_with(p)) || h.contains(char::is_whitespace) {
        v.err(
            path,
            "not a crypt(3) hash; expected one starting with $6$ (`openssl passwd -6`), $5$, $y$ or $2b$",
        );
    }
}

fn global(v: &mut V, a: &Answer) {
    let g = &a.global;
    let hn_ok = if is_hostname_pattern(&g.hostname) {
        match expand_hostname(&g.hostname, Some(1)) {
            Ok(h) => valid_label(&h),
            Err(e) => {
                v.err("global.hostname", e);
                true
            }
        }
    } else {
        valid_label(&g.hostname)
    };
    if !hn_ok {
        v.err(
            "global.hostname",
            format!(
                "`{}` is not a valid host name; use 1–63 of a–z, 0–9 and `-`, not starting or ending with `-`, without the domain (or a pattern like node{{NN}})",
                g.hostname
            ),
        );
    }
    if !valid_dns_name(&g.domain) {
        v.err(
            "global.domain",
            format!(
                "`{}` is not a valid DNS domain; use dot-separated labels of a–z, 0–9 and `-`, e.g. lab.example",
                g.domain
            ),
        );
    }
    for (path, tz) in [
        ("global.timezone", &g.timezone),
        ("time.timezone", &a.time.timezone),
    ] {
        if let Some(tz) = tz {
            if !valid_timezone(tz) {
                v.err(
                    path,
                    format!("`{tz}` is not a time zone name; use an IANA name such as UTC or Europe/Berlin"),
                );
            }
        }
    }
    if let (Some(a1), Some(a2)) = (&g.timezone, &a.time.timezone) {
        if a1 != a2 {
            v.err(
                "time.timezone",
                format!(
                    "`{a2}` differs from global.timezone `{a1}`; set the time zone in one place"
                ),
            );
        }
    }
    if g.keyboard.is_empty()
        || !g
            .keyboard
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        v.err(
            "global.keyboard",
            format!(
                "`{}` is not a keyboard layout name; use e.g. us, de, fr, de-latin1",
                g.keyboard
            ),
        );
    }
    if !valid_locale(&g.locale) {
        v.err(
            "global.locale",
            format!(
                "`{}` is not a locale; use e.g. en_US.UTF-8 or de_DE.UTF-8",
                g.locale
            ),
        );
    }
    match (&g.root_password_hash, &g.root_password) {
        (None, None) => v.err(
            "global",
            "no root password; set root_password_hash (e.g. from `openssl passwd -6`) or root_password",
        ),
        (Some(_), Some(_)) => v.err(
            "global.root_password",
            "both root_password and root_password_hash are set; keep one (preferably the hash)",
        ),
        (Some(h), None) => check_hash(v, "global.root_password_hash", h),
        (None, Some(p)) => {
            if p.chars().count() < 8 {
                v.err(
                    "global.root_password",
                    "too short; use at least 8 characters (or root_password_hash)",
                );
            }
        }
    }
    if let Some(ad) = &g.admin {
        let ok = ad.name.len() <= 32
            && ad
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && ad
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            v.err(
                "global.admin.name",
                format!("`{}` is not a valid user name; use a lowercase letter or `_` then up to 31 of a–z, 0–9, `_`, `-`", ad.name),
            );
        } else if ad.name == "root" {
            v.err(
                "global.admin.name",
                "the admin user must not be root; choose another name (e.g. keel)",
            );
        }
        if let Some(h) = &ad.password_hash {
            check_hash(v, "global.admin.password_hash", h);
        }
    }
    if g.reboot != "reboot" && g.reboot != "poweroff" {
        v.err(
            "global.reboot",
            format!("unknown value `{}`; valid: reboot, poweroff", g.reboot),
        );
    }
}

fn disk(v: &mut V, a: &Answer) {
    let d = &a.disk;
    if let (Some(lo), Some(hi)) = (d.filter.min_size_gib, d.filter.max_size_gib) {
        if lo > hi {
            v.err(
                "disk.filter.max_size_gib",
                format!("{hi} is below min_size_gib {lo}; no disk could match"),
            );
        }
    }
    if let Some(p) = &d.filter.path {
        if !p.starts_with("/dev/") {
            v.err(
                "disk.filter.path",
                format!("`{p}` is not a device path; use a glob under /dev/, e.g. /dev/sd* or /dev/nvme0n1"),
            );
        }
    }
    let l = &d.layout;
    if l.root_fs != "ext4" && l.root_fs != "xfs" {
        v.err(
            "disk.layout.root_fs",
            format!("unknown file system `{}`; valid: ext4, xfs", l.root_fs),
        );
    }
    if l.root_size_gib < 8 {
        v.err(
            "disk.layout.root_size_gib",
            format!(
                "{} GiB is too small for the root file system; use at least 8",
                l.root_size_gib
            ),
        );
    }
    if l.swap_size_gib > 256 {
        v.err(
            "disk.layout.swap_size_gib",
            format!(
                "{} GiB of swap is not sensible; use 0 to 256",
                l.swap_size_gib
            ),
        );
    }
    let vg = &l.vg_name;
    let vg_ok = !vg.is_empty()
        && vg.len() <= 127
        && !vg.starts_with('-')
        && vg != "."
        && vg != ".."
        && vg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c));
    if !vg_ok {
        v.err(
            "disk.layout.vg_name",
            format!("`{vg}` is not a valid LVM volume group name; use a–z, A–Z, 0–9, `+`, `_`, `.`, `-`, not starting with `-`"),
        );
    }
}

fn network(v: &mut V, a: &Answer) {
    let n = &a.network;
    // name → (kind, path of its definition)
    let mut names: HashMap<String, (Kind, String)> = HashMap::new();
    let mut define = |v: &mut V, name: &str, kind: Kind, path: String| {
        if !valid_ifname(name) {
            v.err(
                path.clone(),
                format!("`{name}` is not a valid interface name; use 1–15 of a–z, A–Z, 0–9, `-`, `_`, `.`"),
            );
        }
        if let Some((_, first)) = names.get(name) {
            v.err(
                path,
                format!("`{name}` is already defined at {first}; names must be unique across nics, bonds, vlans and bridges"),
            );
        } else {
            names.insert(name.to_string(), (kind, path));
        }
    };

    let mut macs: HashMap<String, String> = HashMap::new();
    for (i, nic) in n.nics.iter().enumerate() {
        let p = format!("network.nics[{i}]");
        define(v, &nic.id, Kind::Nic, format!("{p}.id"));
        match (&nic.mac, &nic.name) {
            (None, None) => v.err(
                p.clone(),
                "no match; set mac (e.g. 52:54:00:12:34:56) or name (a glob, e.g. enp1s*)",
            ),
            (Some(_), Some(_)) => {
                v.err(p.clone(), "both mac and name are set; match by one of them")
            }
            (Some(m), None) => {
                if !valid_mac(m) {
                    v.err(
                        format!("{p}.mac"),
                        format!("`{m}` is not a MAC address; write six hex pairs, e.g. 52:54:00:12:34:56"),
                    );
                } else if let Some(first) = macs.insert(m.to_ascii_lowercase(), format!("{p}.mac"))
                {
                    v.err(
                        format!("{p}.mac"),
                        format!("{m} is already matched by {first}; each NIC is matched once"),
                    );
                }
            }
            (None, Some(g)) => {
                if g.is_empty() {
                    v.err(format!("{p}.name"), "empty glob; use e.g. enp1s0 or en*");
                }
            }
        }
    }
    for (i, b) in n.bonds.iter().enumerate() {
        define(v, &b.name, Kind::Bond, format!("network.bonds[{i}].name"));
    }
    for (i, vl) in n.vlans.iter().enumerate() {
        let p = if vl.name.is_some() {
            format!("network.vlans[{i}].name")
        } else {
            format!("network.vlans[{i}]")
        };
        define(v, &vlan_name(vl), Kind::Vlan, p);
    }
    for (i, br) in n.bridges.iter().enumerate() {
        define(
            v,
            &br.name,
            Kind::Bridge,
            format!("network.bridges[{i}].name"),
        );
    }
    let nic_ids: Vec<&str> = n.nics.iter().map(|x| x.id.as_str()).collect();
    let nic_list = if nic_ids.is_empty() {
        "none are defined in network.nics".to_string()
    } else {
        format!("NICs: {}", nic_ids.join(", "))
    };

    // Bonds.
    let mut slave_of: HashMap<String, (String, String)> = HashMap::new(); // nic → (bond, path)
    let mut modes: HashMap<String, BondMode> = HashMap::new();
    for (i, b) in n.bonds.iter().enumerate() {
        let p = format!("network.bonds[{i}]");
        let mode = match bond_mode_from_spec(&b.mode) {
            Ok(m) => {
                modes.insert(b.name.clone(), m);
                Some(m)
            }
            Err(e) => {
                v.err(format!("{p}.mode"), e);
                None
            }
        };
        if b.slaves.len() < 2 {
            let why = match mode {
                Some(BondMode::ActiveBackup) => {
                    "active-backup with one slave gives no redundancy".to_string()
                }
                Some(m) => format!("{} with one slave spreads nothing", m.name()),
                None => "a bond of one NIC gives no redundancy".to_string(),
            };
            v.err(
                format!("{p}.slaves"),
                format!(
                    "{} slave(s); a bond needs at least 2 ({why}); use the NIC directly or add a second slave",
                    b.slaves.len()
                ),
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for (j, s) in b.slaves.iter().enumerate() {
            let sp = format!("{p}.slaves[{j}]");
            if seen.contains(&s.as_str()) {
                v.err(sp, format!("`{s}` is listed twice"));
                continue;
            }
            seen.push(s);
            match names.get(s) {
                Some((Kind::Nic, _)) => {
                    if let Some((other, op)) = slave_of.get(s) {
                        v.err(
                            sp,
                            format!("`{s}` is already a slave of {other} ({op}); a NIC can be in one bond only"),
                        );
                    } else {
                        slave_of.insert(s.clone(), (b.name.clone(), sp));
                    }
                }
                Some((k, _)) => v.err(
                    sp,
                    format!(
                        "`{s}` is {}; bond slaves must be NICs ({nic_list})",
                        k.word()
                    ),
                ),
                None => v.err(sp, format!("unknown NIC `{s}`; {nic_list}")),
            }
        }
        if b.miimon == 0 || b.miimon > 60_000 {
            v.err(
                format!("{p}.miimon"),
                format!(
                    "{} ms; link monitoring needs 1 to 60000 ms (100 is usual)",
                    b.miimon
                ),
            );
        }
        if let Some(r) = &b.lacp_rate {
            if r != "slow" && r != "fast" {
                v.err(
                    format!("{p}.lacp_rate"),
                    format!("unknown LACP rate `{r}`; valid: slow, fast"),
                );
            } else if mode.is_some_and(|m| m != BondMode::Lacp) {
                v.err(
                    format!("{p}.lacp_rate"),
                    "lacp_rate applies only to mode 802.3ad (4); remove it or change the mode",
                );
            }
        }
        if let Some(pr) = &b.primary {
            if !b.slaves.contains(pr) {
                v.err(
                    format!("{p}.primary"),
                    format!(
                        "`{pr}` is not a slave of {}; valid: {}",
                        b.name,
                        b.slaves.join(", ")
                    ),
                );
            } else if let Some(m) = mode.filter(|m| !m.takes_primary()) {
                v.err(
                    format!("{p}.primary"),
                    format!("{} ignores primary; it applies to active-backup, balance-tlb and balance-alb", m.name()),
                );
            }
        }
    }

    // VLANs.
    let mut vlan_ids: HashMap<(String, u32), String> = HashMap::new();
    for (i, vl) in n.vlans.iter().enumerate() {
        let p = format!("network.vlans[{i}]");
        if !(1..=4094).contains(&vl.id) {
            v.err(
                format!("{p}.id"),
                format!(
                    "VLAN id {} is out of range; valid: 1 to 4094 (0 and 4095 are reserved)",
                    vl.id
                ),
            );
        } else if let Some(first) = vlan_ids.insert((vl.parent.clone(), vl.id), format!("{p}.id")) {
            v.err(
                format!("{p}.id"),
                format!(
                    "VLAN {} on {} is already defined at {first}",
                    vl.id, vl.parent
                ),
            );
        }
        match names.get(&vl.parent) {
            Some((Kind::Nic, _)) => {
                if let Some((bond, _)) = slave_of.get(&vl.parent) {
                    v.err(
                        format!("{p}.parent"),
                        format!(
                            "`{}` is a slave of {bond}; put the VLAN on {bond}",
                            vl.parent
                        ),
                    );
                }
            }
            Some((Kind::Bond, _)) => {}
            Some((k, _)) => v.err(
                format!("{p}.parent"),
                format!(
                    "`{}` is {}; a VLAN sits on a NIC or a bond",
                    vl.parent,
                    k.word()
                ),
            ),
            None => v.err(
                format!("{p}.parent"),
                format!(
                    "unknown interface `{}`; a VLAN sits on a NIC or a bond",
                    vl.parent
                ),
            ),
        }
    }

    // Bridges.
    let mut port_of: HashMap<String, (String, String)> = HashMap::new();
    for (i, br) in n.bridges.iter().enumerate() {
        let p = format!("network.bridges[{i}]");
        for (j, port) in br.ports.iter().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            match names.get(port) {
                None => {
                    v.err(
                        pp,
                        format!("unknown interface `{port}`; a bridge port is a NIC, bond or VLAN"),
                    );
                    continue;
                }
                Some((Kind::Bridge, _)) => {
                    v.err(
                        pp,
                        format!(
                            "`{port}` is a bridge; bridges cannot be nested, use its port instead"
                        ),
                    );
                    continue;
                }
                Some((Kind::Nic, _)) => {
                    if let Some((bond, _)) = slave_of.get(port) {
                        v.err(
                            pp,
                            format!("`{port}` is a slave of {bond}; bridge {bond} instead of one of its slaves"),
                        );
                        continue;
                    }
                }
                Some(_) => {}
            }
            if let Some((other, op)) = port_of.get(port) {
                v.err(
                    pp,
                    format!("`{port}` is already a port of {other} ({op}); an interface can be in one bridge only"),
                );
            } else {
                port_of.insert(port.clone(), (br.name.clone(), pp));
            }
        }
    }

    // Layer 3, uniformly.
    let mut l3s: Vec<L3> = Vec::new();
    for (i, x) in n.nics.iter().enumerate() {
        l3s.push(L3 {
            path: format!("network.nics[{i}]"),
            name: x.id.clone(),
            kind: Kind::Nic,
            role: x.role.as_ref(),
            addresses: &x.addresses,
            dhcp: x.dhcp,
            gateways: &x.gateways,
            mtu: x.mtu,
        });
    }
    for (i, x) in n.bonds.iter().enumerate() {
        l3s.push(L3 {
            path: format!("network.bonds[{i}]"),
            name: x.name.clone(),
            kind: Kind::Bond,
            role: x.role.as_ref(),
            addresses: &x.addresses,
            dhcp: x.dhcp,
            gateways: &x.gateways,
            mtu: x.mtu,
        });
    }
    for (i, x) in n.vlans.iter().enumerate() {
        l3s.push(L3 {
            path: format!("network.vlans[{i}]"),
            name: vlan_name(x),
            kind: Kind::Vlan,
            role: x.role.as_ref(),
            addresses: &x.addresses,
            dhcp: x.dhcp,
            gateways: &x.gateways,
            mtu: x.mtu,
        });
    }
    for (i, x) in n.bridges.iter().enumerate() {
        l3s.push(L3 {
            path: format!("network.bridges[{i}]"),
            name: x.name.clone(),
            kind: Kind::Bridge,
            role: x.role.as_ref(),
            addresses: &x.addresses,
            dhcp: x.dhcp,
            gateways: &x.gateways,
            mtu: x.mtu,
        });
    }
    let mtu_of: HashMap<String, u32> = l3s
        .iter()
        .map(|l| (l.name.clone(), l.mtu.unwrap_or(DEFAULT_MTU)))
        .collect();

    let mut seen_addr: HashMap<IpAddr, String> = HashMap::new();
    let mut default_gw: [Option<String>; 2] = [None, None];
    let mut management: Option<String> = None;
    for l in &l3s {
        let p = &l.path;
        let enslaved = match l.kind {
            Kind::Nic => slave_of
                .get(&l.name)
                .map(|(b, _)| format!("a slave of {b}"))
                .or_else(|| {
                    port_of
                        .get(&l.name)
                        .map(|(b, _)| format!("a port of bridge {b}"))
                }),
            _ => port_of
                .get(&l.name)
                .map(|(b, _)| format!("a port of bridge {b}")),
        };
        let master = match l.kind {
            Kind::Nic => slave_of
                .get(&l.name)
                .map(|x| x.0.clone())
                .or_else(|| port_of.get(&l.name).map(|x| x.0.clone())),
            _ => port_of.get(&l.name).map(|x| x.0.clone()),
        };
        if let (Some(what), Some(master)) = (&enslaved, &master) {
            if !l.addresses.is_empty() || l.dhcp || !l.gateways.is_empty() {
                v.err(
                    format!("{p}.addresses"),
                    format!("`{}` is {what}; an enslaved interface carries no addresses, put them on {master}", l.name),
                );
            }
            if l.role.is_some() {
                v.err(
                    format!("{p}.role"),
                    format!("`{}` is {what}; set the role on {master}", l.name),
                );
            }
            if l.mtu.is_some() && slave_of.contains_key(&l.name) && l.kind == Kind::Nic {
                v.err(
                    format!("{p}.mtu"),
                    format!(
                        "`{}` is {what}; set mtu on {master}, which applies it to its slaves",
                        l.name
                    ),
                );
            }
        }
        let role = match l.role.map(|r| Role::parse(r)) {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                v.err(format!("{p}.role"), e);
                None
            }
            None => None,
        };
        if role == Some(Role::Management) {
            if let Some(first) = &management {
                v.err(
                    format!("{p}.role"),
                    format!("management is already the role of {first}; exactly one interface carries it"),
                );
            } else {
                management = Some(l.name.clone());
                if l.addresses.is_empty() && !l.dhcp {
                    v.err(
                        format!("{p}.addresses"),
                        format!("`{}` has the management role but no address; add a static address or dhcp = true", l.name),
                    );
                }
            }
        }
        let mut subnets: Vec<Cidr> = Vec::new();
        for (j, s) in l.addresses.iter().enumerate() {
            let ap = format!("{p}.addresses[{j}]");
            match Cidr::parse(s) {
                Ok(c) => {
                    if let Some(what) = c.reserved_host() {
                        v.err(
                            ap.clone(),
                            format!(
                                "{} is {what} of {}; use a host address",
                                c.addr,
                                c.network()
                            ),
                        );
                    }
                    if let Some(first) = seen_addr.get(&c.addr) {
                        v.err(
                            ap,
                            format!(
                                "{} is already configured at {first}; every address must be unique",
                                c.addr
                            ),
                        );
                    } else {
                        seen_addr.insert(c.addr, ap);
                    }
                    subnets.push(c);
                }
                Err(e) => v.err(ap, e),
            }
        }
        for (j, g) in l.gateways.iter().enumerate() {
            let gp = format!("{p}.gateways[{j}]");
            let Ok(ip) = g.parse::<IpAddr>() else {
                v.err(gp, format!("`{g}` is not an IP address"));
                continue;
            };
            if subnets.iter().any(|c| c.addr == ip) {
                v.err(
                    gp.clone(),
                    format!("{ip} is the interface's own address; the gateway is another host"),
                );
            } else if !subnets.iter().any(|c| c.contains(ip)) {
                let list = subnets
                    .iter()
                    .map(|c| c.network().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let have = if list.is_empty() {
                    "it has no static address".to_string()
                } else {
                    format!("its subnets: {list}")
                };
                v.err(
                    gp.clone(),
                    format!("{ip} is outside every subnet of `{}` ({have}); a gateway must be directly reachable", l.name),
                );
            }
            let fam = usize::from(!ip.is_ipv4());
            if let Some(first) = &default_gw[fam] {
                v.err(
                    gp,
                    format!(
                        "a second {} default gateway; the first is at {first}; keep one per address family",
                        if fam == 0 { "IPv4" } else { "IPv6" }
                    ),
                );
            } else {
                default_gw[fam] = Some(gp);
            }
        }
        if let Some(m) = l.mtu {
            if !(MTU_MIN..=MTU_MAX).contains(&m) {
                v.err(
                    format!("{p}.mtu"),
                    format!("{m} is out of range; valid: {MTU_MIN} to {MTU_MAX}"),
                );
            } else if m < 1280 && subnets.iter().any(|c| !c.is_v4()) {
                v.err(
                    format!("{p}.mtu"),
                    format!(
                        "{m} is below 1280, the IPv6 minimum, on an interface with an IPv6 address"
                    ),
                );
            }
        }
    }
    if management.is_none() {
        v.err(
            "network",
            "no interface has role = \"management\"; set it on the interface that carries the node's address (a NIC, bond, VLAN or bridge)",
        );
    }
    // MTU against parents and ports.
    for (i, vl) in n.vlans.iter().enumerate() {
        if let (Some(m), Some(pm)) = (vl.mtu, mtu_of.get(&vl.parent)) {
            if (MTU_MIN..=MTU_MAX).contains(&m) && m > *pm {
                v.err(
                    format!("network.vlans[{i}].mtu"),
                    format!("{m} is larger than the MTU of its parent {} ({pm}); raise the parent's mtu or lower this one", vl.parent),
                );
            }
        }
    }
    for (i, br) in n.bridges.iter().enumerate() {
        if let Some(m) = br.mtu.filter(|m| (MTU_MIN..=MTU_MAX).contains(m)) {
            for port in &br.ports {
                if let Some(pm) = mtu_of.get(port) {
                    if m > *pm {
                        v.err(
                            format!("network.bridges[{i}].mtu"),
                            format!("{m} is larger than the MTU of its port {port} ({pm}); raise the port's mtu or lower this one"),
                        );
                    }
                }
            }
        }
    }

    for (i, d) in n.dns_servers.iter().enumerate() {
        if d.parse::<IpAddr>().is_err() {
            v.err(
                format!("network.dns_servers[{i}]"),
                format!("`{d}` is not an IP address; DNS servers are given by address"),
            );
        }
    }
    for (i, d) in n.dns_search.iter().enumerate() {
        if !valid_dns_name(d) {
            v.err(
                format!("network.dns_search[{i}]"),
                format!("`{d}` is not a valid DNS domain"),
            );
        }
    }
    let mut host_names: BTreeMap<String, String> = BTreeMap::new();
    for (i, h) in n.hosts.iter().enumerate() {
        let p = format!("network.hosts[{i}]");
        if h.address.parse::<IpAddr>().is_err() {
            v.err(
                format!("{p}.address"),
                format!("`{}` is not an IP address", h.address),
            );
        }
        if h.names.is_empty() {
            v.err(
                format!("{p}.names"),
                "no names; give at least one, e.g. [\"node02.lab.example\", \"node02\"]",
            );
        }
        for (j, name) in h.names.iter().enumerate() {
            let np = format!("{p}.names[{j}]");
            if !valid_dns_name(name) {
                v.err(np, format!("`{name}` is not a valid host name"));
            } else if let Some(first) = host_names.get(name) {
                v.err(
                    np,
                    format!("`{name}` is already listed at {first}; a name resolves to one entry"),
                );
            } else {
                host_names.insert(name.clone(), np);
            }
        }
    }
}

fn host_or_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok() || valid_dns_name(s)
}

fn time(v: &mut V, a: &Answer) {
    let t = &a.time;
    if t.servers.is_empty() && t.pools.is_empty() && t.local_stratum.is_none() {
        v.err(
            "time",
            "no NTP source; add time.servers or time.pools (or set local_stratum to run on the local clock on purpose)",
        );
    }
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (key, list) in [("servers", &t.servers), ("pools", &t.pools)] {
        for (i, s) in list.iter().enumerate() {
            let p = format!("time.{key}[{i}]");
            if !host_or_ip(s) {
                v.err(p, format!("`{s}` is not a host name or IP address"));
            } else if let Some(first) = seen.get(s.as_str()) {
                v.err(p, format!("`{s}` is already listed at {first}"));
            } else {
                seen.insert(s, p);
            }
        }
    }
    if let Some(s) = t.local_stratum {
        if !(1..=15).contains(&s) {
            v.err(
                "time.local_stratum",
                format!("{s} is out of range; valid: 1 to 15 (10 is usual for a fallback)"),
            );
        }
    }
}

fn ssh(v: &mut V, a: &Answer) {
    let s = &a.ssh;
    for (key, list) in [
        ("root_keys", &s.root_keys),
        ("admin_keys", &s.admin_keys),
        ("node_keys", &s.node_keys),
    ] {
        for (i, k) in list.iter().enumerate() {
            if let Err(e) = check_ssh_public_key(k) {
                v.err(format!("ssh.{key}[{i}]"), e);
            }
        }
    }
    if !s.admin_keys.is_empty() && a.global.admin.is_none() {
        v.err(
            "ssh.admin_keys",
            "there is no admin user; set global.admin.name or move the keys to ssh.root_keys",
        );
    }
    let prl = s
        .permit_root_login
        .as_deref()
        .unwrap_or("prohibit-password");
    if !["prohibit-password", "no", "yes"].contains(&prl) {
        v.err(
            "ssh.permit_root_login",
            format!("unknown value `{prl}`; valid: prohibit-password, no, yes"),
        );
    }
    let root_can = prl != "no"
        && (!s.root_keys.is_empty()
            || !s.node_keys.is_empty()
            || (prl == "yes" && s.password_authentication));
    let admin_can =
        a.global.admin.is_some() && (!s.admin_keys.is_empty() || s.password_authentication);
    if !root_can && !admin_can {
        v.err(
            "ssh",
            "nobody could log in over SSH; add a key to ssh.root_keys (or an admin user with ssh.admin_keys)",
        );
    }
}

fn cluster(v: &mut V, a: &Answer) {
    let c = &a.cluster;
    match c.mode.as_str() {
        "none" => {
            for (k, set) in [
                ("address", c.address.is_some()),
                ("fingerprint", c.fingerprint.is_some()),
                ("token", c.token.is_some()),
            ] {
                if set {
                    v.err(
                        format!("cluster.{k}"),
                        "only used with mode = \"join\"; remove it or set mode = \"join\"",
                    );
                }
            }
        }
        "join" => {
            match &c.address {
                None => v.err("cluster.address", "missing; the address of a cluster member, e.g. 192.0.2.11 or node01.lab.example:8006"),
                Some(addr) => {
                    let ok = match addr.parse::<IpAddr>() {
                        Ok(_) => true,
                        Err(_) => {
                            let (host, port) = match addr.strip_prefix('[') {
                                Some(rest) => match rest.split_once("]:") {
                                    Some((h, p)) => (h, Some(p)),
                                    None => (rest.trim_end_matches(']'), None),
                                },
                                None => match addr.rsplit_once(':') {
                                    Some((h, p)) => (h, Some(p)),
                                    None => (addr.as_str(), None),
                                },
                            };
                            host_or_ip(host) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
                        }
                    };
                    if !ok {
                        v.err("cluster.address", format!("`{addr}` is not HOST or HOST:PORT"));
                    }
                }
            }
            match &c.fingerprint {
                None => v.err("cluster.fingerprint", "missing; the SHA-256 fingerprint of the member's API certificate (32 hex pairs separated by colons)"),
                Some(f) if !valid_sha256_fingerprint(f) => v.err(
                    "cluster.fingerprint",
                    "not a SHA-256 fingerprint; expected 32 hex pairs separated by colons (AB:CD:…)",
                ),
                Some(_) => {}
            }
            match &c.token {
                None => v.err("cluster.token", "missing; the join token from the cluster"),
                Some(t) if t.is_empty() || t.contains(char::is_whitespace) => v.err(
                    "cluster.token",
                    "empty or contains whitespace; paste the join token as issued",
                ),
                Some(_) => {}
            }
        }
        other => v.err(
            "cluster.mode",
            format!("unknown mode `{other}`; valid: none, join"),
        ),
    }
}

fn hooks(v: &mut V, a: &Answer) {
    if let Some(fb) = &a.first_boot {
        match (&fb.script, &fb.inline) {
            (None, None) => v.err(
                "first_boot",
                "empty; set script (an absolute path on the installed system) or inline",
            ),
            (Some(_), Some(_)) => v.err("first_boot", "both script and inline are set; keep one"),
            (Some(s), None) => {
                if !s.starts_with('/') {
                    v.err(
                        "first_boot.script",
                        format!("`{s}` is not an absolute path"),
                    );
                }
            }
            (None, Some(i)) => {
                if !i.starts_with("#!") {
                    v.err(
                        "first_boot.inline",
                        "must start with an interpreter line, e.g. #!/bin/sh",
                    );
                }
            }
        }
    }
    if let Some(w) = &a.post_install {
        match w.url.strip_prefix("https://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
            _ => v.err(
                "post_install.url",
                format!(
                    "`{}` is not an https:// URL; the webhook is only called over TLS",
                    w.url
                ),
            ),
        }
        if !valid_sha256_fingerprint(&w.fingerprint) {
            v.err(
                "post_install.fingerprint",
                "not a SHA-256 fingerprint; expected 32 hex pairs separated by colons (AB:CD:…)",
            );
        }
    }
}
