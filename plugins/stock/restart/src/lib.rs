//! Stock `restart`: stop then start the project's processes, then wait until
//! they are ready.
//!
//! Waiting is what makes a restart trustworthy from CI: the job succeeds only
//! once every restarted process passes its readiness check (or is simply
//! running, when none is configured), and fails with `timeout` otherwise.

use bosun_plugin_sdk::{
    Action, Error, Param, Params, export_action, invalid, processes, processes_json,
};

struct Restart;

impl Action for Restart {
    const NAME: &'static str = "restart";
    const SUMMARY: &'static str = "Restart the project's processes and wait until they are ready";
    const PARAMS: &'static [Param] = &[
        Param::maybe("name", "Process name; all processes when absent"),
        Param::optional("ready_timeout", "How long to wait for readiness", "60s"),
    ];

    fn run(params: Params) -> Result<String, Error> {
        let name = params.get("name").map(str::to_string);
        let timeout = params.duration("ready_timeout")?.unwrap_or_default();
        let timeout_ms = u64::try_from(timeout.as_millis())
            .map_err(|_| invalid("param `ready_timeout` is too large"))?;
        let restarted = processes::restart(name.as_deref())?;
        println!(
            "restarted {} process(es); waiting up to {timeout:?} for readiness",
            restarted.len()
        );
        let ready = processes::wait_ready(name.as_deref(), timeout_ms)?;
        println!("all {} process(es) ready", ready.len());
        Ok(processes_json(&ready).to_string())
    }
}

export_action!(Restart);
