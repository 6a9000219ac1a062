//! VM-lab proof of the installer (issue #5) and of the answer file's `cluster.join` on first boot
//! (issue #6), under QEMU TCG:
//!
//! 1. `two_nodes_install_from_one_iso`: one ISO (answer embedded), two blank machines with two
//!    NICs each on the lab link (A has two more, in no answer, for a bond made through the API). Both answers: hostname `node{NN}`, an active-backup bond of both
//!    NICs, `vmbr0` (management, static address) on the bond, VLAN 100 on the bond with bridge
//!    `vmbr100` (static address) on top, the lab's chronyd as NTP server, an SSH key.
//!    node A installs from the embedded answer and boots; over SSH the test runs `keel cluster
//!    init` on it (the CLI against A's local API; corosync and Pacemaker as systemd units) and
//!    creates a join token. node B then installs from the same ISO plus a `KEEL-ANSWER` disk
//!    (answer-partition source) whose answer says `[cluster] mode = "join"` with A's address,
//!    A's new CA-signed API fingerprint and the token — so B's first boot runs `keel join` by
//!    itself. While B installs, A is checked. Over SSH with the key, on both: hostname, bond
//!    mode + slaves, VLAN + bridge + addresses, chrony synchronised to the lab server,
//!    authorized_keys, /etc/hosts, hostd on 8006 with the certificate it says it has; A and B
//!    differ in hostname, machine-id and SSH host key; VLAN 100 carries traffic node to node.
//!    The cluster, from A: `keel cluster status --json` shows 2 members online, quorate,
//!    two_node, stonith enabled; Pacemaker (`crm_mon`) sees both online; B's install.log and
//!    journal show the join. Pulling one bonded cable on A keeps it reachable and the cluster
//!    whole. Rebooting B: its stack (systemd units) comes back by itself, the cluster is whole.
//!    Fencing stays enabled (Pacemaker `stonith-enabled=true`), but this lab has no fence
//!    channel (no QMP fence agent), so no fence device is registered: the scenario proves
//!    formation only and runs no DLM/GFS2/DRBD (fencing is proven in the netns and VM-lab
//!    cluster tests).
//! 2. `uefi_boot_and_bad_answer`: the same ISO under OVMF reaches the installer; a wrong answer
//!    (golden bad case) fails with the golden message and the disk stays unwritten.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keel_tests::installlab::{installer_iso, Firmware, Iso, Link, Machine, MachineSpec, Ssh};
use keel_tests::vmlab::wait_for;

/// The lab's SSH key (the ISO's answer embeds its public half). Kept next to the cached lab ISOs
/// so the ISO is reused across runs; it only ever opens throwaway lab guests.
fn key() -> &'static (std::path::PathBuf, String) {
    static K: OnceLock<(std::path::PathBuf, String)> = OnceLock::new();
    K.get_or_init(|| {
        let dir = Path::new("/var/cache/keel/installer/lab-iso");
        std::fs::create_dir_all(dir).expect("key dir");
        let k = dir.join("id_ed25519");
        if !k.exists() {
            let st = std::process::Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "keel-install-lab",
                    "-f",
                ])
                .arg(&k)
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
        }
        let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub"))
            .expect("pub")
            .trim()
            .to_string();
        (k, pubkey)
    })
}

fn answer(octet: u8, mac_byte: &str, pubkey: &str) -> String {
    format!(
        r#"# Keel install lab: node{{NN}} from the management address ({octet}).
[global]
hostname = "node{{NN}}"
domain = "lab.keel"
timezone = "Europe/Berlin"
root_password = "keel-lab-root"
reboot = "reboot"

[disk]
filter = {{ min_size_gib = 12 }}

[disk.layout]
root_fs = "ext4"
root_size_gib = 8
swap_size_gib = 1
vg_name = "keel"

[[network.nics]]
id = "nic0"
mac = "52:54:00:4b:{mac_byte}:01"

[[network.nics]]
id = "nic1"
mac = "52:54:00:4b:{mac_byte}:02"

[[network.bonds]]
name = "bond0"
slaves = ["nic0", "nic1"]
mode = "active-backup"
miimon = 100
primary = "nic0"

[[network.vlans]]
parent = "bond0"
id = 100

[[network.bridges]]
name = "vmbr0"
ports = ["bond0"]
role = "management"
addresses = ["10.77.0.{octet}/24"]

[[network.bridges]]
name = "vmbr100"
ports = ["bond0.100"]
role = "service"
addresses = ["10.78.0.{octet}/24"]

[[network.hosts]]
address = "10.77.0.11"
names = ["node11.lab.keel", "node11"]

[[network.hosts]]
address = "10.77.0.12"
names = ["node12.lab.keel", "node12"]

[[network.hosts]]
address = "10.77.0.1"
names = ["ntp.lab.keel", "ntp"]

[time]
servers = ["10.77.0.1"]
iburst = true

[ssh]
root_keys = ["{pubkey}"]
"#
    )
}

/// The shared ISO: built once per run (and cached by hash across runs).
fn iso() -> &'static Iso {
    static ISO: OnceLock<Iso> = OnceLock::new();
    ISO.get_or_init(|| {
        let a = answer(11, "0a", &key().1);
        let iso = installer_iso(&a).expect("build the installer ISO");
        eprintln!(
            "installer ISO {}: {} MiB, this call {:.1}s, build report {}",
            iso.path.display(),
            iso.bytes >> 20,
            iso.seconds,
            iso.report
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "(cached)".into())
        );
        iso
    })
}

fn lab_id(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        std::process::id()
    )
}

/// `KEEL-HOSTD-FINGERPRINT AB:…` from the console.
fn printed_fingerprint(console: &str) -> Option<String> {
    console
        .lines()
        .filter_map(|l| l.split("KEEL-HOSTD-FINGERPRINT ").nth(1))
        .map(|f| f.trim().to_string())
        .next_back()
}

/// SHA-256 fingerprint of the certificate `addr` presents (from inside the lab namespace);
/// waits up to 120 s for hostd to listen (it writes its fingerprint before it serves).
fn presented_fingerprint(link: &Link, addr: &str) -> String {
    let mut fp = String::new();
    wait_for(
        &format!("a TLS certificate from {addr}"),
        Duration::from_secs(120),
        || {
            let cert = link.exec(&[
                "sh",
                "-c",
                &format!(
                    "openssl s_client -connect {addr} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
                ),
            ])?;
            fp = cert
                .trim()
                .rsplit('=')
                .next()
                .unwrap_or_default()
                .to_string();
            Ok(!fp.is_empty())
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    fp
}

/// Wait for SSH on a freshly booted node.
fn wait_ssh(m: &Machine, ssh: &Ssh, name: &str) {
    let t = Instant::now();
    wait_for(
        &format!("{name} answering SSH"),
        Duration::from_secs(420),
        || Ok(ssh.exec("true", Duration::from_secs(20))?.0 == 0),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#} (QEMU state: {})\n{}",
            m.run_state(),
            tail(&m.console())
        )
    });
    eprintln!(
        "{name}: SSH after reboot in {:.0}s",
        t.elapsed().as_secs_f64()
    );
}

/// Wait until first boot printed hostd's fingerprint on the console; returns it.
fn wait_printed_fingerprint(m: &Machine, name: &str) -> String {
    wait_for(
        &format!("{name}: first boot printed the fingerprint"),
        Duration::from_secs(240),
        || Ok(printed_fingerprint(&m.console()).is_some()),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&m.console())));
    printed_fingerprint(&m.console()).unwrap_or_default()
}

/// `keel` on a node, against its local API as root (the local root token hostd writes).
const KEEL: &str = "KEEL_URL=https://127.0.0.1:8006 KEEL_FINGERPRINT=$(cat /var/lib/keel/hostd.fingerprint) KEEL_TOKEN=$(cat /var/lib/keel/local-root.token) keel";

/// `api_fp`: the fingerprint hostd's API must present now (the self-signed one first boot
/// printed, or the CA-signed one after init/join).
#[allow(clippy::too_many_arguments)]
fn check_node(
    link: &Link,
    m: &mut Machine,
    ssh: &Ssh,
    name: &str,
    octet: u8,
    pubkey: &str,
    api_fp: &str,
) {
    wait_ssh(m, ssh, name);
    assert_eq!(ssh.run("hostname").expect("hostname").trim(), name);
    assert_eq!(
        ssh.run("cat /etc/hostname").expect("etc hostname").trim(),
        name
    );
    let bonding = ssh.run("cat /proc/net/bonding/bond0").expect("bonding");
    assert!(
        bonding.contains("Bonding Mode: fault-tolerance (active-backup)"),
        "{bonding}"
    );
    assert_eq!(bonding.matches("Slave Interface:").count(), 2, "{bonding}");
    assert!(bonding.contains("Primary Slave:"), "{bonding}");
    let vlan = ssh.run("ip -d link show bond0.100").expect("vlan");
    assert!(vlan.contains("vlan protocol 802.1Q id 100"), "{vlan}");
    assert!(vlan.contains("master vmbr100"), "{vlan}");
    let br = ssh.run("ip -d link show bond0").expect("bond link");
    assert!(br.contains("master vmbr0"), "{br}");
    let a0 = ssh.run("ip -4 -o addr show dev vmbr0").expect("vmbr0");
    assert!(a0.contains(&format!("10.77.0.{octet}/24")), "{a0}");
    let a1 = ssh.run("ip -4 -o addr show dev vmbr100").expect("vmbr100");
    assert!(a1.contains(&format!("10.78.0.{octet}/24")), "{a1}");
    // The answer's key; a cluster member also holds the other members' root keys (`keel:NODE`,
    // the migration transport), checked with the cluster below.
    let keys = ssh.run("cat /root/.ssh/authorized_keys").expect("keys");
    let own: Vec<&str> = keys.lines().filter(|l| !l.contains(" keel:")).collect();
    assert_eq!(own, [pubkey], "{keys}");
    let hosts = ssh.run("cat /etc/hosts").expect("hosts");
    let other = if octet == 11 { "node12" } else { "node11" };
    assert!(
        hosts.contains(other) && hosts.contains("10.77.0.1\tntp.lab.keel"),
        "{hosts}"
    );
    // The engines a member runs or may be asked to: the fence agents (BMC and SBD; taken from
    // Debian's fence-agents .deb without its cloud SDKs) answer, sbd is installed but not
    // enabled (hostd enables it when SBD fencing is set up), resource agents for the pools.
    let programs = [
        "sbd",
        "ipmitool",
        "crm_resource",
        "drbdadm",
        "lvmlockd",
        "mkfs.gfs2",
        "iscsiadm",
        "targetcli",
        "mount.nfs",
    ];
    let engines = ssh
        .run(&format!(
            "for a in fence_ipmilan fence_redfish fence_sbd; do /usr/sbin/$a -o metadata | grep -c '<resource-agent' ; done; \
             command -v {}; \
             ls /usr/lib/ocf/resource.d/heartbeat/VirtualDomain /usr/lib/ocf/resource.d/heartbeat/lvmlockd; \
             systemctl is-enabled sbd.service || true",
            programs.join(" ")
        ))
        .unwrap_or_else(|e| panic!("{name}: engines: {e:#}"));
    let lines: Vec<&str> = engines.lines().collect();
    assert!(
        lines.len() == 3 + programs.len() + 2 + 1
            && lines[..3].iter().all(|l| *l == "1")
            && lines.last() == Some(&"disabled"),
        "{name}: fence agents, sbd and the cluster engines on an installed node:\n{engines}"
    );
    // chrony: the lab server is the selected source.
    let t = Instant::now();
    let mut last = String::new();
    wait_for(
        &format!("{name}: chrony synchronised to the lab"),
        Duration::from_secs(180),
        || {
            last = ssh.run("chronyc -n sources")?;
            Ok(last
                .lines()
                .any(|l| l.starts_with("^*") && l.contains("10.77.0.1")))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}: {last}"));
    eprintln!(
        "{name}: chrony synchronised in {:.0}s:\n{last}",
        t.elapsed().as_secs_f64()
    );
    // First boot printed hostd's fingerprint (console and install.log); hostd answers with the
    // certificate it is expected to have now.
    let printed = wait_printed_fingerprint(m, name);
    let log = ssh
        .run("cat /var/log/keel/install.log")
        .expect("install log");
    assert!(
        log.contains(&format!("KEEL-HOSTD-FINGERPRINT {printed}")),
        "{log}"
    );
    assert!(log.contains("step 8/8: done"), "{log}");
    let addr = format!("10.77.0.{octet}:8006");
    let presented = presented_fingerprint(link, &addr);
    assert_eq!(
        presented, api_fp,
        "hostd's certificate vs the expected fingerprint"
    );
    assert_eq!(
        ssh.run("cat /var/lib/keel/hostd.fingerprint")
            .expect("hostd.fingerprint")
            .trim(),
        api_fp,
        "hostd.fingerprint vs the certificate hostd presents"
    );
    let health = link
        .exec(&[
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("https://{addr}/api/v1/health"),
        ])
        .expect("curl");
    assert_eq!(health.trim(), "200");
    let fb = ssh
        .run("systemctl is-enabled keel-firstboot.service || true; test -e /etc/keel/firstboot-pending && echo pending || echo done")
        .expect("firstboot state");
    assert!(fb.contains("disabled") && fb.contains("done"), "{fb}");
}

fn tail(s: &str) -> String {
    let v: Vec<&str> = s.lines().rev().take(40).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[test]
fn two_nodes_install_from_one_iso() {
    let t_all = Instant::now();
    let (k, pubkey) = key();
    let iso = iso();
    let mut link = Link::up(&lab_id("two")).expect("lab link");
    let spec = |name: &str, mac: &str, answer_disk: Option<String>| MachineSpec {
        name: name.into(),
        firmware: Firmware::Bios,
        disk_gib: 16,
        // A has two spare NICs, in no answer: a bond is made of them through the API later
        macs: (1..=if name == "a" { 4 } else { 2 })
            .map(|i| format!("52:54:00:4b:{mac}:0{i}"))
            .collect(),
        answer_disk,
        mem_mib: 1536,
    };
    let sa = Ssh {
        link: &link,
        key: k.clone(),
        addr: "10.77.0.11".into(),
    };
    let sb = Ssh {
        link: &link,
        key: k.clone(),
        addr: "10.77.0.12".into(),
    };

    // ---- node A: install, boot, form the cluster.
    let mut a = Machine::start(&link, &iso.path, &spec("a", "0a", None)).expect("start a");
    let ta = a
        .wait_console(
            "KEEL-INSTALL-DONE",
            Some("KEEL-INSTALL-FAILED"),
            Duration::from_secs(900),
        )
        .expect("node A install");
    eprintln!("node A: QEMU start to KEEL-INSTALL-DONE in {ta:.0}s");
    assert!(a.console().contains("answer file: embedded in the ISO"));
    wait_ssh(&a, &sa, "node11");
    let printed_a = wait_printed_fingerprint(&a, "node11");
    assert_eq!(
        presented_fingerprint(&link, "10.77.0.11:8006"),
        printed_a,
        "node A: hostd's certificate vs the fingerprint first boot printed"
    );
    let t = Instant::now();
    let init = sa
        .run(&format!(
            "{KEEL} cluster init --name lab --link0 10.77.0.11 --token-ms 3000 2>&1"
        ))
        .unwrap_or_else(|e| panic!("keel cluster init on node A: {e:#}"));
    eprintln!(
        "node A: keel cluster init in {:.0}s:\n{init}",
        t.elapsed().as_secs_f64()
    );
    let fp_a = sa
        .run("cat /var/lib/keel/hostd.fingerprint")
        .expect("A's new fingerprint")
        .trim()
        .to_string();
    assert_ne!(fp_a, printed_a, "init must swap A's API certificate");
    assert_eq!(
        presented_fingerprint(&link, "10.77.0.11:8006"),
        fp_a,
        "node A presents its CA-signed certificate"
    );
    let token = sa
        .run(&format!("{KEEL} cluster join-token --ttl 1h 2>/dev/null"))
        .expect("join token")
        .trim()
        .to_string();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace));

    // ---- node B: the answer joins A's cluster on first boot.
    let answer_b = format!(
        "{}\n[cluster]\nmode = \"join\"\naddress = \"10.77.0.11\"\nfingerprint = \"{fp_a}\"\ntoken = \"{token}\"\n",
        answer(12, "0b", pubkey)
    );
    let mut b =
        Machine::start(&link, &iso.path, &spec("b", "0b", Some(answer_b))).expect("start b");
    eprintln!(
        "node B started {:.0}s into the test (A installed, booted, cluster formed, token made)",
        t_all.elapsed().as_secs_f64()
    );

    // While B installs: node A's provisioning.
    check_node(&link, &mut a, &sa, "node11", 11, pubkey, &fp_a);

    let tb = b
        .wait_console(
            "KEEL-INSTALL-DONE",
            Some("KEEL-INSTALL-FAILED"),
            Duration::from_secs(900),
        )
        .expect("node B install");
    eprintln!("node B: QEMU start to KEEL-INSTALL-DONE in {tb:.0}s");
    assert!(
        b.console().contains("answer file: partition"),
        "{}",
        tail(&b.console())
    );
    let tj = b
        .wait_console(
            "KEEL-FIRSTBOOT-JOINED",
            Some("KEEL-FIRSTBOOT-JOIN-FAILED"),
            Duration::from_secs(900),
        )
        .unwrap_or_else(|e| panic!("node B's first-boot join: {e:#}"));
    eprintln!(
        "node B: QEMU start to KEEL-FIRSTBOOT-JOINED in {tj:.0}s (install done → joined {:.0}s)",
        tj - tb
    );
    let fp_b = sb
        .run("cat /var/lib/keel/hostd.fingerprint")
        .expect("B's fingerprint")
        .trim()
        .to_string();
    check_node(&link, &mut b, &sb, "node12", 12, pubkey, &fp_b);
    let printed_b = printed_fingerprint(&b.console()).unwrap_or_default();
    assert_ne!(
        printed_b, fp_b,
        "the join must swap B's API certificate to a CA-signed one"
    );

    // ---- the cluster, seen from A.
    let t = Instant::now();
    let mut st = serde_json::Value::Null;
    wait_for(
        "2 members online and quorate (keel cluster status on A)",
        Duration::from_secs(180),
        || {
            st = serde_json::from_str(&sa.run(&format!("{KEEL} --json cluster status"))?)?;
            let m = st["members"].as_array().cloned().unwrap_or_default();
            Ok(st["quorate"] == true && m.len() == 2 && m.iter().all(|m| m["online"] == true))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{st:#}"));
    eprintln!(
        "cluster: 2 members online+quorate {:.0}s after B's join marker; status from A:\n{}",
        t.elapsed().as_secs_f64(),
        sa.run(&format!("{KEEL} cluster status"))
            .unwrap_or_default()
    );
    assert_eq!(st["clustered"], true, "{st:#}");
    assert_eq!(st["name"], "lab", "{st:#}");
    assert_eq!(st["two_node"], true, "{st:#}");
    assert_eq!(st["stonith_enabled"], true, "fencing must stay on: {st:#}");
    let mut names: Vec<String> = st["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    assert_eq!(names, ["node11", "node12"], "{st:#}");
    // Pacemaker's own view.
    let crm = sa.run("crm_mon -1 --output-as=xml").expect("crm_mon on A");
    for n in ["node11", "node12"] {
        assert!(
            crm.lines().any(|l| l.contains("<node ")
                && l.contains(&format!("name=\"{n}\""))
                && l.contains("online=\"true\"")),
            "Pacemaker does not see {n} online:\n{crm}"
        );
    }
    // The stack runs as systemd units on both (the production service manager).
    for (s, n) in [(&sa, "node11"), (&sb, "node12")] {
        let act = s
            .run("systemctl is-active corosync pacemaker keel-clusterd || true")
            .expect("systemctl is-active");
        eprintln!(
            "{n}: corosync/pacemaker/keel-clusterd: {}",
            act.split_whitespace().collect::<Vec<_>>().join("/")
        );
        let v: Vec<&str> = act.split_whitespace().collect();
        assert_eq!(&v[..2], ["active", "active"], "{n}: {act}");
    }
    // Root keys exchanged both ways by the join (migration transport).
    for (s, other) in [(&sa, "node12"), (&sb, "node11")] {
        let ak = s
            .run("cat /root/.ssh/authorized_keys")
            .expect("authorized_keys");
        assert!(ak.contains(&format!(" keel:{other}")), "{ak}");
    }
    // B's record of the join: install.log and the journal.
    let log_b = sb
        .run("cat /var/log/keel/install.log")
        .expect("B install.log");
    assert!(
        log_b.contains("KEEL-FIRSTBOOT-JOINED member=10.77.0.11")
            && log_b.contains("first boot: joined the cluster through 10.77.0.11"),
        "{log_b}"
    );
    assert!(
        !log_b.contains(&token),
        "the join token leaked into install.log"
    );
    let journal = sb
        .run("journalctl -b -u keel-firstboot --no-pager -o cat")
        .expect("B journal");
    assert!(
        journal.contains("KEEL-FIRSTBOOT-JOINED") && journal.contains("joined;"),
        "{journal}"
    );
    eprintln!(
        "node B's first boot, from install.log:\n{}",
        log_b
            .lines()
            .filter(|l| l.contains("first boot") || l.contains("KEEL-FIRSTBOOT"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Two nodes from one ISO: different identities.
    let id = |s: &Ssh| {
        s.run("cat /etc/machine-id; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
            .expect("identity")
    };
    let (ia, ib) = (id(&sa), id(&sb));
    let (ma, mb) = (
        ia.lines().next().unwrap_or(""),
        ib.lines().next().unwrap_or(""),
    );
    assert_eq!(ma.len(), 32, "{ia}");
    assert_ne!(ma, mb, "machine-ids must differ");
    assert_ne!(
        ia.lines().nth(1),
        ib.lines().nth(1),
        "SSH host keys must differ"
    );

    // VLAN 100 carries traffic node to node (the host bridge passes the tags through).
    sa.run("ping -c 3 -W 2 10.78.0.12")
        .expect("ping over VLAN 100");

    // Pull node A's active cable: still reachable over the other, and the cluster stays whole.
    let before = sa.run("cat /proc/net/bonding/bond0").expect("bonding");
    let active = |s: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix("Currently Active Slave: "))
            .map(str::to_string)
            .unwrap_or_default()
    };
    a.set_link(0, false).expect("cut link 1");
    std::thread::sleep(Duration::from_secs(3));
    let after = sa
        .run("cat /proc/net/bonding/bond0")
        .expect("bonding after the cut");
    assert_ne!(active(&before), active(&after), "{after}");
    assert_eq!(
        sa.run("hostname").expect("hostname after the cut").trim(),
        "node11"
    );
    sa.run("ping -c 2 -W 2 10.78.0.12")
        .expect("VLAN after the cut");
    a.set_link(0, true).expect("restore link 1");
    eprintln!(
        "cable pull: active slave {} -> {}, node still reachable",
        active(&before),
        active(&after)
    );
    wait_for(
        "the cluster whole after the cable pull",
        Duration::from_secs(90),
        || {
            st = serde_json::from_str(&sa.run(&format!("{KEEL} --json cluster status"))?)?;
            let m = st["members"].as_array().cloned().unwrap_or_default();
            Ok(st["quorate"] == true && m.len() == 2 && m.iter().all(|m| m["online"] == true))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{st:#}"));
    // A clustered node restarts its stack at boot (units enabled behind
    // ConditionPathExists=/etc/corosync/corosync.conf): reboot B, the cluster is whole again.
    let boot_id = |s: &Ssh| {
        s.run("cat /proc/sys/kernel/random/boot_id")
            .map(|b| b.trim().to_string())
    };
    let before = boot_id(&sb).expect("B boot id");
    let t = Instant::now();
    let _ = sb.exec("systemctl reboot", Duration::from_secs(20));
    wait_for(
        "node B back after a reboot",
        Duration::from_secs(420),
        || Ok(boot_id(&sb).is_ok_and(|b| b != before)),
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", tail(&b.console())));
    wait_for(
        "the cluster whole after B's reboot",
        Duration::from_secs(240),
        || {
            st = serde_json::from_str(&sa.run(&format!("{KEEL} --json cluster status"))?)?;
            let m = st["members"].as_array().cloned().unwrap_or_default();
            Ok(st["quorate"] == true && m.len() == 2 && m.iter().all(|m| m["online"] == true))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{st:#}"));
    let act = sb
        .run("systemctl is-active corosync pacemaker keel-clusterd || true")
        .expect("systemctl is-active after reboot");
    eprintln!(
        "node B rebooted: back in the cluster (2 online, quorate) {:.0}s after `systemctl reboot`; corosync/pacemaker/keel-clusterd: {}",
        t.elapsed().as_secs_f64(),
        act.split_whitespace().collect::<Vec<_>>().join("/")
    );
    host_networks_on_a(&sa);
    nfs_backup_target(&link, &sa, &sb);
    lvm_thin_pool_on_a(&sa);
    eprintln!(
        "two_nodes_install_from_one_iso: {:.0}s in all",
        t_all.elapsed().as_secs_f64()
    );
    link.passed();
}

/// An `nfs` backup target (docs/backups.md, "NFS targets") on the installed cluster, against
/// an NFSv4 server on the lab link (nfs-ganesha on the host side): a path the server does not
/// export is refused saying so, with nothing left mounted; the export is added on A and B
/// mounts it too (cluster-wide definition, each node mounts it itself); a stopped VM on A is
/// backed up to it (the files land on the server), verified and restored into a new VM whose
/// disk equals the original; removing the target unmounts it on A, and B's next listing
/// unmounts B's.
fn nfs_backup_target(link: &Link, sa: &Ssh, sb: &Ssh) {
    let t = Instant::now();
    let export_dir = link.dir.join("nfs-export");
    let export = link
        .start_nfs(&export_dir, "/backups")
        .unwrap_or_else(|e| panic!("NFS server on the lab link: {e:#}"));
    let nfs_mounts = |s: &Ssh| {
        s.run("findmnt -rn -t nfs,nfs4 -o TARGET,SOURCE || true")
            .expect("findmnt")
    };

    // a path the server does not export: refused with what to check, nothing mounted
    let out = sa
        .run(&format!(
            "{KEEL} backup target add wrong --nfs 10.77.0.1:/nope 2>&1; echo rc=$?"
        ))
        .expect("keel backup target add (wrong export)");
    assert!(
        out.contains("rc=1") && out.contains("does not export"),
        "{out}"
    );
    assert_eq!(nfs_mounts(sa).trim(), "", "nothing mounted after a refusal");
    assert!(
        sa.run("test ! -e /run/keel/backup-nfs/wrong && echo gone")
            .expect("mount point")
            .contains("gone"),
        "the refused target's mount point is removed"
    );

    // the export: added on A, mounted on A, listed usable on B (which mounts it itself)
    sa.run(&format!(
        "{KEEL} backup target add nas --nfs {export} --mount-options vers=4.2"
    ))
    .expect("keel backup target add nas --nfs");
    assert!(
        nfs_mounts(sa).contains("/run/keel/backup-nfs/nas 10.77.0.1:/backups"),
        "{}",
        nfs_mounts(sa)
    );
    let list_b: serde_json::Value = serde_json::from_str(
        &sb.run(&format!("{KEEL} --json backup target list"))
            .expect("target list on B"),
    )
    .expect("target list JSON");
    let nas_b = list_b
        .as_array()
        .and_then(|v| v.iter().find(|t| t["name"] == "nas"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(nas_b["ok"], true, "{list_b:#}");
    assert_eq!(nas_b["export"], export.as_str(), "{nas_b:#}");
    assert!(nas_b["available"].as_u64().unwrap_or(0) > 0, "{nas_b:#}");
    assert!(
        nfs_mounts(sb).contains("/run/keel/backup-nfs/nas"),
        "{}",
        nfs_mounts(sb)
    );

    // a stopped VM on A with known data, backed up to the export, verified, restored
    sa.run(&format!(
        "{KEEL} vm create --vmid 150 --name nfs-src --memory-mib 128 --disk local:64M:qcow2 && \
         qemu-io -f qcow2 -c 'write -P 0x5a 0 8M' -c 'write -P 0xa5 40M 4M' /var/lib/keel/images/vm-150-disk-0.qcow2 >/dev/null && \
         {KEEL} backup create 150 --target nas"
    ))
    .expect("a stopped VM backed up to the NFS target");
    let backups: serde_json::Value = serde_json::from_str(
        &sa.run(&format!("{KEEL} --json backup list 150 --target nas"))
            .expect("backup list"),
    )
    .expect("backup list JSON");
    let id = backups[0]["id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "{backups:#}");
    // on the server's disk, written through NFS
    let manifest = export_dir.join("150").join(&id).join("manifest.json");
    assert!(
        manifest.is_file(),
        "{} on the NFS server",
        manifest.display()
    );
    sa.run(&format!("{KEEL} backup verify 150 {id} --target nas"))
        .expect("keel backup verify");
    let ver: serde_json::Value = serde_json::from_str(
        &sa.run(&format!("{KEEL} --json backup list 150 --target nas"))
            .expect("backup list after verify"),
    )
    .expect("backup list JSON");
    assert_eq!(ver[0]["verify_state"], "ok", "{ver:#}");
    sa.run(&format!(
        "{KEEL} backup restore 150 {id} --target nas --new-vmid 151 --pool local"
    ))
    .expect("keel backup restore from the NFS target");
    let cmp = sa
        .run("qemu-img compare /var/lib/keel/images/vm-150-disk-0.qcow2 $(ls /var/lib/keel/images/vm-151-disk-0.* | head -1)")
        .expect("qemu-img compare");
    assert!(cmp.contains("Images are identical"), "{cmp}");

    // removing the target unmounts it here; B's next listing unmounts B's
    sa.run(&format!("{KEEL} backup target remove nas"))
        .expect("keel backup target remove");
    assert_eq!(nfs_mounts(sa).trim(), "", "A's mount after the removal");
    sb.run(&format!("{KEEL} backup target list"))
        .expect("target list on B after the removal");
    assert_eq!(
        nfs_mounts(sb).trim(),
        "",
        "B's mount after its next listing"
    );
    assert!(manifest.is_file(), "the backups stay on the server");
    sa.run(&format!(
        "{KEEL} vm delete 150 --purge; {KEEL} vm delete 151 --purge"
    ))
    .expect("VMs deleted");
    eprintln!(
        "nfs backup target: refused wrong export, mounted on both nodes, backup {id} written to the server, verified, restored identical, unmounted on removal: {:.0}s",
        t.elapsed().as_secs_f64()
    );
}

/// A node-local `lvm-thin` pool (docs/storage.md, "Node-local pools") in the volume group the
/// installer made on A: a VG A lacks is refused naming the one it has; one command makes a
/// tagged thin pool; a qcow2 disk there is refused before any task; a raw disk is a thin LV
/// whose blocks are allocated only as they are written; a VM boots from it (QEMU holds the LV
/// open), and the pool cannot be deleted while it holds the disk; `vm delete --purge` removes
/// the LV and the pool goes with one delete.
fn lvm_thin_pool_on_a(sa: &Ssh) {
    let t = Instant::now();
    let run = |cmd: &str| -> String {
        sa.run(&format!("{cmd} 2>&1; echo rc=$?"))
            .unwrap_or_else(|e| panic!("{cmd}: {e:#}"))
    };
    let out = run(&format!(
        "{KEEL} storage pool create fast --type lvm-thin --vg nope"
    ));
    assert!(
        out.contains("rc=1")
            && out.contains("volume group \"nope\" does not exist on this node (it has keel)"),
        "{out}"
    );
    let out = run(&format!(
        "{KEEL} storage pool create fast --type lvm-thin --vg keel --size 1G"
    ));
    assert!(out.ends_with("rc=0\n"), "{out}");
    let lv = run("lvs --noheadings -o lv_attr,lv_tags,lv_size --units m keel/fast");
    assert!(
        lv.trim_start().starts_with("twi") && lv.contains("keel_pool") && lv.contains("1024.00m"),
        "{lv}"
    );
    let pools: serde_json::Value = serde_json::from_str(
        &sa.run(&format!("{KEEL} --json storage list"))
            .expect("storage list"),
    )
    .expect("storage list JSON");
    let fast = pools
        .as_array()
        .and_then(|v| v.iter().find(|p| p["name"] == "fast"))
        .cloned()
        .unwrap_or_default();
    assert!(
        fast["kind"] == "lvm-thin" && fast["capacity"] == 1u64 << 30 && fast["active"] == true,
        "{pools:#}"
    );
    // qcow2 (the CLI's default format) is refused before any task
    let out = run(&format!(
        "{KEEL} vm create --vmid 160 --name thin-vm --memory-mib 128 --disk fast:256M"
    ));
    assert!(
        out.contains("rc=1") && out.contains("give format raw"),
        "{out}"
    );
    let out = run(&format!(
        "{KEEL} vm create --vmid 160 --name thin-vm --memory-mib 128 --disk fast:256M:raw"
    ));
    assert!(out.ends_with("rc=0\n"), "{out}");
    let dev = "/dev/keel/vm-160-disk-0.raw";
    let lv = run("lvs --noheadings -o lv_attr,pool_lv keel/vm-160-disk-0.raw");
    assert!(
        lv.trim_start().starts_with("Vwi") && lv.contains("fast"),
        "{lv}"
    );
    let xml = run("virsh dumpxml thin-vm");
    assert!(
        xml.contains("<disk type='block' device='disk'>")
            && xml.contains(&format!("<source dev='{dev}'")),
        "{xml}"
    );
    // thin: 8 MiB written of 256, and only that is allocated (LVM reports a percentage with two
    // decimals: 3.12 % of 256 MiB is a little under 8 MiB)
    run(&format!(
        "dd if=/dev/urandom of={dev} bs=1M count=8 oflag=direct status=none"
    ));
    let vols: serde_json::Value = serde_json::from_str(
        &sa.run(&format!("{KEEL} --json storage content fast"))
            .expect("storage content"),
    )
    .expect("content JSON");
    let v = &vols[0];
    let alloc = v["allocation"].as_u64().unwrap_or(0);
    assert!(
        v["name"] == "vm-160-disk-0.raw"
            && v["format"] == "raw"
            && v["capacity"] == 256u64 << 20
            && (7u64 << 20..=16u64 << 20).contains(&alloc)
            && v["used_by"][0] == "VM 160 (thin-vm)",
        "{vols:#}"
    );
    // the VM runs on it: QEMU opens the LV; the pool holding its disk is not deleted
    let out = run(&format!("{KEEL} vm start 160"));
    assert!(out.ends_with("rc=0\n"), "{out}");
    wait_for(
        "QEMU holds the thin LV open",
        Duration::from_secs(60),
        || {
            Ok(sa
                .run("lvs --noheadings -o lv_attr keel/vm-160-disk-0.raw")?
                .trim()
                .chars()
                .nth(5)
                == Some('o'))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let out = run(&format!("{KEEL} storage pool delete fast"));
    assert!(
        out.contains("rc=1") && out.contains("vm-160-disk-0.raw (used by VM 160 (thin-vm))"),
        "{out}"
    );
    let out = run(&format!(
        "{KEEL} vm stop 160 && {KEEL} vm delete 160 --purge"
    ));
    assert!(out.ends_with("rc=0\n"), "{out}");
    let lvs = run("lvs --noheadings -o lv_name keel");
    assert!(!lvs.contains("vm-160"), "the purge left the LV: {lvs}");
    let out = run(&format!("{KEEL} storage pool delete fast"));
    assert!(out.ends_with("rc=0\n"), "{out}");
    let lvs = run("lvs --noheadings -o lv_name keel");
    assert!(!lvs.contains("fast"), "the pool's LV is left: {lvs}");
    eprintln!(
        "lvm-thin pool on A: refused VG named, pool created, qcow2 refused, raw thin disk allocated as written ({:.1} MiB of 256), VM ran on it, delete refused while used, purge and pool delete left no LV: {:.0}s",
        alloc as f64 / f64::from(1u32 << 20),
        t.elapsed().as_secs_f64()
    );
}

/// Host networks (issue 15, docs/host-networks.md) on installed node A, through its API with
/// `keel node network`: the listing shows the installed bond with both slaves' MII state and the
/// management/corosync interface; a VLAN + bridge on the bond is applied and confirmed; removing
/// the interface that carries the corosync link is refused; moving the management address to
/// the new VLAN bridge (where nothing reaches it) is applied without confirmation, the node
/// becomes unreachable, rolls itself back at the deadline and answers again, cluster whole.
fn host_networks_on_a(sa: &Ssh) {
    let t = Instant::now();
    let list = || -> serde_json::Value {
        let out = sa
            .run(&format!("{KEEL} --json node network list"))
            .expect("keel node network list");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let iface = |l: &serde_json::Value, n: &str| -> serde_json::Value {
        l["interfaces"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == n).cloned())
            .unwrap_or_else(|| panic!("{n} not listed: {l:#}"))
    };
    let l = list();
    let bond = iface(&l, "bond0");
    assert_eq!(bond["managed"], true, "{bond:#}");
    assert_eq!(bond["bond"]["mode"], "active-backup", "{bond:#}");
    let slaves = bond["bond"]["slaves"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(slaves.len(), 2, "{bond:#}");
    assert!(
        slaves.iter().all(|s| s["mii_status"] == "up"),
        "both slaves' MII up: {bond:#}"
    );
    assert!(bond["bond"]["active_slave"].is_string(), "{bond:#}");
    let vmbr0 = iface(&l, "vmbr0");
    assert_eq!(vmbr0["management"], true, "{vmbr0:#}");
    assert_eq!(
        vmbr0["corosync_links"],
        serde_json::json!(["link0"]),
        "{vmbr0:#}"
    );
    eprintln!(
        "host network on A:\n{}\n/proc/net/bonding/bond0:\n{}",
        sa.run(&format!("{KEEL} node network list"))
            .unwrap_or_default(),
        sa.run("cat /proc/net/bonding/bond0").unwrap_or_default()
    );

    // A new bond through the API, of the two spare NICs (no Keel file, no master, no
    // address): staged, applied and confirmed; the bonding driver shows both slaves with their
    // MII up. Then deleted the same way: the bond gone, the NICs free again.
    let t_bond = Instant::now();
    let spare: Vec<String> = l["interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|i| {
            i["kind"] == "ethernet"
                && i["master"].is_null()
                && i["addresses"].as_array().is_none_or(|a| a.is_empty())
        })
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(spare.len(), 2, "two spare NICs on A: {l:#}");
    let diff = sa
        .run(&format!(
            "{KEEL} node network bond add bond1 --slave {} --slave {}",
            spare[0], spare[1]
        ))
        .expect("stage bond1");
    assert!(
        diff.contains("+Kind=bond") && diff.contains("+Bond=bond1"),
        "{diff}"
    );
    sa.run(&format!("{KEEL} node network apply --confirm-timeout 120"))
        .expect("apply bond1");
    sa.run(&format!("{KEEL} node network confirm"))
        .expect("confirm bond1");
    let mut bonding = String::new();
    wait_for(
        "bond1 with both slaves' MII up",
        Duration::from_secs(60),
        || {
            bonding = sa.run("cat /proc/net/bonding/bond1")?;
            Ok(spare
                .iter()
                .all(|n| bonding.contains(&format!("Slave Interface: {n}")))
                && bonding.matches("MII Status: up").count() == 3)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{bonding}"));
    let b1 = iface(&list(), "bond1");
    assert!(
        b1["managed"] == true
            && b1["bond"]["slaves"]
                .as_array()
                .is_some_and(|s| s.len() == 2 && s.iter().all(|x| x["mii_status"] == "up")),
        "{b1:#}"
    );
    sa.run(&format!("{KEEL} node network delete bond1"))
        .expect("stage the deletion of bond1");
    sa.run(&format!("{KEEL} node network apply --confirm-timeout 120"))
        .expect("apply the deletion of bond1");
    sa.run(&format!("{KEEL} node network confirm"))
        .expect("confirm the deletion of bond1");
    let (code, _, _) = sa
        .exec("ip link show bond1", Duration::from_secs(10))
        .expect("ip link show bond1");
    assert_ne!(code, 0, "bond1 still exists after its deletion");
    let l2 = list();
    for n in &spare {
        assert!(iface(&l2, n)["master"].is_null(), "{n} freed: {l2:#}");
    }
    eprintln!(
        "host network: bond1 of {} made, applied and confirmed, then deleted ({:.0}s)",
        spare.join(" + "),
        t_bond.elapsed().as_secs_f64()
    );

    // Cutting the corosync link (and the management address) is refused, nothing staged.
    let (code, out, err) = sa
        .exec(
            &format!("{KEEL} node network delete vmbr0"),
            Duration::from_secs(60),
        )
        .expect("delete vmbr0");
    assert!(
        code != 0
            && format!("{out}{err}").contains("would take away")
            && format!("{out}{err}").contains("10.77.0.11"),
        "removing vmbr0 must be refused: {code} {out}{err}"
    );

    // A VLAN and a bridge on the bond, applied and confirmed.
    sa.run(&format!("{KEEL} node network vlan add bond0 200"))
        .expect("stage VLAN 200");
    let diff = sa
        .run(&format!(
            "{KEEL} node network bridge add vmbr200 --port bond0.200 --address 10.79.0.11/24"
        ))
        .expect("stage vmbr200");
    assert!(
        diff.contains("+VLAN=bond0.200") && diff.contains("+Address=10.79.0.11/24"),
        "{diff}"
    );
    sa.run(&format!("{KEEL} node network apply --confirm-timeout 120"))
        .expect("apply VLAN 200 + vmbr200");
    sa.run(&format!("{KEEL} node network confirm"))
        .expect("confirm");
    let vlan = sa.run("ip -d link show bond0.200").expect("bond0.200");
    assert!(
        vlan.contains("vlan protocol 802.1Q id 200") && vlan.contains("master vmbr200"),
        "{vlan}"
    );
    let a200 = sa.run("ip -4 -o addr show dev vmbr200").expect("vmbr200");
    assert!(a200.contains("10.79.0.11/24"), "{a200}");
    let l = list();
    assert_eq!(l["apply"], serde_json::Value::Null, "{l:#}");
    assert_eq!(iface(&l, "bond0.200")["vlan_id"], 200);
    eprintln!(
        "host network: VLAN 200 + vmbr200 applied and confirmed ({:.0}s)",
        t.elapsed().as_secs_f64()
    );

    // The management address moved onto vmbr200 (VLAN 200: nothing reaches it there), applied
    // without confirmation: A becomes unreachable and rolls itself back at the deadline.
    let t_rb = Instant::now();
    // Two edits, each checked: onto vmbr200 first, then off vmbr0 (alone refused, as above).
    sa.run(&format!(
        "{KEEL} node network bridge add vmbr200 --port bond0.200 --address 10.79.0.11/24 --address 10.77.0.11/24"
    ))
    .expect("stage the management address on vmbr200");
    sa.run(&format!(
        "{KEEL} node network bridge add vmbr0 --port bond0"
    ))
    .expect("stage vmbr0 without its address");
    let _ = sa.exec(
        &format!("{KEEL} --no-wait node network apply --confirm-timeout 30"),
        Duration::from_secs(20),
    );
    wait_for(
        "node A unreachable once its management address moved",
        Duration::from_secs(90),
        || {
            Ok(!matches!(
                sa.exec("true", Duration::from_secs(5)),
                Ok((0, _, _))
            ))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    wait_for(
        "node A answering again with its management address on vmbr0 (rolled back)",
        Duration::from_secs(240),
        || {
            Ok(sa
                .exec("ip -4 -o addr show dev vmbr0", Duration::from_secs(5))
                .is_ok_and(|(c, o, _)| c == 0 && o.contains("10.77.0.11/24")))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rolled = t_rb.elapsed().as_secs_f64();
    let f = sa
        .run("cat /etc/systemd/network/40-vmbr200.network; test ! -e /var/lib/keel/network/apply.json && echo no-record")
        .expect("files after the rollback");
    assert!(
        !f.contains("10.77.0.11") && f.contains("10.79.0.11/24") && f.contains("no-record"),
        "{f}"
    );
    let l = list();
    assert_eq!(l["apply"], serde_json::Value::Null, "{l:#}");
    if l["pending"] != false {
        // seen once on a heavily loaded host: say what the apply and the rollback did
        let why = sa
            .run(&format!(
                "{KEEL} task list --limit 8; for u in $({KEEL} --json task list --limit 8 | grep -o 'UPID:[^\"]*:net[a-z]*:[^\"]*'); do echo \"== $u\"; {KEEL} task log \"$u\"; done; journalctl -u keel-hostd --since -15min --no-pager | tail -40"
            ))
            .unwrap_or_else(|e| format!("{e:#}"));
        panic!("changes still pending after the rollback: {l:#}\n{why}");
    }
    let mut st = serde_json::Value::Null;
    wait_for(
        "the cluster whole after the rollback",
        Duration::from_secs(240),
        || {
            st = serde_json::from_str(&sa.run(&format!("{KEEL} --json cluster status"))?)?;
            let m = st["members"].as_array().cloned().unwrap_or_default();
            Ok(st["quorate"] == true && m.len() == 2 && m.iter().all(|m| m["online"] == true))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{st:#}"));
    eprintln!(
        "host network: unconfirmed move of the management address rolled back, A answering again {rolled:.0}s after the apply, cluster whole {:.0}s after it; host network steps {:.0}s in all",
        t_rb.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn uefi_boot_and_bad_answer() {
    let iso = iso();
    let mut link = Link::up(&lab_id("uefi")).expect("lab link");
    // UEFI: no NICs, so the embedded answer cannot be planned here and nothing is written;
    // what matters is that OVMF boots the ISO into the installer.
    let mut u = Machine::start(
        &link,
        &iso.path,
        &MachineSpec {
            name: "u".into(),
            firmware: Firmware::Uefi,
            disk_gib: 16,
            macs: vec![],
            answer_disk: None,
            mem_mib: 1536,
        },
    )
    .expect("start uefi");
    // A wrong answer (a golden bad case) from an answer partition, BIOS.
    let bad = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../installer/tests/golden/bad/vlan-id-4095.toml"
    ))
    .expect("golden bad case");
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../installer/tests/golden/bad/vlan-id-4095.err"
    ))
    .expect("golden message");
    let mut w = Machine::start(
        &link,
        &iso.path,
        &MachineSpec {
            name: "w".into(),
            firmware: Firmware::Bios,
            disk_gib: 16,
            macs: vec!["52:54:00:4b:0c:01".into()],
            answer_disk: Some(bad),
            mem_mib: 1536,
        },
    )
    .expect("start bad");
    let (tu, tw) = std::thread::scope(|s| {
        let hu =
            s.spawn(|| u.wait_console("KEEL-INSTALLER: starting", None, Duration::from_secs(600)));
        let hw = s.spawn(|| {
            w.wait_console(
                "KEEL-INSTALL-FAILED",
                Some("KEEL-INSTALL-DONE"),
                Duration::from_secs(600),
            )
        });
        (hu.join().expect("u"), hw.join().expect("w"))
    });
    let tu = tu.expect("UEFI boot reaches the installer");
    eprintln!("UEFI (OVMF, TCG): QEMU start to the installer in {tu:.0}s");
    assert!(u.console().contains("KEEL-INITRAMFS: installer medium on"));
    u.kill();
    let tw = tw.expect("bad answer fails");
    // Give the failing program a moment to print every line, then compare with the golden file.
    std::thread::sleep(Duration::from_secs(3));
    let console = w.console();
    let printed: Vec<String> = console
        .lines()
        .filter_map(|l| l.split("KEEL-INSTALL-FAILED: ").nth(1))
        .map(|s| s.trim_end_matches('\r').to_string())
        .collect();
    let expected: Vec<String> = golden.lines().map(str::to_string).collect();
    assert!(
        printed
            .first()
            .is_some_and(|l| l.contains("is not valid; nothing was written")),
        "{printed:?}"
    );
    assert_eq!(
        &printed[1..],
        &expected[..],
        "the installer's messages vs the golden file"
    );
    w.kill();
    assert_eq!(
        w.disk_allocated().expect("stat"),
        0,
        "the target disk was written to"
    );
    eprintln!(
        "wrong answer: refused after {tw:.0}s with the golden message; target disk untouched"
    );
    link.passed();
}
