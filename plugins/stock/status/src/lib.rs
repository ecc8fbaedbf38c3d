//! Stock `status`: the project's process table and git state, as JSON.
//!
//! A project that is not a git work tree still has a status: `git` is then
//! `null` and `git_error` says why, rather than the whole action failing.
//! In the release layout, `releases` lists the kept releases, newest
//! first, and which is current.

use bosun_plugin_sdk::{
    Action, Error, Params, error_text, export_action, git, processes, processes_json, releases,
    releases_json,
};
use serde_json::json;

struct Status;

impl Action for Status {
    const NAME: &'static str = "status";
    const SUMMARY: &'static str = "Show the project's processes, git revision and releases";

    fn run(_params: Params) -> Result<String, Error> {
        let procs = processes::list();
        let (git, git_error) = match git::info() {
            Ok(i) => (
                json!({
                    "revision": i.revision,
                    "branch": i.branch,
                    "remote_url": i.remote_url,
                    "dirty": i.dirty,
                    "ahead": i.ahead,
                    "behind": i.behind,
                    "subject": i.subject,
                    "committed_at": i.committed_at,
                }),
                None,
            ),
            Err(e) => (serde_json::Value::Null, Some(error_text(&e))),
        };
        let kept = releases::list()?;
        Ok(
            json!({ "processes": processes_json(&procs), "git": git, "git_error": git_error,
                    "releases": releases_json(&kept) })
            .to_string(),
        )
    }
}

export_action!(Status);
