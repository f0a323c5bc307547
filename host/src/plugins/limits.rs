//! The sandbox's limits: what one plugin call may use before it is stopped.
//!
//! | limit | default | why |
//! |---|---|---|
//! | `cpu_time_ms` | 50 | CPU time the plugin itself may use (not time spent waiting for a core, nor the host's loading of parameters): a run that has used 50 ms is looping, as a typical provision takes well under 1 ms |
//! | `wall_clock_ms` | 5 000 | the backstop: a call still running after this long is stopped, whatever its CPU time, at its next check (checks run while the plugin's code runs, so a host call that never returns is not cut short: the store's own timeouts bound those); large, so that an overloaded server does not trip it |
//! | `memory_bytes` | 32 MiB | a plugin's heap; a shipped adapter uses under 2 MiB |
//! | `max_instances` | 10 | core instances a component may create (ours create 1–3) |
//! | `max_tables` / `max_table_elements` | 10 / 100 000 | indirect-call tables; Rust uses one small one |
//! | `max_declarations` | 10 000 | declarations per run: each becomes CWMP traffic and host memory |
//! | `max_declaration_bytes` | 4 MiB | the host memory declarations of one run may take |
//! | `max_log_messages` / `max_log_bytes` | 200 / 64 KiB | log lines per run (at most 10 000 / 16 MiB); the rest are counted and dropped |
//!
//! Every limit is set per organization (`plugin_limits`), over these defaults from the
//! configuration file's `[plugins]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits for one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// `deadline_ms` in configuration files written before it became a CPU budget.
    #[serde(alias = "deadline_ms")]
    pub cpu_time_ms: u64,
    pub wall_clock_ms: u64,
    pub memory_bytes: usize,
    pub max_instances: usize,
    pub max_tables: usize,
    pub max_table_elements: usize,
    pub max_declarations: usize,
    pub max_declaration_bytes: usize,
    pub max_log_messages: usize,
    pub max_log_bytes: usize,
}

/// The largest memory any tenant may be granted: the pooling allocator reserves this much address
/// space per slot, so it bounds what an override can ask for.
pub const MEMORY_CEILING: usize = 256 * 1024 * 1024;

/// The most CPU time any tenant may be granted per call.
pub const CPU_TIME_CEILING: Duration = Duration::from_secs(5);

/// The longest wall-clock backstop any tenant may be granted.
pub const WALL_CLOCK_CEILING: Duration = Duration::from_secs(60);

/// The most log lines, and bytes of them, a run may keep: they are stored with the device.
pub const MAX_LOG_MESSAGES_CEILING: usize = 10_000;
pub const MAX_LOG_BYTES_CEILING: usize = 16 * 1024 * 1024;

/// Limits renamed since overrides were first stored: (old name, new name). Until issue 13
/// `deadline_ms` was a wall-clock deadline; a stored override of it now sets the CPU budget,
/// which is what its operator meant: how much work a call may do.
const RENAMED: [(&str, &str); 1] = [("deadline_ms", "cpu_time_ms")];

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            cpu_time_ms: 50,
            wall_clock_ms: 5_000,
            memory_bytes: 32 * 1024 * 1024,
            max_instances: 10,
            max_tables: 10,
            max_table_elements: 100_000,
            max_declarations: 10_000,
            max_declaration_bytes: 4 * 1024 * 1024,
            max_log_messages: 200,
            max_log_bytes: 64 * 1024,
        }
    }
}

impl PluginLimits {
    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.cpu_time_ms)
    }

    pub fn wall_clock(&self) -> Duration {
        Duration::from_millis(self.wall_clock_ms)
    }

    /// Checks an operator's limits against the ceilings the engine was built with.
    pub fn validate(&self) -> Result<(), String> {
        if self.cpu_time_ms == 0 || self.cpu_time() > CPU_TIME_CEILING {
            return Err(format!("cpu_time_ms must be between 1 and {}", CPU_TIME_CEILING.as_millis()));
        }
        if self.wall_clock_ms < self.cpu_time_ms || self.wall_clock() > WALL_CLOCK_CEILING {
            return Err(format!(
                "wall_clock_ms must be between cpu_time_ms ({}) and {}",
                self.cpu_time_ms,
                WALL_CLOCK_CEILING.as_millis()
            ));
        }
        if self.memory_bytes < 1024 * 1024 || self.memory_bytes > MEMORY_CEILING {
            return Err(format!("memory_bytes must be between 1 MiB and {MEMORY_CEILING}"));
        }
        if self.max_log_messages > MAX_LOG_MESSAGES_CEILING || self.max_log_bytes > MAX_LOG_BYTES_CEILING {
            return Err(format!(
                "max_log_messages must be at most {MAX_LOG_MESSAGES_CEILING}, max_log_bytes at most {MAX_LOG_BYTES_CEILING}"
            ));
        }
        if self.max_instances == 0 || self.max_tables == 0 || self.max_declarations == 0 {
            return Err("max_instances, max_tables and max_declarations must be at least 1".into());
        }
        Ok(())
    }

    /// These limits with the fields of a JSON override applied. A field under its old name
    /// counts only where the override does not also give the new one. An override that raises
    /// the CPU budget past the backstop it inherits, without setting the backstop, raises the
    /// backstop with it: the backstop exists to stop stuck calls, not to undo the budget.
    pub fn with_override(&self, json: &str) -> Result<PluginLimits, String> {
        let mut value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let patch: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let (Some(base), Some(patch)) = (value.as_object_mut(), patch.as_object()) else {
            return Err("limits must be a JSON object".into());
        };
        for (k, v) in patch {
            match RENAMED.iter().find(|(old, _)| old == k) {
                Some((_, new)) if patch.contains_key(*new) => {}
                Some((_, new)) => {
                    base.insert((*new).to_owned(), v.clone());
                }
                None => {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
        let mut limits: PluginLimits = serde_json::from_value(value).map_err(|e| e.to_string())?;
        if !patch.contains_key("wall_clock_ms") {
            limits.wall_clock_ms = limits.wall_clock_ms.max(limits.cpu_time_ms);
        }
        limits.validate()?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn overrides_apply_field_by_field_and_are_checked() {
        let base = PluginLimits::default();
        let tighter = base.with_override(r#"{"cpu_time_ms": 10, "memory_bytes": 4194304}"#).unwrap();
        assert_eq!(tighter.cpu_time_ms, 10);
        assert_eq!(tighter.memory_bytes, 4 * 1024 * 1024);
        assert_eq!(tighter.max_declarations, base.max_declarations);
        assert!(base.with_override(r#"{"memory_bytes": 1073741824}"#).is_err());
        assert!(base.with_override(r#"{"cpu_time_ms": 0}"#).is_err());
        assert!(base.with_override(r#"{"wall_clock_ms": 120000}"#).is_err());
        // The backstop cannot come before the budget.
        assert!(base.with_override(r#"{"cpu_time_ms": 100, "wall_clock_ms": 99}"#).is_err());
        assert!(base.with_override(r#"{"fuel": 1}"#).is_err());
        assert!(base.with_override("[]").is_err());
    }

    #[test]
    fn an_override_stored_under_the_old_name_sets_the_cpu_budget() {
        let limits = PluginLimits::default().with_override(r#"{"deadline_ms": 20}"#).unwrap();
        assert_eq!(limits.cpu_time_ms, 20);
        assert_eq!(limits.wall_clock_ms, PluginLimits::default().wall_clock_ms);
        // Both names: the new one wins, whatever the order.
        let both = PluginLimits::default().with_override(r#"{"cpu_time_ms": 30, "deadline_ms": 20}"#).unwrap();
        assert_eq!(both.cpu_time_ms, 30);
        // And a configuration file written before the rename still loads.
        let configured: PluginLimits = toml::from_str("deadline_ms = 40").unwrap();
        assert_eq!(configured.cpu_time_ms, 40);
    }

    #[test]
    fn a_budget_raised_past_the_inherited_backstop_raises_the_backstop() {
        let parent = PluginLimits::default().with_override(r#"{"wall_clock_ms": 1000}"#).unwrap();
        let child = parent.with_override(r#"{"cpu_time_ms": 3000}"#).unwrap();
        assert_eq!((child.cpu_time_ms, child.wall_clock_ms), (3000, 3000));
        // Set together, they must agree.
        assert!(parent.with_override(r#"{"cpu_time_ms": 3000, "wall_clock_ms": 1000}"#).is_err());
    }

    #[test]
    fn log_limits_are_bounded() {
        assert!(PluginLimits::default().with_override(r#"{"max_log_messages": 1000000}"#).is_err());
        assert!(PluginLimits::default().with_override(r#"{"max_log_bytes": 1073741824}"#).is_err());
    }
}
