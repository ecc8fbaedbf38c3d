//! Stock `deploy`: update, build, restart, and roll back by itself when the
//! new version does not come up.
//!
//! 1. fetch and update (as `update`); nothing changed and no `force`: done.
//! 2. run the project's build steps (`[projects.<p>.deploy] build`) through
//!    the `commands` allow-list, stopping at the first that fails;
//! 3. restart every process, wait for readiness (`ready_timeout`), then
//!    check they stay up for `settle` without a restart.
//!
//! If 2 or 3 fails: reset to the previous revision, rebuild, restart, and
//! fail with `{"rolled_back": true, "reason": …}`, the old version running
//! again. PM2 leaves that decision to a human (`pm2 deploy revert`); a
//! webhook at 3 a.m. has no human.
//!
//! The settings come from the host in `BOSUN_DEPLOY` (JSON), which callers
//! cannot change.

use std::time::Duration;

use bosun_plugin_sdk::{
    Action, Error, Param, Params, ProcessInfo, ProcessState, commands, error_text, export_action,
    failed, git, processes, processes_json,
};
use serde_json::{Value, json};

struct Deploy;

/// `[projects.<p>.deploy]`, as the host passes it.
struct Settings {
    build: Vec<Vec<String>>,
    ready_timeout_ms: u64,
    settle_ms: u64,
}

impl Settings {
    fn from_env() -> Result<Self, Error> {
        let text = std::env::var("BOSUN_DEPLOY").unwrap_or_else(|_| "{}".into());
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| failed(format_args!("BOSUN_DEPLOY is not JSON: {e}")))?;
        let build = v["build"]
            .as_array()
            .map(|steps| {
                steps
                    .iter()
                    .map(|step| {
                        step.as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|s| s.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            build,
            ready_timeout_ms: v["ready_timeout_ms"].as_u64().unwrap_or(60_000),
            settle_ms: v["settle_ms"].as_u64().unwrap_or(2_000),
        })
    }
}

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
        git::fetch(None)?;
        let up = git::update(target.as_deref(), false)?;
        if !up.changed && !force {
            println!("already at {}; nothing to deploy", up.to);
            return Ok(json!({ "from": up.from, "to": up.to, "changed": false,
                              "rolled_back": false })
            .to_string());
        }
        println!("deploying {} (was {})", up.to, up.from);
        match ship(&settings) {
            Ok(procs) => {
                println!("deployed {}", up.to);
                Ok(json!({ "from": up.from, "to": up.to, "changed": up.changed,
                           "rolled_back": false, "processes": processes_json(&procs) })
                .to_string())
            }
            Err(reason) => {
                println!("deploy of {} failed: {reason}", up.to);
                let restored = roll_back(&settings, &up.from);
                let detail = json!({ "rolled_back": restored.is_ok(), "reason": reason,
                                     "failed_revision": up.to, "restored_revision": up.from,
                                     "rollback_error": restored.err() });
                Err(failed(detail))
            }
        }
    }
}

/// Build, restart, wait until ready and settled.
fn ship(settings: &Settings) -> Result<Vec<ProcessInfo>, String> {
    for step in &settings.build {
        build_step(step)?;
    }
    processes::restart(None).map_err(|e| format!("restart failed: {}", error_text(&e)))?;
    let ready = processes::wait_ready(None, settings.ready_timeout_ms)
        .map_err(|e| format!("not ready after the restart: {}", error_text(&e)))?;
    println!(
        "{} process(es) ready; checking they stay up for {} ms",
        ready.len(),
        settings.settle_ms
    );
    std::thread::sleep(Duration::from_millis(settings.settle_ms));
    let now = processes::list();
    for before in &ready {
        let after = now
            .iter()
            .find(|p| p.name == before.name && p.instance == before.instance);
        let stayed = after.is_some_and(|p| {
            p.state == ProcessState::Running && p.pid == before.pid && p.restarts == before.restarts
        });
        if !stayed {
            return Err(format!(
                "`{}-{}` did not stay up after the restart",
                before.name, before.instance
            ));
        }
    }
    Ok(now)
}

fn build_step(step: &[String]) -> Result<(), String> {
    let Some((program, args)) = step.split_first() else {
        return Ok(());
    };
    let shown = step.join(" ");
    println!("build: {shown}");
    let out = commands::run(&commands::Command {
        program: program.clone(),
        args: args.to_vec(),
        cwd: None,
        env: Vec::new(),
        timeout_ms: None,
    })
    .map_err(|e| format!("build step `{shown}` could not run: {}", error_text(&e)))?;
    match (out.status, out.signal) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("build step `{shown}` exited with {code}")),
        (None, Some(sig)) => Err(format!("build step `{shown}` was killed by signal {sig}")),
        (None, None) => Err(format!("build step `{shown}` ended abnormally")),
    }
}

/// Back to `revision`: reset, rebuild, restart, wait. `Err` says what of it
/// failed too.
fn roll_back(settings: &Settings, revision: &str) -> Result<(), String> {
    println!("rolling back to {revision}");
    git::reset(revision).map_err(|e| format!("reset failed: {}", error_text(&e)))?;
    for step in &settings.build {
        build_step(step)?;
    }
    processes::restart(None).map_err(|e| format!("restart failed: {}", error_text(&e)))?;
    processes::wait_ready(None, settings.ready_timeout_ms)
        .map_err(|e| format!("not ready after the rollback: {}", error_text(&e)))?;
    println!("rolled back: {revision} is running again");
    Ok(())
}

export_action!(Deploy);
