//! Performance graphs (docs/metrics.md): a sampler task reads the node's counters from `/proc`
//! and each running VM's from libvirt ([`crate::hv::Hypervisor::domain_stats`]) every
//! `metrics_interval_s`, turns counters into rates ([`sample`]) and adds the samples to the
//! bounded round-robin store ([`store`], `<state>/metrics.db`); the API reads a range back
//! ([`routes`]). A VM's series is dropped when the VM is deleted ([`forget_vm`]).

pub mod routes;
pub mod sample;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_api::metrics::{MetricsRange, MetricsSeries};
use tracing::{debug, warn};

use self::sample::NodeCounters;
use self::store::{Sample, Store};
use crate::error::Result;
use crate::hv::{DomainStats, Hypervisor};
use crate::Node;

pub use routes::routes;

/// Passes between two expiries of old slots (at 10 s: once an hour).
const EXPIRE_EVERY: u64 = 360;

/// The sampler's memory between passes: the previous readings the rates are computed from.
pub struct Sampler {
    store: Store,
    prev_node: Option<(Instant, NodeCounters)>,
    prev_vms: BTreeMap<u32, (Instant, DomainStats)>,
    passes: u64,
}

impl Sampler {
    pub fn new(store: Store) -> Sampler {
        Sampler {
            store,
            prev_node: None,
            prev_vms: BTreeMap::new(),
            passes: 0,
        }
    }

    /// One pass at wall-clock `t` (monotonic `at`): read, compute rates against the previous
    /// pass, record. The first reading of a counter gives no rate; memory is recorded at once.
    /// Returns the series recorded.
    pub fn pass(
        &mut self,
        hv: &dyn Hypervisor,
        node: std::io::Result<NodeCounters>,
        t: i64,
        at: Instant,
    ) -> Result<Vec<String>> {
        let mut samples: Vec<(String, Sample)> = Vec::new();
        match node {
            Ok(cur) => {
                let s = match &self.prev_node {
                    Some((then, prev)) => {
                        sample::node_sample(prev, &cur, at.duration_since(*then).as_secs_f64())
                    }
                    None => Sample {
                        mem_used: Some(cur.mem_used as f64),
                        mem_total: Some(cur.mem_total as f64),
                        ..Sample::default()
                    },
                };
                samples.push((store::NODE.to_string(), s));
                self.prev_node = Some((at, cur));
            }
            Err(e) => warn!(error = %e, "metrics: cannot read the node's counters"),
        }
        let mut seen = BTreeMap::new();
        for row in hv.list_domains()? {
            let Some(vmid) = crate::vms::vmid_of(&row) else {
                continue;
            };
            if !row.state.is_active() {
                continue;
            }
            let cur = match hv.domain_stats(&row.name) {
                Ok(s) if s.active => s,
                Ok(_) => continue,
                Err(e) => {
                    debug!(vmid, error = %e, "metrics: no statistics");
                    continue;
                }
            };
            let s = match self.prev_vms.get(&vmid) {
                Some((then, prev)) => {
                    sample::vm_sample(prev, &cur, at.duration_since(*then).as_secs_f64())
                }
                None => Sample {
                    mem_used: cur
                        .guest_used_kib
                        .or(cur.rss_kib)
                        .map(|k| k as f64 * 1024.0),
                    mem_total: Some(cur.memory_kib as f64 * 1024.0),
                    ..Sample::default()
                },
            };
            samples.push((store::vm_series(vmid), s));
            seen.insert(vmid, (at, cur));
        }
        // a VM that stopped starts its rates afresh when it runs again
        self.prev_vms = seen;
        self.store.record(t, &samples)?;
        self.passes += 1;
        if self.passes % EXPIRE_EVERY == 1 {
            self.store.expire(t)?;
        }
        Ok(samples.into_iter().map(|(s, _)| s).collect())
    }
}

/// The node's store (opened per use: SQLite serializes the writers).
pub fn open_store(node: &Node) -> Result<Store> {
    Store::open(&store::path(&node.cfg.state_dir))
}

/// Start the sampler task (nothing when `metrics_interval_s` is 0).
pub fn spawn_sampler(node: Arc<Node>) {
    let secs = node.cfg.metrics_interval_s;
    if secs == 0 {
        return;
    }
    let store = match open_store(&node) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "metrics: cannot open the store; no performance graphs");
            return;
        }
    };
    let sampler = Arc::new(Mutex::new(Sampler::new(store)));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (n, s) = (node.clone(), sampler.clone());
            let r = tokio::task::spawn_blocking(move || {
                let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.pass(
                    n.hv.as_ref(),
                    sample::read_node(),
                    crate::db::now(),
                    Instant::now(),
                )
            })
            .await;
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "metrics: sampling pass failed"),
                Err(e) => warn!(error = %e, "metrics: sampling pass panicked"),
            }
        }
    });
}

/// A series over a range, as the API serves it.
pub fn read(node: &Node, series: &str, range: MetricsRange) -> Result<MetricsSeries> {
    let points = open_store(node)?.read(series, range, crate::db::now())?;
    Ok(MetricsSeries {
        range,
        step_s: range.step_s(),
        interval_s: node.cfg.metrics_interval_s,
        points,
    })
}

/// Drop a deleted VM's graphs.
pub fn forget_vm(node: &Node, vmid: u32) -> Result<()> {
    open_store(node)?.forget(&store::vm_series(vmid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeHv;
    use crate::hv::{BlockCounters, Power};

    fn vm_xml(name: &str, vmid: u32) -> String {
        format!(
            "<domain type='qemu'><name>{name}</name><uuid>00000000-0000-0000-0000-00000000000{vmid}</uuid><metadata><keel:vm xmlns:keel='https://keel.dev/xmlns/vm/1'><keel:vmid>{vmid}</keel:vmid></keel:vm></metadata></domain>"
        )
    }

    fn counters(busy: u64, total: u64) -> NodeCounters {
        NodeCounters {
            cpu_busy: busy,
            cpu_total: total,
            mem_total: 8 << 30,
            mem_used: 2 << 30,
            ..NodeCounters::default()
        }
    }

    /// Two passes: the node and the running VM get rates, the stopped VM nothing; memory is
    /// there from the first pass; the points read back through the store.
    #[test]
    fn passes_record_rates_of_running_vms() {
        let hv = FakeHv::new();
        hv.define(&vm_xml("run", 1)).unwrap();
        hv.define(&vm_xml("off", 2)).unwrap();
        hv.power("run", Power::Start).unwrap();
        let stats = |cpu_s: u64, rd: i64| DomainStats {
            active: true,
            vcpus: 1,
            cpu_time_ns: cpu_s * 1_000_000_000,
            memory_kib: 1 << 20,
            rss_kib: Some(1 << 19),
            block: BlockCounters {
                rd_bytes: rd,
                ..BlockCounters::default()
            },
            ..DomainStats::default()
        };
        hv.set_stats("run", stats(10, 0));
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(&store::path(dir.path())).unwrap();
        let mut s = Sampler::new(st.clone());
        let t0 = 1_700_000_010;
        let at = Instant::now();
        let first = s.pass(&hv, Ok(counters(0, 0)), t0, at).unwrap();
        assert_eq!(first, ["node", "vm/1"]);
        hv.set_stats("run", stats(15, 10_000));
        s.pass(
            &hv,
            Ok(counters(100, 400)),
            t0 + 10,
            at + Duration::from_secs(10),
        )
        .unwrap();
        let vm = st.read("vm/1", MetricsRange::Day, t0 + 10).unwrap();
        assert_eq!(vm.len(), 1);
        // one sample with a rate (the first had none): 5 s of CPU in 10 s on one vCPU
        assert_eq!(vm[0].cpu, Some(0.5));
        assert_eq!(vm[0].disk_read, Some(1000.0));
        assert_eq!(vm[0].mem_used, Some(f64::from(1 << 19) * 1024.0));
        let node = st.read("node", MetricsRange::Day, t0 + 10).unwrap();
        assert_eq!(node[0].cpu, Some(0.25));
        assert_eq!(st.rows("vm/2").unwrap(), 0);
        // stopped: no sample; started again: no rate against the old reading
        hv.power("run", Power::Destroy).unwrap();
        let third = s
            .pass(
                &hv,
                Ok(counters(200, 800)),
                t0 + 20,
                at + Duration::from_secs(20),
            )
            .unwrap();
        assert_eq!(third, ["node"]);
        assert!(s.prev_vms.is_empty());
    }

    /// `metrics_interval_s`: 0 (off) to the hour graph's step; longer is refused naming the key.
    #[test]
    fn the_interval_is_checked() {
        let cfg = |s: u64| crate::config::Config {
            node: "n1".into(),
            metrics_interval_s: s,
            ..crate::config::Config::default()
        };
        for ok in [0, 1, 10, 30] {
            assert!(cfg(ok).validate("hostd.toml").is_ok(), "{ok}");
        }
        let e = cfg(60).validate("hostd.toml").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("hostd.toml: metrics_interval_s: 60 is too long: use 1 to 30 seconds (the hour graph has a point every 30 s), or 0 to stop sampling")
        );
    }

    /// Deleting a VM through the VM workflow drops its graphs.
    #[test]
    fn deleting_a_vm_forgets_its_series() {
        let hv = Arc::new(FakeHv::new());
        let (node, _dir) = crate::tests_support::fake_node(hv.clone()).unwrap();
        let spec: keel_api::vm::VmSpec =
            serde_json::from_value(serde_json::json!({"vmid": 300, "name": "gone"})).unwrap();
        let t = node.tasks.begin("vmcreate", "300", "root", true).unwrap();
        crate::vms::create(&node, spec, false, &t).unwrap();
        t.finish(&Ok(()));
        let st = open_store(&node).unwrap();
        st.record(
            crate::db::now(),
            &[(store::vm_series(300), Sample::default())],
        )
        .unwrap();
        assert!(st.rows("vm/300").unwrap() > 0);
        let t = node.tasks.begin("vmdelete", "300", "root", true).unwrap();
        crate::vms::delete(&node, 300, true, &t).unwrap();
        t.finish(&Ok(()));
        assert_eq!(st.rows("vm/300").unwrap(), 0);
    }
}
