//! The memory cap of one run, summed over every memory of the instance.
//!
//! A component holds several core instances, each possibly with its own linear
//! memory (a componentize-py plugin has 14 instances). Capping each memory on
//! its own would let such a plugin use N times the cap, so the limiter keeps
//! one running total. A refused grow makes `memory.grow` return -1, as the
//! spec says; the guest then usually aborts, and the run reports
//! `memory_limit` because `hit` is set.

use wasmtime::ResourceLimiter;

/// Table elements one instance may grow to: far above what real plugins use,
/// low enough that a table bomb cannot exhaust the host.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Tracks the bytes of all linear memories of one store.
pub(crate) struct MemoryLimiter {
    cap: usize,
    total: usize,
    last_grant: usize,
    /// Whether a grow was refused for going over the cap.
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            total: 0,
            last_grant: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        match self.total.checked_add(grow) {
            Some(total) if total <= self.cap => {
                self.total = total;
                self.last_grant = grow;
                Ok(true)
            }
            _ => {
                self.hit = true;
                Ok(false)
            }
        }
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The grow we granted did not happen: give the bytes back.
        self.total -= std::mem::take(&mut self.last_grant);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_all_memories_against_one_cap() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).expect("no trap"));
        assert!(
            l.memory_growing(0, 30, None).expect("no trap"),
            "second memory fits"
        );
        assert!(
            !l.memory_growing(30, 50, None).expect("no trap"),
            "60 + 50 > 100"
        );
        assert!(l.hit);
        assert!(
            l.memory_growing(60, 70, None).expect("no trap"),
            "60 + 10 + 30 = 100"
        );
    }

    #[test]
    fn a_failed_grow_is_given_back() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 80, None).expect("no trap"));
        l.memory_grow_failed(wasmtime::Error::msg("os said no"))
            .expect("no trap");
        assert!(l.memory_growing(0, 90, None).expect("no trap"));
    }
}
