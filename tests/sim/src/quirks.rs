//! Habits of real CPE firmware that an ACS has to live with (`/work/shared/INTEROP.md`, "Quirks
//! seen from real CPE implementations"), each switchable per fleet through
//! [`FleetConfig::quirks`](crate::FleetConfig::quirks) and off by default: with
//! [`Quirks::default()`] the simulator behaves as a well-mannered TR-069 CPE.
//!
//! ```
//! use roost_sim::{CrAuth, Quirks};
//! let quirks = Quirks { gpn_leaves_only: true, cr_auth: CrAuth::None, ..Quirks::default() };
//! assert!(!quirks.challenge_with_empty_post);
//! ```
//!
//! Where each is carried out: the connection-request listener ([`cr_auth`](Quirks::cr_auth),
//! [`cr_close_after_challenge`](Quirks::cr_close_after_challenge)), the session driver
//! ([`challenge_with_empty_post`](Quirks::challenge_with_empty_post),
//! [`gpv_crash_at`](Quirks::gpv_crash_at)) and the RPC handlers of [`CpeState`](crate::CpeState)
//! ([`gpn_leaves_only`](Quirks::gpn_leaves_only), [`spv_refuse`](Quirks::spv_refuse)).

use roost_cwmp::AcsRequest;

/// How the connection-request listener authenticates the ACS's GET.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CrAuth {
    /// Digest (MD5, `qop="auth"`, single-use nonces) against the device's current
    /// `ConnectionRequestUsername`/`ConnectionRequestPassword`, as TR-069 §3.2.2 requires.
    #[default]
    Digest,
    /// No authentication at all, as many deployed listeners do: any GET to the device's path is
    /// answered 200 and starts a `6 CONNECTION REQUEST` session (still 503 when throttled or
    /// rebooting), whatever the connection-request credentials hold and whether or not the GET
    /// carries an `Authorization` header.
    None,
}

/// Firmware habits a fleet reproduces. Every field's default is the standard behaviour; build
/// one with struct update syntax: `Quirks { gpn_leaves_only: true, ..Quirks::default() }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Connection-request authentication: [`CrAuth::Digest`] (standard) or [`CrAuth::None`]
    /// (an open listener).
    pub cr_auth: CrAuth,
    /// "A challenge, then a closed socket": the connection-request listener answers the
    /// unauthenticated GET with `401` and `WWW-Authenticate` on HTTP/1.1 *without*
    /// `Connection: close`, keeps the socket open, and closes it unanswered when the next
    /// request arrives on it: a client that reuses its pooled connection for the authenticated
    /// retry fails; the retry succeeds on a new connection.
    /// The challenge has no commas between its parameters, as that firmware writes it:
    /// `Digest qop="auth" nonce="…" realm="roost-sim"`.
    pub cr_close_after_challenge: bool,
    /// "Asking for a challenge with an empty POST": when the fleet gives its devices ACS
    /// credentials ([`FleetConfig::acs_username`](crate::FleetConfig::acs_username) or
    /// [`acs_password`](crate::FleetConfig::acs_password) set; the models' own `admin` user
    /// with an empty password does not count), every session opens with a bare empty POST (no body, no `Authorization`) that must be answered `401` with a
    /// Digest challenge; the Inform then carries an RFC 2069 Digest header: no `qop`, `nc` or
    /// `cnonce`, `uri=""`, realm and nonce echoed, `response = MD5(HA1:nonce:MD5("POST:"))`.
    /// Later POSTs of the session repeat that header when they carry a body and go bare when
    /// empty (a later 401 is answered once, with credentials). An ACS that does not answer the
    /// opening POST with a Digest 401 fails the session with
    /// [`SessionError::NoChallenge`](crate::SessionError::NoChallenge).
    pub challenge_with_empty_post: bool,
    /// "Fragile batches": a GetParameterValues naming this many parameters or more crashes the
    /// agent: no answer, the TCP connection is dropped, and the session fails with
    /// [`SessionError::AgentCrashed`](crate::SessionError::AgentCrashed) (then retried as any
    /// failed session is). `None`: no limit.
    pub gpv_crash_at: Option<usize>,
    /// "GetParameterNames that lists leaves only": with `NextLevel=false` the answer holds
    /// parameters only, never object nodes (names ending in `.`), not even the requested
    /// object itself. `NextLevel=true` is unchanged.
    pub gpn_leaves_only: bool,
    /// "Non-atomic SetParameterValues": each entry is a parameter-name suffix (matched with
    /// `ends_with`, e.g. `"ManagementServer.PeriodicInformEnable"`) and the fault code the
    /// firmware refuses it with (e.g. 9008). A SetParameterValues naming any such parameter is
    /// answered with fault 9003 carrying one `SetParameterValuesFault` per refused (or
    /// otherwise invalid) parameter, *yet the other, valid parameters are applied* and the
    /// ParameterKey is left alone. One naming none behaves as the standard requires (all or
    /// nothing).
    pub spv_refuse: Vec<(String, u32)>,
    /// "Diagnostics done in silence": a diagnostic completes (its results and state are set)
    /// but the device neither informs with `8 DIAGNOSTICS COMPLETE` nor opens a session for it;
    /// the ACS finds out only by reading `DiagnosticsState` again.
    pub silent_diagnostics: bool,
}

impl Quirks {
    /// The fault code [`spv_refuse`](Self::spv_refuse) gives this parameter, if refused.
    pub fn refusal(&self, parameter: &str) -> Option<u32> {
        self.spv_refuse.iter().find(|(suffix, _)| parameter.ends_with(suffix.as_str())).map(|(_, code)| *code)
    }

    /// Whether this request crashes the agent ([`gpv_crash_at`](Self::gpv_crash_at)).
    pub fn crashes_on(&self, request: &AcsRequest) -> bool {
        match (request, self.gpv_crash_at) {
            (AcsRequest::GetParameterValues { names }, Some(limit)) => names.len() >= limit,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn defaults_are_the_standard_behaviour() {
        let quirks = Quirks::default();
        assert_eq!(quirks.cr_auth, CrAuth::Digest);
        assert!(!quirks.cr_close_after_challenge);
        assert!(!quirks.challenge_with_empty_post);
        assert_eq!(quirks.gpv_crash_at, None);
        assert!(!quirks.gpn_leaves_only);
        assert!(quirks.spv_refuse.is_empty());
        let names = (0..1000).map(|i| format!("Device.X.{i}")).collect();
        assert!(!quirks.crashes_on(&AcsRequest::GetParameterValues { names }));
        assert_eq!(quirks.refusal("Device.ManagementServer.PeriodicInformEnable"), None);
    }

    #[test]
    fn crash_threshold_and_refusal_suffixes() {
        let quirks = Quirks {
            gpv_crash_at: Some(3),
            spv_refuse: vec![("ManagementServer.PeriodicInformEnable".into(), 9008)],
            ..Quirks::default()
        };
        let gpv =
            |n: usize| AcsRequest::GetParameterValues { names: (0..n).map(|i| format!("Device.X.{i}")).collect() };
        assert!(!quirks.crashes_on(&gpv(2)));
        assert!(quirks.crashes_on(&gpv(3)));
        assert!(quirks.crashes_on(&gpv(40)));
        assert!(!quirks.crashes_on(&AcsRequest::GetRpcMethods));
        assert_eq!(quirks.refusal("Device.ManagementServer.PeriodicInformEnable"), Some(9008));
        assert_eq!(quirks.refusal("InternetGatewayDevice.ManagementServer.PeriodicInformEnable"), Some(9008));
        assert_eq!(quirks.refusal("Device.ManagementServer.PeriodicInformInterval"), None);
    }
}
