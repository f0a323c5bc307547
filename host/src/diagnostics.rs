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

/// An organization's own TR-143 test server, used instead of Roost's endpoints. A direction
/// left out keeps Roost's own endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeedTestServer {
    /// What devices download from (TR-143 `DownloadURL`).
    #[serde(default)]
    pub download_url: Option<String>,
    /// What devices upload to (TR-143 `UploadURL`).
    #[serde(default)]
    pub upload_url: Option<String>,
}

impl SpeedTestServer {
    /// A server of these URLs; none without any.
    pub fn of(download_url: Option<String>, upload_url: Option<String>) -> Option<Self> {
        (download_url.is_some() || upload_url.is_some()).then_some(SpeedTestServer { download_url, upload_url })
    }

    /// Each URL checked, naming the field that is wrong (`prefix` places it in a request body).
    pub fn check(&self, prefix: &str) -> Result<(), String> {
        if self.download_url.is_none() && self.upload_url.is_none() {
            return Err(format!("{prefix}: give download_url, upload_url or both (null removes the server)"));
        }
        for (field, url) in [("download_url", &self.download_url), ("upload_url", &self.upload_url)] {
            if let Some(url) = url {
                check_transfer_url(url).map_err(|why| format!("{prefix}.{field}: {why}"))?;
            }
        }
        Ok(())
    }
}

/// TR-098's `DownloadURL` and `UploadURL` are string(256): a longer URL is refused by the device.
pub const MAX_TRANSFER_URL_CHARS: usize = 256;

/// Whether a device can be given `url` for a TR-143 transfer: HTTP, HTTPS or FTP (the transports
/// TR-143 names), with a host and no credentials, within the data models' length, and without
/// spaces or control characters (a device puts the URL on its request line as it is).
pub fn check_transfer_url(url: &str) -> Result<(), String> {
    if url.chars().count() > MAX_TRANSFER_URL_CHARS {
        return Err(format!("a test URL is at most {MAX_TRANSFER_URL_CHARS} characters"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a test URL has no spaces or control characters".into());
    }
    let (scheme, rest) = url.split_once("://").ok_or("a test URL is http://, https:// or ftp://…")?;
    if !["http", "https", "ftp"].contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(format!("a test URL is http, https or ftp, not {scheme:?}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        // The URL is kept in the run and its task, which everyone who reads the device's
        // diagnostics sees (and an organization's server, every organization below it).
        return Err("a test URL carries no user name or password: the server must take anonymous tests".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(host, _)| host),
        None => authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        return Err("a test URL names a host".into());
    }
    Ok(())
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
    fn a_test_url_is_one_a_device_can_use() {
        for good in ["http://speed.isp.example/10MB.bin", "HTTPS://[2001:db8::1]:8443/up", "ftp://ftp.isp.example/in/"]
        {
            assert_eq!(check_transfer_url(good), Ok(()), "{good}");
        }
        for bad in [
            "speed.isp.example/10MB.bin",
            "file:///etc/passwd",
            "gopher://x/",
            "http:///no-host",
            "http://user@/x",
            "ftp://user:secret@ftp.isp.example/in/",
            "http://[]/x",
            "http://a b/",
            "http://a/\r\nHost: b",
        ] {
            assert!(check_transfer_url(bad).is_err(), "{bad}");
        }
        let long = format!("http://a/{}", "x".repeat(MAX_TRANSFER_URL_CHARS));
        assert!(check_transfer_url(&long).unwrap_err().contains("256"));
    }

    #[test]
    fn a_test_server_names_the_url_that_is_wrong() {
        assert_eq!(SpeedTestServer::of(None, None), None);
        let server = SpeedTestServer::of(None, Some("ftp://x/in/".into())).unwrap();
        assert_eq!(server.check("speed_test_server"), Ok(()));
        let bad = SpeedTestServer { download_url: Some("smb://x/".into()), upload_url: None };
        assert!(bad.check("speed_test_server").unwrap_err().starts_with("speed_test_server.download_url: "));
        let empty = SpeedTestServer { download_url: None, upload_url: None };
        assert!(empty.check("speed_test_server").is_err());
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
