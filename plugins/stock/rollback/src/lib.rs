//! Stock `rollback`: make an earlier release current again, with no build
//! (the release layout only: `[projects.<p>.deploy] releases = N`).
//!
//! Without `target`, it goes to the release made before the current one
//! that has been current itself (so rolling back twice goes two releases
//! back, as Capistrano's does). `target` names a kept release by its name
//! or by its revision (7 or more hex digits; the newest such release).
//!
//! Then restart (rolling, or new-first with held sockets), wait until
//! ready, check they stay up. If that fails, the release that was current
//! is made current again and restarted, and the action fails with
//! `{"rolled_back": true, …}`: "rolled back" here means "back where it was".

use bosun_plugin_sdk::rollout::{Settings, restart_and_settle, switch_back};
use bosun_plugin_sdk::{
    Action, Error, Param, Params, export_action, failed, invalid, not_found, processes_json,
    releases,
};
use serde_json::json;

struct Rollback;

impl Action for Rollback {
    const NAME: &'static str = "rollback";
    const SUMMARY: &'static str =
        "Make an earlier release current again and restart into it, with no build";
    const PARAMS: &'static [Param] = &[Param::maybe(
        "target",
        "A kept release's name, or its revision (7+ hex digits); the release before the current one when absent",
    )];

    fn run(params: Params) -> Result<String, Error> {
        let settings = Settings::from_env()?;
        if settings.releases.is_none() {
            return Err(failed(
                "this project does not deploy in releases; set `[projects.<p>.deploy] releases = N`",
            ));
        }
        let kept = releases::list()?;
        let current = kept
            .iter()
            .find(|r| r.current)
            .cloned()
            .ok_or_else(|| failed("no release is current yet; deploy first"))?;
        let target = match params.get("target") {
            Some(t) => {
                let by_revision = t.len() >= 7 && t.bytes().all(|b| b.is_ascii_hexdigit());
                kept.iter()
                    .find(|r| r.name == t || (by_revision && r.revision.starts_with(t)))
                    .ok_or_else(|| not_found(format!("no kept release `{t}`")))?
            }
            None => kept
                .iter()
                .find(|r| r.activated && r.name < current.name)
                .ok_or_else(|| failed("there is no earlier release to roll back to"))?,
        };
        if target.current {
            return Err(invalid(format!(
                "release {} is already current",
                target.name
            )));
        }
        if !target.activated {
            return Err(failed(format!(
                "release {} has never been current: its deploy failed or did not finish, so it \
                 may not be built",
                target.name
            )));
        }
        println!(
            "rolling back from {} to {} ({})",
            current.name, target.name, target.revision
        );
        releases::activate(&target.name)?;
        match restart_and_settle(&settings) {
            Ok(procs) => {
                println!("release {} is serving", target.name);
                Ok(json!({ "from": current.name, "to": target.name,
                           "from_revision": current.revision, "to_revision": target.revision,
                           "processes": processes_json(&procs) })
                .to_string())
            }
            Err(reason) => {
                println!("rollback to {} failed: {reason}", target.name);
                let restored = switch_back(&settings, &current.name);
                Err(failed(
                    json!({ "rolled_back": restored.is_ok(), "reason": reason,
                                   "failed_release": target.name,
                                   "restored_release": current.name,
                                   "rollback_error": restored.err() }),
                ))
            }
        }
    }
}

export_action!(Rollback);
