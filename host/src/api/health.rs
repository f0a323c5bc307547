//! A device's health time series: the figures its adapter's `health` intent reads, as raw points
//! (kept `[health] raw_retention`) or in buckets of raw points or hourly roll-ups.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::Caller;
use super::devices::{DeviceId, visible_device};
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{parse_timestamp, timestamp};
use crate::app::App;
use crate::health::{self, HOUR_MS, MAX_POINTS, Metric, SeriesSource};
use crate::store::{metrics, now_millis};

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(device_metrics))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MetricsQuery {
    /// Comma-separated figures (`uptime_seconds`, `cpu_percent`, `memory_total_kib`,
    /// `memory_free_kib`, `wan_bytes_sent`, `wan_bytes_received`, `wifi_clients`,
    /// `optical_rx_dbm`, `optical_tx_dbm`, `cellular_rsrp_dbm`, `cellular_rssi_dbm`,
    /// `cellular_sinr_db`); all when absent.
    names: Option<String>,
    /// RFC 3339; default 24 hours before `to`.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// Bucket length: seconds, or a number with `s`, `m`, `h` or `d`. Under an hour: buckets of
    /// raw points; whole hours: of the hourly roll-ups. Absent: every raw point, or the hourly
    /// roll-ups when the range reaches past the raw points' retention.
    step: Option<String>,
}

/// A device's health series over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsView {
    pub device_id: String,
    pub from: String,
    pub to: String,
    /// The bucket length in seconds; absent for raw points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<i64>,
    /// One series per figure asked for, in the order asked (empty when the device never
    /// reported that figure in the range).
    pub series: Vec<SeriesView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesView {
    pub name: Metric,
    pub points: Vec<PointView>,
}

/// A raw point (`value`) or a bucket (`min`, `avg`, `max` over `count` raw points).
#[derive(Debug, Serialize, ToSchema)]
pub struct PointView {
    /// The point's time, or its bucket's start.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

#[utoipa::path(get, path = "/devices/{id}/metrics", tag = "devices", params(DeviceId, MetricsQuery),
    responses((status = 200, description = "The device's health series over the range", body = MetricsView)))]
async fn device_metrics(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> ApiResult<Json<MetricsView>> {
    let invalid = |(field, message): health::QueryError| {
        ApiError::bad_request(ErrorCode::InvalidQuery, format!("{field}: {message}"))
    };
    let names = health::metrics_named(query.names.as_deref()).map_err(invalid)?;
    let now = now_millis();
    let to = query.to.as_deref().map(|t| parse_timestamp("to", t)).transpose()?.unwrap_or(now);
    let from = query.from.as_deref().map(|t| parse_timestamp("from", t)).transpose()?.unwrap_or(to - 24 * HOUR_MS);
    let series_query =
        health::series_query(from, to, query.step.as_deref(), now, app.config.health.raw_retention).map_err(invalid)?;
    let device = visible_device(&app, &caller, &id).await?;
    // Buckets are bounded by the step `series_query` accepts; raw points by this limit.
    let raw = series_query.source == SeriesSource::Raw;
    let limit = u64::try_from(MAX_POINTS).unwrap_or(u64::MAX);
    let mut series = Vec::with_capacity(names.len());
    for name in names {
        let rows = metrics::series(&app.api_store, device.id, name, &series_query, limit + 1).await?;
        if raw && rows.len() as u64 > limit {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("step: more than {MAX_POINTS} raw points of {}: pass a step or a shorter range", name.name()),
            ));
        }
        let points = rows
            .iter()
            .map(|p| PointView {
                at: timestamp(p.at),
                value: raw.then_some(p.avg),
                min: (!raw).then_some(p.min),
                avg: (!raw).then_some(p.avg),
                max: (!raw).then_some(p.max),
                count: (!raw).then_some(p.count),
            })
            .collect();
        series.push(SeriesView { name, points });
    }
    let step_seconds = match series_query.source {
        SeriesSource::Raw => None,
        SeriesSource::RawBuckets(step) | SeriesSource::Hourly(step) => Some(step / 1000),
    };
    Ok(Json(MetricsView {
        device_id: device.device_id,
        from: timestamp(from),
        to: timestamp(to),
        step_seconds,
        series,
    }))
}
