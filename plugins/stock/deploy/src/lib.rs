//! Stock `deploy`: update, build, restart, and roll back by itself when the
//! new version does not come up. PM2 leaves that decision to a human
//! (`pm2 deploy revert`); a webhook at 3 a.m. has no human.
//!
//! **In the release layout** (`[projects.<p>.deploy] releases = N`):
//! 1. resolve the target in the upstream; already current and no `force`: done;
//! 2. make a new release of it and run the build steps, then the release
//!    phase (`release`: a migration), there, while the current release
//!    keeps serving; a failed step deletes the new release;
//! 3. make it current, restart (rolling, or new-first with held sockets),
//!    wait for readiness (`ready_timeout`), check they stay up (`settle`);
//! 4. if 3 fails: make the previous release current again and restart:
//!    nothing to rebuild. Then delete the failed release;
//! 5. on success, delete what is beyond the kept releases.
//!
//! **In place** (no `releases`): fetch and update the work tree, build,
//! run the release phase, restart and settle; on failure reset to the
//! previous revision, rebuild, and restart if the processes had been
//! restarted onto the new revision (the release phase is not run again: a
//! migration is not undone by running it once more).
//!
//! Either way a failure is `{"rolled_back": true|false, "reason": …}`.

use bosun_plugin_sdk::rollout::{Settings, restart_and_settle, switch_back};
use bosun_plugin_sdk::{
    Action, Error, Param, Params, commands, error_text, export_action, failed, git, processes,
    processes_json, releases,
};
use serde_json::json;

struct Deploy;

impl Action for Deploy {
    const NAME: &'static str = "deploy";
    const SUMMARY: &'static str =
        "Update, build and restart; roll back by itself if the new version does not come up";
    const PARAMS: &'static [Param] = &[
        Param::maybe(
            "target",
            "Branch, tag or revision; the current branch's upstream when absent",
        ),
        Param::optional(
            "force",
            "Build and restart even when nothing changed",
            "false",
        ),
    ];

    fn run(params: Params) -> Result<String, Error> {
        let settings = Settings::from_env()?;
        let target = params.get("target").map(str::to_string);
        let force = params.flag("force")?;
        match settings.releases {
            Some(_) => deploy_release(&settings, target.as_deref(), force),
            None => deploy_in_place(&settings, target.as_deref(), force),
        }
    }
}

fn deploy_release(settings: &Settings, target: Option<&str>, force: bool) -> Result<String, Error> {
    let revision = releases::resolve(target)?;
    let current = releases::list()?.into_iter().find(|r| r.current);
    let from = current.as_ref().map(|r| r.revision.clone());
    if !force && from.as_deref() == Some(revision.as_str()) {
        println!("already at {revision}; nothing to deploy");
        return Ok(json!({ "from": from, "to": revision, "changed": false,
                          "rolled_back": false, "release": current.map(|r| r.name) })
        .to_string());
    }
    let release = releases::prepare(&revision)?;
    println!("deploying {revision} as release {}", release.name);
    let dir = format!("releases/{}", release.name);
    let failure = |reason: String, rolled_back: bool, error: Option<String>| {
        failed(json!({ "rolled_back": rolled_back, "reason": reason,
                       "failed_revision": revision, "restored_revision": from,
                       "release": release.name, "rollback_error": error }))
    };
    let steps = settings
        .steps(&dir)
        .inspect_err(|_| remove(&release.name))
        .map_err(failed)?;
    for (phase, step) in &steps {
        if let Err(reason) = run_step((phase, step), Some(&dir)) {
            println!("deploy of {revision} failed: {reason}; the current release kept serving");
            remove(&release.name);
            return Err(failure(reason, true, None));
        }
    }
    let previous = releases::activate(&release.name).inspect_err(|_| remove(&release.name))?;
    match restart_and_settle(settings) {
        Ok(procs) => {
            let pruned = releases::prune().unwrap_or_else(|e| {
                println!("deleting old releases failed: {}", error_text(&e));
                Vec::new()
            });
            println!("deployed {revision}");
            Ok(json!({ "from": from, "to": revision, "changed": from.as_deref() != Some(&revision),
                       "rolled_back": false, "release": release.name, "pruned": pruned,
                       "processes": processes_json(&procs) })
            .to_string())
        }
        Err(reason) => {
            println!("deploy of {revision} failed: {reason}");
            let restored = match &previous {
                Some(before) => switch_back(settings, &before.name),
                None => Err("there is no earlier release to go back to".to_string()),
            };
            if restored.is_ok() {
                remove(&release.name);
            }
            Err(failure(reason, restored.is_ok(), restored.err()))
        }
    }
}

/// Delete a release this deploy made and gave up on.
fn remove(name: &str) {
    if let Err(e) = releases::remove(name) {
        println!("deleting release {name} failed: {}", error_text(&e));
    }
}

fn deploy_in_place(
    settings: &Settings,
    target: Option<&str>,
    force: bool,
) -> Result<String, Error> {
    git::fetch(None)?;
    let up = git::update(target, false)?;
    if !up.changed && !force {
        println!("already at {}; nothing to deploy", up.to);
        return Ok(json!({ "from": up.from, "to": up.to, "changed": false,
                          "rolled_back": false })
        .to_string());
    }
    println!("deploying {} (was {})", up.to, up.from);
    // The reason, and whether the processes were restarted onto the new code.
    let shipped = settings
        .steps("")
        .and_then(|steps| {
            steps
                .iter()
                .try_for_each(|(phase, step)| run_step((phase, step), None))
        })
        .map_err(|reason| (reason, false))
        .and_then(|()| restart_and_settle(settings).map_err(|reason| (reason, true)));
    match shipped {
        Ok(procs) => {
            println!("deployed {}", up.to);
            Ok(json!({ "from": up.from, "to": up.to, "changed": up.changed,
                       "rolled_back": false, "processes": processes_json(&procs) })
            .to_string())
        }
        Err((reason, restarted)) => {
            println!("deploy of {} failed: {reason}", up.to);
            let restored = roll_back(settings, &up.from, restarted);
            let detail = json!({ "rolled_back": restored.is_ok(), "reason": reason,
                                 "failed_revision": up.to, "restored_revision": up.from,
                                 "rollback_error": restored.err() });
            Err(failed(detail))
        }
    }
}

/// Run one build or release step in `cwd` (relative to the project dir;
/// none: where the app is).
fn run_step((phase, step): (&str, &[String]), cwd: Option<&str>) -> Result<(), String> {
    let Some((program, args)) = step.split_first() else {
        return Ok(());
    };
    let shown = step.join(" ");
    println!("{phase}: {shown}");
    let out = commands::run(&commands::Command {
        program: program.clone(),
        args: args.to_vec(),
        cwd: cwd.map(str::to_string),
        env: Vec::new(),
        timeout_ms: None,
    })
    .map_err(|e| format!("{phase} step `{shown}` could not run: {}", error_text(&e)))?;
    match (out.status, out.signal) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("{phase} step `{shown}` exited with {code}")),
        (None, Some(sig)) => Err(format!("{phase} step `{shown}` was killed by signal {sig}")),
        (None, None) => Err(format!("{phase} step `{shown}` ended abnormally")),
    }
}

/// Back to `revision` in place: reset and rebuild; restart and wait when
/// the processes had been restarted onto the failed revision (a failed
/// build or release phase restarted nothing). `Err` says what of it
/// failed too.
fn roll_back(settings: &Settings, revision: &str, restarted: bool) -> Result<(), String> {
    println!("rolling back to {revision}");
    git::reset(revision).map_err(|e| format!("reset failed: {}", error_text(&e)))?;
    for step in &settings.build {
        run_step(("build", step), None)?;
    }
    if restarted {
        processes::restart(None).map_err(|e| format!("restart failed: {}", error_text(&e)))?;
        processes::wait_ready(None, settings.ready_timeout_ms)
            .map_err(|e| format!("not ready after the rollback: {}", error_text(&e)))?;
    }
    println!("rolled back: {revision} is running again");
    Ok(())
}

export_action!(Deploy);
