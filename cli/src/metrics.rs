//! `keel vm metrics VMID` and `keel node metrics`: the latest value, average and peak of each
//! performance graph over a range (docs/metrics.md).

use anyhow::Result;
use clap::ValueEnum;
use keel_api::metrics::{MetricsPoint, MetricsSeries};

use crate::client::{typed, Client};
use crate::output;

/// `--range`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RangeArg {
    Hour,
    Day,
    Week,
    Month,
}

impl RangeArg {
    fn as_str(self) -> &'static str {
        match self {
            RangeArg::Hour => "hour",
            RangeArg::Day => "day",
            RangeArg::Week => "week",
            RangeArg::Month => "month",
        }
    }
}

/// GET `segs` (`…/metrics`) over `range` and print it.
pub async fn show(c: &Client, segs: &[&str], range: RangeArg, json: bool) -> Result<()> {
    let v = c
        .get(segs, &[("range", range.as_str().to_string())])
        .await?;
    if json {
        output::print_json(&v);
    } else {
        let s: MetricsSeries = typed(v)?;
        print!("{}", render(&s));
    }
    Ok(())
}

type Pick = fn(&MetricsPoint) -> Option<f64>;
type Fmt<'a> = &'a dyn Fn(f64) -> String;

/// The summary: one row per graph with its latest value, average and peak.
pub fn render(s: &MetricsSeries) -> String {
    let mut out = String::new();
    let Some(last) = s.points.last() else {
        return format!(
            "no samples in the last {} yet (hostd samples every {} s; a VM only while it runs)\n",
            wire(s),
            s.interval_s
        );
    };
    out.push_str(&format!(
        "last {}: {} point{} of {} s, latest {} UTC\n",
        wire(s),
        s.points.len(),
        if s.points.len() == 1 { "" } else { "s" },
        s.step_s,
        keel_api::time::utc(last.t, ' ')
    ));
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let size = |v: f64| output::bytes(v.max(0.0) as u64);
    let rate = |v: f64| format!("{}/s", output::bytes(v.max(0.0) as u64));
    let rows: [(&str, Pick, Fmt); 7] = [
        ("cpu", |p| p.cpu, &pct),
        ("memory used", |p| p.mem_used, &size),
        ("memory total", |p| p.mem_total, &size),
        ("disk read", |p| p.disk_read, &rate),
        ("disk write", |p| p.disk_write, &rate),
        ("net in", |p| p.net_in, &rate),
        ("net out", |p| p.net_out, &rate),
    ];
    let mut t = output::table(&["METRIC", "LATEST", "AVERAGE", "PEAK"]);
    for (name, pick, fmt) in rows {
        let vals: Vec<f64> = s.points.iter().filter_map(pick).collect();
        let cell = |v: Option<f64>| v.map(fmt).unwrap_or_else(|| "-".into());
        let avg = (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
        let peak = vals.iter().copied().reduce(f64::max);
        let latest = s.points.iter().rev().find_map(pick);
        t.add_row(vec![name.to_string(), cell(latest), cell(avg), cell(peak)]);
    }
    for i in 0..t.column_count() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
        }
    }
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn wire(s: &MetricsSeries) -> String {
    output::wire_name(&s.range)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_api::metrics::MetricsRange;

    #[test]
    fn summary_table() {
        let p = |t: i64, cpu: f64, rd: Option<f64>| MetricsPoint {
            t,
            cpu: Some(cpu),
            mem_used: Some(512.0 * 1024.0 * 1024.0),
            mem_total: Some(1024.0 * 1024.0 * 1024.0),
            disk_read: rd,
            disk_write: None,
            net_in: Some(2048.0),
            net_out: Some(0.0),
        };
        let s = MetricsSeries {
            range: MetricsRange::Hour,
            step_s: 30,
            interval_s: 10,
            points: vec![
                p(1_700_000_010, 0.1, Some(1024.0)),
                p(1_700_000_040, 0.3, None),
            ],
        };
        let out = render(&s);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "last hour: 2 points of 30 s, latest 2023-11-14 22:14:00 UTC"
        );
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(name))
                .map(|l| {
                    l.split("  ")
                        .filter(|c| !c.is_empty())
                        .map(str::trim)
                        .collect::<Vec<_>>()
                })
                .unwrap()
        };
        assert_eq!(row("cpu"), ["cpu", "30.0%", "20.0%", "30.0%"]);
        assert_eq!(
            row("disk read"),
            ["disk read", "1.0 KiB/s", "1.0 KiB/s", "1.0 KiB/s"]
        );
        assert_eq!(row("disk write"), ["disk write", "-", "-", "-"]);
        assert_eq!(row("memory used")[1], "512.0 MiB");
        let empty = MetricsSeries {
            points: vec![],
            ..s
        };
        assert!(render(&empty).starts_with("no samples in the last hour yet"));
        let one = MetricsSeries {
            points: vec![p(1_700_000_010, 0.1, None)],
            ..empty
        };
        assert!(render(&one).starts_with("last hour: 1 point of 30 s"));
    }
}
