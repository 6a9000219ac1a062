//! Every corosync/Pacemaker command the cluster workflows run, each with its timeout, as
//! [`keel_runner::Cmd`]s. The workflows (`form`, hostd's cluster modules) run them through a
//! `&dyn Runner`: `keel_runner::System` in production, `keel_runner::Fake` in the unit tests
//! that state the exact commands of init, join, removal and fence device changes.
//!
//! The timeouts bound a wedged engine: a status query that does not answer within seconds
//! ends as an error naming the command (and its stderr) instead of holding a worker forever.
//!
//! Must not: decide anything (these are argument vectors and bounds, nothing more).

use std::time::Duration;

use keel_runner::Cmd;

use crate::cib::CibUpdate;

/// A read-only status query (quorum, links, `crm_mon`, a CIB section).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// A change Pacemaker or corosync applies cluster-wide (a CIB update, a reload).
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// What `stonith_admin` is given beyond its own `--timeout`: it reports its own timeout
/// itself; this bound only catches a fencer that does not answer at all.
pub const FENCE_MARGIN: Duration = Duration::from_secs(30);

/// `corosync-quorumtool -s` (exit status 2 when inquorate: read its output, not its status).
pub fn quorum_status() -> Cmd {
    Cmd::argv(&["corosync-quorumtool", "-s"]).timeout(Duration::from_secs(5))
}

/// `corosync-cfgtool -n`: knet link state per peer.
pub fn link_status() -> Cmd {
    Cmd::argv(&["corosync-cfgtool", "-n"]).timeout(Duration::from_secs(5))
}

/// `corosync-cfgtool -s`: succeeds only when a corosync answers on this host.
pub fn corosync_answers() -> Cmd {
    Cmd::argv(&["corosync-cfgtool", "-s"]).timeout(Duration::from_secs(5))
}

/// `corosync-cfgtool -R`: every member re-reads corosync.conf.
pub fn reload_corosync() -> Cmd {
    Cmd::argv(&["corosync-cfgtool", "-R"]).timeout(CHANGE_TIMEOUT)
}

/// `corosync-qdevice-net-certutil -i -c CA`: a new NSS database for corosync-qdevice
/// (`/etc/corosync/qdevice/net/nssdb`) trusting the qnetd CA.
pub fn qdevice_nss_init(ca: &str) -> Cmd {
    Cmd::argv(&["corosync-qdevice-net-certutil", "-i", "-c", ca]).timeout(QUERY_TIMEOUT * 3)
}

/// `corosync-qdevice-net-certutil -m -c P12`: import the cluster's certificate and key.
pub fn qdevice_nss_import(p12: &str) -> Cmd {
    Cmd::argv(&["corosync-qdevice-net-certutil", "-m", "-c", p12]).timeout(QUERY_TIMEOUT * 3)
}

/// `crm_resource --cleanup --resource RSC`: forget the resource's failed operations and fail
/// counts on every node, so Pacemaker judges its current configuration afresh.
pub fn resource_cleanup(rsc: &str) -> Cmd {
    Cmd::argv(&["crm_resource", "--cleanup", "--resource", rsc]).timeout(CHANGE_TIMEOUT)
}

/// `crm_mon -1 --output-as=xml`: Pacemaker's view of nodes, resources and failures.
pub fn crm_mon() -> Cmd {
    Cmd::argv(&["crm_mon", "-1", "--output-as=xml"]).timeout(QUERY_TIMEOUT)
}

/// `cibadmin --query --scope SCOPE`.
pub fn cib_query(scope: &str) -> Cmd {
    Cmd::argv(&["cibadmin", "--query", "--scope", scope]).timeout(QUERY_TIMEOUT)
}

/// One CIB update: `cibadmin ARGS` with the XML on standard input (never in argv: it may hold
/// a BMC password).
pub fn cib_update(u: &CibUpdate) -> Cmd {
    Cmd::new("cibadmin")
        .args(u.args.iter().cloned())
        .stdin(u.stdin.as_bytes())
        .timeout(CHANGE_TIMEOUT)
}

/// `crm_attribute --type crm_config --name NAME ARGS…`: one cluster property.
fn property(name: &str, args: &[&str]) -> Cmd {
    let mut a = vec!["crm_attribute", "--type", "crm_config", "--name", name];
    a.extend_from_slice(args);
    Cmd::argv(&a)
}

/// Back to Pacemaker's default dc-deadtime (after a new cluster's first start).
pub fn delete_dc_deadtime() -> Cmd {
    delete_property("dc-deadtime")
}

/// `crm_attribute --type crm_config --name NAME --update VALUE`: set a cluster property.
pub fn set_property(name: &str, value: &str) -> Cmd {
    property(name, &["--update", value]).timeout(CHANGE_TIMEOUT)
}

/// `crm_attribute --type crm_config --name NAME --delete`: back to Pacemaker's default.
pub fn delete_property(name: &str) -> Cmd {
    property(name, &["--delete"]).timeout(CHANGE_TIMEOUT)
}

/// `crm_attribute --type crm_config --name NAME --query --quiet`: a cluster property's value
/// (fails when it is not set).
pub fn query_property(name: &str) -> Cmd {
    property(name, &["--query", "--quiet"]).timeout(QUERY_TIMEOUT)
}

/// `crm_node -R NAME --force`: Pacemaker forgets a removed node.
pub fn crm_node_remove(name: &str) -> Cmd {
    Cmd::argv(&["crm_node", "-R", name, "--force"]).timeout(CHANGE_TIMEOUT)
}

/// `stonith_admin --reboot|--fence TARGET --timeout S`, bounded by `S` plus [`FENCE_MARGIN`].
pub fn stonith(off: bool, target: &str, timeout_s: u32) -> Cmd {
    let flag = if off { "--fence" } else { "--reboot" };
    Cmd::argv(&[
        "stonith_admin",
        flag,
        target,
        "--timeout",
        &timeout_s.to_string(),
    ])
    .timeout(Duration::from_secs(u64::from(timeout_s)) + FENCE_MARGIN)
}

/// `ssh-keygen` of root's migration key (ed25519, no passphrase) at `path`.
pub fn ssh_keygen(path: &str) -> Cmd {
    Cmd::argv(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "keel-migration",
        "-f",
        path,
    ])
    .timeout(QUERY_TIMEOUT)
}

/// `/usr/sbin/PROGRAM -o metadata`: a fence agent's parameters, where Pacemaker's fencer
/// looks for agents.
pub fn agent_metadata(program: &str) -> Cmd {
    Cmd::new(format!("/usr/sbin/{program}"))
        .args(["-o", "metadata"])
        .timeout(QUERY_TIMEOUT)
}

/// `test -x /usr/sbin/PROGRAM`: the fence agent is installed where Pacemaker runs agents.
pub fn agent_installed(program: &str) -> Cmd {
    Cmd::argv(&["test", "-x", &format!("/usr/sbin/{program}")]).timeout(QUERY_TIMEOUT)
}

/// `ip -o route get DST`: the local source address towards `dst`.
pub fn route_get(dst: &str) -> Cmd {
    Cmd::argv(&["ip", "-o", "route", "get", dst]).timeout(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_on_stdin_and_fencing_is_bounded_beyond_its_own_timeout() {
        let u = CibUpdate {
            args: vec!["--modify".into(), "--xml-pipe".into()],
            stdin: "<x password=\"hunter2\"/>".into(),
        };
        let c = cib_update(&u);
        assert_eq!(c.to_argv(), ["cibadmin", "--modify", "--xml-pipe"]);
        assert!(!c.to_string().contains("hunter2"));
        assert_eq!(c.get_stdin(), Some(u.stdin.as_bytes()));
        let s = stonith(false, "node2", 120);
        assert_eq!(
            s.to_argv(),
            ["stonith_admin", "--reboot", "node2", "--timeout", "120"]
        );
        assert_eq!(s.get_timeout(), Duration::from_secs(150));
    }
}
