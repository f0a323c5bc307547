//! The dashboard: the caller's fleet at a glance (devices online, offline, stale and pending;
//! by model, software version and organization; faults of the last day; tasks in flight), as
//! JSON or CSV. Every figure is one indexed query (`store::dashboard`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Query};
use super::{org_slugs, timestamp};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::orgs::{self, Scope};
use crate::store::{dashboard, now_millis};

/// Groups listed per breakdown at most.
const MAX_GROUPS: u64 = 100;
const DAY_MS: i64 = 24 * 3_600_000;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(get_dashboard))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DashboardQuery {
    /// Only this organization and those below it (within the caller's).
    org: Option<String>,
    /// `json` (default) or `csv`: one row per figure (`section`, `key`, `devices`, `online`).
    format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardView {
    pub generated_at: String,
    pub devices: DeviceCountsView,
    /// By manufacturer and product class, the largest first (100 at most).
    pub models: Vec<ModelCount>,
    /// By manufacturer, product class and software version, the largest first (100 at most).
    pub software_versions: Vec<VersionCount>,
    /// By organization.
    pub organizations: Vec<OrgCountView>,
    /// Faults seen in the last 24 hours, by code (a fault that repeats counts once).
    pub faults_last_24h: FaultCounts,
    /// Tasks not done yet, by name.
    pub tasks_in_flight: TaskCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCountsView {
    pub total: i64,
    /// Online as the presence sweep last found (`[health] presence_interval`, 30 s by default);
    /// a device's own `online` is exact.
    pub online: i64,
    pub offline: i64,
    /// Offline for more than an hour (or never informed).
    pub stale: i64,
    /// Devices no organization has claimed; shown to callers who may see them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCount {
    pub manufacturer: String,
    pub product_class: String,
    pub devices: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionCount {
    pub manufacturer: String,
    pub product_class: String,
    pub software_version: String,
    pub devices: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrgCountView {
    pub org: String,
    pub devices: i64,
    pub online: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaultCounts {
    pub total: i64,
    pub by_code: Vec<NamedCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCounts {
    pub total: i64,
    pub by_name: Vec<NamedCount>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NamedCount {
    pub name: String,
    pub count: i64,
}

#[utoipa::path(get, path = "/dashboard", tag = "dashboard", params(DashboardQuery),
    responses((status = 200, description = "The caller's fleet at a glance; `text/csv` with `format=csv`",
        content((DashboardView = "application/json"), (String = "text/csv")))))]
async fn get_dashboard(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<DashboardQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadFleet)?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(ErrorCode::InvalidQuery, format!("format: json or csv, got {other:?}")));
        }
    };
    let (scope, pending_visible) = match &query.org {
        Some(slug) => {
            let org = super::orgs::visible(&app, &caller, slug).await?;
            (Scope::Orgs(orgs::subtree(&app.api_store, org.id).await?), false)
        }
        None => (caller.scope.clone(), caller.role.allows(Permission::ReadPendingDevices)),
    };
    let view = dashboard_of(&app, &scope, pending_visible).await?;
    if csv {
        let headers = [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"dashboard.csv\""),
        ];
        return Ok((headers, to_csv(&view)).into_response());
    }
    Ok(Json(view).into_response())
}

async fn dashboard_of(app: &App, scope: &Scope, pending_visible: bool) -> ApiResult<DashboardView> {
    let store = &app.api_store;
    let now = now_millis();
    let orgs = dashboard::by_org(store, scope).await?;
    let stale = dashboard::stale(store, scope, now - dashboard::STALE_AFTER_MS).await?;
    let versions = dashboard::by_version(store, scope).await?;
    let slugs = org_slugs(app).await?;
    let named = |rows: Vec<(String, i64)>| rows.into_iter().map(|(name, count)| NamedCount { name, count }).collect();
    let faults: Vec<NamedCount> = named(dashboard::faults_since(store, scope, now - DAY_MS).await?);
    let tasks: Vec<NamedCount> = named(dashboard::tasks_in_flight(store, scope).await?);
    let total: i64 = orgs.iter().map(|o| o.devices).sum();
    let online: i64 = orgs.iter().map(|o| o.online).sum();
    let pending = orgs.iter().find(|o| o.org_id.is_none()).map_or(0, |o| o.devices);
    let (models, software_versions) = breakdowns(versions, MAX_GROUPS as usize);
    Ok(DashboardView {
        generated_at: timestamp(now),
        devices: DeviceCountsView {
            total,
            online,
            offline: total - online,
            stale,
            pending: pending_visible.then_some(pending),
        },
        models,
        software_versions,
        organizations: orgs
            .iter()
            .filter_map(|o| {
                let org = slugs.get(&o.org_id?)?.clone();
                Some(OrgCountView { org, devices: o.devices, online: o.online })
            })
            .collect(),
        faults_last_24h: FaultCounts { total: faults.iter().map(|f| f.count).sum(), by_code: faults },
        tasks_in_flight: TaskCounts { total: tasks.iter().map(|t| t.count).sum(), by_name: tasks },
    })
}

/// The models (summed over their versions) and the versions, each the largest first (ties by
/// name), at most `limit` of each.
fn breakdowns(versions: Vec<dashboard::VersionGroup>, limit: usize) -> (Vec<ModelCount>, Vec<VersionCount>) {
    let mut models: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for v in &versions {
        *models.entry((v.manufacturer.clone(), v.product_class.clone())).or_default() += v.devices;
    }
    let mut models: Vec<ModelCount> = models
        .into_iter()
        .map(|((manufacturer, product_class), devices)| ModelCount { manufacturer, product_class, devices })
        .collect();
    // Stable sorts over name-ordered input: ties stay in name order.
    models.sort_by_key(|m| std::cmp::Reverse(m.devices));
    models.truncate(limit);
    let mut versions: Vec<VersionCount> = versions
        .into_iter()
        .map(|v| VersionCount {
            manufacturer: v.manufacturer,
            product_class: v.product_class,
            software_version: v.software_version,
            devices: v.devices,
        })
        .collect();
    versions.sort_by(|a, b| {
        (&a.manufacturer, &a.product_class, &a.software_version).cmp(&(
            &b.manufacturer,
            &b.product_class,
            &b.software_version,
        ))
    });
    versions.sort_by_key(|v| std::cmp::Reverse(v.devices));
    versions.truncate(limit);
    (models, versions)
}

/// The dashboard as CSV: `section,key,devices,online`, one row per figure; a key of several
/// parts (a model, a software version) joins them with ` / `.
fn to_csv(view: &DashboardView) -> String {
    let mut out = String::from("section,key,devices,online\r\n");
    let mut row = |section: &str, key: &str, devices: i64, online: Option<i64>| {
        out.push_str(&format!(
            "{section},{},{devices},{}\r\n",
            csv_field(key),
            online.map(|o| o.to_string()).unwrap_or_default()
        ));
    };
    let d = &view.devices;
    row("devices", "total", d.total, Some(d.online));
    row("devices", "online", d.online, None);
    row("devices", "offline", d.offline, None);
    row("devices", "stale", d.stale, None);
    if let Some(pending) = d.pending {
        row("devices", "pending", pending, None);
    }
    for m in &view.models {
        row("model", &format!("{} / {}", m.manufacturer, m.product_class), m.devices, None);
    }
    for v in &view.software_versions {
        row(
            "software_version",
            &format!("{} / {} / {}", v.manufacturer, v.product_class, v.software_version),
            v.devices,
            None,
        );
    }
    for o in &view.organizations {
        row("organization", &o.org, o.devices, Some(o.online));
    }
    for f in &view.faults_last_24h.by_code {
        row("faults_last_24h", &f.name, f.count, None);
    }
    for t in &view.tasks_in_flight.by_name {
        row("tasks_in_flight", &t.name, t.count, None);
    }
    out
}

/// A CSV field (RFC 4180), defused for spreadsheets: device-reported text (a manufacturer, a
/// software version) that starts like a formula is prefixed with `'` so it is shown, not run.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\r', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_summed_over_their_versions_and_both_listed_largest_first() {
        let group = |m: &str, p: &str, v: &str, devices| dashboard::VersionGroup {
            manufacturer: m.into(),
            product_class: p.into(),
            software_version: v.into(),
            devices,
        };
        let versions = vec![
            group("Huawei", "EG8145V5", "V5R020", 3),
            group("TP-Link", "XX230v", "1.2", 4),
            group("Huawei", "EG8145V5", "V5R021", 2),
            group("ZTE", "F660", "V6", 1),
        ];
        let (models, versions) = breakdowns(versions, 2);
        let models: Vec<(&str, i64)> = models.iter().map(|m| (m.product_class.as_str(), m.devices)).collect();
        assert_eq!(models, [("EG8145V5", 5), ("XX230v", 4)]);
        let versions: Vec<(&str, i64)> = versions.iter().map(|v| (v.software_version.as_str(), v.devices)).collect();
        assert_eq!(versions, [("1.2", 4), ("V5R020", 3)]);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("HG8245H"), "HG8245H");
        assert_eq!(csv_field("V3R017C10S115, beta"), "\"V3R017C10S115, beta\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
    }

    #[test]
    fn the_csv_has_a_row_per_figure() {
        let view = DashboardView {
            generated_at: timestamp(0),
            devices: DeviceCountsView { total: 3, online: 2, offline: 1, stale: 1, pending: None },
            models: vec![ModelCount { manufacturer: "Huawei".into(), product_class: "EG8145V5".into(), devices: 3 }],
            software_versions: vec![],
            organizations: vec![OrgCountView { org: "acme".into(), devices: 3, online: 2 }],
            faults_last_24h: FaultCounts { total: 4, by_code: vec![NamedCount { name: "cwmp.9002".into(), count: 4 }] },
            tasks_in_flight: TaskCounts { total: 0, by_name: vec![] },
        };
        let csv = to_csv(&view);
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            [
                "section,key,devices,online",
                "devices,total,3,2",
                "devices,online,2,",
                "devices,offline,1,",
                "devices,stale,1,",
                "model,Huawei / EG8145V5,3,",
                "organization,acme,3,2",
                "faults_last_24h,cwmp.9002,4,",
            ]
        );
    }
}
