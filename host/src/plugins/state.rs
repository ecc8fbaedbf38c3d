//! The data of one run's `Store`: WASI context, memory limiter, and the
//! project scope the imports consult. Built fresh for every run and dropped
//! with it, so nothing a plugin does outlives its run.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use super::output::LogSink;
use super::scope::ProjectScope;

/// A run's store data.
pub(crate) struct RunState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) scope: ProjectScope,
    pub(crate) log: LogSink,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
