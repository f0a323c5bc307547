//! Diagnostics as plain decisions: where each data model keeps a diagnostic, what a device's
//! `DiagnosticsState` means for the run, the normalized figures of a report (throughput in
//! bit/s, round-trip times, loss), and the URLs of Roost's own TR-143 test endpoints. The
//! store keeps the runs (`store::diagnostics`), the driver starts and collects them through the
//! device's adapter (`startDiagnostic`, `collectDiagnostic` tasks).

use roost_cwmp::DataModel;
use serde_json::{Value, json};

use crate::tasks::DiagnosticKind;

/// Where the standard data models keep a diagnostic; `None` where the model has none (TR-098
/// has no UDP echo client).
pub fn object(model: DataModel, kind: DiagnosticKind) -> Option<&'static str> {
    match (model, kind) {
        (DataModel::Tr098, DiagnosticKind::Ping) => Some("InternetGatewayDevice.IPPingDiagnostics."),
        (DataModel::Tr098, DiagnosticKind::Traceroute) => Some("InternetGatewayDevice.TraceRouteDiagnostics."),
        (DataModel::Tr098, DiagnosticKind::Download) => Some("InternetGatewayDevice.DownloadDiagnostics."),
        (DataModel::Tr098, DiagnosticKind::Upload) => Some("InternetGatewayDevice.UploadDiagnostics."),
        (DataModel::Tr098, DiagnosticKind::UdpEcho) => None,
        (DataModel::Tr181, DiagnosticKind::Ping) => Some("Device.IP.Diagnostics.IPPing."),
        (DataModel::Tr181, DiagnosticKind::Traceroute) => Some("Device.IP.Diagnostics.TraceRoute."),
        (DataModel::Tr181, DiagnosticKind::Download) => Some("Device.IP.Diagnostics.DownloadDiagnostics."),
        (DataModel::Tr181, DiagnosticKind::Upload) => Some("Device.IP.Diagnostics.UploadDiagnostics."),
        (DataModel::Tr181, DiagnosticKind::UdpEcho) => Some("Device.IP.Diagnostics.UDPEchoDiagnostics."),
    }
}

/// Where a run stands: `diagnostics.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Behind another run of the same request (a speed test's upload after its download).
    Waiting,
    /// Its start task waits for a session.
    Queued,
    /// The device has its inputs and `DiagnosticsState=Requested`.
    Requested,
    Complete,
    /// The device reported `Error_…`.
    Error,
    /// Starting or collecting it failed (the device refused, no adapter handles it).
    Fault,
    /// The device never reported it done.
    Timeout,
}

impl RunStatus {
    /// Whether the run is over.
    pub fn is_over(self) -> bool {
        matches!(self, Self::Complete | Self::Error | Self::Fault | Self::Timeout)
    }
}

/// What a collected `DiagnosticsState` means: done (`Complete`, or TR-098's `Completed` for
/// transfers), failed (`Error_…`), or not yet (`Requested`, `None`, anything else).
pub fn status_of(state: &str) -> RunStatus {
    match state {
        "Complete" | "Completed" => RunStatus::Complete,
        s if s.starts_with("Error") => RunStatus::Error,
        _ => RunStatus::Requested,
    }
}

/// The normalized figures of a completed run's canonical results (`provisioning::intent::
/// report_json`'s `results`): `throughput_bps`, `seconds` and `bytes` for transfers;
/// `rtt_min_ms`, `rtt_avg_ms`, `rtt_max_ms`, `loss_percent` for pings and UDP echoes; `hops`
/// and `destination` for a trace route. Figures the device did not report are left out.
pub fn summary(kind: DiagnosticKind, results: &Value) -> Value {
    let number = |name: &str| results.get(name).and_then(Value::as_f64);
    match kind {
        DiagnosticKind::Download | DiagnosticKind::Upload => {
            let bytes = number("test_bytes").or_else(|| number("total_bytes"));
            let time = |name: &str| {
                results
                    .get(name)
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.timestamp_micros())
            };
            let seconds = match (time("begin"), time("end")) {
                (Some(begin), Some(end)) if end > begin => Some((end - begin) as f64 / 1e6),
                _ => None,
            };
            let throughput = match (bytes, seconds) {
                (Some(bytes), Some(seconds)) => Some((bytes * 8.0 / seconds).round()),
                _ => None,
            };
            strip_nulls(json!({"bytes": bytes, "seconds": seconds, "throughput_bps": throughput}))
        }
        DiagnosticKind::Ping | DiagnosticKind::UdpEcho => {
            let (ok, failed) = (number("success_count"), number("failure_count"));
            let loss = match (ok, failed) {
                (Some(ok), Some(failed)) if ok + failed > 0.0 => {
                    Some(((failed * 10_000.0 / (ok + failed)).round()) / 100.0)
                }
                _ => None,
            };
            strip_nulls(json!({
                "rtt_min_ms": number("minimum_ms"), "rtt_avg_ms": number("average_ms"), "rtt_max_ms": number("maximum_ms"),
                "loss_percent": loss, "sent": ok.zip(failed).map(|(a, b)| a + b), "received": ok,
            }))
        }
        DiagnosticKind::Traceroute => {
            let hops = results.get("hops").and_then(Value::as_array).cloned().unwrap_or_default();
            let destination = hops.last().and_then(|h| h.get("address").or_else(|| h.get("host"))).cloned();
            strip_nulls(json!({"hops": hops.len(), "destination": destination}))
        }
    }
}

fn strip_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    value
}

/// The base of the URLs a device reaches this server at: the scheme and authority of the ACS
/// URL it was given (`ManagementServer.URL`), so a speed test goes where its CWMP sessions do.
pub fn endpoint_base(acs_url: &str) -> Option<String> {
    let (scheme, rest) = acs_url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().filter(|a| !a.is_empty() && !a.contains('@'))?;
    Some(format!("{scheme}://{authority}"))
}

/// Roost's TR-143 download endpoint for a test: `size` bytes generated as they are sent.
pub fn download_url(base: &str, token: &str, size: u64) -> String {
    format!("{base}/tr143/download/{token}?size={size}")
}

/// Roost's TR-143 upload endpoint for a test: a sink that counts and discards.
pub fn upload_url(base: &str, token: &str) -> String {
    format!("{base}/tr143/upload/{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_as_devices_write_them() {
        assert_eq!(status_of("Complete"), RunStatus::Complete);
        assert_eq!(status_of("Completed"), RunStatus::Complete, "TR-098 transfers");
        assert_eq!(status_of("Error_CannotResolveHostName"), RunStatus::Error);
        assert_eq!(status_of("Requested"), RunStatus::Requested);
        assert_eq!(status_of("None"), RunStatus::Requested);
    }

    #[test]
    fn a_transfer_becomes_bits_per_second() {
        let results = json!({"begin": "2026-12-04T10:00:00.000000Z", "end": "2026-12-04T10:00:02.500000Z",
            "test_bytes": 31_250_000, "total_bytes": 31_400_000});
        assert_eq!(
            summary(DiagnosticKind::Download, &results),
            json!({"bytes": 31_250_000.0, "seconds": 2.5, "throughput_bps": 100_000_000.0})
        );
        // Without times (a device that leaves them unknown), no throughput is made up.
        let partial = json!({"begin": null, "end": "2026-12-04T10:00:02Z", "test_bytes": 10});
        assert_eq!(summary(DiagnosticKind::Upload, &partial), json!({"bytes": 10.0}));
    }

    #[test]
    fn a_ping_becomes_rtt_and_loss() {
        let results =
            json!({"success_count": 9, "failure_count": 1, "minimum_ms": 1, "average_ms": 2, "maximum_ms": 7});
        assert_eq!(
            summary(DiagnosticKind::Ping, &results),
            json!({"rtt_min_ms": 1.0, "rtt_avg_ms": 2.0, "rtt_max_ms": 7.0, "loss_percent": 10.0, "sent": 10.0, "received": 9.0})
        );
        let route =
            json!({"hops": [{"host": "gw", "address": "192.0.2.1"}, {"host": null, "address": "198.51.100.7"}]});
        assert_eq!(summary(DiagnosticKind::Traceroute, &route), json!({"hops": 2, "destination": "198.51.100.7"}));
    }

    #[test]
    fn the_endpoint_is_where_the_device_reaches_the_acs() {
        assert_eq!(
            endpoint_base("http://acs.isp.example:7547/cwmp/isp").as_deref(),
            Some("http://acs.isp.example:7547")
        );
        assert_eq!(endpoint_base("HTTPS://[2001:db8::1]:7548").as_deref(), Some("https://[2001:db8::1]:7548"));
        assert_eq!(endpoint_base("ftp://acs"), None);
        assert_eq!(endpoint_base("http://user:pw@acs/"), None);
        assert_eq!(download_url("http://a:7547", "tok", 5), "http://a:7547/tr143/download/tok?size=5");
    }

    #[test]
    fn each_model_keeps_its_diagnostics_where_the_standard_says() {
        assert_eq!(object(DataModel::Tr098, DiagnosticKind::UdpEcho), None);
        assert_eq!(
            object(DataModel::Tr181, DiagnosticKind::UdpEcho),
            Some("Device.IP.Diagnostics.UDPEchoDiagnostics.")
        );
        for kind in DiagnosticKind::ALL {
            for model in [DataModel::Tr098, DataModel::Tr181] {
                if let Some(path) = object(model, kind) {
                    assert!(path.starts_with(model.root()) && path.ends_with('.'), "{path}");
                }
            }
        }
    }
}
