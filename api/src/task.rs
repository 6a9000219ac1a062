//! Tasks: every mutating operation is one, with an id in the spirit of Proxmox's UPID.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Running,
    Ok,
    Error,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Running => "running",
            TaskState::Ok => "ok",
            TaskState::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskInfo {
    /// `UPID:{node}:{pid:08X}:{seq:08X}:{start:08X}:{type}:{target}:{user}:`
    pub upid: String,
    pub node: String,
    /// Operation, e.g. `vmcreate`, `vmstart`, `volupload`.
    pub kind: String,
    /// What it acts on, e.g. a vmid or a pool/volume.
    pub target: String,
    pub user: String,
    /// Unix seconds.
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub state: TaskState,
    /// The error message when `state` is `error`, else `OK` once finished.
    pub message: Option<String>,
    /// 0.0 to 1.0 where the operation can tell.
    pub progress: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskLogLine {
    /// Line number from 0.
    pub n: u64,
    /// Unix milliseconds.
    pub t: i64,
    pub line: String,
}

/// Answer of a mutating request that started a task (HTTP 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskRef {
    pub upid: String,
}

#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
pub struct TaskListQuery {
    /// Only tasks whose target is this (e.g. a vmid).
    pub target: Option<String>,
    /// Only running tasks.
    #[serde(default)]
    pub running: bool,
    /// At most this many (default 100, newest first).
    #[param(minimum = 1, maximum = 10_000)]
    #[schema(minimum = 1, maximum = 10_000)]
    pub limit: Option<u32>,
}

/// Most tasks one listing returns.
pub const TASK_LIST_MAX: u32 = 10_000;
/// Most log lines one read returns.
pub const TASK_LOG_MAX: u32 = 100_000;

impl TaskListQuery {
    pub fn validate(&self) -> Result<(), crate::error::FieldError> {
        check_limit(self.limit, TASK_LIST_MAX)
    }
}

impl TaskLogQuery {
    pub fn validate(&self) -> Result<(), crate::error::FieldError> {
        if self.start > i64::MAX as u64 {
            return Err(crate::error::FieldError::new(
                "start",
                format!(
                    "start {} is out of range: use 0 to {}",
                    self.start,
                    i64::MAX
                ),
            ));
        }
        check_limit(self.limit, TASK_LOG_MAX)
    }
}

fn check_limit(limit: Option<u32>, max: u32) -> Result<(), crate::error::FieldError> {
    match limit {
        Some(l) if l == 0 || l > max => Err(crate::error::FieldError::new(
            "limit",
            format!("limit {l} is out of range: use 1 to {max}"),
        )),
        _ => Ok(()),
    }
}

#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
pub struct TaskLogQuery {
    /// First line to return (for following a running task).
    #[serde(default)]
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub start: u64,
    /// At most this many lines (default 1000).
    #[param(minimum = 1, maximum = 100_000)]
    #[schema(minimum = 1, maximum = 100_000)]
    pub limit: Option<u32>,
}
