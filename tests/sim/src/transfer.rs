//! File transfers the ACS orders with Download and Upload, done for real over HTTP.
//!
//! Credentials from the RPC are sent up front as Basic (what most firmware does); a Digest
//! challenge is answered once. The result becomes the TransferComplete the device keeps
//! sending until the ACS acknowledges it.

use std::fmt::Write;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use roost_cwmp::fault::cpe_codes;
use roost_cwmp::{DeviceIdStruct, Download, TransferComplete, TransferFault, Upload};

use crate::auth::{Challenge, basic_authorization};
use crate::rpc::{CpeState, is_secret};
use crate::session::now_string;

/// A finished transfer, as TransferComplete reports it.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub complete: TransferComplete,
    /// The first bytes of what was downloaded (a firmware image's header).
    pub head: Vec<u8>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.complete.fault.code == 0
    }
}

/// How a simulated firmware image starts: real images carry their version in a header, and so
/// do these (`ROOSTSIM-FIRMWARE <version>` and a newline), so a version with spaces and dots
/// (TP-Link's `0.6.0 3.0.0 v6066.0 Build 220630 Rel.56119n`) installs as it is.
pub const FIRMWARE_MAGIC: &str = "ROOSTSIM-FIRMWARE ";

/// The bytes kept of a download's start, to read a header from.
const HEAD_BYTES: usize = 256;

/// A simulated firmware image of `size` bytes (at least its header) that installs `version`.
pub fn firmware_image(version: &str, size: usize) -> Vec<u8> {
    let mut image = format!("{FIRMWARE_MAGIC}{version}\n").into_bytes();
    let header = image.len();
    image.extend((header..size.max(header)).map(|i| (i % 251) as u8));
    image
}

/// The new `SoftwareVersion` a successful firmware download installs: the version its header
/// names, else the file name from the URL without its extension (`…/fw-2.1.0.bin` →
/// `fw-2.1.0`).
pub(crate) fn firmware_version(download: &Download, head: &[u8]) -> Option<String> {
    if !download.file_type.trim().starts_with("1 ") {
        return None;
    }
    if let Some(rest) = head.strip_prefix(FIRMWARE_MAGIC.as_bytes())
        && let Some(end) = rest.iter().position(|b| *b == b'\n')
        && let Ok(version) = std::str::from_utf8(&rest[..end])
    {
        return Some(version.to_owned());
    }
    let url = reqwest::Url::parse(&download.url).ok()?;
    let name = url.path_segments()?.rev().find(|s| !s.is_empty())?.to_owned();
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    };
    Some(stem)
}

/// How a simulated device fails a firmware upgrade: the bad devices of a staged rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareFailure {
    /// Only images installing this version fail; any other installs (so a rollback works).
    pub version: String,
    pub mode: FirmwareFailureMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareFailureMode {
    /// The image fails its check after the download: TransferComplete with fault 9010, no
    /// reboot.
    TransferFault,
    /// The image is flashed and the device reboots, but its bootloader falls back to the old
    /// bank: TransferComplete succeeds and SoftwareVersion stays.
    BootsOldImage,
    /// It boots the new version, but its WAN connections stay down.
    WanDown,
}

/// What a finished firmware download does to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Install {
    /// The version it runs after its reboot (`None`: the one it had).
    pub version: Option<String>,
    pub wan_down: bool,
}

/// Applies a fleet's failure mode to a download: the fault its TransferComplete reports, if
/// any, and what it installs (`None`: nothing, and no reboot).
pub(crate) fn install(
    download: &Download,
    outcome: &mut Outcome,
    failure: Option<&FirmwareFailure>,
) -> Option<Install> {
    if !outcome.succeeded() {
        return None;
    }
    let version = firmware_version(download, &outcome.head)?;
    match failure.filter(|f| f.version == version).map(|f| f.mode) {
        Some(FirmwareFailureMode::TransferFault) => {
            outcome.complete.fault =
                TransferFault { code: 9010, string: "Download failure: the image failed its signature check".into() };
            None
        }
        Some(FirmwareFailureMode::BootsOldImage) => Some(Install { version: None, wan_down: false }),
        Some(FirmwareFailureMode::WanDown) => Some(Install { version: Some(version), wan_down: true }),
        None => Some(Install { version: Some(version), wan_down: false }),
    }
}

/// The WAN connection status parameters of a tree and the value each reads when up and down:
/// TR-098's connections; TR-181's PPP interfaces and the IP interfaces over them (`lower_layers`
/// gives an IP interface's `LowerLayers`).
pub(crate) fn wan_statuses<'a>(
    paths: impl Iterator<Item = &'a str>,
    lower_layers: impl Fn(&str) -> Option<String>,
) -> Vec<(String, &'static str, &'static str)> {
    paths
        .filter_map(|path| {
            let depth = path.matches('.').count();
            if path.starts_with("InternetGatewayDevice.WANDevice.") && path.ends_with(".ConnectionStatus") {
                Some((path.to_owned(), "Connected", "Disconnected"))
            } else if path.starts_with("Device.PPP.Interface.") && path.ends_with(".Status") && depth == 4 {
                Some((path.to_owned(), "Up", "Down"))
            } else if path.starts_with("Device.IP.Interface.") && path.ends_with(".Status") && depth == 4 {
                let interface = path.strip_suffix(".Status")?;
                lower_layers(&format!("{interface}.LowerLayers"))
                    .filter(|lower| lower.starts_with("Device.PPP."))
                    .map(|_| (path.to_owned(), "Up", "Down"))
            } else {
                None
            }
        })
        .collect()
}

enum Method {
    Get,
    Put(Vec<u8>),
}

struct Fetched {
    status: u16,
    bytes: u64,
    head: Vec<u8>,
}

/// One HTTP transfer with at most one authentication retry.
async fn transfer(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    username: &str,
    password: &str,
    timeout: Duration,
) -> Result<Fetched, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    let mut digest_uri = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        digest_uri.push('?');
        digest_uri.push_str(query);
    }
    let mut authorization = (!username.is_empty()).then(|| basic_authorization(username, password));
    let mut challenged = false;
    loop {
        let mut request = match &method {
            Method::Get => client.get(parsed.clone()),
            Method::Put(body) => {
                client.put(parsed.clone()).header(CONTENT_TYPE, "application/octet-stream").body(body.clone())
            }
        };
        request = request.timeout(timeout);
        if let Some(value) = &authorization {
            request = request.header(AUTHORIZATION, value);
        }
        let mut response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        if status == 401 && !challenged {
            let offered =
                Challenge::select(response.headers().get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()));
            if let Some(mut challenge) = offered {
                challenged = true;
                let verb = if matches!(method, Method::Get) { "GET" } else { "PUT" };
                authorization = Some(challenge.authorization(verb, &digest_uri, username, password));
                continue;
            }
        }
        // Counted as it streams: firmware images are not kept in memory.
        let mut bytes = 0u64;
        let mut head = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            bytes += chunk.len() as u64;
            let keep = HEAD_BYTES.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..keep]);
        }
        return Ok(Fetched { status, bytes, head });
    }
}

fn failed(code: u32, string: String) -> TransferFault {
    TransferFault { code, string }
}

/// Downloads the file and judges the result as firmware would.
pub(crate) async fn download(client: &reqwest::Client, download: &Download, timeout: Duration) -> Outcome {
    let start_time = now_string();
    let result = transfer(client, Method::Get, &download.url, &download.username, &download.password, timeout).await;
    let head = result.as_ref().map(|f| f.head.clone()).unwrap_or_default();
    let fault = match result {
        Err(error) => failed(cpe_codes::DOWNLOAD_FAILURE, format!("Download failure: {error}")),
        Ok(f) if f.status == 401 || f.status == 403 => failed(
            cpe_codes::FILE_TRANSFER_AUTH_FAILURE,
            format!("File transfer server authentication failure: HTTP {}", f.status),
        ),
        Ok(f) if !(200..300).contains(&f.status) => {
            failed(cpe_codes::DOWNLOAD_FAILURE, format!("Download failure: HTTP {}", f.status))
        }
        Ok(f) if download.file_size > 0 && f.bytes != download.file_size => failed(
            cpe_codes::DOWNLOAD_FAILURE,
            format!("Download failure: got {} bytes, FileSize says {}", f.bytes, download.file_size),
        ),
        Ok(_) => TransferFault::default(),
    };
    Outcome {
        complete: TransferComplete {
            command_key: download.command_key.clone(),
            fault,
            start_time,
            complete_time: now_string(),
        },
        head,
    }
}

/// Uploads a generated file.
pub(crate) async fn upload(client: &reqwest::Client, upload: &Upload, file: Vec<u8>, timeout: Duration) -> Outcome {
    let start_time = now_string();
    let result = transfer(client, Method::Put(file), &upload.url, &upload.username, &upload.password, timeout).await;
    let fault = match result {
        Err(error) => failed(cpe_codes::UPLOAD_FAILURE, format!("Upload failure: {error}")),
        Ok(f) if f.status == 401 || f.status == 403 => failed(
            cpe_codes::FILE_TRANSFER_AUTH_FAILURE,
            format!("File transfer server authentication failure: HTTP {}", f.status),
        ),
        Ok(f) if !(200..300).contains(&f.status) => {
            failed(cpe_codes::UPLOAD_FAILURE, format!("Upload failure: HTTP {}", f.status))
        }
        Ok(_) => TransferFault::default(),
    };
    Outcome {
        complete: TransferComplete {
            command_key: upload.command_key.clone(),
            fault,
            start_time,
            complete_time: now_string(),
        },
        head: Vec::new(),
    }
}

/// The file an Upload sends: a log for the log file types, else a configuration backup of
/// every writable parameter (secrets left out, as vendors' exports do).
pub(crate) fn upload_file(cpe: &CpeState, identity: &DeviceIdStruct, file_type: &str) -> Vec<u8> {
    let mut out = String::new();
    if file_type.contains("Log") {
        let uptime = cpe.value(&format!("{}DeviceInfo.UpTime", cpe.tree.root())).map(|(v, _)| v).unwrap_or_default();
        let _ = writeln!(out, "{} [Info] roost-sim {} up {uptime} s", now_string(), identity.serial_number);
        let _ = writeln!(out, "{} [Info] TR-069 upload requested ({file_type})", now_string());
        return out.into_bytes();
    }
    let _ = writeln!(
        out,
        "<Config oui=\"{}\" productClass=\"{}\" serialNumber=\"{}\">",
        xml_escape(&identity.oui),
        xml_escape(&identity.product_class),
        xml_escape(&identity.serial_number)
    );
    for (path, node) in cpe.tree.walk("") {
        if node.object || !node.writable || is_secret(path, &node.value_type) {
            continue;
        }
        let _ = writeln!(
            out,
            "  <Parameter name=\"{}\" type=\"{}\">{}</Parameter>",
            xml_escape(path),
            node.value_type,
            xml_escape(&node.value)
        );
    }
    out.push_str("</Config>\n");
    out.into_bytes()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn a_firmware_failure_hits_only_the_version_it_names() {
        let download = |name: &str| Download {
            url: format!("http://acs/files/tok/{name}"),
            file_type: "1 Firmware Upgrade Image".into(),
            ..Download::default()
        };
        let ok = || Outcome { complete: TransferComplete::default(), head: Vec::new() };
        let failure = |mode| FirmwareFailure { version: "V2".into(), mode };
        let mut outcome = ok();
        let fault = failure(FirmwareFailureMode::TransferFault);
        assert_eq!(install(&download("V2.bin"), &mut outcome, Some(&fault)), None);
        assert_eq!(outcome.complete.fault.code, 9010);
        // The image of the version it had installs: a rollback works.
        let mut outcome = ok();
        let back = install(&download("V1.bin"), &mut outcome, Some(&fault));
        assert_eq!(
            (back, outcome.complete.fault.code),
            (Some(Install { version: Some("V1".into()), wan_down: false }), 0)
        );
        let old = failure(FirmwareFailureMode::BootsOldImage);
        assert_eq!(
            install(&download("V2.bin"), &mut ok(), Some(&old)),
            Some(Install { version: None, wan_down: false })
        );
        let wan = failure(FirmwareFailureMode::WanDown);
        assert_eq!(
            install(&download("V2.bin"), &mut ok(), Some(&wan)),
            Some(Install { version: Some("V2".into()), wan_down: true })
        );
        // A failed download installs nothing whatever the mode.
        let mut failed = ok();
        failed.complete.fault.code = 9010;
        assert_eq!(install(&download("V2.bin"), &mut failed, None), None);
    }

    #[test]
    fn firmware_version_is_the_file_name_without_extension() {
        let d = |url: &str, file_type: &str| Download {
            url: url.into(),
            file_type: file_type.into(),
            ..Download::default()
        };
        assert_eq!(
            firmware_version(&d("http://h/files/EG8145V5-V5R021.bin", "1 Firmware Upgrade Image"), &[]).as_deref(),
            Some("EG8145V5-V5R021")
        );
        assert_eq!(
            firmware_version(&d("http://h/fw-2.1.0.img?x=1", "1 Firmware Upgrade Image"), &[]).as_deref(),
            Some("fw-2.1.0")
        );
        assert_eq!(firmware_version(&d("http://h/fw.bin", "3 Vendor Configuration File"), &[]), None);
        // A header names the version whatever the URL says.
        let tp_link = "0.6.0 3.0.0 v6066.0 Build 220630 Rel.56119n";
        let image = firmware_image(tp_link, 1000);
        assert_eq!(image.len(), 1000);
        let url = d("http://h/files/tok/fw.bin", "1 Firmware Upgrade Image");
        assert_eq!(firmware_version(&url, &image[..HEAD_BYTES]).as_deref(), Some(tp_link));
    }
}

/// What a TR-143 speed test measured: when its payload began and ended (RFC 3339 with
/// microseconds, as TR-143 asks) and the payload bytes moved.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub request_time: String,
    pub begin: String,
    pub end: String,
    pub bytes: u64,
}

/// The largest upload test the simulator makes up (it holds the payload in memory).
const MAX_UPLOAD_TEST: u64 = 256 * 1024 * 1024;

fn precise_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A TR-143 download test: fetches the URL, counting what arrives. `Err`: the
/// `DiagnosticsState` the failure is reported with.
pub(crate) async fn speed_download(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Measured, String> {
    let request_time = precise_now();
    let run = async {
        let mut response = client.get(url).send().await.map_err(|_| "Error_InitConnectionFailed".to_owned())?;
        if !response.status().is_success() {
            return Err("Error_NoResponse".to_owned());
        }
        let mut begin = None;
        let mut bytes = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(|_| "Error_TransferFailed".to_owned())? {
            begin.get_or_insert_with(precise_now);
            bytes += chunk.len() as u64;
        }
        let end = precise_now();
        Ok(Measured { request_time: request_time.clone(), begin: begin.unwrap_or_else(|| end.clone()), end, bytes })
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| "Error_Timeout".to_owned())?
}

/// A TR-143 upload test: sends `length` made-up bytes to the URL with a PUT.
pub(crate) async fn speed_upload(
    client: &reqwest::Client,
    url: &str,
    length: u64,
    timeout: Duration,
) -> Result<Measured, String> {
    if length > MAX_UPLOAD_TEST {
        return Err("Error_Other".to_owned());
    }
    let payload = vec![0xa5u8; usize::try_from(length).unwrap_or(0)];
    let request_time = precise_now();
    let run = async {
        let begin = precise_now();
        let response =
            client.put(url).body(payload).send().await.map_err(|_| "Error_InitConnectionFailed".to_owned())?;
        if !response.status().is_success() {
            return Err("Error_NoResponse".to_owned());
        }
        let end = precise_now();
        Ok(Measured { request_time: request_time.clone(), begin, end, bytes: length })
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| "Error_Timeout".to_owned())?
}
