//! Stock `stop`: Stop the project's processes.
//!
//! Without `name` it acts on every process of the project, like
//! `pm2 stop all`; with one, on every process and instance of that name.

use bosun_plugin_sdk::{Action, Error, Param, Params, export_action, processes, processes_json};

struct Stop;

impl Action for Stop {
    const NAME: &'static str = "stop";
    const SUMMARY: &'static str = "Stop the project's processes";
    const PARAMS: &'static [Param] = &[Param::maybe(
        "name",
        "Process name; all processes when absent",
    )];

    fn run(params: Params) -> Result<String, Error> {
        let name = params.get("name").map(str::to_string);
        let procs = processes::stop(name.as_deref())?;
        println!("stop: {} process(es)", procs.len());
        Ok(processes_json(&procs).to_string())
    }
}

export_action!(Stop);
