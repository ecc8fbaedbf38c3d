//! Stock `update`: fetch, then move the work tree to the upstream of the
//! current branch (or to `target`). A no-op when nothing changed, and it
//! says so; it restarts nothing (that is `deploy`).
//!
//! Local changes to tracked files stop it unless `force`; a diverged
//! history always fails with the reason, so nobody's work is thrown away by
//! a webhook.

use bosun_plugin_sdk::{Action, Error, Param, Params, export_action, git};
use serde_json::json;

struct Update;

impl Action for Update {
    const NAME: &'static str = "update";
    const SUMMARY: &'static str = "Fetch and move the work tree to its upstream (or a target)";
    const PARAMS: &'static [Param] = &[
        Param::maybe(
            "target",
            "Branch, tag or revision; the current branch's upstream when absent",
        ),
        Param::optional(
            "force",
            "Discard local changes and diverged commits",
            "false",
        ),
    ];

    fn run(params: Params) -> Result<String, Error> {
        let target = params.get("target").map(str::to_string);
        let force = params.flag("force")?;
        git::fetch(None)?;
        let r = git::update(target.as_deref(), force)?;
        if r.changed {
            println!("updated {} -> {}", r.from, r.to);
        } else {
            println!("already at {}; nothing to update", r.to);
        }
        Ok(json!({ "from": r.from, "to": r.to, "changed": r.changed }).to_string())
    }
}

export_action!(Update);
