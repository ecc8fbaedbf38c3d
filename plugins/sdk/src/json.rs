//! JSON renderings of host types, so every stock action reports processes the
//! same way and API clients parse one shape.

use serde_json::{Value, json};

use crate::{ProcessInfo, ProcessState};

/// One process as a JSON object.
pub fn process_json(p: &ProcessInfo) -> Value {
    json!({
        "name": p.name,
        "instance": p.instance,
        "pid": p.pid,
        "state": state_name(p.state),
        "restarts": p.restarts,
        "uptime_ms": p.uptime_ms,
        "exit_code": p.exit_code,
        "exit_signal": p.exit_signal,
        "cpu_percent": p.cpu_percent,
        "rss_bytes": p.rss_bytes,
    })
}

/// A process table as a JSON array.
pub fn processes_json(ps: &[ProcessInfo]) -> Value {
    Value::Array(ps.iter().map(process_json).collect())
}

fn state_name(s: ProcessState) -> &'static str {
    match s {
        ProcessState::Stopped => "stopped",
        ProcessState::Starting => "starting",
        ProcessState::Running => "running",
        ProcessState::Backoff => "backoff",
        ProcessState::Stopping => "stopping",
        ProcessState::Exited => "exited",
        ProcessState::Fatal => "fatal",
    }
}

/// One release as a JSON object.
pub fn release_json(r: &crate::releases::Release) -> Value {
    json!({
        "name": r.name,
        "revision": r.revision,
        "created_at": r.created_at,
        "current": r.current,
        "activated": r.activated,
    })
}

/// Releases as a JSON array.
pub fn releases_json(rs: &[crate::releases::Release]) -> Value {
    Value::Array(rs.iter().map(release_json).collect())
}
