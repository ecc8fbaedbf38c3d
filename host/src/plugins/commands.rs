//! The `commands` import: programs from the project's allow-list, run without
//! a shell. An empty allow-list denies everything: a plugin gets nothing it
//! was not granted.

use async_trait::async_trait;

use super::bindings::bosun::plugin::commands::Host;
use super::bindings::{CallError, Command, Output};
use super::output::LogSink;
use super::state::RunState;

/// Runs allow-listed programs for one project, streaming their output into
/// the run's log as it happens.
#[async_trait]
pub trait CommandRunner: Send + Sync + 'static {
    /// Run `cmd` to completion.
    async fn run(&self, cmd: Command, log: LogSink) -> Result<Output, CallError>;
}

/// The runner of a project with an empty allow-list: everything is denied.
pub struct NoCommands;

#[async_trait]
impl CommandRunner for NoCommands {
    async fn run(&self, cmd: Command, _log: LogSink) -> Result<Output, CallError> {
        Err(CallError::Denied(format!(
            "`{}` is not in this project's commands allow-list (the list is empty)",
            cmd.program
        )))
    }
}

impl Host for RunState {
    async fn run(&mut self, cmd: Command) -> Result<Output, CallError> {
        self.scope.commands.run(cmd, self.log.clone()).await
    }
}
