//! The bounded round-robin store: per series (`node`, `vm/<vmid>`) one ring per range, each
//! of [`MetricsRange::points`] slots. A sample lands in slot `(t / step) % points` of every
//! ring: if the slot already holds the same interval, the sample is added to its sums (the
//! point is the average of its samples, RRD's consolidation); otherwise it replaces the
//! expired interval. A series therefore never holds more than the sum of its rings' sizes,
//! however long it is sampled. Kept in SQLite (`<state>/metrics.db`, WAL) so the graphs
//! survive restarts of hostd.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use keel_api::metrics::{MetricsPoint, MetricsRange};
use rusqlite::{params, Connection};

use crate::error::Result;

/// The values of one point, in the store's column order.
pub const FIELDS: [&str; 7] = [
    "cpu",
    "mem_used",
    "mem_total",
    "disk_read",
    "disk_write",
    "net_in",
    "net_out",
];

/// One sample: each value absent when it was not measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub cpu: Option<f64>,
    pub mem_used: Option<f64>,
    pub mem_total: Option<f64>,
    pub disk_read: Option<f64>,
    pub disk_write: Option<f64>,
    pub net_in: Option<f64>,
    pub net_out: Option<f64>,
}

impl Sample {
    fn values(&self) -> [Option<f64>; 7] {
        [
            self.cpu,
            self.mem_used,
            self.mem_total,
            self.disk_read,
            self.disk_write,
            self.net_in,
            self.net_out,
        ]
    }
}

/// The series name of the node.
pub const NODE: &str = "node";

/// The series name of a VM.
pub fn vm_series(vmid: u32) -> String {
    format!("vm/{vmid}")
}

/// The metrics database of a state directory.
pub fn path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("metrics.db")
}

fn schema() -> String {
    let cols: Vec<String> = FIELDS
        .iter()
        .map(|f| format!("{f}_sum REAL NOT NULL, {f}_n INTEGER NOT NULL"))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS metrics_rrd (
            series TEXT NOT NULL,
            range TEXT NOT NULL,
            slot INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            {},
            PRIMARY KEY (series, range, slot)
        );",
        cols.join(",\n            ")
    )
}

/// The upsert of one sample into one ring slot: same interval → summed, else replaced.
fn upsert_sql() -> String {
    let mut cols = vec!["series", "range", "slot", "bucket"]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let mut sets = Vec::new();
    for f in FIELDS {
        cols.push(format!("{f}_sum"));
        cols.push(format!("{f}_n"));
        for c in [format!("{f}_sum"), format!("{f}_n")] {
            sets.push(format!(
                "{c} = CASE WHEN bucket = excluded.bucket THEN {c} + excluded.{c} ELSE excluded.{c} END"
            ));
        }
    }
    // SQLite evaluates every expression of the SET list against the old row
    sets.push("bucket = excluded.bucket".into());
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO metrics_rrd ({}) VALUES ({}) ON CONFLICT(series, range, slot) DO UPDATE SET {}",
        cols.join(", "),
        marks.join(", "),
        sets.join(", ")
    )
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<Connection>>,
}

impl Store {
    /// Open (or create, 0600) the store's database.
    pub fn open(path: &Path) -> Result<Store> {
        crate::db::create_private(path).map_err(|e| {
            crate::error::Error::Internal(format!("cannot create {}: {e}", path.display()))
        })?;
        let c = Connection::open(path)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.execute_batch(&schema())?;
        Ok(Store {
            db: Arc::new(Mutex::new(c)),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add samples taken at `t` (Unix seconds) to every ring of their series, in one
    /// transaction.
    pub fn record(&self, t: i64, samples: &[(String, Sample)]) -> Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(&upsert_sql())?;
            for (series, s) in samples {
                for r in MetricsRange::ALL {
                    let bucket = t.div_euclid(i64::from(r.step_s()));
                    let slot = bucket.rem_euclid(i64::from(r.points()));
                    let mut vals: Vec<rusqlite::types::Value> = vec![
                        series.clone().into(),
                        r.as_str().to_string().into(),
                        slot.into(),
                        bucket.into(),
                    ];
                    for v in s.values() {
                        vals.push(v.unwrap_or(0.0).into());
                        vals.push(i64::from(v.is_some()).into());
                    }
                    st.execute(rusqlite::params_from_iter(vals))?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The points of `series` over `range` as of `now`, oldest first (expired slots left out).
    pub fn read(&self, series: &str, range: MetricsRange, now: i64) -> Result<Vec<MetricsPoint>> {
        let step = i64::from(range.step_s());
        let oldest = now.div_euclid(step) - i64::from(range.points()) + 1;
        let cols: Vec<String> = FIELDS.iter().map(|f| format!("{f}_sum, {f}_n")).collect();
        let c = self.conn();
        let mut st = c.prepare_cached(&format!(
            "SELECT bucket, {} FROM metrics_rrd WHERE series = ?1 AND range = ?2 AND bucket >= ?3 ORDER BY bucket",
            cols.join(", ")
        ))?;
        let rows = st.query_map(params![series, range.as_str(), oldest], |row| {
            let bucket: i64 = row.get(0)?;
            let mut v = [None; 7];
            for (i, slot) in v.iter_mut().enumerate() {
                let sum: f64 = row.get(1 + 2 * i)?;
                let n: i64 = row.get(2 + 2 * i)?;
                *slot = (n > 0).then(|| sum / n as f64);
            }
            Ok(MetricsPoint {
                t: bucket * step,
                cpu: v[0],
                mem_used: v[1],
                mem_total: v[2],
                disk_read: v[3],
                disk_write: v[4],
                net_in: v[5],
                net_out: v[6],
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forget a series (its VM was deleted).
    pub fn forget(&self, series: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM metrics_rrd WHERE series = ?1", params![series])?;
        Ok(())
    }

    /// Drop the slots whose interval left its range as of `now`: a series not sampled for a
    /// month (a VM gone from this node without a delete here) disappears entirely.
    pub fn expire(&self, now: i64) -> Result<usize> {
        let c = self.conn();
        let mut n = 0;
        for r in MetricsRange::ALL {
            let step = i64::from(r.step_s());
            let oldest = now.div_euclid(step) - i64::from(r.points()) + 1;
            n += c.execute(
                "DELETE FROM metrics_rrd WHERE range = ?1 AND bucket < ?2",
                params![r.as_str(), oldest],
            )?;
        }
        Ok(n)
    }

    /// Rows held for `series` (every range).
    pub fn rows(&self, series: &str) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM metrics_rrd WHERE series = ?1",
            params![series],
            |r| r.get(0),
        )?)
    }

    /// Write the WAL back into the database file (tests measure the file).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// Slots one series can hold at most: the sum of its rings' sizes.
pub fn max_rows_per_series() -> u64 {
    MetricsRange::ALL
        .iter()
        .map(|r| u64::from(r.points()))
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(cpu: f64) -> Sample {
        Sample {
            cpu: Some(cpu),
            mem_used: Some(1000.0),
            mem_total: Some(4000.0),
            disk_read: Some(10.0),
            disk_write: None,
            net_in: Some(1.0),
            net_out: Some(2.0),
        }
    }

    /// A point is the average of the samples of its interval; absent values stay absent;
    /// a later interval that maps to the same slot replaces it.
    #[test]
    fn consolidation_averages_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(&path(dir.path())).unwrap();
        let t0 = 1_700_000_040; // t0 and t0 + 10 share a 30 s and a 5 min interval
        let s = vm_series(100);
        st.record(t0, &[(s.clone(), sample(0.2))]).unwrap();
        st.record(t0 + 10, &[(s.clone(), sample(0.4))]).unwrap();
        let pts = st.read(&s, MetricsRange::Hour, t0 + 10).unwrap();
        assert_eq!(pts.len(), 1, "{pts:?}");
        assert_eq!(pts[0].t, t0);
        assert!((pts[0].cpu.unwrap() - 0.3).abs() < 1e-9, "{pts:?}");
        let day = st.read(&s, MetricsRange::Day, t0 + 10).unwrap();
        assert_eq!(day.len(), 1, "{day:?}");
        assert!((day[0].cpu.unwrap() - 0.3).abs() < 1e-9, "{day:?}");
        assert_eq!(day[0].disk_write, None);
        assert_eq!(day[0].mem_total, Some(4000.0));
        // one hour ring later the same slot holds the new interval only
        let later = t0 + 3600;
        st.record(later, &[(s.clone(), sample(0.9))]).unwrap();
        let pts = st.read(&s, MetricsRange::Hour, later).unwrap();
        assert_eq!(pts.last().and_then(|p| p.cpu), Some(0.9));
        assert!(pts.iter().all(|p| p.t > later - 3600), "{pts:?}");
        // forgetting removes every ring of the series
        st.forget(&s).unwrap();
        assert_eq!(st.rows(&s).unwrap(), 0);
    }

    /// Three hours of samples every 30 s fill the hour ring exactly.
    #[test]
    fn the_hour_ring_holds_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(&path(dir.path())).unwrap();
        let t0: i64 = 1_700_000_000;
        let mut t = t0;
        while t < t0 + 3 * 3600 {
            st.record(t, &[(NODE.to_string(), sample(0.5))]).unwrap();
            t += 30;
        }
        let hour = st.read(NODE, MetricsRange::Hour, t - 30).unwrap();
        assert_eq!(hour.len(), 120);
        assert!(hour.windows(2).all(|w| w[1].t - w[0].t == 30));
    }

    /// A year of samples (every 30 min): the series holds a fixed number of rows, no more than
    /// its rings' sizes, and the database file does not grow once the rings are full (two
    /// months in vs. a year in).
    #[test]
    fn a_year_of_samples_keeps_a_fixed_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let st = Store::open(&p).unwrap();
        let t0: i64 = 1_700_000_000;
        let every = 1800;
        let year = 365 * 86_400;
        let two_months = 62 * 86_400;
        let mut full: Option<(u64, u64)> = None;
        let mut t = t0;
        while t < t0 + year {
            let batch_end = t + 86_400;
            let mut day = Vec::new();
            while t < batch_end {
                day.push(t);
                t += every;
            }
            for at in day {
                st.record(at, &[(vm_series(101), sample(0.1))]).unwrap();
            }
            if t - t0 >= two_months && full.is_none() {
                st.checkpoint().unwrap();
                full = Some((
                    st.rows(&vm_series(101)).unwrap(),
                    std::fs::metadata(&p).unwrap().len(),
                ));
            }
        }
        st.checkpoint().unwrap();
        let rows = st.rows(&vm_series(101)).unwrap();
        // at this interval the hour ring sees every 60th slot, the day ring every 6th; the
        // week and month rings are full
        assert_eq!(rows, 2 + 48 + 336 + 372);
        assert!(rows <= max_rows_per_series());
        let size = std::fs::metadata(&p).unwrap().len();
        assert_eq!(
            full,
            Some((rows, size)),
            "the store grew after its rings were full"
        );
        for r in [MetricsRange::Week, MetricsRange::Month] {
            let pts = st.read(&vm_series(101), r, t - every).unwrap();
            assert_eq!(pts.len(), r.points() as usize, "{r:?}");
        }
    }
}
