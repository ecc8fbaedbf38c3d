//! The one wasmtime `Engine` of a bosun process, its linker, and plugin loading.
//!
//! - **Pooling first.** The pooling allocator makes a run's instantiation ~2x
//!   cheaper, but it reserves address space up front, which a container with
//!   a small `ulimit -v` refuses. The engine probes it and falls back to
//!   on-demand allocation, logging why, rather than failing to start.
//! - **Slots reset with `memset`.** A freed slot's resident pages (up to
//!   [`KEEP_RESIDENT_MEMORY`]) are reset in place rather than `madvise`d
//!   away: the madvise's TLB shootdowns and the next run's page faults were
//!   a tenth of all CPU at thousands of runs a second. Either way the next
//!   run starts from the component's pristine memory.
//! - **Epochs.** A ticker thread advances the epoch every [`TICK`] while any
//!   run is under way, and each run's store checks its deadline and
//!   cancellation at every tick. With no run it parks: an idle bosun should
//!   not wake 100 times a second (that was most of its idle CPU).
//! - **One `InstancePre` per plugin.** Linking is checked once, at load, and
//!   each run only instantiates. A plugin that does not fit the contract is
//!   refused at load with the missing import or export named.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::bosun::plugin::{commands, git, processes, releases, types};
use super::bindings::{ActionMeta, ActionPlugin, ActionPluginPre};
use super::cache::{ComponentCache, Origin};
use super::compile::Compiler;
use super::failure::{FailureKind, Interrupted, RunFailure, RunLimits, classify};
use super::limits::MemoryLimiter;
use super::scope::ProjectScope;
use super::state::RunState;
use super::ticker::Ticker;

/// Bytes of a freed slot's linear memory reset with `memset` (only the
/// resident pages, with PAGEMAP_SCAN) instead of `madvise`.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
/// The same for a slot's tables.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// How a team's component refused at an earlier load is reported again.
pub(crate) const REFUSED_BEFORE: &str = "refused before: ";

/// Time and memory a plugin's `describe()` gets at load: the default run
/// limits, so any plugin that can run at all can also describe itself (a
/// Python component needs tens of MiB just to instantiate).
const DESCRIBE_LIMITS: RunLimits = RunLimits {
    timeout: Duration::from_secs(10),
    memory: 256 << 20,
    max_output: 64 << 10,
};

/// Core instances one component may hold. componentize-py needs 14.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Memories and tables one component may hold.
const MAX_MEMORIES_PER_COMPONENT: u32 = 8;
const MAX_TABLES_PER_COMPONENT: u32 = 32;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The state dir; compiled components are cached under `cache/`.
    pub state_dir: PathBuf,
    /// Runs executing at once; more wait for a slot. Sizes the pool.
    pub max_concurrent_runs: u32,
    /// The largest memory any one run may have, in bytes.
    pub max_memory: u64,
    /// Try the pooling allocator.
    pub pooling: bool,
    /// Where teams' components (uploads, repository plugins) are compiled
    /// within a budget; `None` compiles them in-process, unbounded (for
    /// embedding bosun as a library, not for serving tenants).
    pub compiler: Option<Compiler>,
}

impl EngineConfig {
    /// The engine settings of a config file.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            state_dir: config.state_dir.clone(),
            max_concurrent_runs: config.plugins.max_concurrent_runs,
            max_memory: config.plugins.max_memory.as_u64(),
            pooling: config.plugins.pooling,
            compiler: None,
        }
    }

    /// The same, compiling teams' components with `binary` within the
    /// config's budget.
    pub fn compiling_with(mut self, config: &crate::config::Config, binary: PathBuf) -> Self {
        self.compiler = Some(Compiler::new(
            binary,
            config.plugins.compile_timeout,
            config.plugins.compile_memory.as_u64(),
        ));
        self
    }
}

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Pre-reserved slots, reused between runs.
    Pooling,
    /// Allocated per instance, freed with it.
    OnDemand,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration even without pooling.
    #[error("starting the wasm engine: {0:#}")]
    Wasmtime(anyhow::Error),
    /// The component cache could not be opened.
    #[error("opening the component cache: {0:#}")]
    Cache(anyhow::Error),
}

/// Why a plugin could not be loaded. The server keeps running either way.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`: {reason}")]
pub struct LoadError {
    /// The plugin's name (its action name, or its file).
    pub plugin: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LoadError {
    /// The failure kind a run of this plugin reports: always `invalid_plugin`.
    pub fn kind(&self) -> FailureKind {
        FailureKind::InvalidPlugin
    }
}

/// A loaded plugin: linked, described, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) pre: ActionPluginPre<RunState>,
    meta: Arc<ActionMeta>,
    origin: Origin,
}

impl Plugin {
    /// What the plugin's `describe()` returned at load.
    pub fn meta(&self) -> &ActionMeta {
        &self.meta
    }

    /// Whether this load compiled the component or took it from the cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// The plugin engine. Cheap to clone; all clones share one wasmtime engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasm: wasmtime::Engine,
    linker: Linker<RunState>,
    cache: ComponentCache,
    allocation: Allocation,
    slots: Semaphore,
    ticker: Ticker,
    state_dir: PathBuf,
    max_memory: u64,
    compiler: Option<Compiler>,
}

impl Engine {
    /// Start the engine: probe pooling, link the imports, open the cache, and
    /// start the epoch ticker.
    pub fn new(cfg: &EngineConfig) -> Result<Self, EngineError> {
        let (wasm, allocation) = build_engine(cfg)?;
        let linker = build_linker(&wasm).map_err(|e| EngineError::Wasmtime(e.into()))?;
        let cache = ComponentCache::open(&cfg.state_dir).map_err(EngineError::Cache)?;
        let ticker = Ticker::start(wasm.clone());
        let slots = Semaphore::new(cfg.max_concurrent_runs as usize);
        Ok(Self {
            inner: Arc::new(Inner {
                wasm,
                linker,
                cache,
                allocation,
                slots,
                ticker,
                state_dir: cfg.state_dir.clone(),
                max_memory: cfg.max_memory,
                compiler: cfg.compiler.clone(),
            }),
        })
    }

    /// Which allocator the engine ended up with.
    pub fn allocation(&self) -> Allocation {
        self.inner.allocation
    }

    /// Compile (or take from the cache), link and describe a plugin.
    pub async fn load(&self, plugin: &str, wasm: &[u8]) -> Result<Plugin, LoadError> {
        let fail = |reason: String| LoadError {
            plugin: plugin.to_string(),
            reason,
        };
        check_is_component(wasm).map_err(fail)?;
        let inner = self.inner.clone();
        let bytes = wasm.to_vec();
        let (component, origin) =
            tokio::task::spawn_blocking(move || inner.cache.load_or_compile(&inner.wasm, &bytes))
                .await
                .map_err(|e| fail(format!("compiling panicked: {e}")))?
                .map_err(|e| fail(format!("not a valid component: {e:#}")))?;
        self.ready(plugin, &component, origin).await
    }

    /// [`Engine::load`] for a team's component: compiled in a child within
    /// the budget (see `compile`), then taken from the cache only, so a
    /// compile bomb fails its own load and never runs in this process.
    /// One refused before (see `ComponentCache::refuse`) is refused again
    /// at once: a team's file is loaded at every start and after every job.
    pub async fn load_within_budget(&self, plugin: &str, wasm: &[u8]) -> Result<Plugin, LoadError> {
        self.load_team(plugin, wasm, true).await
    }

    /// [`Engine::load_within_budget`] for a component a caller offers now
    /// (an upload): tried again even if the same bytes were refused
    /// before, since a busy host may have made them miss the time budget.
    pub async fn load_offered(&self, plugin: &str, wasm: &[u8]) -> Result<Plugin, LoadError> {
        self.load_team(plugin, wasm, false).await
    }

    async fn load_team(
        &self,
        plugin: &str,
        wasm: &[u8],
        recall: bool,
    ) -> Result<Plugin, LoadError> {
        let fail = |reason: String| LoadError {
            plugin: plugin.to_string(),
            reason,
        };
        check_is_component(wasm).map_err(fail)?;
        let Some(compiler) = &self.inner.compiler else {
            return self.load(plugin, wasm).await;
        };
        if let Some(reason) = recall.then(|| self.inner.cache.refused(wasm)).flatten() {
            return Err(fail(format!("{REFUSED_BEFORE}{reason}")));
        }
        let inner = self.inner.clone();
        let bytes = wasm.to_vec();
        let cached = move || inner.cache.cached(&inner.wasm, &bytes);
        let component = match tokio::task::spawn_blocking(cached.clone())
            .await
            .ok()
            .flatten()
        {
            Some(component) => component,
            None => {
                // The turn covers the compile only: what follows (a run
                // slot, describe()) must not hold up other compiles.
                let turn = compiler.turn().await;
                let compiled = compiler
                    .compile(&self.inner.state_dir, self.inner.max_memory, wasm)
                    .await;
                drop(turn);
                if let Err(reason) = compiled {
                    // A compiler that did not start says nothing of the bytes.
                    if !reason.starts_with(super::compile::NOT_STARTED) {
                        self.inner.cache.refuse(wasm, &reason);
                    }
                    return Err(fail(reason));
                }
                tokio::task::spawn_blocking(cached)
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(|| fail("the compiled component did not reach the cache".into()))?
            }
        };
        let ready = self.ready(plugin, &component, Origin::Cache).await;
        if let Err(e) = &ready {
            self.inner.cache.forget(&self.inner.wasm, wasm);
            self.inner.cache.refuse(wasm, &e.reason);
        }
        ready
    }

    /// Compile `wasm` into the cache, in this process (the child's side of
    /// `compile`).
    pub(crate) fn precompile(&self, wasm: &[u8]) -> Result<(), String> {
        check_is_component(wasm)?;
        self.inner
            .cache
            .compile_into(&self.inner.wasm, wasm)
            .map_err(|e| format!("not a valid component: {e:#}"))
    }

    /// Link and describe a compiled component.
    async fn ready(
        &self,
        plugin: &str,
        component: &Component,
        origin: Origin,
    ) -> Result<Plugin, LoadError> {
        let fail = |reason: String| LoadError {
            plugin: plugin.to_string(),
            reason,
        };
        let pre = self.link(component).map_err(fail)?;
        let meta = self
            .describe(&pre)
            .await
            .map_err(|f| fail(format!("describe() failed ({}): {}", f.kind, f.message)))?;
        check_meta(&meta).map_err(fail)?;
        Ok(Plugin {
            pre,
            meta: Arc::new(meta),
            origin,
        })
    }

    fn link(&self, component: &Component) -> Result<ActionPluginPre<RunState>, String> {
        let pre = self.inner.linker.instantiate_pre(component).map_err(|e| {
            format!(
                "does not fit the imports of the action-plugin world (bosun:plugin@0.1.1): {e:#}"
            )
        })?;
        ActionPluginPre::new(pre).map_err(|e| {
            format!(
                "does not export `bosun:plugin/action` as the action-plugin world requires: {e:#}"
            )
        })
    }

    async fn describe(&self, pre: &ActionPluginPre<RunState>) -> Result<ActionMeta, RunFailure> {
        // A run's slot: the pool holds one instance per slot, and a
        // describe() that spins must not take one from a tenant's job.
        let _slot = self.slot().await;
        self.call_detached(pre, DESCRIBE_LIMITS, |plugin, store| {
            Box::pin(async move { plugin.bosun_plugin_action().call_describe(store).await })
        })
        .await
    }

    /// One of the engine's execution slots, held for the whole of a run.
    pub(super) async fn slot(&self) -> SemaphorePermit<'_> {
        self.inner
            .slots
            .acquire()
            .await
            .expect("the slot semaphore is never closed")
    }

    /// Call into a plugin with no project: no preopen, no log, no backends.
    async fn call_detached<R>(
        &self,
        pre: &ActionPluginPre<RunState>,
        limits: RunLimits,
        call: impl for<'a> FnOnce(ActionPlugin, &'a mut Store<RunState>) -> Call<'a, R>,
    ) -> Result<R, RunFailure> {
        let state = RunState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory),
            scope: ProjectScope::new("", ""),
            log: Arc::new(|_, _| {}),
        };
        self.execute(pre, state, limits, &CancellationToken::new(), call)
            .await
    }

    /// Instantiate into a fresh store and make one call, under the limits.
    pub(super) async fn execute<R>(
        &self,
        pre: &ActionPluginPre<RunState>,
        state: RunState,
        limits: RunLimits,
        cancel: &CancellationToken,
        call: impl for<'a> FnOnce(ActionPlugin, &'a mut Store<RunState>) -> Call<'a, R>,
    ) -> Result<R, RunFailure> {
        let deadline = Instant::now() + limits.timeout;
        let _ticking = self.inner.ticker.hold();
        let mut store = Store::new(&self.inner.wasm, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        let token = cancel.clone();
        store.epoch_deadline_callback(move |_| {
            if token.is_cancelled() {
                return Err(Interrupted::Cancelled.into());
            }
            if Instant::now() >= deadline {
                return Err(Interrupted::Deadline.into());
            }
            // Yield at every tick so a long computation shares its tokio worker.
            Ok(UpdateDeadline::Yield(1))
        });
        let work = async {
            let plugin = pre.instantiate_async(&mut store).await?;
            call(plugin, &mut store).await
        };
        let result = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), work) => r.unwrap_or_else(|_| Err(Interrupted::Deadline.into())),
            () = cancel.cancelled() => Err(Interrupted::Cancelled.into()),
        };
        result.map_err(|e| classify(&e, store.data().limiter.hit, limits))
    }
}

/// One call into a plugin's instance, borrowing its store.
pub(super) type Call<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

fn build_engine(cfg: &EngineConfig) -> Result<(wasmtime::Engine, Allocation), EngineError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if cfg.pooling {
        let mut pool = PoolingAllocationConfig::default();
        let runs = cfg.max_concurrent_runs;
        pool.total_component_instances(runs)
            .total_core_instances(runs.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .total_memories(runs.saturating_mul(MAX_MEMORIES_PER_COMPONENT))
            .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
            .total_tables(runs.saturating_mul(MAX_TABLES_PER_COMPONENT))
            .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
            .total_stacks(runs)
            .max_memory_size(usize::try_from(cfg.max_memory).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE)
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match wasmtime::Engine::new(&config) {
            Ok(engine) => return Ok((engine, Allocation::Pooling)),
            Err(e) => tracing::warn!(
                "pooling allocator unavailable ({e:#}); falling back to on-demand allocation"
            ),
        }
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    }
    let engine = wasmtime::Engine::new(&config).map_err(|e| EngineError::Wasmtime(e.into()))?;
    Ok((engine, Allocation::OnDemand))
}

fn build_linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    types::add_to_linker::<_, HasSelf<RunState>>(&mut linker, |s| s)?;
    processes::add_to_linker::<_, HasSelf<RunState>>(&mut linker, |s| s)?;
    git::add_to_linker::<_, HasSelf<RunState>>(&mut linker, |s| s)?;
    commands::add_to_linker::<_, HasSelf<RunState>>(&mut linker, |s| s)?;
    releases::add_to_linker::<_, HasSelf<RunState>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// Name the common ways a file is not a component, before wasmtime's
/// lower-level errors would.
fn check_is_component(wasm: &[u8]) -> Result<(), String> {
    use wasmtime::wasmparser::Parser;
    if wasm.is_empty() {
        return Err("the file is empty".into());
    }
    if Parser::is_component(wasm) {
        return Ok(());
    }
    if Parser::is_core_wasm(wasm) {
        return Err(
            "is a core WebAssembly module, not a component: build it for the wasm32-wasip2 \
                    target (or wrap it with `wasm-tools component new`)"
                .into(),
        );
    }
    Err("is not a WebAssembly file (no `\\0asm` header)".into())
}

/// Refuse descriptions that callers could not use.
fn check_meta(meta: &ActionMeta) -> Result<(), String> {
    for (i, p) in meta.params.iter().enumerate() {
        if p.name.is_empty() {
            return Err(format!("describe(): param #{i} has an empty name"));
        }
        if meta.params[..i].iter().any(|q| q.name == p.name) {
            return Err(format!("describe(): param `{}` is declared twice", p.name));
        }
        if p.required && p.default.is_some() {
            return Err(format!(
                "describe(): param `{}` is required but also has a default",
                p.name
            ));
        }
    }
    Ok(())
}
