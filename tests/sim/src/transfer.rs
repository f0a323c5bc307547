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
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.complete.fault.code == 0
    }
}

/// The new `SoftwareVersion` a successful firmware download installs: the file name from the
/// URL without its extension (`…/fw-2.1.0.bin` → `fw-2.1.0`).
pub(crate) fn firmware_version(download: &Download) -> Option<String> {
    if !download.file_type.trim().starts_with("1 ") {
        return None;
    }
    let url = reqwest::Url::parse(&download.url).ok()?;
    let name = url.path_segments()?.rev().find(|s| !s.is_empty())?.to_owned();
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    };
    Some(stem)
}

enum Method {
    Get,
    Put(Vec<u8>),
}

struct Fetched {
    status: u16,
    bytes: u64,
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
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            bytes += chunk.len() as u64;
        }
        return Ok(Fetched { status, bytes });
    }
}

fn failed(code: u32, string: String) -> TransferFault {
    TransferFault { code, string }
}

/// Downloads the file and judges the result as firmware would.
pub(crate) async fn download(client: &reqwest::Client, download: &Download, timeout: Duration) -> Outcome {
    let start_time = now_string();
    let result = transfer(client, Method::Get, &download.url, &download.username, &download.password, timeout).await;
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
    fn firmware_version_is_the_file_name_without_extension() {
        let d = |url: &str, file_type: &str| Download {
            url: url.into(),
            file_type: file_type.into(),
            ..Download::default()
        };
        assert_eq!(
            firmware_version(&d("http://h/files/EG8145V5-V5R021.bin", "1 Firmware Upgrade Image")).as_deref(),
            Some("EG8145V5-V5R021")
        );
        assert_eq!(
            firmware_version(&d("http://h/fw-2.1.0.img?x=1", "1 Firmware Upgrade Image")).as_deref(),
            Some("fw-2.1.0")
        );
        assert_eq!(firmware_version(&d("http://h/fw.bin", "3 Vendor Configuration File")), None);
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
