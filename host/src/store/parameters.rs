//! The parameter tree of each device: one row per parameter or object node (objects end with
//! `.` as in CWMP), keyed by device and path so that a subtree is one index range.

use std::collections::HashMap;

use anyhow::{Context, Result};
use roost_cwmp::{DataModel, ParameterInfo, ParameterValue, is_secret_parameter};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::DevicePk;
use super::{Store, placeholders, statement};
use crate::health::OfflineGrace;

/// Rows per multi-row INSERT: 7 values each stays far below SQLite's and PostgreSQL's
/// bound-parameter limits while keeping round trips few during discovery.
const CHUNK: usize = 500;

#[derive(Debug, Clone, FromQueryResult, serde::Serialize)]
pub struct Parameter {
    pub path: String,
    /// Always `""` for secrets, whatever the device reported.
    pub value: Option<String>,
    pub value_type: String,
    pub writable: bool,
    pub is_object: bool,
    pub refreshed_at: i64,
    /// For a secret: whether Roost holds (sealed) the value it set.
    pub remembered: bool,
}

const COLUMNS: &str =
    "path, value, value_type, writable, is_object, refreshed_at, sealed_value IS NOT NULL AS remembered";

/// Stores values read from the device (GetParameterValues, the Inform). A node seen for the
/// first time is created not writable until GetParameterNames says otherwise. Returns the tree
/// revision after the write, `None` when there was nothing to write. A periodic Inform
/// interval among the values is the device's from now on, and so is the grace it earns.
pub async fn upsert_values<C: ConnectionTrait>(
    conn: &C,
    device_pk: DevicePk,
    values: &[ParameterValue],
    now: i64,
    grace: OfflineGrace,
) -> Result<Option<i64>> {
    if values.is_empty() {
        return Ok(None);
    }
    mark_tree_changed(conn, device_pk).await?;
    for chunk in values.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO parameters (device_id, path, value, value_type, writable, is_object, refreshed_at) VALUES ",
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        for (i, parameter) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, ?, FALSE, FALSE, ?)");
            // A secret a device reports (some leak them in Informs) is not kept in clear.
            let value = if is_secret_parameter(&parameter.name) { "" } else { parameter.value.as_str() };
            args.extend([
                device_pk.into(),
                parameter.name.as_str().into(),
                value.into(),
                parameter.value_type.as_str().into(),
                now.into(),
            ]);
        }
        sql.push_str(
            " ON CONFLICT (device_id, path) DO UPDATE SET value = excluded.value, \
             value_type = excluded.value_type, refreshed_at = excluded.refreshed_at",
        );
        conn.execute_raw(statement(conn.get_database_backend(), &sql, args))
            .await
            .context("storing parameter values")?;
    }
    let interval = values.iter().rev().find_map(periodic_inform_interval).map(|seconds| (seconds, grace));
    tree_written(conn, device_pk, interval).await.map(Some)
}

/// The periodic Inform interval a stored value sets, in seconds: the device's presence is
/// judged against it (`devices.inform_interval_s`, `health::OfflineGrace`).
fn periodic_inform_interval(value: &ParameterValue) -> Option<i64> {
    let path = &value.name;
    let relative = DataModel::of_path(path).and_then(|model| model.relative(path));
    if relative != Some("ManagementServer.PeriodicInformInterval") {
        return None;
    }
    value.value.trim().parse::<u32>().ok().filter(|s| *s > 0).map(i64::from)
}

/// Stores what GetParameterNames reported: which nodes exist, which are objects, which are
/// writable. Values are left as they are; the refresh time moves so that a subtree refresh can
/// tell the nodes it saw from those that are gone.
pub(super) async fn upsert_names<C: ConnectionTrait>(
    conn: &C,
    device_pk: DevicePk,
    names: &[ParameterInfo],
    now: i64,
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    mark_tree_changed(conn, device_pk).await?;
    for chunk in names.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO parameters (device_id, path, value, value_type, writable, is_object, refreshed_at) VALUES ",
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 5);
        for (i, info) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, NULL, '', ?, ?, ?)");
            args.extend([
                device_pk.into(),
                info.name.as_str().into(),
                info.writable.into(),
                info.name.ends_with('.').into(),
                now.into(),
            ]);
        }
        sql.push_str(
            " ON CONFLICT (device_id, path) DO UPDATE SET writable = excluded.writable, \
             is_object = excluded.is_object, refreshed_at = excluded.refreshed_at",
        );
        conn.execute_raw(statement(conn.get_database_backend(), &sql, args))
            .await
            .context("storing parameter names")?;
    }
    tree_written(conn, device_pk, None).await?;
    Ok(())
}

/// Stores values read from the device (a GetParameterValues answer), as [`upsert_values`].
pub async fn store_read(store: &Store, device_pk: DevicePk, values: &[ParameterValue], at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    upsert_values(store.db(), device_pk, values, at, store.offline_grace()).await.map(drop)
}

/// Stores a GetParameterNames listing, as [`upsert_names`].
pub async fn store_listing(store: &Store, device_pk: DevicePk, names: &[ParameterInfo], at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    upsert_names(store.db(), device_pk, names, at).await
}

/// Stores the values a device accepted in a SetParameterValues, with the secrets among them
/// kept sealed (`sealed`: path and sealed value; the row itself holds `""`).
pub async fn store_set(
    store: &Store,
    device_pk: DevicePk,
    values: &[ParameterValue],
    sealed: Vec<(String, Vec<u8>)>,
    at: i64,
) -> Result<()> {
    let _guard = store.write_guard().await;
    upsert_values(store.db(), device_pk, values, at, store.offline_grace()).await?;
    for (path, sealed) in sealed {
        remember_secret(store.db(), device_pk, &path, sealed).await?;
    }
    Ok(())
}

/// Drops what a completed refresh of `prefix`, begun at `since`, did not find, as
/// [`delete_stale`].
pub async fn drop_stale(store: &Store, device_pk: DevicePk, prefix: &str, since: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    delete_stale(store.db(), device_pk, prefix, since).await.map(drop)
}

/// Drops an object the device deleted, with everything below it.
pub async fn drop_subtree(store: &Store, device_pk: DevicePk, object: &str) -> Result<()> {
    let _guard = store.write_guard().await;
    delete_subtree(store.db(), device_pk, object).await.map(drop)
}

/// The stored value and type of each of `paths` that exists, as [`values_of`].
pub async fn stored_values(
    store: &Store,
    device_pk: DevicePk,
    paths: &[&str],
) -> Result<HashMap<String, (Option<String>, String)>> {
    values_of(store.db(), device_pk, paths).await
}

/// Keeps, sealed, the secret value Roost set on a device: the device will read it back empty.
pub(super) async fn remember_secret<C: ConnectionTrait>(
    conn: &C,
    device_pk: DevicePk,
    path: &str,
    sealed: Vec<u8>,
) -> Result<()> {
    conn.execute_raw(statement(
        conn.get_database_backend(),
        "UPDATE parameters SET sealed_value = ? WHERE device_id = ? AND path = ?",
        [sealed.into(), device_pk.into(), path.into()],
    ))
    .await
    .context("storing a sealed secret")?;
    Ok(())
}

/// The secret value Roost set, still sealed.
pub async fn remembered_secret(store: &Store, device_pk: DevicePk, path: &str) -> Result<Option<Vec<u8>>> {
    let row = super::first_row(
        store.db(),
        store.statement(
            "SELECT sealed_value FROM parameters WHERE device_id = ? AND path = ?",
            [device_pk.into(), path.into()],
        ),
    )
    .await
    .context("loading a sealed secret")?;
    Ok(row.and_then(|row| row.try_get_by_index::<Option<Vec<u8>>>(0).ok().flatten()))
}

/// Forgets the secrets Roost set on a device (their sealed values): after a `0 BOOTSTRAP` the
/// device no longer holds them, and a provision declaring the same secret again must send it
/// rather than find it set. The tree's new revision.
pub(super) async fn forget_secrets<C: ConnectionTrait>(conn: &C, device_pk: DevicePk) -> Result<i64> {
    mark_tree_changed(conn, device_pk).await?;
    conn.execute_raw(statement(
        conn.get_database_backend(),
        "UPDATE parameters SET sealed_value = NULL WHERE device_id = ? AND sealed_value IS NOT NULL",
        [device_pk.into()],
    ))
    .await
    .context("forgetting the secrets set on the device")?;
    tree_written(conn, device_pk, None).await
}

/// Marks the device row before any write to its parameter rows: the tree's revision moves (what
/// a replica kept of the tree is stale, `provisioning::reads`), and the stored Inform digest is
/// unreliable, so the next Inform compares its parameters one by one. The Inform itself stores
/// its digest again after its writes. [`tree_written`] moves the revision again after them.
async fn mark_tree_changed<C: ConnectionTrait>(conn: &C, device_pk: DevicePk) -> Result<()> {
    conn.execute_raw(statement(
        conn.get_database_backend(),
        "UPDATE devices SET inform_digest = '', tree_rev = tree_rev + 1 WHERE id = ?",
        [device_pk.into()],
    ))
    .await
    .context("marking the device's tree changed")?;
    Ok(())
}

/// Moves the tree's revision once more after a write to the device's parameter rows, and returns
/// it. Statements outside a transaction commit one by one: a session whose Inform returned the
/// revision of the mark before a write may load rows the write has not reached yet, and so must
/// not find that revision still current when the write is done. (A write that fails half-way
/// leaves the mark's revision current: a view loaded while it was under way may miss rows it
/// wrote before failing, until the device's next write.) The same statement keeps the periodic
/// Inform interval when the write stored it, and the presence deadline that interval earns.
async fn tree_written<C: ConnectionTrait>(
    conn: &C,
    device_pk: DevicePk,
    inform_interval: Option<(i64, OfflineGrace)>,
) -> Result<i64> {
    let stmt = match inform_interval {
        None => statement(
            conn.get_database_backend(),
            "UPDATE devices SET tree_rev = tree_rev + 1 WHERE id = ? RETURNING tree_rev",
            [device_pk.into()],
        ),
        // The deadline its last Inform set was of the interval before (or of none, at its
        // first session): a device now informing hourly must not go offline ten minutes on.
        Some((seconds, grace)) => statement(
            conn.get_database_backend(),
            "UPDATE devices SET tree_rev = tree_rev + 1, inform_interval_s = ?, offline_at = last_inform_at + ?
             WHERE id = ? RETURNING tree_rev",
            [seconds.into(), grace.after(Some(seconds)).into(), device_pk.into()],
        ),
    };
    let row = super::first_row(conn, stmt)
        .await
        .context("moving the device's tree revision")?
        .context("the device vanished while its parameters were written")?;
    row.try_get_by_index::<i64>(0).context("reading the tree revision")
}

/// The exclusive upper bound of the paths that start with `prefix`: the prefix with its last
/// byte incremented (paths are ASCII, ordered bytewise on both backends).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

/// `path >= ? AND path < ?` for a prefix, as a condition and its values.
fn prefix_condition(prefix: &str) -> (String, Vec<Value>) {
    match prefix_end(prefix) {
        Some(end) if !prefix.is_empty() => ("path >= ? AND path < ?".into(), vec![prefix.into(), end.into()]),
        _ => ("1 = 1".into(), Vec::new()),
    }
}

/// Removes a node and everything below it (DeleteObject, or a refresh that no longer finds it).
pub(super) async fn delete_subtree<C: ConnectionTrait>(conn: &C, device_pk: DevicePk, prefix: &str) -> Result<u64> {
    mark_tree_changed(conn, device_pk).await?;
    let (condition, mut args) = prefix_condition(prefix);
    args.insert(0, device_pk.into());
    let sql = format!("DELETE FROM parameters WHERE device_id = ? AND {condition}");
    let result = conn
        .execute_raw(statement(conn.get_database_backend(), &sql, args))
        .await
        .context("deleting parameter subtree")?;
    tree_written(conn, device_pk, None).await?;
    Ok(result.rows_affected())
}

/// Removes nodes under `prefix` that were not refreshed since `since`: what a full refresh of
/// that subtree did not find any more.
pub(super) async fn delete_stale<C: ConnectionTrait>(
    conn: &C,
    device_pk: DevicePk,
    prefix: &str,
    since: i64,
) -> Result<u64> {
    mark_tree_changed(conn, device_pk).await?;
    let (condition, mut args) = prefix_condition(prefix);
    args.insert(0, device_pk.into());
    args.push(since.into());
    let sql = format!("DELETE FROM parameters WHERE device_id = ? AND {condition} AND refreshed_at < ?");
    let result = conn
        .execute_raw(statement(conn.get_database_backend(), &sql, args))
        .await
        .context("deleting stale parameters")?;
    tree_written(conn, device_pk, None).await?;
    Ok(result.rows_affected())
}

/// A page of a device's tree under `prefix`, in path order, after the `after` path.
pub async fn list(
    store: &Store,
    device_pk: DevicePk,
    prefix: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Parameter>> {
    let (condition, mut args) = prefix_condition(prefix);
    args.insert(0, device_pk.into());
    let mut sql = format!("SELECT {COLUMNS} FROM parameters WHERE device_id = ? AND {condition}");
    if let Some(after) = after {
        sql.push_str(" AND path > ?");
        args.push(after.into());
    }
    sql.push_str(" ORDER BY path LIMIT ?");
    args.push((limit as i64).into());
    Parameter::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing parameters")
}

/// The parameters under `prefix` whose path is `LIKE like` (`%` for a wildcard segment), in
/// path order. `_` in a name also matches any character: callers filter what they load.
pub async fn list_like(
    store: &Store,
    device_pk: DevicePk,
    prefix: &str,
    like: &str,
    limit: u64,
) -> Result<Vec<Parameter>> {
    let (condition, mut args) = prefix_condition(prefix);
    args.insert(0, device_pk.into());
    args.push(like.into());
    args.push((limit as i64).into());
    let sql = format!(
        "SELECT {COLUMNS} FROM parameters WHERE device_id = ? AND {condition} AND path LIKE ? ORDER BY path LIMIT ?"
    );
    Parameter::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing parameters")
}

/// The stored value and type of each of `paths` that exists.
pub(super) async fn values_of<C: ConnectionTrait>(
    conn: &C,
    device_pk: DevicePk,
    paths: &[&str],
) -> Result<HashMap<String, (Option<String>, String)>> {
    let rows = rows_of(conn, device_pk, paths).await?;
    Ok(rows.into_iter().map(|p| (p.path, (p.value, p.value_type))).collect())
}

/// The stored rows of those of `paths` that exist (type, writable flag …), by path.
pub async fn by_paths(store: &Store, device_pk: DevicePk, paths: &[&str]) -> Result<HashMap<String, Parameter>> {
    let rows = rows_of(store.db(), device_pk, paths).await?;
    Ok(rows.into_iter().map(|p| (p.path.clone(), p)).collect())
}

async fn rows_of<C: ConnectionTrait>(conn: &C, device_pk: DevicePk, paths: &[&str]) -> Result<Vec<Parameter>> {
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(CHUNK) {
        let sql =
            format!("SELECT {COLUMNS} FROM parameters WHERE device_id = ? AND path IN ({})", placeholders(chunk.len()));
        let mut args: Vec<Value> = vec![device_pk.into()];
        args.extend(chunk.iter().map(|p| Value::from(*p)));
        let rows = Parameter::find_by_statement(statement(conn.get_database_backend(), &sql, args))
            .all(conn)
            .await
            .context("loading parameter values")?;
        out.extend(rows);
    }
    Ok(out)
}

/// Leaf paths under `prefix` (discovery fetches values of exactly these).
pub async fn leaf_paths(store: &Store, device_pk: DevicePk, prefix: &str) -> Result<Vec<String>> {
    let (condition, mut args) = prefix_condition(prefix);
    args.insert(0, device_pk.into());
    let sql =
        format!("SELECT path FROM parameters WHERE device_id = ? AND {condition} AND is_object = FALSE ORDER BY path");
    let rows = store.db().query_all_raw(store.statement(&sql, args)).await.context("listing leaf paths")?;
    rows.iter().map(|row| row.try_get_by_index::<String>(0).context("path")).collect()
}

pub async fn count(store: &Store, device_pk: DevicePk) -> Result<i64> {
    let rows = super::first_row(
        store.db(),
        store.statement("SELECT COUNT(*) FROM parameters WHERE device_id = ?", [device_pk.into()]),
    )
    .await
    .context("counting parameters")?;
    match rows {
        Some(row) => row.try_get_by_index::<i64>(0).context("count"),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_string_after_all_extensions() {
        assert_eq!(prefix_end("Device.WiFi."), Some("Device.WiFi/".into()));
        assert_eq!(prefix_end("A"), Some("B".into()));
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn only_the_management_servers_own_interval_is_the_periodic_inform_interval() {
        let value = |name: &str, value: &str| ParameterValue {
            name: name.into(),
            value: value.into(),
            value_type: roost_cwmp::ValueType::UnsignedInt,
        };
        assert_eq!(
            periodic_inform_interval(&value("Device.ManagementServer.PeriodicInformInterval", "3600")),
            Some(3600)
        );
        assert_eq!(
            periodic_inform_interval(&value("InternetGatewayDevice.ManagementServer.PeriodicInformInterval", " 60 ")),
            Some(60)
        );
        for (name, v) in [
            // Nokia's second management server is not the one Roost is.
            ("InternetGatewayDevice.X_ALU-COM_SaaSManagementServer.PeriodicInformInterval", "5"),
            ("Device.ManagementServer.Foo.PeriodicInformInterval", "5"),
            ("Device.ManagementServer.PeriodicInformInterval", "0"),
            ("Device.ManagementServer.PeriodicInformInterval", "soon"),
        ] {
            assert_eq!(periodic_inform_interval(&value(name, v)), None, "{name} = {v}");
        }
    }
}
