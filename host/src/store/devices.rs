//! Devices: identity, the columns the Inform keeps current, and the Inform itself.

use anyhow::{Context, Result};
use roost_cwmp::{DeviceIdStruct, EventStruct, ParameterValue};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::orgs::Scope;
use super::{Store, parameters, statement};

#[derive(Debug, Clone, FromQueryResult)]
pub struct Device {
    pub id: i64,
    pub device_id: String,
    pub org_id: Option<i64>,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub software_version: String,
    pub hardware_version: String,
    pub data_model: String,
    pub cwmp_version: String,
    pub remote_address: String,
    pub parameter_key: String,
    pub connection_request_url: String,
    pub connection_request_username: String,
    /// Sealed with the master key.
    pub connection_request_password: Option<Vec<u8>>,
    pub last_events: String,
    pub registered_at: i64,
    pub last_inform_at: Option<i64>,
    pub last_boot_at: Option<i64>,
    pub last_bootstrap_at: Option<i64>,
    pub discovered_at: Option<i64>,
    pub connection_request_at: Option<i64>,
    pub connection_request_outcome: String,
}

/// What one Inform tells the store.
#[derive(Debug)]
pub struct InformRecord<'a> {
    pub device_id: &'a str,
    pub identity: &'a DeviceIdStruct,
    /// Where a device seen for the first time belongs (its onboarding URL or credential).
    pub onboarding_org: Option<i64>,
    pub events: &'a [EventStruct],
    pub parameters: &'a [ParameterValue],
    pub remote_address: &'a str,
    pub cwmp_version: &'a str,
    pub now: i64,
}

#[derive(Debug)]
pub struct InformOutcome {
    pub device: Device,
    pub created: bool,
    pub changed_parameters: usize,
}

pub fn has_event(events: &[EventStruct], code: &str) -> bool {
    events.iter().any(|e| e.code.trim().eq_ignore_ascii_case(code))
}

/// The value of the first Inform parameter whose path ends with `suffix` (TR-098 and TR-181
/// differ only in the root).
fn inform_value<'a>(parameters: &'a [ParameterValue], suffix: &str) -> Option<&'a str> {
    parameters.iter().find(|p| p.name.ends_with(suffix)).map(|p| p.value.as_str())
}

fn data_model_of(parameters: &[ParameterValue]) -> &'static str {
    match parameters.first().map(|p| p.name.as_str()) {
        Some(name) if name.starts_with("InternetGatewayDevice.") => "tr098",
        Some(name) if name.starts_with("Device.") => "tr181",
        _ => "",
    }
}

/// Records an Inform in one transaction: registers a new device, updates the columns the Inform
/// carries, writes only the parameters whose values changed, and keeps notable events.
///
/// A `0 BOOTSTRAP` means the CPE forgot what the ACS told it (TR-069 §3.7.1.5): the device is
/// marked for rediscovery and new connection-request credentials.
pub async fn record_inform(store: &Store, record: &InformRecord<'_>) -> Result<InformOutcome> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the Inform transaction")?;
    let backend = txn.get_database_backend();

    let existing = Device::find_by_statement(statement(
        backend,
        "SELECT * FROM devices WHERE device_id = ?",
        [record.device_id.into()],
    ))
    .one(&txn)
    .await
    .context("loading device")?;
    let created = existing.is_none();
    let device_pk = match &existing {
        Some(device) => device.id,
        None => {
            let id = &record.identity;
            let row = txn
                .query_one_raw(statement(
                    backend,
                    "INSERT INTO devices (device_id, org_id, oui, product_class, serial_number, manufacturer, registered_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [
                        record.device_id.into(),
                        record.onboarding_org.into(),
                        id.oui.as_str().into(),
                        id.product_class.as_str().into(),
                        id.serial_number.as_str().into(),
                        id.manufacturer.as_str().into(),
                        record.now.into(),
                    ],
                ))
                .await
                .context("registering device")?
                .context("no id returned for the new device")?;
            row.try_get_by_index::<i64>(0).context("new device id")?
        }
    };

    let bootstrap = has_event(record.events, "0 BOOTSTRAP");
    let boot = has_event(record.events, "1 BOOT");
    let codes: Vec<&str> = record.events.iter().map(|e| e.code.as_str()).collect();
    let params = record.parameters;
    let current = existing.as_ref();
    let keep = |suffix: &str, old: Option<&String>| -> String {
        inform_value(params, suffix).map(str::to_owned).or_else(|| old.cloned()).unwrap_or_default()
    };
    let data_model = match data_model_of(params) {
        "" => current.map(|d| d.data_model.clone()).unwrap_or_default(),
        model => model.to_owned(),
    };
    let mut sql = String::from(
        "UPDATE devices SET manufacturer = ?, software_version = ?, hardware_version = ?, data_model = ?,
         cwmp_version = ?, remote_address = ?, parameter_key = ?, connection_request_url = ?,
         last_events = ?, last_inform_at = ?",
    );
    let mut args: Vec<Value> = vec![
        record.identity.manufacturer.as_str().into(),
        keep(".DeviceInfo.SoftwareVersion", current.map(|d| &d.software_version)).into(),
        keep(".DeviceInfo.HardwareVersion", current.map(|d| &d.hardware_version)).into(),
        data_model.into(),
        record.cwmp_version.into(),
        record.remote_address.into(),
        keep(".ManagementServer.ParameterKey", current.map(|d| &d.parameter_key)).into(),
        keep(".ManagementServer.ConnectionRequestURL", current.map(|d| &d.connection_request_url)).into(),
        codes.join(",").into(),
        record.now.into(),
    ];
    if boot || bootstrap {
        sql.push_str(", last_boot_at = ?");
        args.push(record.now.into());
    }
    if bootstrap {
        sql.push_str(
            ", last_bootstrap_at = ?, discovered_at = NULL, connection_request_username = '', connection_request_password = NULL",
        );
        args.push(record.now.into());
    }
    sql.push_str(" WHERE id = ? RETURNING *");
    args.push(device_pk.into());
    let device = Device::find_by_statement(statement(backend, &sql, args))
        .one(&txn)
        .await
        .context("updating device")?
        .context("device vanished during its Inform")?;

    let changed: Vec<ParameterValue> = if created {
        params.to_vec()
    } else {
        let paths: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let stored = parameters::values_of(&txn, device_pk, &paths).await?;
        params
            .iter()
            .filter(|p| match stored.get(&p.name) {
                Some((value, value_type)) => {
                    value.as_deref() != Some(p.value.as_str()) || value_type != p.value_type.as_str()
                }
                None => true,
            })
            .cloned()
            .collect()
    };
    parameters::upsert_values(&txn, device_pk, &changed, record.now).await?;

    let only_periodic = record.events.iter().all(|e| e.code.trim().eq_ignore_ascii_case("2 PERIODIC"));
    if !only_periodic {
        let keys: Vec<&str> = record.events.iter().map(|e| e.command_key.as_str()).collect();
        txn.execute_raw(statement(
            backend,
            "INSERT INTO device_events (device_id, org_id, codes, command_keys, received_at) VALUES (?, ?, ?, ?, ?)",
            [device_pk.into(), device.org_id.into(), codes.join(",").into(), keys.join(",").into(), record.now.into()],
        ))
        .await
        .context("storing Inform events")?;
    }
    txn.commit().await.context("committing the Inform")?;
    Ok(InformOutcome { device, created, changed_parameters: changed.len() })
}

pub async fn by_device_id(store: &Store, device_id: &str) -> Result<Option<Device>> {
    let stmt = store.statement("SELECT * FROM devices WHERE device_id = ?", [device_id.into()]);
    Device::find_by_statement(stmt).one(store.db()).await.context("loading device")
}

/// A device the caller's scope may see.
pub async fn visible(store: &Store, scope: &Scope, device_id: &str) -> Result<Option<Device>> {
    Ok(by_device_id(store, device_id).await?.filter(|d| scope.contains(d.org_id)))
}

pub async fn by_pk(store: &Store, pk: i64) -> Result<Option<Device>> {
    let stmt = store.statement("SELECT * FROM devices WHERE id = ?", [pk.into()]);
    Device::find_by_statement(stmt).one(store.db()).await.context("loading device")
}

pub async fn set_connection_request_credentials(
    store: &Store,
    device_pk: i64,
    username: &str,
    sealed_password: Vec<u8>,
) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET connection_request_username = ?, connection_request_password = ? WHERE id = ?",
            [username.into(), sealed_password.into(), device_pk.into()],
        ))
        .await
        .context("storing connection-request credentials")?;
    Ok(())
}

pub async fn mark_discovered(store: &Store, device_pk: i64, at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(
            store.statement("UPDATE devices SET discovered_at = ? WHERE id = ?", [at.into(), device_pk.into()]),
        )
        .await
        .context("marking device discovered")?;
    Ok(())
}

pub async fn record_connection_request(store: &Store, device_pk: i64, at: i64, outcome: &str) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET connection_request_at = ?, connection_request_outcome = ? WHERE id = ?",
            [at.into(), outcome.into(), device_pk.into()],
        ))
        .await
        .context("recording connection request")?;
    Ok(())
}

pub async fn delete(store: &Store, device_pk: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement("DELETE FROM devices WHERE id = ?", [device_pk.into()]))
        .await
        .context("deleting device")?;
    Ok(())
}

/// Filters of `GET /api/v1/devices`.
#[derive(Debug, Default, Clone)]
pub struct DeviceFilter {
    pub serial_number: Option<String>,
    pub oui: Option<String>,
    pub product_class: Option<String>,
    pub software_version: Option<String>,
    pub last_inform_after: Option<i64>,
    pub last_inform_before: Option<i64>,
    pub tag: Option<String>,
}

/// A page of devices in id order after `after_pk`.
pub async fn list(
    store: &Store,
    scope: &Scope,
    filter: &DeviceFilter,
    after_pk: Option<i64>,
    limit: u64,
) -> Result<Vec<Device>> {
    let (scope_sql, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM devices WHERE {scope_sql}");
    let mut add = |clause: &str, value: Value| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(v) = &filter.serial_number {
        add("serial_number = ?", v.as_str().into());
    }
    if let Some(v) = &filter.oui {
        add("oui = ?", v.as_str().into());
    }
    if let Some(v) = &filter.product_class {
        add("product_class = ?", v.as_str().into());
    }
    if let Some(v) = &filter.software_version {
        add("software_version = ?", v.as_str().into());
    }
    if let Some(v) = filter.last_inform_after {
        add("last_inform_at >= ?", v.into());
    }
    if let Some(v) = filter.last_inform_before {
        add("last_inform_at < ?", v.into());
    }
    if let Some(v) = &filter.tag {
        add("id IN (SELECT device_id FROM device_tags WHERE tag = ?)", v.as_str().into());
    }
    if let Some(v) = after_pk {
        add("id > ?", v.into());
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push((limit as i64).into());
    Device::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing devices")
}

pub async fn tags(store: &Store, device_pk: i64) -> Result<Vec<String>> {
    let rows = store
        .db()
        .query_all_raw(
            store.statement("SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag", [device_pk.into()]),
        )
        .await
        .context("loading tags")?;
    rows.iter().map(|row| row.try_get_by_index::<String>(0).context("tag")).collect()
}

pub async fn add_tag(store: &Store, device_pk: i64, tag: &str) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "INSERT INTO device_tags (device_id, tag) VALUES (?, ?) ON CONFLICT (device_id, tag) DO NOTHING",
            [device_pk.into(), tag.into()],
        ))
        .await
        .context("adding tag")?;
    Ok(())
}

pub async fn remove_tag(store: &Store, device_pk: i64, tag: &str) -> Result<bool> {
    let _guard = store.write_guard().await;
    let result = store
        .db()
        .execute_raw(
            store.statement("DELETE FROM device_tags WHERE device_id = ? AND tag = ?", [device_pk.into(), tag.into()]),
        )
        .await
        .context("removing tag")?;
    Ok(result.rows_affected() > 0)
}

#[derive(Debug, Clone, FromQueryResult, serde::Serialize)]
pub struct DeviceEvent {
    pub id: i64,
    pub codes: String,
    pub command_keys: String,
    pub received_at: i64,
}

pub async fn recent_events(store: &Store, device_pk: i64, limit: u64) -> Result<Vec<DeviceEvent>> {
    let stmt = store.statement(
        "SELECT id, codes, command_keys, received_at FROM device_events WHERE device_id = ? ORDER BY id DESC LIMIT ?",
        [device_pk.into(), (limit as i64).into()],
    );
    DeviceEvent::find_by_statement(stmt).all(store.db()).await.context("loading events")
}
