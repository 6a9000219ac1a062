//! Performance graphs: the ranges a node's or VM's metrics can be read over and the points
//! served for them (hostd samples them into its bounded round-robin store).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// How far back a metrics read looks; each range has its own resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsRange {
    /// The last hour, one point per 30 s.
    Hour,
    /// The last day, one point per 5 min.
    Day,
    /// The last week, one point per 30 min.
    Week,
    /// The last month (31 days), one point per 2 h.
    Month,
}

impl MetricsRange {
    pub const ALL: [MetricsRange; 4] = [
        MetricsRange::Hour,
        MetricsRange::Day,
        MetricsRange::Week,
        MetricsRange::Month,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricsRange::Hour => "hour",
            MetricsRange::Day => "day",
            MetricsRange::Week => "week",
            MetricsRange::Month => "month",
        }
    }

    /// Seconds one point of this range stands for.
    pub fn step_s(self) -> u32 {
        match self {
            MetricsRange::Hour => 30,
            MetricsRange::Day => 300,
            MetricsRange::Week => 1800,
            MetricsRange::Month => 7200,
        }
    }

    /// Points kept for this range (its ring's size): `step_s × points` covers the range.
    pub fn points(self) -> u32 {
        match self {
            MetricsRange::Hour => 120,
            MetricsRange::Day => 288,
            MetricsRange::Week => 336,
            MetricsRange::Month => 372,
        }
    }

    /// Parse the `range` query parameter; the error names the valid values.
    pub fn parse(s: &str) -> Result<MetricsRange, FieldError> {
        MetricsRange::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                FieldError::new(
                    "range",
                    format!("unknown range {s:?}: use one of hour, day, week, month"),
                )
            })
    }
}

/// One consolidated point: the average of the samples taken during `[t, t + step_s)`.
/// Rates are per second over the sampling interval; a value is absent when it was not known
/// (a stopped VM has no CPU or I/O; a guest without a balloon driver reports no used memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsPoint {
    /// Start of the point's interval, Unix seconds (UTC).
    pub t: i64,
    /// CPU use as a fraction of the node's CPUs (node) or of the VM's vCPUs (VM): 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in use, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used: Option<f64>,
    /// Memory available (node total; VM current allocation), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total: Option<f64>,
    /// Bytes read from disks per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_read: Option<f64>,
    /// Bytes written to disks per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_write: Option<f64>,
    /// Bytes received by network interfaces per second (a VM: received by the guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_in: Option<f64>,
    /// Bytes sent by network interfaces per second (a VM: sent by the guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_out: Option<f64>,
}

/// A node's or VM's metrics over one range, oldest point first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricsSeries {
    pub range: MetricsRange,
    /// Seconds each point stands for.
    pub step_s: u32,
    /// Seconds between two samples (hostd's `metrics_interval_s`).
    pub interval_s: u64,
    /// Only points that have samples: gaps (hostd or the VM was down) are missing points.
    pub points: Vec<MetricsPoint>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_cover_their_span() {
        for r in MetricsRange::ALL {
            assert_eq!(MetricsRange::parse(r.as_str()), Ok(r));
        }
        let e = MetricsRange::parse("year").err().map(|e| e.message);
        assert_eq!(
            e.as_deref(),
            Some("unknown range \"year\": use one of hour, day, week, month")
        );
        let span = |r: MetricsRange| u64::from(r.step_s()) * u64::from(r.points());
        assert_eq!(span(MetricsRange::Hour), 3600);
        assert_eq!(span(MetricsRange::Day), 86_400);
        assert_eq!(span(MetricsRange::Week), 7 * 86_400);
        assert_eq!(span(MetricsRange::Month), 31 * 86_400);
    }
}
