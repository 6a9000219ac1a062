//! `keel cluster verify` (`GET /api/v1/cluster/verify`): findings about a cluster's health,
//! each with a stable machine-readable code (documented in `docs/verify.md`), a severity, the
//! node and object concerned, and what to do.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How bad a finding is. Any `error` makes `keel cluster verify` exit non-zero.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// Stable code, e.g. `EFENCEOFF` (the list: docs/verify.md).
    pub code: String,
    pub severity: Severity,
    /// The node the finding is about (or seen on); `null` for cluster-wide findings.
    pub node: Option<String>,
    /// The object concerned: a file, a fence device, a link, a network, a pool…
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub action: String,
}

/// The answer of `GET /api/v1/cluster/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    /// The cluster's name.
    pub cluster: String,
    /// The node that ran the checks.
    pub checked_by: String,
    /// The members whose facts were collected (in member order).
    pub nodes: Vec<String>,
    /// Findings, sorted by severity, code, node and object.
    pub findings: Vec<Finding>,
    /// Number of `error` findings.
    pub errors: usize,
    /// Number of `warning` findings.
    pub warnings: usize,
}
