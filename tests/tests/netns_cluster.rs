//! Scenario 3 (netns lab): 3-node corosync + Pacemaker cluster with fencing enabled.
//! Partition the node running a Dummy + IPaddr2 group → the two others stay quorate, fence it
//! through the lab fence agent, the group recovers on a survivor; heal + power on → it rejoins.

use anyhow::{bail, ensure, Context, Result};
use keel_tests::netns::{
    fence_history, CorosyncConf, LabOpts, NetnsLab, PacemakerSetup, LAB_V6_PREFIX,
};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(180);

fn scenario(lab: &NetnsLab, t_up: Duration) -> Result<()> {
    let pcmk = PacemakerSetup::default();
    lab.configure_cluster(&CorosyncConf::for_lab(lab), &pcmk)?;
    let (t_quorate, t_online) = lab.start_cluster(T)?;
    eprintln!(
        "METRIC lab_up={:.2}s corosync_quorate={:.2}s pacemaker_all_online={:.2}s",
        t_up.as_secs_f64(),
        t_quorate.as_secs_f64(),
        t_online.as_secs_f64()
    );

    let n1 = lab.node(1)?;
    lab.configure_fencing(n1, &pcmk)?;
    let vip = format!("{LAB_V6_PREFIX}::100");
    let group = format!(
        r#"<group id="svc"><primitive id="vip" class="ocf" provider="heartbeat" type="IPaddr2"><instance_attributes id="vip-ia"><nvpair id="vip-ip" name="ip" value="{vip}"/><nvpair id="vip-nm" name="cidr_netmask" value="64"/><nvpair id="vip-nodad" name="nodad" value="true"/></instance_attributes><operations><op id="vip-mon" name="monitor" interval="5s" timeout="20s"/></operations></primitive><primitive id="app" class="ocf" provider="pacemaker" type="Dummy"><operations><op id="app-mon" name="monitor" interval="3s" timeout="10s"/></operations></primitive></group>"#
    );
    n1.run_ok(&["cibadmin", "--create", "-o", "resources", "-X", &group])?;
    let ids = ["vip", "app"];
    let mut owner = String::new();
    let t = lab.wait_for(
        "group svc started (and every fence device running)",
        T,
        || {
            let st = n1.crm_status()?;
            let fences_ok = lab.nodes.iter().all(|n| {
                st.resource(&format!("fence-{}", n.name)).is_some_and(|r| {
                    r.role == "Started" && !r.failed && r.nodes.len() == 1 && r.nodes[0] != n.name
                })
            });
            match st.started_on(&ids) {
                Some(o) if fences_ok => {
                    owner = o;
                    Ok(true)
                }
                _ => Ok(false),
            }
        },
    )?;
    eprintln!("METRIC svc_started={:.2}s on {owner}", t.as_secs_f64());
    let victim = lab.node_by_name(&owner)?;
    ensure!(
        victim
            .sh(&format!("ip -6 addr show dev e0 | grep -q '{vip}/64'"))?
            .success(),
        "VIP {vip} not on {owner}'s e0"
    );
    let survivors: Vec<_> = lab.nodes.iter().filter(|n| n.name != owner).collect();
    let obs = survivors[0];
    let fence_log_before = lab.fence_log().len();

    // partition the owner
    let t0 = Instant::now();
    lab.partition(victim)?;
    lab.wait_for("survivors: 2 members, quorate", T, || {
        for s in &survivors {
            if s.quorum()? != (2, true) {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    let t_split = t0.elapsed();
    let mut fenced_by = String::new();
    lab.wait_for(
        &format!("{owner} fenced (stonith_admin --history)"),
        T,
        || {
            let h = fence_history(obs, &owner)?;
            match h
                .iter()
                .find(|e| e.target == owner && e.action == "off" && e.status == "success")
            {
                Some(e) => {
                    fenced_by = e.delegate.clone();
                    Ok(true)
                }
                None => Ok(false),
            }
        },
    )?;
    let t_fenced = t0.elapsed();
    ensure!(
        victim.pids().is_empty(),
        "fenced {owner} still has processes: {:?}",
        victim.pids()
    );
    ensure!(
        lab.fence_log()[fence_log_before..].contains(&format!("off {owner} rc=0")),
        "fence.log has no successful off of {owner}"
    );
    let mut new_owner = String::new();
    lab.wait_for("svc recovered on a survivor", T, || {
        let st = obs.crm_status()?;
        match st.started_on(&ids) {
            Some(o) if o != owner && st.quorate => {
                new_owner = o;
                Ok(true)
            }
            _ => Ok(false),
        }
    })?;
    let t_rec = t0.elapsed();
    let newn = lab.node_by_name(&new_owner)?;
    lab.wait_for(
        "VIP configured on the new owner",
        Duration::from_secs(30),
        || {
            Ok(newn
                .sh(&format!("ip -6 addr show dev e0 | grep -q '{vip}/64'"))?
                .success())
        },
    )?;
    let other = survivors
        .iter()
        .find(|s| s.name != new_owner)
        .context("no second survivor")?;
    ensure!(
        !other
            .sh(&format!("ip -6 addr show dev e0 | grep -q '{vip}/64'"))?
            .success(),
        "VIP also on {}",
        other.name
    );
    eprintln!(
        "METRIC (from partition) survivors_quorate_2={:.2}s fenced={:.2}s (by {fenced_by}) svc_recovered_on_{new_owner}={:.2}s",
        t_split.as_secs_f64(),
        t_fenced.as_secs_f64(),
        t_rec.as_secs_f64()
    );

    // heal and power on → rejoin
    let t1 = Instant::now();
    lab.heal(victim)?;
    lab.power_on(victim)?;
    lab.wait_all_online(T).context("fenced node rejoining")?;
    eprintln!(
        "METRIC rejoin_all_online={:.2}s",
        t1.elapsed().as_secs_f64()
    );
    let st = obs.crm_status()?;
    ensure!(
        st.online_count() == 3 && st.quorate,
        "not 3 online + quorate after rejoin: {st:?}"
    );
    for n in &lab.nodes {
        ensure!(
            n.quorum()? == (3, true),
            "{}: not 3 members quorate after rejoin",
            n.name
        );
    }
    let stonith = n1.run_ok(&[
        "crm_attribute",
        "--type",
        "crm_config",
        "--name",
        "stonith-enabled",
        "--query",
        "--quiet",
    ])?;
    if stonith.trim() != "true" {
        bail!("stonith-enabled is {stonith:?}");
    }
    ensure!(
        st.started_on(&ids).is_some(),
        "svc not started after rejoin: {st:?}"
    );

    // the agent's reboot path (off, then on = the node's boot script) through Pacemaker. The
    // lab runs with stonith-action=off (a fenced node stays off until the test powers it on);
    // a node rebooted from the outside leaves the membership unexpectedly, and the DC then
    // fences it with the cluster's action, merged with the reboot in flight only when that
    // action is also reboot (as on a production cluster, and Keel's own CIB).
    n1.run_ok(&[
        "crm_attribute",
        "--type",
        "crm_config",
        "--name",
        "stonith-action",
        "--update",
        "reboot",
    ])?;
    let t2 = Instant::now();
    obs.run_ok(&["stonith_admin", "--reboot", &owner, "--timeout", "60"])?;
    lab.wait_for("reboot of the node in the fencing history", T, || {
        let h = fence_history(obs, &owner)?;
        Ok(h.iter()
            .any(|e| e.action == "reboot" && e.status == "success"))
    })?;
    lab.wait_all_online(T).context("rebooted node rejoining")?;
    eprintln!(
        "METRIC stonith_admin_reboot_to_all_online={:.2}s",
        t2.elapsed().as_secs_f64()
    );
    for (node, cs, pm) in lab.cluster_peak_rss() {
        eprintln!("METRIC peak_rss {node}: corosync={cs} KiB pacemaker_daemons_sum={pm} KiB");
    }
    Ok(())
}

#[test]
fn netns_cluster_partition_fence_recover_rejoin() {
    let t0 = Instant::now();
    let lab = NetnsLab::up(3, LabOpts::new("cluster")).expect("lab up");
    let t_up = t0.elapsed();
    let r = scenario(&lab, t_up);
    lab.finish(r).expect("scenario");
    drop(lab);
    eprintln!(
        "netns_cluster wall time: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
