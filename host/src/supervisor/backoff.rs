//! The restart schedule of one instance, apart from its worker so that it
//! can be tested without a process: which delay comes next after a crash,
//! and when the schedule starts over (PM2's `restart_delay` list with
//! supervisord's "a run that lasted long enough was a success").

use std::time::Duration;

/// Where an instance is in its restart schedule.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Backoff {
    /// Restarts since the schedule last started over.
    step: usize,
}

impl Backoff {
    /// Start the schedule over: an explicit start or restart, not a crash.
    pub(super) fn reset(&mut self) {
        self.step = 0;
    }

    /// The delay before the next start after a run of `uptime` that ended
    /// on its own. A run that lasted `restart_ok` starts the schedule over;
    /// past its end the last delay repeats. `None` when `restart_at` is
    /// empty (the process never restarts).
    pub(super) fn next(
        &mut self,
        uptime: Duration,
        restart_at: &[Duration],
        restart_ok: Duration,
    ) -> Option<Duration> {
        let last = restart_at.len().checked_sub(1)?;
        if uptime >= restart_ok {
            self.step = 0;
        }
        let delay = restart_at[self.step.min(last)];
        self.step += 1;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(30),
    ];
    const OK: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_secs(2);

    #[test]
    fn crashes_walk_the_schedule_and_the_last_delay_repeats() {
        let mut backoff = Backoff::default();
        let delays: Vec<_> = (0..5)
            .map(|_| backoff.next(SHORT, &SCHEDULE, OK).expect("restarts"))
            .collect();
        assert_eq!(
            delays,
            [
                SCHEDULE[0],
                SCHEDULE[1],
                SCHEDULE[2],
                SCHEDULE[2],
                SCHEDULE[2]
            ]
        );
    }

    #[test]
    fn a_long_run_or_an_explicit_start_starts_the_schedule_over() {
        let mut backoff = Backoff::default();
        backoff.next(SHORT, &SCHEDULE, OK);
        backoff.next(SHORT, &SCHEDULE, OK);
        assert_eq!(backoff.next(OK, &SCHEDULE, OK), Some(SCHEDULE[0]));
        assert_eq!(backoff.next(SHORT, &SCHEDULE, OK), Some(SCHEDULE[1]));
        backoff.reset();
        assert_eq!(backoff.next(SHORT, &SCHEDULE, OK), Some(SCHEDULE[0]));
    }

    #[test]
    fn an_empty_schedule_never_restarts() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next(SHORT, &[], OK), None);
        assert_eq!(backoff, Backoff::default());
    }
}
