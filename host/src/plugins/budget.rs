//! How long a plugin call may run: a budget of CPU time, and a wall-clock backstop.
//!
//! The budget counts the CPU time of the thread that runs the plugin, less what the host spent
//! loading parameters for it. Time the thread waits for a core does not count, so a plugin that
//! fits its budget on a quiet machine fits it on a loaded one too: a busy server never faults a
//! legitimate plugin. The wall-clock backstop, much larger, only stops a call that slow host
//! calls (a store that answers late) or extreme overload keep from finishing. Checks run while the
//! plugin's code runs: a host call that never returns is bounded by the store's own timeouts, not
//! here.
//!
//! Thread CPU time rather than wasmtime fuel: fuel would make the budget an instruction count
//! (the same on every machine), but costs 10–30 % of the plugin's speed on every run, counts
//! nothing of what the host does for the plugin's calls, and cannot follow a provision into the
//! adapter it calls, whose store is another.

use std::time::{Duration, Instant};

use super::limits::PluginLimits;

/// The CPU time the calling thread has used since it started.
pub(crate) fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(time.tv_sec).unwrap_or(0), u32::try_from(time.tv_nsec).unwrap_or(0))
}

/// When a call (or the provision that made it) started, on both clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Started {
    pub cpu: Duration,
    pub wall: Instant,
}

impl Started {
    pub fn now() -> Self {
        Started { cpu: thread_cpu_time(), wall: Instant::now() }
    }
}

/// Which limit stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overrun {
    /// The plugin used its CPU time.
    CpuTime,
    /// The call was still running at the wall-clock backstop.
    WallClock,
}

/// What to do at a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Check again after this much wall-clock time at the latest.
    Continue(Duration),
    Stop(Overrun),
}

/// Decides, from the plugin's own CPU time and the wall-clock time since the call started,
/// whether it may go on, and when to look again. One thread cannot use CPU time faster than the
/// wall clock advances, so the CPU budget cannot run out before `cpu_left` of wall-clock time.
pub(crate) fn check(own_cpu: Duration, wall: Duration, limits: &PluginLimits) -> Verdict {
    let Some(cpu_left) = limits.cpu_time().checked_sub(own_cpu).filter(|left| !left.is_zero()) else {
        return Verdict::Stop(Overrun::CpuTime);
    };
    let Some(wall_left) = limits.wall_clock().checked_sub(wall).filter(|left| !left.is_zero()) else {
        return Verdict::Stop(Overrun::WallClock);
    };
    Verdict::Continue(cpu_left.min(wall_left))
}

/// When to check a call first, from the wall-clock time since it (or the provision that made it)
/// started, without reading the CPU clock (a system call, about half a microsecond, where a whole
/// run can take ten): the plugin cannot have used more CPU time than that wall-clock time, so its
/// budget cannot run out sooner than this.
pub(crate) fn first_check(wall: Duration, limits: &PluginLimits) -> Duration {
    limits.cpu_time().saturating_sub(wall).min(limits.wall_clock().saturating_sub(wall))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(cpu_time_ms: u64, wall_clock_ms: u64) -> PluginLimits {
        PluginLimits { cpu_time_ms, wall_clock_ms, ..PluginLimits::default() }
    }

    #[test]
    fn a_plugin_within_both_limits_goes_on_until_the_nearer_one_could_be_reached() {
        let ms = Duration::from_millis;
        assert_eq!(check(ms(10), ms(12), &limits(50, 5000)), Verdict::Continue(ms(40)));
        // Descheduled for most of the backstop: the backstop is nearer than the budget.
        assert_eq!(check(ms(10), ms(4990), &limits(50, 5000)), Verdict::Continue(ms(10)));
    }

    #[test]
    fn waiting_for_a_core_does_not_use_the_budget() {
        let ms = Duration::from_millis;
        // 40 ms of CPU over 900 ms of wall-clock time on a loaded machine: within a 50 ms budget.
        assert_eq!(check(ms(40), ms(900), &limits(50, 5000)), Verdict::Continue(ms(10)));
    }

    #[test]
    fn the_budget_and_the_backstop_stop_a_call_each_with_its_own_reason() {
        let ms = Duration::from_millis;
        assert_eq!(check(ms(50), ms(51), &limits(50, 5000)), Verdict::Stop(Overrun::CpuTime));
        assert_eq!(check(ms(60), ms(61), &limits(50, 5000)), Verdict::Stop(Overrun::CpuTime));
        assert_eq!(check(ms(20), ms(5000), &limits(50, 5000)), Verdict::Stop(Overrun::WallClock));
        // Both used up: the plugin's own CPU time is what it is told about.
        assert_eq!(check(ms(50), ms(5000), &limits(50, 5000)), Verdict::Stop(Overrun::CpuTime));
    }

    #[test]
    fn the_first_check_comes_no_later_than_the_budget_could_run_out() {
        let ms = Duration::from_millis;
        // A fresh call: the whole budget.
        assert_eq!(first_check(ms(0), &limits(50, 5000)), ms(50));
        // An adapter called 30 ms into its provision: at most 30 ms of CPU are gone.
        assert_eq!(first_check(ms(30), &limits(50, 5000)), ms(20));
        // Nothing left on either clock: at once (the runtime rounds up to one tick).
        assert_eq!(first_check(ms(80), &limits(50, 5000)), ms(0));
        assert_eq!(first_check(ms(10), &limits(50, 10)), ms(0));
    }

    #[test]
    fn the_thread_clock_counts_work_not_sleep() {
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time() - before;
        assert!(slept < Duration::from_millis(15), "sleeping used {slept:?} of CPU time");
        let before = thread_cpu_time();
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < Duration::from_millis(30) {
            n = std::hint::black_box(n.wrapping_add(1));
        }
        assert!(thread_cpu_time() - before > Duration::ZERO, "spinning used no CPU time");
    }
}
