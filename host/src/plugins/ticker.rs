//! The epoch thread. Each run's store checks its deadline and cancellation
//! when the engine's epoch advances; a ticker advances it every [`TICK`]
//! while any run is under way and parks otherwise, since an idle bosun
//! should not wake 100 times a second (that was most of its idle CPU).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// How often the epoch advances: the granularity of deadlines and cancellation.
pub const TICK: Duration = Duration::from_millis(10);

/// The epoch thread: advances the engine's epoch every [`TICK`] while some
/// [`TickGuard`] is alive, parked otherwise, stopped when dropped.
pub(super) struct Ticker {
    shared: Arc<TickState>,
    thread: thread::Thread,
}

#[derive(Default)]
struct TickState {
    /// Live guards: stores that need their deadlines checked.
    active: AtomicUsize,
    stop: AtomicBool,
}

impl Ticker {
    pub(super) fn start(engine: wasmtime::Engine) -> Self {
        let shared = Arc::new(TickState::default());
        let state = shared.clone();
        let handle = thread::Builder::new()
            .name("bosun-epoch".into())
            .spawn(move || {
                while !state.stop.load(Ordering::Acquire) {
                    if state.active.load(Ordering::Acquire) == 0 {
                        // An unpark between the load and here is not lost:
                        // it makes this park return at once.
                        thread::park();
                        continue;
                    }
                    thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            shared,
            thread: handle.thread().clone(),
        }
    }

    /// Keep the epoch advancing until the guard is dropped.
    pub(super) fn hold(&self) -> TickGuard<'_> {
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        self.thread.unpark();
        TickGuard(&self.shared)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// See [`Ticker::hold`].
pub(super) struct TickGuard<'a>(&'a TickState);

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}
