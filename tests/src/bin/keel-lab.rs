//! `keel-lab`: bring a test lab up by hand, leave it running, reach its nodes, tear it down.
//!
//! ```text
//! keel-lab up --vm 2          # TCG VM lab (docs/labs-vm.md), returns once every node answers ssh
//! keel-lab up --netns 3       # netns lab (docs/labs-netns.md): network + mounts, no daemons
//! keel-lab up --netns 3 --cluster   # … plus corosync + Pacemaker running, lab fencing configured
//! keel-lab ls                 # labs with a state file under /var/tmp/keel-lab/, PIDs checked
//! keel-lab ssh [--lab DIR] node1 [CMD…]
//! keel-lab down [--lab DIR]   # kill that lab's recorded PIDs, remove its run dir
//! ```
//!
//! Each lab started here has a state file `keel-lab.state` in its run directory. It records every
//! PID together with its start time (field 22 of `/proc/PID/stat`), so a recycled PID is never
//! mistaken for a lab process and never killed.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use keel_tests::netns::{CorosyncConf, LabOpts, NetnsLab, PacemakerSetup};
use keel_tests::vmlab::{VmLab, RUN_ROOT};

const STATE_FILE: &str = "keel-lab.state";

#[derive(Parser)]
#[command(
    name = "keel-lab",
    about = "Bring Keel's test labs up by hand and leave them running"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot a lab and return, leaving it running.
    Up {
        /// TCG VM lab with N nodes (1..=9).
        #[arg(
            long,
            value_name = "N",
            conflicts_with = "netns",
            required_unless_present = "netns"
        )]
        vm: Option<usize>,
        /// netns lab with N nodes (network, mounts, hostnames; no daemons unless --cluster).
        #[arg(long, value_name = "N")]
        netns: Option<usize>,
        /// netns lab: also configure and start corosync + Pacemaker (with lab fencing) and wait
        /// until every node is online.
        #[arg(long, requires = "netns")]
        cluster: bool,
    },
    /// List labs started by keel-lab (state files under /var/tmp/keel-lab/).
    Ls,
    /// VM lab: ssh into NODE; netns lab: nsenter into NODE. CMD runs there (default: a shell).
    Ssh {
        /// Run directory (path or name under /var/tmp/keel-lab); default: the only running lab.
        #[arg(long)]
        lab: Option<String>,
        /// `node1`, `node2`, … or just the index.
        node: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Kill that lab's recorded processes (by PID) and remove its run directory.
    Down {
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vm,
    Netns,
}

/// A process recorded in a state file: PID + its start time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: u32,
    start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeState {
    name: String,
    proc_: Proc,
    /// VM lab: host port forwarded to the guest's sshd.
    ssh_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    kind: Kind,
    /// VM lab: the lab's ssh private key.
    key: Option<PathBuf>,
    nodes: Vec<NodeState>,
    /// Other processes of the lab (netns: the switch anchor).
    extra: Vec<Proc>,
}

fn fmt_proc(p: Proc) -> String {
    format!("{}@{}", p.pid, p.start)
}

fn parse_proc(s: &str) -> Result<Proc> {
    let (pid, start) = s
        .split_once('@')
        .ok_or_else(|| anyhow!("bad process {s:?} (want PID@STARTTIME)"))?;
    Ok(Proc {
        pid: pid.parse().with_context(|| format!("bad pid in {s:?}"))?,
        start: start
            .parse()
            .with_context(|| format!("bad start time in {s:?}"))?,
    })
}

impl State {
    fn render(&self) -> String {
        let mut s = format!(
            "# keel-lab state file (written by `keel-lab up`)\nkind={}\n",
            match self.kind {
                Kind::Vm => "vm",
                Kind::Netns => "netns",
            }
        );
        if let Some(k) = &self.key {
            s += &format!("key={}\n", k.display());
        }
        for n in &self.nodes {
            s += &format!("node={} pid={}", n.name, fmt_proc(n.proc_));
            if let Some(p) = n.ssh_port {
                s += &format!(" ssh={p}");
            }
            s.push('\n');
        }
        for p in &self.extra {
            s += &format!("pid={}\n", fmt_proc(*p));
        }
        s
    }

    fn parse(text: &str) -> Result<State> {
        let mut kind = None;
        let mut key = None;
        let mut nodes = Vec::new();
        let mut extra = Vec::new();
        for (no, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let ctx = || format!("state file line {}: {line:?}", no + 1);
            let (k, v) = line.split_once('=').ok_or_else(|| anyhow!("{}", ctx()))?;
            match k {
                "kind" => {
                    kind = Some(match v {
                        "vm" => Kind::Vm,
                        "netns" => Kind::Netns,
                        _ => bail!("{}: unknown kind", ctx()),
                    })
                }
                "key" => key = Some(PathBuf::from(v)),
                "pid" => extra.push(parse_proc(v).with_context(ctx)?),
                "node" => {
                    let mut f = v.split_whitespace();
                    let name = f.next().ok_or_else(|| anyhow!("{}", ctx()))?.to_string();
                    let (mut proc_, mut ssh_port) = (None, None);
                    for kv in f {
                        match kv.split_once('=') {
                            Some(("pid", p)) => proc_ = Some(parse_proc(p).with_context(ctx)?),
                            Some(("ssh", p)) => {
                                ssh_port = Some(p.parse().with_context(ctx)?);
                            }
                            _ => bail!("{}: unknown field {kv:?}", ctx()),
                        }
                    }
                    let proc_ = proc_.ok_or_else(|| anyhow!("{}: node without pid", ctx()))?;
                    nodes.push(NodeState {
                        name,
                        proc_,
                        ssh_port,
                    });
                }
                _ => bail!("{}: unknown key", ctx()),
            }
        }
        let kind = kind.ok_or_else(|| anyhow!("state file has no kind="))?;
        if kind == Kind::Vm && (key.is_none() || nodes.iter().any(|n| n.ssh_port.is_none())) {
            bail!("VM lab state file needs key= and ssh= for every node");
        }
        Ok(State {
            kind,
            key,
            nodes,
            extra,
        })
    }

    fn procs(&self) -> impl Iterator<Item = Proc> + '_ {
        self.nodes
            .iter()
            .map(|n| n.proc_)
            .chain(self.extra.iter().copied())
    }

    fn node(&self, name: &str) -> Result<&NodeState> {
        let want = if name.chars().all(|c| c.is_ascii_digit()) {
            format!("node{name}")
        } else {
            name.to_string()
        };
        self.nodes.iter().find(|n| n.name == want).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            anyhow!("no node {want:?} in this lab (nodes: {})", names.join(" "))
        })
    }
}

/// Start time (field 22 of /proc/PID/stat) of a live process.
fn start_time(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces; fields after the last ')' start at field 3.
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn proc_of(pid: u32) -> Result<Proc> {
    Ok(Proc {
        pid,
        start: start_time(pid).ok_or_else(|| anyhow!("process {pid} is gone"))?,
    })
}

/// The recorded process is still the same process (not exited, PID not recycled).
fn alive(p: Proc) -> bool {
    if start_time(p.pid) != Some(p.start) {
        return false;
    }
    // A zombie is not a running lab process.
    !fs::read_to_string(format!("/proc/{}/stat", p.pid))
        .map(|s| {
            s.rfind(')')
                .is_some_and(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

struct Lab {
    dir: PathBuf,
    state: State,
}

impl Lab {
    fn load(dir: &Path) -> Result<Lab> {
        let f = dir.join(STATE_FILE);
        let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        Ok(Lab {
            dir: dir.to_path_buf(),
            state: State::parse(&text).with_context(|| format!("parsing {}", f.display()))?,
        })
    }

    fn alive_count(&self) -> (usize, usize) {
        let all: Vec<Proc> = self.state.procs().collect();
        (all.iter().filter(|p| alive(**p)).count(), all.len())
    }
}

fn all_labs() -> Result<Vec<Lab>> {
    let mut v = Vec::new();
    let rd = match fs::read_dir(RUN_ROOT) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e).context(RUN_ROOT),
    };
    for e in rd {
        let p = e?.path();
        if p.join(STATE_FILE).is_file() {
            match Lab::load(&p) {
                Ok(l) => v.push(l),
                Err(e) => eprintln!("warning: {e:#}"),
            }
        }
    }
    v.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(v)
}

fn pick_lab(arg: Option<&str>) -> Result<Lab> {
    if let Some(a) = arg {
        let p = Path::new(a);
        let dir = if p.is_absolute() || a.contains('/') {
            p.to_path_buf()
        } else {
            Path::new(RUN_ROOT).join(a)
        };
        return Lab::load(&dir);
    }
    let running: Vec<Lab> = all_labs()?
        .into_iter()
        .filter(|l| l.alive_count().0 > 0)
        .collect();
    match running.len() {
        0 => bail!("no running lab (keel-lab ls; start one with keel-lab up --vm N)"),
        1 => Ok(running.into_iter().next().expect("one lab")),
        n => {
            let names: Vec<String> = running
                .iter()
                .map(|l| l.dir.display().to_string())
                .collect();
            bail!(
                "{n} labs are running; choose one with --lab DIR:\n  {}",
                names.join("\n  ")
            )
        }
    }
}

fn ssh_argv(key: &Path, port: u16) -> Vec<String> {
    let mut v: Vec<String> = vec!["ssh".into(), "-i".into(), key.display().to_string()];
    for o in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "LogLevel=ERROR",
    ] {
        v.push("-o".into());
        v.push(o.into());
    }
    v.extend(["-p".into(), port.to_string(), "root@127.0.0.1".into()]);
    v
}

fn print_lab(lab: &Lab) {
    println!("lab {} ({:?})", lab.dir.display(), lab.state.kind);
    for n in &lab.state.nodes {
        let how = match (lab.state.kind, &lab.state.key, n.ssh_port) {
            (Kind::Vm, Some(k), Some(p)) => ssh_argv(k, p).join(" "),
            _ => format!("nsenter -t {} -n -m -u -- bash", n.proc_.pid),
        };
        println!("  {:<6} pid {:<8} {how}", n.name, n.proc_.pid);
    }
    let short = lab
        .dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    println!("  keel-lab ssh --lab {short} node1 [CMD…]   |   keel-lab down --lab {short}");
}

fn write_state(dir: &Path, st: &State) -> Result<()> {
    let f = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    fs::write(&tmp, st.render())?;
    fs::rename(&tmp, &f).with_context(|| format!("writing {}", f.display()))
}

fn up_vm(n: usize) -> Result<()> {
    let lab = VmLab::up(n)?;
    let st = State {
        kind: Kind::Vm,
        key: Some(lab.key.clone()),
        nodes: lab
            .nodes
            .iter()
            .map(|nd| {
                Ok(NodeState {
                    name: nd.name.clone(),
                    proc_: proc_of(nd.pid())?,
                    ssh_port: Some(nd.ssh_port),
                })
            })
            .collect::<Result<_>>()?,
        extra: vec![],
    };
    // If writing the state fails, `lab` is dropped here and kills its QEMUs.
    write_state(&lab.dir, &st)?;
    let boot = lab.boot_seconds;
    let dir = lab.detach();
    eprintln!("booted in {boot:.0} s");
    print_lab(&Lab { dir, state: st });
    Ok(())
}

fn up_netns(n: usize, cluster: bool) -> Result<()> {
    let mut opts = LabOpts::new("manual");
    opts.keep_run_dir = true;
    let lab = NetnsLab::up(n, opts)?;
    if cluster {
        let pcmk = PacemakerSetup::default();
        lab.configure_cluster(&CorosyncConf::for_lab(&lab), &pcmk)?;
        let (q, o) = lab.start_cluster(Duration::from_secs(120))?;
        lab.configure_fencing(lab.node(1)?, &pcmk)?;
        eprintln!(
            "corosync quorate after {:.1} s, all nodes online after {:.1} s, fencing configured",
            q.as_secs_f64(),
            o.as_secs_f64()
        );
    }
    let read_pid = |p: PathBuf| -> Result<u32> {
        fs::read_to_string(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {}", p.display()))
    };
    let st = State {
        kind: Kind::Netns,
        key: None,
        nodes: lab
            .nodes
            .iter()
            .map(|nd| {
                Ok(NodeState {
                    name: nd.name.clone(),
                    proc_: proc_of(nd.anchor_pid())?,
                    ssh_port: None,
                })
            })
            .collect::<Result<_>>()?,
        extra: vec![proc_of(read_pid(lab.dir.join("sw.pid"))?)?],
    };
    write_state(&lab.dir, &st)?;
    let dir = lab.detach();
    print_lab(&Lab { dir, state: st });
    Ok(())
}

fn ls() -> Result<()> {
    let labs = all_labs()?;
    if labs.is_empty() {
        println!("no labs (state files {RUN_ROOT}/*/{STATE_FILE})");
    }
    for l in &labs {
        let (a, t) = l.alive_count();
        let status = match a {
            0 => "dead".to_string(),
            _ if a == t => "running".to_string(),
            _ => format!("partly running ({a}/{t} processes)"),
        };
        let names: Vec<&str> = l.state.nodes.iter().map(|n| n.name.as_str()).collect();
        println!(
            "{}  {:<5} {:<8} {}",
            l.dir.display(),
            format!("{:?}", l.state.kind).to_lowercase(),
            status,
            names.join(",")
        );
    }
    Ok(())
}

fn ssh(lab: &Lab, node: &str, cmd: &[String]) -> Result<()> {
    let n = lab.state.node(node)?;
    if !alive(n.proc_) {
        bail!("{} of {} is not running", n.name, lab.dir.display());
    }
    let argv: Vec<String> = match lab.state.kind {
        Kind::Vm => {
            let key = lab.state.key.as_ref().ok_or_else(|| anyhow!("no key"))?;
            let port = n.ssh_port.ok_or_else(|| anyhow!("no ssh port"))?;
            let mut v = ssh_argv(key, port);
            v.extend(cmd.iter().cloned());
            v
        }
        Kind::Netns => {
            let mut v: Vec<String> = [
                "nsenter",
                "-t",
                &n.proc_.pid.to_string(),
                "-n",
                "-m",
                "-u",
                "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if cmd.is_empty() {
                v.push("bash".into());
            } else {
                v.extend(["sh".into(), "-c".into(), cmd.join(" ")]);
            }
            v
        }
    };
    let err = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(err).with_context(|| format!("exec {}", argv[0]))
}

/// Processes in the network namespace of the (alive) netns-lab anchor `a`, anchor excluded.
fn netns_members(a: Proc) -> Vec<Proc> {
    let ns = |p: u32| fs::read_link(format!("/proc/{p}/ns/net")).ok();
    let (Some(mine), Some(theirs)) = (ns(std::process::id()), ns(a.pid)) else {
        return vec![];
    };
    if mine == theirs {
        return vec![]; // never the host's namespace
    }
    let Ok(rd) = fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != a.pid && ns(p).as_ref() == Some(&theirs))
        .filter_map(|p| proc_of(p).ok())
        .collect()
}

fn kill9(p: Proc) {
    if alive(p) {
        let _ = Command::new("kill")
            .args(["-9", &p.pid.to_string()])
            .status();
    }
}

fn down(lab: &Lab) -> Result<()> {
    let t0 = Instant::now();
    let mut victims: Vec<Proc> = Vec::new();
    if lab.state.kind == Kind::Netns {
        // Processes started inside a node (daemons, shells) belong to the lab too.
        for n in &lab.state.nodes {
            if alive(n.proc_) {
                victims.extend(netns_members(n.proc_));
            }
        }
    }
    victims.extend(lab.state.procs());
    for p in &victims {
        kill9(*p);
    }
    while victims.iter().any(|p| alive(*p)) {
        if t0.elapsed() > Duration::from_secs(20) {
            let left: Vec<String> = victims
                .iter()
                .filter(|p| alive(**p))
                .map(|p| p.pid.to_string())
                .collect();
            bail!("processes still alive after 20 s: {}", left.join(" "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    fs::remove_dir_all(&lab.dir).with_context(|| format!("removing {}", lab.dir.display()))?;
    println!(
        "lab {} down: killed {} process(es), run dir removed",
        lab.dir.display(),
        victims.len()
    );
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("keel-lab: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Up { vm: Some(n), .. } => up_vm(n),
        Cmd::Up {
            netns: Some(n),
            cluster,
            ..
        } => up_netns(n, cluster),
        Cmd::Up { .. } => bail!("give --vm N or --netns N"),
        Cmd::Ls => ls(),
        Cmd::Ssh { lab, node, cmd } => ssh(&pick_lab(lab.as_deref())?, &node, &cmd),
        Cmd::Down { lab } => down(&pick_lab(lab.as_deref())?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrip_vm() {
        let st = State {
            kind: Kind::Vm,
            key: Some(PathBuf::from("/var/tmp/keel-lab/lab-1-2/id_ed25519")),
            nodes: vec![
                NodeState {
                    name: "node1".into(),
                    proc_: Proc { pid: 10, start: 99 },
                    ssh_port: Some(40001),
                },
                NodeState {
                    name: "node2".into(),
                    proc_: Proc {
                        pid: 11,
                        start: 100,
                    },
                    ssh_port: Some(40002),
                },
            ],
            extra: vec![],
        };
        let parsed = State::parse(&st.render()).expect("parse");
        assert_eq!(parsed, st);
        assert_eq!(parsed.node("2").expect("node2").ssh_port, Some(40002));
        assert!(parsed.node("node3").is_err());
    }

    #[test]
    fn state_roundtrip_netns() {
        let st = State {
            kind: Kind::Netns,
            key: None,
            nodes: vec![NodeState {
                name: "node1".into(),
                proc_: Proc { pid: 7, start: 1 },
                ssh_port: None,
            }],
            extra: vec![Proc { pid: 8, start: 2 }],
        };
        let parsed = State::parse(&st.render()).expect("parse");
        assert_eq!(parsed, st);
        assert_eq!(parsed.procs().count(), 2);
    }

    #[test]
    fn state_rejects_garbage() {
        assert!(State::parse("").is_err());
        assert!(State::parse("kind=xen\n").is_err());
        assert!(State::parse("kind=vm\nnode=node1 pid=1@2\n").is_err()); // no key/ssh
        assert!(State::parse("kind=netns\nnode=node1 pid=12\n").is_err()); // no start time
        assert!(State::parse("kind=netns\nbogus\n").is_err());
        let ok = State::parse("# c\n\nkind=netns\nnode=n1 pid=1@2\npid=3@4\n").expect("ok");
        assert_eq!(ok.extra, vec![Proc { pid: 3, start: 4 }]);
    }

    #[test]
    fn own_process_is_alive() {
        let me = proc_of(std::process::id()).expect("self");
        assert!(alive(me));
        assert!(!alive(Proc {
            pid: me.pid,
            start: me.start + 1
        }));
    }
}
