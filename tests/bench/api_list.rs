//! `roost-bench api-list`: the latency of `GET /api/v1/devices` with the filters integrations
//! use, of the dashboard and of adapter usage, per caller (a tenant's key, the platform's token), over a seeded
//! fleet.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

/// The queries timed: what a CRM or NOC screen asks of a fleet.
const QUERIES: &[(&str, &str)] = &[
    ("first page", "devices?limit=100"),
    ("by serial", "devices?serial_number={serial}"),
    ("by software version", "devices?software_version={version}&limit=100"),
    ("by parameter value", "devices?param.InternetGatewayDevice.DeviceInfo.SoftwareVersion={version}&limit=100"),
    ("by parameter prefix", "devices?param_prefix.InternetGatewayDevice.DeviceInfo.SoftwareVersion={prefix}&limit=100"),
    ("online, newest first", "devices?online=true&sort=-last_inform_at&limit=100"),
    ("page 5 of 100", "devices?limit=100&cursor={cursor}"),
    ("dashboard", "dashboard"),
    ("dashboard as CSV", "dashboard?format=csv"),
    ("adapter usage", "adapter-usage"),
];

pub async fn run(http: SocketAddr, callers: &[String], software_version: &str, requests: usize) -> Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    println!("| Caller | Query | Items | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for caller in callers {
        let (label, token) = caller.split_once('=').context("--caller is label=token")?;
        let get = async |query: &str| -> Result<serde_json::Value> {
            let response = client.get(format!("http://{http}/api/v1/{query}")).bearer_auth(token).send().await?;
            ensure!(response.status().is_success(), "{query}: {}", response.status());
            let text = response.text().await?;
            // The CSV dashboard: its device total stands for the items.
            Ok(serde_json::from_str(&text).unwrap_or_else(|_| {
                let total = text.lines().find_map(|l| l.strip_prefix("devices,total,")).unwrap_or_default();
                serde_json::json!({"devices": {"total": total.split(',').next().unwrap_or_default().parse::<i64>().unwrap_or(0)}})
            }))
        };
        // A serial and a cursor five pages in, of this caller's own devices.
        let first = get("devices?limit=1").await?;
        let serial = first["items"][0]["serial_number"].as_str().context("the caller sees no device")?.to_owned();
        let mut cursor = String::new();
        for _ in 0..4 {
            let query = if cursor.is_empty() {
                "devices?limit=100".to_owned()
            } else {
                format!("devices?limit=100&cursor={cursor}")
            };
            let page = get(&query).await?;
            cursor = page["next_cursor"].as_str().unwrap_or_default().to_owned();
        }
        let prefix: String = software_version.chars().take(3).collect();
        for (name, template) in QUERIES {
            let query = template
                .replace("{serial}", &serial)
                .replace("{version}", &urlencode(software_version))
                .replace("{prefix}", &urlencode(&prefix))
                .replace("{cursor}", &cursor);
            let mut times = Vec::with_capacity(requests);
            let mut items = 0;
            for _ in 0..requests {
                let started = Instant::now();
                let page = get(&query).await?;
                times.push(started.elapsed());
                // Devices listed; a dashboard's device total; adapter usage's kinds.
                items = page["items"]
                    .as_array()
                    .or_else(|| page["kinds"].as_array())
                    .map_or_else(|| page["devices"]["total"].as_i64().unwrap_or(0) as usize, Vec::len);
            }
            times.sort();
            let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
            println!("| {label} | {name} | {items} | {:.1} | {:.1} | {:.1} |", at(0.5), at(0.99), at(1.0));
        }
    }
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
