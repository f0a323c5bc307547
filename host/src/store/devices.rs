//! Devices: identity, the columns the Inform keeps current, and the Inform itself.

use anyhow::{Context, Result};
use roost_cwmp::{DataModel, DeviceIdStruct, EventStruct, ParameterValue};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::DevicePk;
use super::events::EventType;
use super::orgs::Scope;
use super::{Store, parameters, statement};

pub mod filter;
pub mod group_commit;
mod listing;
pub mod presence;

pub use listing::{
    After, DeviceFilter, DeviceKind, DeviceQuery, OnlineAt, ParameterMatch, Sort, SortKey, SortValue, find, kinds, list,
};

#[derive(Debug, Clone, FromQueryResult)]
pub struct Device {
    pub id: DevicePk,
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
    pub inform_digest: String,
    pub registered_at: i64,
    pub last_inform_at: Option<i64>,
    pub last_boot_at: Option<i64>,
    pub last_bootstrap_at: Option<i64>,
    pub discovered_at: Option<i64>,
    pub connection_request_at: Option<i64>,
    pub connection_request_outcome: String,
    /// Moves with every write to the device's parameter rows: see `provisioning::reads`.
    pub tree_rev: i64,
    /// When a session's provisioning last settled for the device; `None` while Roost has no
    /// record of having configured it (new, reset by Roost, or `0 BOOTSTRAP`), whatever events
    /// the device sends.
    pub configured_at: Option<i64>,
    /// The GetParameterValues batch this device's firmware survives during discovery (0: the
    /// configured default).
    pub discovery_batch: i64,
    /// Sessions in a row that died during discovery.
    pub discovery_failures: i64,
    /// When the device first authenticated with the CWMP credential Roost made for it; from
    /// then on no onboarding credential opens its sessions.
    pub own_credential_at: Option<i64>,
    /// The subscriber the device serves (`store::subscribers`).
    pub subscriber_id: Option<i64>,
    /// Its `ManagementServer.PeriodicInformInterval`, as last stored.
    pub inform_interval_s: Option<i64>,
    /// When it counts as offline unless it informs again.
    pub offline_at: Option<i64>,
    /// `host:port` where UDP connection requests reach it through its NAT, from its last signed
    /// STUN Binding Request (TR-111); `''` when none.
    pub udp_connection_request_address: String,
    /// When a signed Binding Request last recorded that address.
    pub udp_binding_at: Option<i64>,
}

impl Device {
    /// Whether the device is online at `now`: it informed within the grace its periodic
    /// interval earns (`[health]`).
    pub fn is_online(&self, now: i64) -> bool {
        self.offline_at.is_some_and(|t| t > now)
    }

    /// Whether Roost has configured this device (see [`Device::configured_at`]).
    pub fn is_configured(&self) -> bool {
        self.configured_at.is_some()
    }

    /// The data model its Inform showed; `None` when it named neither root.
    pub fn model(&self) -> Option<DataModel> {
        DataModel::from_name(&self.data_model)
    }
}

/// What one Inform tells the store.
#[derive(Debug)]
pub struct InformRecord<'a> {
    pub device_id: &'a str,
    pub identity: &'a DeviceIdStruct,
    /// Where a device seen for the first time belongs, when its session says (its onboarding
    /// URL or Host, or its credential); else a pre-registration of its serial decides.
    pub onboarding: Option<Onboarding>,
    pub events: &'a [EventStruct],
    pub parameters: &'a [ParameterValue],
    pub remote_address: &'a str,
    pub cwmp_version: &'a str,
    pub now: i64,
}

/// The organization a new device joins, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Onboarding {
    pub org_id: i64,
    pub via: OnboardingVia,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnboardingVia {
    /// `/cwmp/{org-slug}`.
    Url,
    /// The organization's own host name (`organizations.cwmp_host`).
    Host,
    /// An onboarding credential of the organization.
    Credential,
    /// A serial the organization pre-registered.
    Preregistration,
}

#[derive(Debug)]
pub struct InformOutcome {
    pub device: Device,
    pub created: bool,
    pub changed_parameters: usize,
    /// Whether tasks are queued for the device (so a session with nothing else to do can end
    /// without asking the database again).
    pub has_queued_tasks: bool,
}

pub fn has_event(events: &[EventStruct], code: &str) -> bool {
    events.iter().any(|e| e.code.trim().eq_ignore_ascii_case(code))
}

/// The value of the first Inform parameter whose path ends with `suffix` (TR-098 and TR-181
/// differ only in the root).
fn inform_value<'a>(parameters: &'a [ParameterValue], suffix: &str) -> Option<&'a str> {
    parameters.iter().find(|p| p.name.ends_with(suffix)).map(|p| p.value.as_str())
}

/// The stored name of the data model an Inform's parameters show (`""` for neither).
fn data_model_of(parameters: &[ParameterValue]) -> &'static str {
    parameters.first().and_then(|p| DataModel::of_path(&p.name)).map_or("", DataModel::name)
}

/// Records an Inform.
///
/// The periodic Inform of a known device is the hot path of an ACS, and costs one statement: an
/// `UPDATE … RETURNING` that records the Inform and reports whether tasks are queued. Only when
/// the digest of the Inform's parameters differs from the stored one are the parameters compared
/// and the changed ones written; a new device is registered in one transaction.
///
/// The `devices.discovery_failures` at which discovery is given up.
pub const DISCOVERY_GIVEN_UP: i64 = 10;

/// A `0 BOOTSTRAP` means the CPE forgot what the ACS told it (TR-069 §3.7.1.5): the device is
/// marked for rediscovery and new connection-request credentials.
pub async fn record_inform(store: &Store, record: &InformRecord<'_>) -> Result<InformOutcome> {
    let digest = inform_digest(record.parameters);
    let db = store.db();
    let booted = has_event(record.events, "1 BOOT") || has_event(record.events, "0 BOOTSTRAP");
    let grouped = match store.inform_writer() {
        Some(writer) if !booted => writer.update(record, store.offline_grace()).await,
        _ => None,
    };
    let (device, has_queued_tasks, guard) = match grouped {
        Some((device, queued)) => (device, queued, None),
        // Not written by the SQLite writer (a new device, or it could not) or not given to it:
        // alone, under the guard.
        None => {
            let guard = store.write_guard().await;
            match update_known(db, record, store.offline_grace()).await? {
                Some((device, queued)) => (device, queued, Some(guard)),
                None => return register(store, record, &digest).await,
            }
        }
    };
    let mut outcome = InformOutcome { device, created: false, changed_parameters: 0, has_queued_tasks };
    let notable = !only_periodic(record.events);
    if outcome.device.inform_digest == digest && !notable {
        return Ok(outcome);
    }
    let _guard = match guard {
        Some(guard) => guard,
        None => store.write_guard().await,
    };
    let txn = db.begin().await.context("starting the Inform transaction")?;
    if outcome.device.inform_digest != digest {
        let paths: Vec<&str> = record.parameters.iter().map(|p| p.name.as_str()).collect();
        let stored = parameters::values_of(&txn, outcome.device.id, &paths).await?;
        let changed: Vec<ParameterValue> = record
            .parameters
            .iter()
            .filter(|p| match stored.get(&p.name) {
                Some((value, value_type)) => {
                    value.as_deref() != Some(p.value.as_str()) || value_type != p.value_type.as_str()
                }
                None => true,
            })
            .cloned()
            .collect();
        if let Some(rev) =
            parameters::upsert_values(&txn, outcome.device.id, &changed, record.now, store.offline_grace()).await?
        {
            outcome.device.tree_rev = rev;
        }
        set_digest(&txn, outcome.device.id, &digest).await?;
        outcome.changed_parameters = changed.len();
        outcome.device.inform_digest = digest;
    }
    if notable {
        insert_events(&txn, outcome.device.id, outcome.device.org_id, record).await?;
    }
    if has_event(record.events, "8 DIAGNOSTICS COMPLETE") {
        outcome.has_queued_tasks |= super::diagnostics::queue_collections(&txn, &outcome.device).await?;
    }
    if has_event(record.events, "0 BOOTSTRAP") {
        outcome.device.tree_rev = parameters::forget_secrets(&txn, outcome.device.id).await?;
        outcome.device.inform_digest = String::new();
        outcome.has_queued_tasks |= bootstrapped(&txn, &outcome.device).await?;
    }
    txn.commit().await.context("committing the Inform")?;
    Ok(outcome)
}

/// The digest of an Inform's parameters, independent of their order (`devices.inform_digest`).
pub fn inform_digest(parameters: &[ParameterValue]) -> String {
    use sha2::{Digest, Sha256};
    let mut entries: Vec<&ParameterValue> = parameters.iter().collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    for p in entries {
        // Secrets are stored as "" (never in clear, nor as a guessable hash).
        let value = if roost_cwmp::is_secret_parameter(&p.name) { "" } else { p.value.as_str() };
        for part in [p.name.as_str(), value, p.value_type.as_str()] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

fn only_periodic(events: &[EventStruct]) -> bool {
    events.iter().all(|e| e.code.trim().eq_ignore_ascii_case("2 PERIODIC"))
}

/// Whether queued tasks wait for the device, computed in the same statement as the update.
const HAS_QUEUED_TASKS: &str = "EXISTS (SELECT 1 FROM tasks t WHERE t.device_id = devices.id AND t.status = 'pending' AND t.stage = 'queued') AS has_queued_tasks";

/// The `devices` columns every Inform sets, in the order of [`inform_row`]; the second of each
/// pair says whether a value the Inform does not carry (NULL) keeps the column's own.
const INFORM_COLUMNS: [(&str, bool); 10] = [
    ("manufacturer", false),
    ("software_version", true),
    ("hardware_version", true),
    ("data_model", true),
    ("cwmp_version", false),
    ("remote_address", false),
    ("parameter_key", true),
    ("connection_request_url", true),
    ("last_events", false),
    ("last_inform_at", false),
];

/// What an Inform sets on its device row, in the order of [`INFORM_COLUMNS`].
fn inform_row(record: &InformRecord<'_>) -> [Value; 10] {
    let params = record.parameters;
    let optional = |suffix: &str| -> Value { inform_value(params, suffix).map(str::to_owned).into() };
    let data_model = match data_model_of(params) {
        "" => None,
        model => Some(model.to_owned()),
    };
    let codes: Vec<&str> = record.events.iter().map(|e| e.code.as_str()).collect();
    [
        record.identity.manufacturer.as_str().into(),
        optional(".DeviceInfo.SoftwareVersion"),
        optional(".DeviceInfo.HardwareVersion"),
        data_model.into(),
        record.cwmp_version.into(),
        record.remote_address.into(),
        optional(".ManagementServer.ParameterKey"),
        optional(".ManagementServer.ConnectionRequestURL"),
        codes.join(",").into(),
        record.now.into(),
    ]
}

/// The `SET` list of an Inform's update: each column of [`INFORM_COLUMNS`] from `source(column)`,
/// and `offline_at` from the Inform's time and the interval in the row, by the grace
/// `source("per_interval_second_ms")` and `source("min_ms")` (`OfflineGrace::after`; a NULL
/// interval, not known, is not greater). Columns are qualified: the group-committed form joins a
/// table whose columns have the same names.
fn inform_assignments(source: impl Fn(&str) -> String) -> String {
    let mut set: Vec<String> = INFORM_COLUMNS
        .iter()
        .map(|&(column, keep_when_null)| match keep_when_null {
            true => format!("{column} = COALESCE({}, devices.{column})", source(column)),
            false => format!("{column} = {}", source(column)),
        })
        .collect();
    let (now, per_second, min) = (source("last_inform_at"), source("per_interval_second_ms"), source("min_ms"));
    let jitter = crate::health::INFORM_JITTER_MS;
    set.push(format!(
        "offline_at = {now} + CASE WHEN devices.inform_interval_s * {per_second} + {jitter} > {min} \
         THEN devices.inform_interval_s * {per_second} + {jitter} ELSE {min} END"
    ));
    set.join(", ")
}

/// Updates a known device from its Inform; `None` if the device is new.
async fn update_known<C: ConnectionTrait>(
    db: &C,
    record: &InformRecord<'_>,
    grace: crate::health::OfflineGrace,
) -> Result<Option<(Device, bool)>> {
    let bootstrap = has_event(record.events, "0 BOOTSTRAP");
    let boot = has_event(record.events, "1 BOOT");
    let mut sql = format!("UPDATE devices SET {}", inform_assignments(|_| "?".to_owned()));
    // The placeholders in the order the assignments name them.
    let mut args: Vec<Value> = inform_row(record).into();
    args.extend([
        record.now.into(),
        grace.per_interval_second_ms.into(),
        grace.min_ms.into(),
        grace.per_interval_second_ms.into(),
        grace.min_ms.into(),
    ]);
    if boot || bootstrap {
        sql.push_str(", last_boot_at = ?");
        args.push(record.now.into());
    }
    if bootstrap {
        sql.push_str(
            // The discovery batch is what the firmware survives, which a bootstrap does not change
            // (and a retried bootstrap is what a session that died during discovery sends).
            // A discovery given up is tried again after a factory reset.
            ", last_bootstrap_at = ?, discovered_at = NULL, configured_at = NULL, \
             discovery_failures = CASE WHEN discovery_failures >= ? THEN 0 ELSE discovery_failures END, \
             connection_request_username = '', connection_request_password = NULL",
        );
        args.push(record.now.into());
        args.push(DISCOVERY_GIVEN_UP.into());
    }
    sql.push_str(&format!(" WHERE device_id = ? RETURNING *, {HAS_QUEUED_TASKS}"));
    args.push(record.device_id.into());
    let row =
        super::first_row(db, statement(db.get_database_backend(), &sql, args)).await.context("recording Inform")?;
    row.map(|row| updated_device(&row)).transpose()
}

/// A device row an Inform's update returned, and whether tasks are queued for it.
fn updated_device(row: &sea_orm::QueryResult) -> Result<(Device, bool)> {
    let device = Device::from_query_result(row, "").context("reading device")?;
    let queued = row.try_get::<bool>("", "has_queued_tasks").context("reading has_queued_tasks")?;
    Ok((device, queued))
}

/// Registers a device seen for the first time, with its Inform, in one transaction: its
/// organization (and the `device.registered` event) or none (a pending device).
async fn register(store: &Store, record: &InformRecord<'_>, digest: &str) -> Result<InformOutcome> {
    let txn = store.db().begin().await.context("starting the registration transaction")?;
    let backend = txn.get_database_backend();
    let id = &record.identity;
    let onboarding = match record.onboarding {
        Some(onboarding) => Some(onboarding),
        None => super::preregistrations::only_org_expecting(&txn, &id.serial_number)
            .await?
            .map(|org_id| Onboarding { org_id, via: OnboardingVia::Preregistration }),
    };
    txn.execute_raw(statement(
        backend,
        "INSERT INTO devices (device_id, org_id, oui, product_class, serial_number, manufacturer, registered_at,
         reported_online) VALUES (?, ?, ?, ?, ?, ?, ?, TRUE)",
        [
            record.device_id.into(),
            onboarding.map(|o| o.org_id).into(),
            id.oui.as_str().into(),
            id.product_class.as_str().into(),
            id.serial_number.as_str().into(),
            id.manufacturer.as_str().into(),
            record.now.into(),
        ],
    ))
    .await
    .context("registering device")?;
    let (mut device, has_queued_tasks) = update_known(&txn, record, store.offline_grace())
        .await?
        .context("the device vanished while it was registered")?;
    if let Some(rev) =
        parameters::upsert_values(&txn, device.id, record.parameters, record.now, store.offline_grace()).await?
    {
        device.tree_rev = rev;
    }
    set_digest(&txn, device.id, digest).await?;
    device.inform_digest = digest.to_owned();
    if !only_periodic(record.events) {
        insert_events(&txn, device.id, device.org_id, record).await?;
    }
    // Informing now, it is online: said here for an organization's device, so the presence
    // sweep only reports changes (a pending arrival is no organization's event; claimed, it
    // is online already).
    if let Some(org_id) = device.org_id {
        let online = presence::payload(record.device_id, device.last_inform_at, device.offline_at);
        super::events::record(&txn, EventType::DeviceOnline, Some(org_id), record.device_id, &online).await?;
    }
    if let Some(onboarding) = onboarding {
        let payload = serde_json::json!({
            "device_id": record.device_id,
            "serial_number": id.serial_number,
            "product_class": id.product_class,
            "via": onboarding.via,
        });
        super::events::record(&txn, EventType::DeviceRegistered, Some(onboarding.org_id), record.device_id, &payload)
            .await?;
    }
    let mut has_queued_tasks = has_queued_tasks;
    if let Some(subscriber_id) = super::subscribers::link_registered(&txn, &device).await? {
        device.subscriber_id = Some(subscriber_id);
        has_queued_tasks = true;
    }
    txn.commit().await.context("committing the registration")?;
    Ok(InformOutcome { device, created: true, changed_parameters: record.parameters.len(), has_queued_tasks })
}

/// A known device's `0 BOOTSTRAP`: recorded as `device.bootstrapped`, and a device that serves a
/// subscriber gets the subscriber's PPPoE credentials pushed again (unless a push is queued
/// already). Whether a task was queued.
async fn bootstrapped<C: ConnectionTrait>(db: &C, device: &Device) -> Result<bool> {
    let payload = serde_json::json!({"device_id": device.device_id, "serial_number": device.serial_number});
    super::events::record(db, EventType::DeviceBootstrapped, device.org_id, &device.device_id, &payload).await?;
    if device.subscriber_id.is_none() {
        return Ok(false);
    }
    let queued = super::first_row(
        db,
        statement(
            db.get_database_backend(),
            "SELECT 1 FROM tasks WHERE device_id = ? AND status = 'pending' AND stage = 'queued' AND name = ? AND body = ?",
            [
                device.id.into(),
                super::subscribers::PUSH_TASK_NAME.into(),
                super::subscribers::PUSH_TASK_BODY.into(),
            ],
        ),
    )
    .await
    .context("looking for a queued PPPoE push")?;
    if queued.is_none() {
        super::subscribers::queue_push(db, device).await?;
    }
    Ok(true)
}

async fn set_digest<C: ConnectionTrait>(db: &C, device_pk: DevicePk, digest: &str) -> Result<()> {
    db.execute_raw(statement(
        db.get_database_backend(),
        "UPDATE devices SET inform_digest = ? WHERE id = ?",
        [digest.into(), device_pk.into()],
    ))
    .await
    .context("storing the Inform digest")?;
    Ok(())
}

async fn insert_events<C: ConnectionTrait>(
    db: &C,
    device_pk: DevicePk,
    org_id: Option<i64>,
    record: &InformRecord<'_>,
) -> Result<()> {
    let codes: Vec<&str> = record.events.iter().map(|e| e.code.as_str()).collect();
    let keys: Vec<&str> = record.events.iter().map(|e| e.command_key.as_str()).collect();
    db.execute_raw(statement(
        db.get_database_backend(),
        "INSERT INTO device_events (device_id, org_id, codes, command_keys, received_at) VALUES (?, ?, ?, ?, ?)",
        [device_pk.into(), org_id.into(), codes.join(",").into(), keys.join(",").into(), record.now.into()],
    ))
    .await
    .context("storing Inform events")?;
    Ok(())
}

pub async fn by_device_id(store: &Store, device_id: &str) -> Result<Option<Device>> {
    let stmt = store.statement("SELECT * FROM devices WHERE device_id = ?", [device_id.into()]);
    super::first::<Device, _>(store.db(), stmt).await.context("loading device")
}

/// A device the caller's scope may see.
pub async fn visible(store: &Store, scope: &Scope, device_id: &str) -> Result<Option<Device>> {
    Ok(by_device_id(store, device_id).await?.filter(|d| scope.contains(d.org_id)))
}

/// Whether a device has taken its own CWMP credential (false for devices not registered yet).
pub async fn has_own_credential(store: &Store, device_id: &str) -> Result<bool> {
    let stmt = store
        .statement("SELECT 1 FROM devices WHERE device_id = ? AND own_credential_at IS NOT NULL", [device_id.into()]);
    Ok(super::first_row(store.db(), stmt).await.context("checking the device's credential")?.is_some())
}

/// Records that a device authenticated with its own credential.
pub async fn mark_own_credential(store: &Store, device_pk: DevicePk, now: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "UPDATE devices SET own_credential_at = ? WHERE id = ? AND own_credential_at IS NULL",
        [now.into(), device_pk.into()],
    );
    store.db().execute_raw(stmt).await.context("recording the device's own credential")?;
    Ok(())
}

/// Where the device reaches this server: the scheme and authority of its
/// `ManagementServer.URL`, once stored. URLs Roost gives the device (stored files, TR-143 test
/// endpoints) start with it, so they go where its CWMP sessions do.
pub async fn acs_base(store: &Store, device: &Device) -> Result<Option<String>> {
    let root = device.model().map_or("", |m| m.root());
    let path = format!("{root}ManagementServer.URL");
    let stored = parameters::stored_values(store, device.id, &[path.as_str()]).await?;
    Ok(stored.get(&path).and_then(|(value, _)| value.as_deref()).and_then(crate::diagnostics::endpoint_base))
}

pub async fn by_pk(store: &Store, pk: DevicePk) -> Result<Option<Device>> {
    let stmt = store.statement("SELECT * FROM devices WHERE id = ?", [pk.into()]);
    super::first::<Device, _>(store.db(), stmt).await.context("loading device")
}

pub async fn set_connection_request_credentials(
    store: &Store,
    device_pk: DevicePk,
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

pub async fn mark_discovered(store: &Store, device_pk: DevicePk, at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET discovered_at = ?, discovery_failures = 0 WHERE id = ?",
            [at.into(), device_pk.into()],
        ))
        .await
        .context("marking device discovered")?;
    Ok(())
}

/// Records that a session's provisioning settled: the device is configured (see
/// [`Device::configured_at`]).
pub async fn mark_configured(store: &Store, device_pk: DevicePk, at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(
            store.statement("UPDATE devices SET configured_at = ? WHERE id = ?", [at.into(), device_pk.into()]),
        )
        .await
        .context("marking device configured")?;
    Ok(())
}

/// Roost reset the device to its factory state: what Roost configured is gone, as after a
/// `0 BOOTSTRAP` (some agents report only `1 BOOT` after a FactoryReset).
pub async fn mark_reset(store: &Store, device_pk: DevicePk) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET configured_at = NULL, discovered_at = NULL, discovery_failures = 0, \
             connection_request_username = '', connection_request_password = NULL WHERE id = ?",
            [device_pk.into()],
        ))
        .await
        .context("marking device reset")?;
    Ok(())
}

/// Records how the device's discovery fares: the batch size it survives and the sessions in a
/// row that died during discovery.
pub async fn set_discovery_state(store: &Store, device_pk: DevicePk, batch: i64, failures: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET discovery_batch = ?, discovery_failures = ? WHERE id = ?",
            [batch.into(), failures.into(), device_pk.into()],
        ))
        .await
        .context("recording discovery state")?;
    Ok(())
}

pub async fn record_connection_request(store: &Store, device_pk: DevicePk, at: i64, outcome: &str) -> Result<()> {
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

/// The device whose id a STUN client gave as its username, and the UDP binding recorded for
/// it (`''` if none).
pub async fn udp_binding(store: &Store, device_id: &str) -> Result<Option<(DevicePk, String)>> {
    #[derive(FromQueryResult)]
    struct Row {
        id: DevicePk,
        udp_connection_request_address: String,
    }
    let stmt = store
        .statement("SELECT id, udp_connection_request_address FROM devices WHERE device_id = ?", [device_id.into()]);
    let row = super::first::<Row, _>(store.db(), stmt).await.context("loading the device's UDP binding")?;
    Ok(row.map(|r| (r.id, r.udp_connection_request_address)))
}

/// Records where UDP connection requests now reach the device.
pub async fn record_udp_binding(store: &Store, device_pk: DevicePk, address: &str, at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET udp_connection_request_address = ?, udp_binding_at = ? WHERE id = ?",
            [address.into(), at.into(), device_pk.into()],
        ))
        .await
        .context("recording the device's UDP binding")?;
    Ok(())
}

/// Moves the time of the device's binding, if it is still `address`.
pub async fn touch_udp_binding(store: &Store, device_id: &str, address: &str, at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement(
            "UPDATE devices SET udp_binding_at = ? WHERE device_id = ? AND udp_connection_request_address = ?",
            [at.into(), device_id.into(), address.into()],
        ))
        .await
        .context("moving the time of the device's UDP binding")?;
    Ok(())
}

pub async fn delete(store: &Store, device_pk: DevicePk) -> Result<()> {
    let _guard = store.write_guard().await;
    store
        .db()
        .execute_raw(store.statement("DELETE FROM devices WHERE id = ?", [device_pk.into()]))
        .await
        .context("deleting device")?;
    Ok(())
}

/// The tags of several devices, by device.
pub async fn tags_of(
    store: &Store,
    device_pks: &[DevicePk],
) -> Result<std::collections::HashMap<DevicePk, Vec<String>>> {
    let mut tags: std::collections::HashMap<DevicePk, Vec<String>> = std::collections::HashMap::new();
    if device_pks.is_empty() {
        return Ok(tags);
    }
    let sql = format!(
        "SELECT device_id, tag FROM device_tags WHERE device_id IN ({}) ORDER BY device_id, tag",
        super::placeholders(device_pks.len())
    );
    let rows = store
        .db()
        .query_all_raw(store.statement(&sql, device_pks.iter().map(|id| Value::from(*id))))
        .await
        .context("loading tags")?;
    for row in rows {
        let device: DevicePk = row.try_get_by_index(0).context("tag's device")?;
        tags.entry(device).or_default().push(row.try_get_by_index(1).context("tag")?);
    }
    Ok(tags)
}

pub async fn tags(store: &Store, device_pk: DevicePk) -> Result<Vec<String>> {
    let rows = store
        .db()
        .query_all_raw(
            store.statement("SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag", [device_pk.into()]),
        )
        .await
        .context("loading tags")?;
    rows.iter().map(|row| row.try_get_by_index::<String>(0).context("tag")).collect()
}

pub async fn add_tag(store: &Store, device_pk: DevicePk, tag: &str) -> Result<()> {
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

pub async fn remove_tag(store: &Store, device_pk: DevicePk, tag: &str) -> Result<bool> {
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

pub async fn recent_events(store: &Store, device_pk: DevicePk, limit: u64) -> Result<Vec<DeviceEvent>> {
    let stmt = store.statement(
        "SELECT id, codes, command_keys, received_at FROM device_events WHERE device_id = ? ORDER BY id DESC LIMIT ?",
        [device_pk.into(), (limit as i64).into()],
    );
    DeviceEvent::find_by_statement(stmt).all(store.db()).await.context("loading events")
}

/// The most serials one claim takes.
pub const MAX_CLAIM: usize = 10_000;

/// A device that joined an organization by a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub device_id: String,
    pub serial_number: String,
}

/// Moves the pending devices with these serials into `org_id`, with what hangs off them, and
/// records a `device.claimed` event for each, in one transaction. Serials of no pending device
/// are left out of the answer.
pub async fn claim(store: &Store, serials: &[String], org_id: i64, actor: &str) -> Result<Vec<Claimed>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the claim")?;
    let claimed = claim_pending(&txn, serials, org_id, actor).await?;
    txn.commit().await.context("committing the claim")?;
    Ok(claimed)
}

/// [`claim`] in the caller's transaction.
pub(super) async fn claim_pending<C: ConnectionTrait>(
    txn: &C,
    serials: &[String],
    org_id: i64,
    actor: &str,
) -> Result<Vec<Claimed>> {
    let backend = txn.get_database_backend();
    let mut claimed = Vec::new();
    for chunk in serials.chunks(500) {
        let values: Vec<Value> = chunk.iter().map(|s| s.as_str().into()).collect();
        let rows = txn
            .query_all_raw(statement(
                backend,
                &format!(
                    "SELECT id, device_id, serial_number FROM devices WHERE org_id IS NULL AND serial_number IN ({})",
                    super::placeholders(chunk.len())
                ),
                values,
            ))
            .await
            .context("finding pending devices")?;
        for row in rows {
            let pk: DevicePk = row.try_get_by_index(0).context("device pk")?;
            let device_id: String = row.try_get_by_index(1).context("device id")?;
            let serial_number: String = row.try_get_by_index(2).context("serial")?;
            reassign(txn, pk, org_id).await?;
            let payload = serde_json::json!({"device_id": device_id, "serial_number": serial_number, "by": actor});
            super::events::record(txn, EventType::DeviceClaimed, Some(org_id), &device_id, &payload).await?;
            claimed.push(Claimed { device_id, serial_number });
        }
    }
    Ok(claimed)
}

/// Gives a device, and what hangs off it (tasks, faults, events), to an organization.
async fn reassign<C: ConnectionTrait>(txn: &C, device_pk: DevicePk, org_id: i64) -> Result<()> {
    let backend = txn.get_database_backend();
    for table in ["devices", "tasks", "faults", "device_events"] {
        let column = if table == "devices" { "id" } else { "device_id" };
        txn.execute_raw(statement(
            backend,
            &format!("UPDATE {table} SET org_id = ? WHERE {column} = ?"),
            [org_id.into(), device_pk.into()],
        ))
        .await
        .with_context(|| format!("moving the device's {table}"))?;
    }
    Ok(())
}

/// Where a device goes in a move, and from where, as events name them.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    pub to_org_id: i64,
    pub to_slug: &'a str,
    /// The slug of the organization it leaves; `None`: it was pending (the move is a claim).
    pub from_slug: Option<&'a str>,
    pub actor: &'a str,
}

/// Moves a device to another organization, with its tasks, faults and events, and records
/// `device.moved` (or `device.claimed` for a pending device) in the same transaction. `false`
/// when the device is gone or was in another organization than `from_slug` says by then.
pub async fn move_to(store: &Store, device: &Device, to: Move<'_>) -> Result<bool> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the move")?;
    let backend = txn.get_database_backend();
    // Still where the caller saw it: a concurrent move or claim wins, this one reports it.
    let current = match device.org_id {
        Some(org) => {
            statement(backend, "SELECT id FROM devices WHERE id = ? AND org_id = ?", [device.id.into(), org.into()])
        }
        None => statement(backend, "SELECT id FROM devices WHERE id = ? AND org_id IS NULL", [device.id.into()]),
    };
    if super::first_row(&txn, current).await.context("checking the device")?.is_none() {
        return Ok(false);
    }
    reassign(&txn, device.id, to.to_org_id).await?;
    super::subscribers::unlink_foreign(&txn, device, to.to_org_id, to.actor).await?;
    // The jobs of the organization it left start nothing more on it.
    let now = super::now_millis();
    for sql in [
        "UPDATE rollout_devices SET state = 'skipped', reason = 'it moved to another organization', finished_at = ?
         WHERE device_id = ? AND state = 'waiting'",
        "UPDATE bulk_devices SET state = 'cancelled', reason = 'it moved to another organization', finished_at = ?
         WHERE device_id = ? AND state = 'waiting'",
    ] {
        txn.execute_raw(statement(backend, sql, [now.into(), device.id.into()]))
            .await
            .context("leaving the jobs of its organization")?;
    }
    let (kind, payload) = match to.from_slug {
        Some(from) => (
            EventType::DeviceMoved,
            serde_json::json!({"device_id": device.device_id, "serial_number": device.serial_number,
                "from": from, "to": to.to_slug, "by": to.actor}),
        ),
        None => (
            EventType::DeviceClaimed,
            serde_json::json!({"device_id": device.device_id, "serial_number": device.serial_number, "by": to.actor}),
        ),
    };
    super::events::record(&txn, kind, Some(to.to_org_id), &device.device_id, &payload).await?;
    txn.commit().await.context("committing the move")?;
    Ok(true)
}
