//! The codes of the faults Roost records against a device (`GET /api/v1/devices/{id}/faults`)
//! and a task (`fault.code`): one scheme, `area.reason` in lowercase.
//!
//! A CWMP fault the CPE answered with is `cwmp.<number>` (`cwmp.9002`), as GenieACS writes it, so
//! NBI clients written for GenieACS that match on `cwmp.` work; a request the CPE answered wrongly or not at
//! all is `cwmp.<reason>`. Codes are stored and served as text: migration `m0010_fault_codes`
//! renamed the codes of earlier versions (`9002`, `no_response`, `invalid_task`, …).

use std::fmt;

/// Declares [`FaultCode`] with its named variants and their names in one list, so that a
/// variant cannot be added without its name.
macro_rules! fault_codes {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)+) => {
        /// Why a device's request, task, provision or plugin failed.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum FaultCode {
            /// The CPE answered with this CWMP fault (`9000`–`9899`; `cwmp.9003`).
            Cwmp(u32),
            $($(#[doc = $doc])* $variant,)+
        }

        impl FaultCode {
            /// The codes with a fixed name (the tests check them all).
            pub const NAMED: &[FaultCode] = &[$(FaultCode::$variant),+];

            /// The fixed name of a code; `None` for [`FaultCode::Cwmp`].
            fn name(self) -> Option<&'static str> {
                match self {
                    FaultCode::Cwmp(_) => None,
                    $(FaultCode::$variant => Some($name),)+
                }
            }
        }
    };
}

fault_codes! {
    /// The CPE sent an empty POST instead of answering the request.
    NoResponse => "cwmp.no_response",
    /// The CPE answered the request with the response to another one.
    WrongResponse => "cwmp.wrong_response",
    /// GetParameterValues answered with no values.
    EmptyResponse => "cwmp.empty_response",
    /// An answer that is a failure without being a fault (AddObject Status 2, no instance).
    InvalidResponse => "cwmp.invalid_response",
    /// A queued task the queue cannot read (written by hand or by an older version).
    InvalidTask => "task.invalid",
    /// A task sent three times without an answer: it probably kills the session.
    TooManyAttempts => "task.too_many_attempts",
    /// A task whose expiry passed before the device ran it.
    TaskExpired => "task.expired",
    /// A task called off before it ran: deleted while pending (a diagnostic's runs end with
    /// it), or left behind by a diagnostic that ended without it.
    TaskCancelled => "task.cancelled",
    /// A task that goes through the device's adapter (Wi-Fi, PPPoE, diagnostics) for a device no
    /// installed adapter handles.
    NoAdapter => "task.no_adapter",
    /// A push of the subscriber's PPPoE credentials to a device no longer linked to one.
    NoSubscriber => "task.no_subscriber",
    /// A diagnostic the device never reported done within `[diagnostics] timeout`.
    DiagnosticTimeout => "task.diagnostic_timeout",
    /// Discovery of the device's tree gave up after sessions kept dying during it.
    DiscoveryAbandoned => "discovery.abandoned",
    /// Provisioning still had work after the maximum rounds.
    NotConverging => "provisioning.not_converging",
    /// A declaration that cannot become CWMP calls (a value of the wrong type).
    InvalidDeclaration => "provisioning.invalid_declaration",
    /// Provisioning could not read or write the store.
    ProvisioningStore => "provisioning.store",
    /// A preset that cannot run as stored.
    InvalidPreset => "preset.invalid",
    /// A preset naming a provision that is not installed.
    UnknownProvision => "preset.unknown_provision",
    /// A plugin returned an error.
    PluginError => "plugin.error",
    /// A plugin reported that a limit stopped it.
    PluginLimit => "plugin.limit",
    /// A plugin used its budget of CPU time.
    PluginCpuTime => "plugin.cpu_time",
    /// A plugin was still running at the wall-clock backstop (a stuck host call, an overloaded
    /// server), within its CPU time.
    PluginTimeout => "plugin.timeout",
    /// A plugin asked for more memory than its limit.
    PluginMemory => "plugin.memory",
    /// A plugin trapped.
    PluginTrap => "plugin.trap",
    /// A plugin could not be started.
    PluginInstantiate => "plugin.instantiate",
}

const CWMP_PREFIX: &str = "cwmp.";
const PLUGIN_PREFIX: &str = "plugin.";

/// What kind of fault a code is, for an operator sorting them: the CPE's (its CWMP faults and
/// answers that are none), a plugin's (errors, traps, limits), or provisioning's (tasks,
/// presets, discovery, declarations). Told by the code's area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Cpe,
    Plugin,
    Provisioning,
}

impl FaultKind {
    pub fn of(code: &str) -> FaultKind {
        if code.starts_with(CWMP_PREFIX) {
            FaultKind::Cpe
        } else if code.starts_with(PLUGIN_PREFIX) {
            FaultKind::Plugin
        } else {
            FaultKind::Provisioning
        }
    }

    /// The code prefixes of each kind (`Provisioning`: everything else), for the store's filter.
    pub fn prefixes() -> (&'static str, &'static str) {
        (CWMP_PREFIX, PLUGIN_PREFIX)
    }

    pub fn parse(text: &str) -> Option<FaultKind> {
        match text {
            "cpe" => Some(FaultKind::Cpe),
            "plugin" => Some(FaultKind::Plugin),
            "provisioning" => Some(FaultKind::Provisioning),
            _ => None,
        }
    }
}

impl fmt::Display for FaultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.name()) {
            (FaultCode::Cwmp(number), _) => write!(f, "{CWMP_PREFIX}{number}"),
            (_, name) => f.write_str(name.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_kind_its_area_says() {
        assert_eq!(FaultKind::of(&FaultCode::Cwmp(9002).to_string()), FaultKind::Cpe);
        for code in FaultCode::NAMED {
            let text = code.to_string();
            let area = text.split('.').next().unwrap();
            let expected = match area {
                "cwmp" => FaultKind::Cpe,
                "plugin" => FaultKind::Plugin,
                "task" | "discovery" | "provisioning" | "preset" => FaultKind::Provisioning,
                other => panic!("{text}: an area ({other}) no kind names"),
            };
            assert_eq!(FaultKind::of(&text), expected, "{text}");
        }
        assert_eq!(FaultKind::parse("plugin"), Some(FaultKind::Plugin));
        assert_eq!(FaultKind::parse("CPE"), None);
    }

    #[test]
    fn every_code_is_area_dot_reason() {
        let mut codes = FaultCode::NAMED.to_vec();
        codes.extend([FaultCode::Cwmp(9002), FaultCode::Cwmp(8005)]);
        for code in codes {
            let text = code.to_string();
            let (area, reason) = text.split_once('.').unwrap_or_default();
            assert!(["cwmp", "task", "discovery", "provisioning", "preset", "plugin"].contains(&area), "{text}");
            assert!(
                !reason.is_empty() && reason.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
        }
    }

    #[test]
    fn no_two_codes_share_a_name() {
        let names: std::collections::HashSet<String> = FaultCode::NAMED.iter().map(ToString::to_string).collect();
        assert_eq!(names.len(), FaultCode::NAMED.len());
    }

    #[test]
    fn a_cpe_fault_is_written_as_genieacs_writes_it() {
        assert_eq!(FaultCode::Cwmp(9003).to_string(), "cwmp.9003");
        assert_eq!(FaultCode::NoResponse.to_string(), "cwmp.no_response");
    }
}
