//! RHEL-family nodes: one kickstart. Anaconda's `network` command builds the bonds, VLANs and
//! bridges; `%post` writes what kickstart has no command for (/etc/hosts, chrony's local
//! fallback, the sshd drop-in, the cluster join request, the first-boot hook).

use super::{hosts_file, join_file, sshd_dropin, DirectiveFile};
use crate::plan::{Device, DeviceKind, Password, Plan, Reboot};
use crate::{Error, Issue, Issues};

/// One kickstart command: a name and its arguments, quoted when needed.
#[derive(Debug, Clone)]
pub struct KsCommand {
    name: String,
    args: Vec<String>,
}

impl KsCommand {
    pub fn new(name: &str) -> Self {
        KsCommand {
            name: name.into(),
            args: vec![],
        }
    }

    /// `--key=value`
    pub fn opt(mut self, key: &str, value: impl ToString) -> Self {
        self.args
            .push(format!("--{key}={}", quote(&value.to_string())));
        self
    }

    /// `--flag`
    pub fn flag(mut self, key: &str) -> Self {
        self.args.push(format!("--{key}"));
        self
    }

    /// A positional argument.
    pub fn arg(mut self, value: &str) -> Self {
        self.args.push(quote(value));
        self
    }

    pub fn render(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

fn quote(s: &str) -> String {
    if s.contains(char::is_whitespace) || s.contains('"') || s.contains('#') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// A kickstart: commands, then sections (`%packages`, `%post`).
#[derive(Debug, Default, Clone)]
pub struct Kickstart {
    lines: Vec<String>,
    sections: Vec<(String, Vec<String>)>,
}

impl Kickstart {
    pub fn comment(&mut self, c: &str) -> &mut Self {
        self.lines.push(format!("# {c}"));
        self
    }

    pub fn cmd(&mut self, c: KsCommand) -> &mut Self {
        self.lines.push(c.render());
        self
    }

    pub fn section(&mut self, header: &str, body: Vec<String>) -> &mut Self {
        self.sections.push((header.into(), body));
        self
    }

    pub fn render(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        for (h, body) in &self.sections {
            out.push('\n');
            out.push_str(h);
            out.push('\n');
            for l in body {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("%end\n");
        }
        out
    }
}

/// A shell snippet writing `content` to `path` with `mode`, via a quoted here-document.
fn write_file(path: &str, mode: u32, content: &str) -> Vec<String> {
    let mut v = Vec::new();
    if let Some((dir, _)) = path.rsplit_once('/') {
        if !dir.is_empty() {
            v.push(format!("mkdir -p {dir}"));
        }
    }
    v.push(format!("cat > {path} <<'KEEL_EOF'"));
    v.extend(content.trim_end_matches('\n').lines().map(String::from));
    v.push("KEEL_EOF".into());
    v.push(format!("chmod {mode:04o} {path}"));
    v
}

fn l3(mut c: KsCommand, plan: &Plan, d: &Device, issues: &mut Vec<Issue>) -> KsCommand {
    let v4: Vec<_> = d.addresses.iter().filter(|a| a.is_v4()).collect();
    let v6: Vec<_> = d.addresses.iter().filter(|a| !a.is_v4()).collect();
    if v4.len() > 1 || v6.len() > 1 {
        issues.push(Issue::new(
            format!("network ({})", d.name),
            "a kickstart `network` line takes one IPv4 and one IPv6 address per interface; render for --target debian or keep one address per family",
        ));
    }
    if d.dhcp && v4.is_empty() {
        c = c.opt("bootproto", "dhcp");
    } else if let Some(a) = v4.first() {
        c = c
            .opt("bootproto", "static")
            .opt("ip", a.addr)
            .opt("netmask", a.netmask_v4());
        if let Some(g) = d.gateways.iter().find(|g| g.is_ipv4()) {
            c = c.opt("gateway", g);
        }
    } else {
        c = c.flag("noipv4");
    }
    if let Some(a) = v6.first() {
        c = c.opt("ipv6", a);
        if let Some(g) = d.gateways.iter().find(|g| g.is_ipv6()) {
            c = c.opt("ipv6gateway", g);
        }
    } else if d.dhcp {
        c = c.opt("ipv6", "auto");
    } else {
        c = c.flag("noipv6");
    }
    if d.name == plan.network.management {
        if !plan.network.dns_servers.is_empty() {
            let ns: Vec<String> = plan
                .network
                .dns_servers
                .iter()
                .map(|s| s.to_string())
                .collect();
            c = c.opt("nameserver", ns.join(","));
        }
        if !plan.network.dns_search.is_empty() {
            c = c.opt("ipv4-dns-search", plan.network.dns_search.join(","));
        }
    }
    if let Some(m) = d.mtu {
        c = c.opt("mtu", m);
    }
    c = c.opt("onboot", "yes");
    if d.name == plan.network.management {
        c = c.flag("activate");
    }
    c
}

fn bond_cmd(d: &Device) -> Option<KsCommand> {
    let DeviceKind::Bond {
        mode,
        miimon,
        lacp_rate,
        primary,
        slaves,
    } = &d.kind
    else {
        return None;
    };
    let mut opts = vec![format!("mode={}", mode.name()), format!("miimon={miimon}")];
    if let Some(r) = lacp_rate {
        opts.push(format!("lacp_rate={r}"));
    }
    if let Some(p) = primary {
        opts.push(format!("primary={p}"));
    }
    Some(
        KsCommand::new("network")
            .opt("device", &d.name)
            .opt("bondslaves", slaves.join(","))
            .opt("bondopts", opts.join(",")),
    )
}

fn network_lines(plan: &Plan, ks: &mut Kickstart) -> Vec<Issue> {
    let mut issues = Vec::new();
    let has_l3 = |d: &Device| !d.addresses.is_empty() || d.dhcp;
    // Anaconda keys `network` lines by --device: a VLAN's parent can have no line of its own,
    // so a bond carrying a VLAN is declared on the VLAN's line (--bondslaves with --vlanid).
    for d in &plan.network.devices {
        if !d.vlans.is_empty() && (has_l3(d) || d.master.is_some() || d.vlans.len() > 1) {
            issues.push(Issue::new(
                format!("network ({})", d.name),
                "a kickstart can only put one VLAN on an interface that has no address and no bridge of its own; render for --target debian or move the addresses onto the VLAN",
            ));
        }
    }
    for d in &plan.network.devices {
        let c = match &d.kind {
            DeviceKind::Ethernet { .. } => {
                // Slaves and bridge ports are configured by their master's line; a bare
                // VLAN parent needs no line of its own.
                if d.master.is_some() || !d.vlans.is_empty() {
                    continue;
                }
                if !has_l3(d) {
                    ks.cmd(
                        KsCommand::new("network")
                            .opt("device", &d.name)
                            .flag("noipv4")
                            .flag("noipv6")
                            .opt("onboot", "no"),
                    );
                    continue;
                }
                KsCommand::new("network").opt("device", &d.name)
            }
            DeviceKind::Bond { .. } => {
                if !d.vlans.is_empty() {
                    continue;
                }
                match bond_cmd(d) {
                    Some(c) => c,
                    None => continue,
                }
            }
            DeviceKind::Vlan { parent, id } => {
                let base = plan
                    .device(parent)
                    .and_then(bond_cmd)
                    .unwrap_or_else(|| KsCommand::new("network").opt("device", parent));
                base.opt("vlanid", id).opt("interfacename", &d.name)
            }
            DeviceKind::Bridge { ports, stp } => {
                let mut c = KsCommand::new("network").opt("device", &d.name);
                if !ports.is_empty() {
                    c = c.opt("bridgeslaves", ports.join(","));
                }
                c.opt(
                    "bridgeopts",
                    format!("stp={}", if *stp { "yes" } else { "no" }),
                )
            }
        };
        let c = l3(c, plan, d, &mut issues);
        ks.cmd(c);
    }
    ks.cmd(KsCommand::new("network").opt("hostname", &plan.fqdn));
    issues
}

/// Render the kickstart, or the reasons it cannot express this plan.
pub fn render(plan: &Plan) -> Result<String, Error> {
    let mut ks = Kickstart::default();
    ks.comment("Generated by keel-installer from the answer file.");
    ks.cmd(KsCommand::new("text"));
    ks.cmd(KsCommand::new("lang").arg(&plan.locale));
    ks.cmd(
        KsCommand::new("keyboard")
            .opt("vckeymap", &plan.keyboard)
            .opt("xlayouts", &plan.keyboard),
    );
    ks.cmd(KsCommand::new("timezone").arg(&plan.timezone).flag("utc"));
    for s in &plan.time.servers {
        ks.cmd(KsCommand::new("timesource").opt("ntp-server", s));
    }
    for s in &plan.time.pools {
        ks.cmd(KsCommand::new("timesource").opt("ntp-pool", s));
    }
    if plan.time.servers.is_empty() && plan.time.pools.is_empty() {
        ks.cmd(KsCommand::new("timesource").flag("ntp-disable"));
    }
    ks.cmd(match &plan.root_password {
        Password::Hash(h) => KsCommand::new("rootpw").flag("iscrypted").arg(h),
        Password::Plain(p) => KsCommand::new("rootpw").flag("plaintext").arg(p),
    });
    if let Some(a) = &plan.admin {
        let mut c = KsCommand::new("user")
            .opt("name", &a.name)
            .opt("groups", "wheel");
        if let Some(h) = &a.password_hash {
            c = c.flag("iscrypted").opt("password", h);
        }
        ks.cmd(c);
    }
    // Kickstart takes one `sshkey` per user; further keys are appended in %post.
    let mut extra_keys: Vec<(String, &[String])> = Vec::new();
    if let Some((k, rest)) = plan.ssh.root_keys.split_first() {
        ks.cmd(KsCommand::new("sshkey").opt("username", "root").arg(k));
        extra_keys.push(("/root".into(), rest));
    }
    if let Some(a) = &plan.admin {
        if let Some((k, rest)) = plan.ssh.admin_keys.split_first() {
            ks.cmd(KsCommand::new("sshkey").opt("username", &a.name).arg(k));
            extra_keys.push((format!("/home/{}", a.name), rest));
        }
    }
    let issues = network_lines(plan, &mut ks);
    if !issues.is_empty() {
        return Err(Error::Invalid(Issues(issues)));
    }

    let disk = plan
        .disk
        .device
        .path
        .strip_prefix("/dev/")
        .unwrap_or(&plan.disk.device.path)
        .to_string();
    ks.cmd(KsCommand::new("ignoredisk").opt("only-use", &disk));
    ks.cmd(KsCommand::new("zerombr"));
    ks.cmd(
        KsCommand::new("clearpart")
            .flag("all")
            .flag("initlabel")
            .opt("drives", &disk),
    );
    ks.cmd(
        KsCommand::new("bootloader")
            .opt("location", "mbr")
            .opt("boot-drive", &disk),
    );
    ks.cmd(KsCommand::new("reqpart").flag("add-boot"));
    ks.cmd(
        KsCommand::new("part")
            .arg("/")
            .opt("fstype", &plan.disk.root_fs)
            .opt("size", plan.disk.root_size_gib * 1024)
            .opt("ondisk", &disk),
    );
    if plan.disk.swap_size_gib > 0 {
        ks.cmd(
            KsCommand::new("part")
                .arg("swap")
                .opt("size", plan.disk.swap_size_gib * 1024)
                .opt("ondisk", &disk),
        );
    }
    ks.cmd(
        KsCommand::new("part")
            .arg("pv.01")
            .opt("size", 1)
            .flag("grow")
            .opt("ondisk", &disk),
    );
    ks.cmd(
        KsCommand::new("volgroup")
            .arg(&plan.disk.vg_name)
            .arg("pv.01"),
    );
    ks.cmd(KsCommand::new(match plan.reboot {
        Reboot::Reboot => "reboot",
        Reboot::Poweroff => "poweroff",
    }));

    ks.section(
        "%packages",
        vec![
            "@^minimal-environment".into(),
            "chrony".into(),
            "openssh-server".into(),
        ],
    );

    let mut post = vec!["set -eu".to_string()];
    post.extend(write_file("/etc/hosts", 0o644, &hosts_file(plan)));
    post.extend(write_file(
        "/etc/ssh/sshd_config.d/50-keel.conf",
        0o644,
        &sshd_dropin(plan),
    ));
    for (home, keys) in extra_keys.iter().filter(|(_, k)| !k.is_empty()) {
        post.push(format!("cat >> {home}/.ssh/authorized_keys <<'KEEL_EOF'"));
        post.extend(keys.iter().cloned());
        post.push("KEEL_EOF".into());
    }
    if let Some(s) = plan.time.local_stratum {
        let mut f = DirectiveFile::new();
        f.comment("Local clock fallback, from the answer file.");
        f.directive("local", &["stratum".to_string(), s.to_string()]);
        post.push("cat >> /etc/chrony.conf <<'KEEL_EOF'".into());
        post.extend(f.render().trim_end().lines().map(String::from));
        post.push("KEEL_EOF".into());
    }
    if let Some(j) = &plan.cluster {
        post.extend(write_file(
            "/etc/keel/cluster-join.json",
            0o600,
            &join_file(j),
        ));
    }
    if let Some(inline) = plan.first_boot.as_ref().and_then(|f| f.inline.as_ref()) {
        post.extend(write_file("/etc/keel/first-boot.sh", 0o700, inline));
    }
    ks.section("%post --log=/root/keel-post.log", post);
    Ok(ks.render())
}
