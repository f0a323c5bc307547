//! Device actions carried out through the device's adapter: a task's Wi-Fi or PPPoE change
//! becomes a call of the adapter's canonical intent, whose declarations the engine converges
//! like a provision's ([`super::engine::Provisioning::for_intent`]).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::plugins::bindings::intent_types::{
    Band as WitBand, Diagnostic, DiagnosticKind as WitKind, DiagnosticReport, DiagnosticResults, PingResults, PingTest,
    PppoeSettings, TraceRouteTest, TransferResults, TransferTest, UdpEchoTest, WifiSettings, WifiTarget as WitTarget,
};
use crate::plugins::{DeviceView, Loaded, PluginFault, PluginLimits, PluginRuntime, RunOutput};
use crate::tasks::{Band, DiagnosticKind, DiagnosticRequest, WifiChange, WifiTarget};

/// What a task asks of the device's adapter.
#[derive(Debug, Clone)]
pub enum Intent {
    ConfigureWifi(WifiSettings),
    ConfigurePppoe(PppoeSettings),
    StartDiagnostic(Diagnostic),
    /// Reads the last diagnostic of a kind, refreshed in this session (a max-age of 0).
    DiagnosticResult(WitKind),
}

impl Intent {
    pub fn wifi(change: &WifiChange) -> Self {
        let band = |band: Band| match band {
            Band::Band24 => WitBand::Band24,
            Band::Band5 => WitBand::Band5,
            Band::Band6 => WitBand::Band6,
        };
        Self::ConfigureWifi(WifiSettings {
            target: match &change.target {
                WifiTarget::All => WitTarget::All,
                WifiTarget::Band(b) => WitTarget::Band(band(*b)),
                WifiTarget::Network(key) => WitTarget::Network(key.clone()),
            },
            ssid: change.ssid.clone(),
            passphrase: change.passphrase.clone(),
            enabled: change.enabled,
        })
    }

    pub fn pppoe(username: String, password: String, connection: Option<String>) -> Self {
        Self::ConfigurePppoe(PppoeSettings { username, password, connection })
    }

    pub fn start_diagnostic(request: &DiagnosticRequest) -> Self {
        Self::StartDiagnostic(match request {
            DiagnosticRequest::Ping { host, count, timeout_ms, size } => Diagnostic::Ping(PingTest {
                host: host.clone(),
                count: Some(*count),
                timeout_ms: Some(*timeout_ms),
                size: *size,
            }),
            DiagnosticRequest::Traceroute { host, max_hops, timeout_ms } => Diagnostic::TraceRoute(TraceRouteTest {
                host: host.clone(),
                max_hops: *max_hops,
                timeout_ms: *timeout_ms,
            }),
            DiagnosticRequest::Download { url } => {
                Diagnostic::Download(TransferTest { url: url.clone(), length: None })
            }
            DiagnosticRequest::Upload { url, length } => {
                Diagnostic::Upload(TransferTest { url: url.clone(), length: Some(*length) })
            }
            DiagnosticRequest::UdpEcho { host, port, count } => {
                Diagnostic::UdpEcho(UdpEchoTest { host: host.clone(), port: *port, count: *count })
            }
        })
    }

    pub fn diagnostic_result(kind: DiagnosticKind) -> Self {
        Self::DiagnosticResult(match kind {
            DiagnosticKind::Ping => WitKind::Ping,
            DiagnosticKind::Traceroute => WitKind::TraceRoute,
            DiagnosticKind::Download => WitKind::Download,
            DiagnosticKind::Upload => WitKind::Upload,
            DiagnosticKind::UdpEcho => WitKind::UdpEcho,
        })
    }

    /// The intent's name in the `intents` interface, for faults and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConfigureWifi(_) => "configure-wifi",
            Self::ConfigurePppoe(_) => "configure-pppoe",
            Self::StartDiagnostic(_) => "start-diagnostic",
            Self::DiagnosticResult(_) => "diagnostic-result",
        }
    }

    /// Calls the adapter once: what it returned, as JSON (`null` for the intents that only
    /// declare). Blocking.
    pub(super) fn call(
        &self,
        runtime: &PluginRuntime,
        adapter: &Loaded,
        view: Arc<DeviceView>,
        limits: PluginLimits,
    ) -> (Result<Value, PluginFault>, RunOutput) {
        let done = |(result, output): (Result<(), PluginFault>, RunOutput)| (result.map(|()| Value::Null), output);
        match self {
            Self::ConfigureWifi(settings) => done(runtime.run_intent(adapter, view, limits, |a, store| {
                a.roost_plugin_intents().call_configure_wifi(store, settings)
            })),
            Self::ConfigurePppoe(settings) => done(runtime.run_intent(adapter, view, limits, |a, store| {
                a.roost_plugin_intents().call_configure_pppoe(store, settings)
            })),
            Self::StartDiagnostic(request) => done(runtime.run_intent(adapter, view, limits, |a, store| {
                a.roost_plugin_intents().call_start_diagnostic(store, request)
            })),
            Self::DiagnosticResult(kind) => {
                let (result, output) = runtime.run_intent(adapter, view, limits, |a, store| {
                    a.roost_plugin_intents().call_diagnostic_result(store, *kind, 0)
                });
                (result.map(|report| report.as_ref().map_or(Value::Null, report_json)), output)
            }
        }
    }
}

/// A diagnostic's report as JSON, in the canonical names of the `intents` interface.
pub fn report_json(report: &DiagnosticReport) -> Value {
    let ping = |p: &PingResults| {
        json!({
            "success_count": p.success_count, "failure_count": p.failure_count,
            "average_ms": p.average_ms, "minimum_ms": p.minimum_ms, "maximum_ms": p.maximum_ms,
        })
    };
    let transfer = |t: &TransferResults| json!({"begin": t.begin, "end": t.end, "test_bytes": t.test_bytes, "total_bytes": t.total_bytes});
    let results = report.results.as_ref().map(|results| match results {
        DiagnosticResults::Download(t) | DiagnosticResults::Upload(t) => transfer(t),
        DiagnosticResults::Ping(p) | DiagnosticResults::UdpEcho(p) => ping(p),
        DiagnosticResults::TraceRoute(hops) => json!({
            "hops": hops.iter().map(|h| json!({"host": h.host, "address": h.address, "rtt_ms": h.rtt_ms})).collect::<Vec<_>>()
        }),
    });
    json!({"state": report.state, "results": results})
}
