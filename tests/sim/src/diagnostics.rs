//! Diagnostics (ping, traceroute, speed tests) "run" after the session that requested them.
//!
//! No packet leaves the machine: the device fills in plausible results and sets
//! `DiagnosticsState` to the completion value its data model uses, then informs with
//! `8 DIAGNOSTICS COMPLETE`. TR-098's Download/UploadDiagnostics say `Completed` where every
//! other test (and all of TR-181) says `Complete` — an ACS must cope with both.

use crate::rpc::CpeState;
use crate::session::now_string;
use crate::transfer::Measured;
use crate::tree::{DataModelKind, Node};

/// Fills in results for the diagnostics object (e.g. `InternetGatewayDevice.IPPingDiagnostics.`).
/// A speed test that really ran (`measured`) reports what it measured, or the error state of
/// its failure; one that did not gets made-up figures.
pub(crate) fn complete(cpe: &mut CpeState, object: &str, measured: Option<&Result<Measured, String>>) {
    let kind = cpe.tree.kind();
    let get = |cpe: &CpeState, name: &str| cpe.value(&format!("{object}{name}")).map(|(v, _)| v).unwrap_or_default();
    let set = |cpe: &mut CpeState, name: &str, value: &str| {
        cpe.tree.set_value(&format!("{object}{name}"), value);
    };
    let is_transfer_test = object.contains("DownloadDiagnostics") || object.contains("UploadDiagnostics");
    let state = if is_transfer_test && kind == DataModelKind::Tr098 { "Completed" } else { "Complete" };

    if object.contains("Ping") {
        let repetitions = get(cpe, "NumberOfRepetitions").parse::<u32>().unwrap_or(0).max(1).to_string();
        set(cpe, "SuccessCount", &repetitions);
        set(cpe, "FailureCount", "0");
        for (name, value) in [("MinimumResponseTime", "1"), ("AverageResponseTime", "2"), ("MaximumResponseTime", "4")]
        {
            set(cpe, name, value);
        }
        for (name, value) in [
            ("MinimumResponseTimeDetailed", "1000"),
            ("AverageResponseTimeDetailed", "2000"),
            ("MaximumResponseTimeDetailed", "4000"),
        ] {
            set(cpe, name, value);
        }
        set(cpe, "IPAddressUsed", "192.0.2.1");
    } else if object.contains("TraceRoute") {
        let host = get(cpe, "Host");
        let hops = format!("{object}RouteHops.");
        cpe.tree.remove_subtree(&hops);
        cpe.tree.insert(hops.clone(), Node::object(false));
        let hop = format!("{hops}1.");
        cpe.tree.insert(hop.clone(), Node::object(false));
        // TR-098 prefixes hop fields with "Hop"; TR-181 does not.
        let field = |name: &str| match kind {
            DataModelKind::Tr098 => format!("{hop}Hop{name}"),
            DataModelKind::Tr181 => format!("{hop}{name}"),
        };
        let string = roost_cwmp::ValueType::String;
        cpe.tree.insert(field("Host"), Node::parameter(host.clone(), string.clone(), false));
        cpe.tree.insert(field("HostAddress"), Node::parameter("192.0.2.1", string.clone(), false));
        cpe.tree.insert(field("ErrorCode"), Node::parameter("0", roost_cwmp::ValueType::UnsignedInt, false));
        cpe.tree.insert(field("RTTimes"), Node::parameter("1,1,2", string, false));
        set(cpe, "RouteHopsNumberOfEntries", "1");
        set(cpe, "ResponseTime", "2");
    } else if let (true, Some(measured)) = (is_transfer_test, measured) {
        let measured = match measured {
            Ok(measured) => measured,
            Err(error_state) => {
                set(cpe, "DiagnosticsState", error_state);
                return;
            }
        };
        set(cpe, "ROMTime", &measured.request_time);
        set(cpe, "TCPOpenRequestTime", &measured.request_time);
        set(cpe, "TCPOpenResponseTime", &measured.begin);
        set(cpe, "BOMTime", &measured.begin);
        set(cpe, "EOMTime", &measured.end);
        let bytes = measured.bytes.to_string();
        let (test, total) = if object.contains("Download") {
            ("TestBytesReceived", "TotalBytesReceived")
        } else {
            ("TestBytesSent", "TotalBytesSent")
        };
        set(cpe, test, &bytes);
        set(cpe, total, &bytes);
    } else if is_transfer_test {
        let now = now_string();
        for name in ["ROMTime", "BOMTime", "EOMTime", "TCPOpenRequestTime", "TCPOpenResponseTime"] {
            set(cpe, name, &now);
        }
        let length = get(cpe, "TestFileLength");
        let bytes = if length.is_empty() || length == "0" { "1048576".to_owned() } else { length };
        for name in ["TestBytesReceived", "TotalBytesReceived", "TotalBytesSent"] {
            set(cpe, name, &bytes);
        }
    }
    set(cpe, "DiagnosticsState", state);
}
