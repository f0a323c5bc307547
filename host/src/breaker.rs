//! Circuit breakers for outbound calls to targets Roost does not control (a device's
//! connection-request listener): after `threshold` failures in a row, a target is not called for
//! a cool-down that doubles with each further failure (up to `max`); then one call probes it.
//! Kept in memory per replica, bounded: a breaker only spares the target and Roost's waiting,
//! it is no record. Webhooks keep theirs in the database (`events`), since their failure streak
//! must outlive a restart to disable them.

use std::time::{Duration, Instant};

/// A target's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Failures in a row.
    pub failures: u32,
    /// Not called until then (open); after it, one call probes (half open).
    pub open_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub threshold: u32,
    pub cool_down: Duration,
    pub max: Duration,
}

/// Whether a call may go now, and the state to keep if it does: a half-open breaker lets one
/// call through and stays open a cool-down for the others meanwhile.
pub fn admit(state: State, now: Instant, settings: Settings) -> Result<State, Instant> {
    match state.open_until {
        Some(until) if now < until => Err(until),
        Some(_) => Ok(State { open_until: Some(now + settings.cool_down), ..state }),
        None => Ok(state),
    }
}

/// The breaker after a call that succeeded (`ok`) or failed.
pub fn after(state: State, ok: bool, now: Instant, settings: Settings) -> State {
    if ok {
        return State::default();
    }
    let failures = state.failures.saturating_add(1);
    if failures < settings.threshold {
        return State { failures, open_until: None };
    }
    let doublings = (failures - settings.threshold).min(16);
    let wait = settings.cool_down.saturating_mul(1 << doublings).min(settings.max);
    State { failures, open_until: Some(now + wait) }
}

/// Breakers by target, at most `capacity` of them (the least recently used go first).
pub struct Breakers {
    states: moka::sync::Cache<String, State>,
    settings: Settings,
}

impl Breakers {
    pub fn new(capacity: u64, settings: Settings) -> Self {
        Self { states: moka::sync::Cache::new(capacity), settings }
    }

    /// Whether `target` may be called now; if not, until when it is open.
    pub fn admit(&self, target: &str) -> Result<(), Instant> {
        let state = self.states.get(target).unwrap_or_default();
        let admitted = admit(state, Instant::now(), self.settings)?;
        if admitted != state {
            self.states.insert(target.to_owned(), admitted);
        }
        Ok(())
    }

    pub fn record(&self, target: &str, ok: bool) {
        let state = self.states.get(target).unwrap_or_default();
        let next = after(state, ok, Instant::now(), self.settings);
        if next == State::default() {
            if state != next {
                self.states.invalidate(target);
            }
        } else {
            self.states.insert(target.to_owned(), next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings =
        Settings { threshold: 3, cool_down: Duration::from_secs(10), max: Duration::from_secs(60) };

    #[test]
    fn it_opens_after_its_threshold_for_a_doubling_cool_down() {
        let now = Instant::now();
        let mut state = State::default();
        for _ in 0..2 {
            state = after(state, false, now, SETTINGS);
            assert_eq!(state.open_until, None);
            assert!(admit(state, now, SETTINGS).is_ok());
        }
        state = after(state, false, now, SETTINGS);
        assert_eq!(state.open_until, Some(now + Duration::from_secs(10)));
        assert_eq!(admit(state, now + Duration::from_secs(9), SETTINGS), Err(now + Duration::from_secs(10)));
        state = after(state, false, now, SETTINGS);
        assert_eq!(state.open_until, Some(now + Duration::from_secs(20)));
        for _ in 0..10 {
            state = after(state, false, now, SETTINGS);
        }
        assert_eq!(state.open_until, Some(now + Duration::from_secs(60)), "at most max");
        assert_eq!(after(state, true, now, SETTINGS), State::default(), "a success closes it");
    }

    #[test]
    fn a_half_open_breaker_lets_one_probe_through() {
        let now = Instant::now();
        let open = State { failures: 3, open_until: Some(now) };
        let probing = admit(open, now, SETTINGS).unwrap();
        assert_eq!(probing.open_until, Some(now + SETTINGS.cool_down));
        assert!(admit(probing, now + Duration::from_secs(1), SETTINGS).is_err(), "the others wait for the probe");
    }

    #[test]
    fn breakers_are_per_target() {
        let breakers = Breakers::new(100, SETTINGS);
        for _ in 0..3 {
            breakers.record("10.0.0.1:7547", false);
        }
        assert!(breakers.admit("10.0.0.1:7547").is_err());
        assert!(breakers.admit("10.0.0.2:7547").is_ok());
        breakers.record("10.0.0.1:7547", true);
        assert!(breakers.admit("10.0.0.1:7547").is_ok());
    }
}
