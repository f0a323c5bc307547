//! Subscribers: an organization's customers, their plan and PPPoE account, and the device each
//! is linked to. Linking a device tags it (`sub:<username>`, `plan:<plan>`) and queues the push
//! of the PPPoE credentials, in the transaction of the link, so a link never exists without its
//! push nor its `subscriber.assigned` event.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::devices::Device;
use super::events::EventType;
use super::orgs::Scope;
use super::tasks::{NewTask, TaskRow};
use super::{DevicePk, Store, now_millis, statement};

#[derive(Debug, Clone, FromQueryResult)]
pub struct Subscriber {
    pub id: i64,
    pub org_id: i64,
    pub username: String,
    pub name: String,
    pub plan: String,
    pub pppoe_username: String,
    /// Sealed with the master key.
    pub pppoe_password: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Subscriber {
    /// The device tags of a subscriber link.
    pub fn tags(&self) -> [String; 2] {
        tags_of(&self.username, &self.plan)
    }
}

/// The tags a link gives a device.
fn tags_of(username: &str, plan: &str) -> [String; 2] {
    [format!("{SUBSCRIBER_TAG}{username}"), format!("{PLAN_TAG}{plan}")]
}

pub const SUBSCRIBER_TAG: &str = "sub:";
pub const PLAN_TAG: &str = "plan:";

/// The task that pushes the linked subscriber's PPPoE credentials: the credentials are read
/// from the subscriber when the task runs, so they are never copied into the queue and a
/// change made meanwhile is what the device gets.
pub const PUSH_TASK_BODY: &str = r#"{"name":"configurePppoe"}"#;
pub const PUSH_TASK_NAME: &str = "configurePppoe";

/// A subscriber to create; the password already sealed.
#[derive(Debug)]
pub struct NewSubscriber<'a> {
    pub org_id: i64,
    pub username: &'a str,
    pub name: &'a str,
    pub plan: &'a str,
    pub pppoe_username: &'a str,
    pub pppoe_password: Option<Vec<u8>>,
}

/// `None` when the organization has a subscriber of that username already.
pub async fn create(store: &Store, new: NewSubscriber<'_>) -> Result<Option<Subscriber>> {
    let _guard = store.write_guard().await;
    let now = now_millis();
    let stmt = store.statement(
        "INSERT INTO subscribers (org_id, username, name, plan, pppoe_username, pppoe_password, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, username) DO NOTHING RETURNING *",
        [
            new.org_id.into(),
            new.username.into(),
            new.name.into(),
            new.plan.into(),
            new.pppoe_username.into(),
            new.pppoe_password.into(),
            now.into(),
            now.into(),
        ],
    );
    super::first::<Subscriber, _>(store.db(), stmt).await.context("creating subscriber")
}

/// A subscriber the scope sees.
pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<Subscriber>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    let stmt = store.statement(&format!("SELECT * FROM subscribers WHERE id = ? AND {condition}"), args);
    super::first::<Subscriber, _>(store.db(), stmt).await.context("loading subscriber")
}

pub async fn by_id<C: ConnectionTrait>(db: &C, id: i64) -> Result<Option<Subscriber>> {
    let stmt = statement(db.get_database_backend(), "SELECT * FROM subscribers WHERE id = ?", [id.into()]);
    super::first::<Subscriber, _>(db, stmt).await.context("loading subscriber")
}

/// The scope's subscribers by id, after `after`; `username` narrows to one.
pub async fn list(
    store: &Store,
    scope: &Scope,
    username: Option<&str>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<Subscriber>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM subscribers WHERE {condition}");
    if let Some(username) = username {
        sql.push_str(" AND username = ?");
        args.push(username.into());
    }
    super::page_by_id(&mut sql, &mut args, after, limit);
    Subscriber::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing subscribers")
}

/// The devices linked to a subscriber, by id.
pub async fn devices_of<C: ConnectionTrait>(db: &C, subscriber_id: i64) -> Result<Vec<Device>> {
    let stmt = statement(
        db.get_database_backend(),
        "SELECT * FROM devices WHERE subscriber_id = ? ORDER BY id",
        [subscriber_id.into()],
    );
    Device::find_by_statement(stmt).all(db).await.context("listing a subscriber's devices")
}

/// The serials pre-registered for a subscriber, which link their device at its first Inform.
pub async fn expected_serials(store: &Store, subscriber_id: i64) -> Result<Vec<String>> {
    let stmt = store.statement(
        "SELECT serial_number FROM preregistrations WHERE subscriber_id = ? ORDER BY serial_number",
        [subscriber_id.into()],
    );
    let rows = store.db().query_all_raw(stmt).await.context("listing a subscriber's expected serials")?;
    rows.iter().map(|r| r.try_get_by_index::<String>(0).context("serial_number")).collect()
}

/// What a change to a subscriber touches.
#[derive(Debug, Default)]
pub struct Change<'a> {
    pub name: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub pppoe_username: Option<&'a str>,
    /// Sealed.
    pub pppoe_password: Option<Vec<u8>>,
}

/// Changes a subscriber. A new plan retags its devices; new PPPoE credentials are pushed to
/// them (a task each, returned). All in one transaction.
pub async fn update(store: &Store, before: &Subscriber, change: Change<'_>) -> Result<(Subscriber, Vec<TaskRow>)> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the subscriber change")?;
    let backend = txn.get_database_backend();
    let credentials_changed =
        change.pppoe_username.is_some_and(|u| u != before.pppoe_username) || change.pppoe_password.is_some();
    let stmt = statement(
        backend,
        "UPDATE subscribers SET name = COALESCE(?, name), plan = COALESCE(?, plan),
         pppoe_username = COALESCE(?, pppoe_username), pppoe_password = COALESCE(?, pppoe_password), updated_at = ?
         WHERE id = ? RETURNING *",
        [
            change.name.into(),
            change.plan.into(),
            change.pppoe_username.into(),
            change.pppoe_password.into(),
            now_millis().into(),
            before.id.into(),
        ],
    );
    let after = super::first::<Subscriber, _>(&txn, stmt)
        .await
        .context("changing subscriber")?
        .context("the subscriber vanished while it was changed")?;
    let devices = devices_of(&txn, after.id).await?;
    let mut pushed = Vec::new();
    for device in &devices {
        if after.plan != before.plan {
            untag(&txn, device.id, &[format!("{PLAN_TAG}{}", before.plan)]).await?;
            tag(&txn, device.id, &after.tags()).await?;
        }
        if credentials_changed {
            pushed.push(queue_push(&txn, device).await?);
        }
    }
    txn.commit().await.context("committing the subscriber change")?;
    Ok((after, pushed))
}

/// Deletes a subscriber: its devices are unlinked and untagged, its pre-registered serials
/// left expected by the organization alone. The device ids it was linked to.
pub async fn delete(store: &Store, subscriber: &Subscriber, actor: &str) -> Result<Vec<String>> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the subscriber deletion")?;
    let backend = txn.get_database_backend();
    let devices = devices_of(&txn, subscriber.id).await?;
    for device in &devices {
        unlink(&txn, device, subscriber, actor).await?;
    }
    // The serials stay expected by the organization, without the subscriber.
    for sql in [
        "UPDATE preregistrations SET subscriber_id = NULL WHERE subscriber_id = ?",
        "DELETE FROM subscribers WHERE id = ?",
    ] {
        txn.execute_raw(statement(backend, sql, [subscriber.id.into()])).await.context("deleting subscriber")?;
    }
    txn.commit().await.context("committing the subscriber deletion")?;
    Ok(devices.into_iter().map(|d| d.device_id).collect())
}

/// Links a device to a subscriber of its organization: the earlier link (if any) is replaced
/// with its tags, the new tags set, the PPPoE push queued and `subscriber.assigned` recorded.
pub async fn assign(store: &Store, device: &Device, subscriber: &Subscriber, actor: &str) -> Result<TaskRow> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the subscriber assignment")?;
    let task = link(&txn, device, subscriber, actor).await?;
    txn.commit().await.context("committing the subscriber assignment")?;
    Ok(task)
}

/// Unlinks a device from its subscriber and drops the link's tags; `false` when it had none.
pub async fn unassign(store: &Store, device: &Device, actor: &str) -> Result<bool> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the subscriber unassignment")?;
    let Some(current) = current_subscriber(&txn, device.id).await? else { return Ok(false) };
    unlink(&txn, device, &current, actor).await?;
    txn.commit().await.context("committing the subscriber unassignment")?;
    Ok(true)
}

/// What pre-assigning a serial came to.
#[derive(Debug)]
pub enum Preassigned {
    /// The organization has the device (already, or claimed from the pending devices just now):
    /// it is linked now, its push queued.
    Linked { device: Box<Device>, task: Box<TaskRow> },
    /// Not seen yet: the serial is expected, and links its device at the first Inform.
    Expected,
    /// Several pending devices have the serial (two makers' numbering met): nothing was done.
    Ambiguous { pending: i64 },
}

/// Links the device of `serial` to the subscriber: now when the subscriber's organization has
/// it (or, with `may_claim`, when it waits among the pending devices: it is claimed into the
/// organization first, as `pending-devices/claim` would), else at its first Inform (a
/// pre-registration of the serial, which also brings the device into the organization).
pub async fn preassign(
    store: &Store,
    subscriber: &Subscriber,
    serial: &str,
    may_claim: bool,
    actor: &str,
) -> Result<Preassigned> {
    let _guard = store.write_guard().await;
    let txn = store.db().begin().await.context("starting the pre-assignment")?;
    let backend = txn.get_database_backend();
    let in_org = || {
        statement(
            backend,
            "SELECT * FROM devices WHERE serial_number = ? AND org_id = ? ORDER BY id LIMIT 1",
            [serial.into(), subscriber.org_id.into()],
        )
    };
    let mut existing = super::first::<Device, _>(&txn, in_org()).await.context("looking for the serial's device")?;
    if existing.is_none() && may_claim {
        // A device that informed before its serial was expected waits among the pending ones:
        // no later Inform of it would ever look at the pre-registration. Devices of two makers
        // may share a serial: then which one is the subscriber's is the caller's to say.
        let pending = super::first_row(
            &txn,
            statement(
                backend,
                "SELECT CAST(COUNT(*) AS BIGINT) FROM devices WHERE org_id IS NULL AND serial_number = ?",
                [serial.into()],
            ),
        )
        .await
        .context("counting the serial's pending devices")?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()
        .context("pending count")?
        .unwrap_or(0);
        if pending > 1 {
            return Ok(Preassigned::Ambiguous { pending });
        }
        let claimed = super::devices::claim_pending(&txn, &[serial.to_owned()], subscriber.org_id, actor).await?;
        if !claimed.is_empty() {
            existing = super::first::<Device, _>(&txn, in_org()).await.context("loading the claimed device")?;
        }
    }
    let outcome = match existing {
        Some(device) => {
            let task = link(&txn, &device, subscriber, actor).await?;
            Preassigned::Linked { device: Box::new(device), task: Box::new(task) }
        }
        None => {
            txn.execute_raw(statement(
                backend,
                "INSERT INTO preregistrations (org_id, serial_number, created_by, created_at, subscriber_id)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (org_id, serial_number) DO UPDATE SET subscriber_id = excluded.subscriber_id",
                [subscriber.org_id.into(), serial.into(), actor.into(), now_millis().into(), subscriber.id.into()],
            ))
            .await
            .context("pre-registering the subscriber's serial")?;
            Preassigned::Expected
        }
    };
    txn.commit().await.context("committing the pre-assignment")?;
    Ok(outcome)
}

/// Called in the registration transaction of a device whose serial was pre-registered for a
/// subscriber of the organization it joined: links it like [`assign`]. The subscriber's id.
pub(super) async fn link_registered<C: ConnectionTrait>(db: &C, device: &Device) -> Result<Option<i64>> {
    let Some(org_id) = device.org_id else { return Ok(None) };
    let row = super::first_row(
        db,
        statement(
            db.get_database_backend(),
            "SELECT subscriber_id FROM preregistrations WHERE org_id = ? AND serial_number = ? AND subscriber_id IS NOT NULL",
            [org_id.into(), device.serial_number.as_str().into()],
        ),
    )
    .await
    .context("looking for the serial's subscriber")?;
    let Some(subscriber_id) = row.map(|r| r.try_get_by_index::<i64>(0)).transpose().context("subscriber_id")? else {
        return Ok(None);
    };
    let Some(subscriber) = by_id(db, subscriber_id).await? else { return Ok(None) };
    link(db, device, &subscriber, "cwmp").await?;
    Ok(Some(subscriber.id))
}

/// Called in the transaction of a `0 BOOTSTRAP` Inform of a linked device: it forgot its
/// configuration, so its subscriber's credentials are pushed again.
pub(super) async fn queue_push<C: ConnectionTrait>(db: &C, device: &Device) -> Result<TaskRow> {
    super::tasks::insert_row(
        db,
        NewTask {
            device_pk: device.id,
            org_id: device.org_id,
            name: PUSH_TASK_NAME,
            body: PUSH_TASK_BODY,
            sealed_body: None,
            expires_at: None,
        },
    )
    .await
}

/// Called when a device moves to another organization: a link to a subscriber of another
/// organization than the one it joins is dropped with its tags.
pub(super) async fn unlink_foreign<C: ConnectionTrait>(
    db: &C,
    device: &Device,
    to_org: i64,
    actor: &str,
) -> Result<()> {
    if let Some(current) = current_subscriber(db, device.id).await?
        && current.org_id != to_org
    {
        unlink(db, device, &current, actor).await?;
    }
    Ok(())
}

/// The subscriber a device is linked to now.
pub async fn of_device(store: &Store, device_pk: DevicePk) -> Result<Option<Subscriber>> {
    current_subscriber(store.db(), device_pk).await
}

async fn current_subscriber<C: ConnectionTrait>(db: &C, device_pk: DevicePk) -> Result<Option<Subscriber>> {
    let stmt = statement(
        db.get_database_backend(),
        "SELECT s.* FROM subscribers s JOIN devices d ON d.subscriber_id = s.id WHERE d.id = ?",
        [device_pk.into()],
    );
    super::first::<Subscriber, _>(db, stmt).await.context("loading the device's subscriber")
}

async fn link<C: ConnectionTrait>(db: &C, device: &Device, subscriber: &Subscriber, actor: &str) -> Result<TaskRow> {
    let backend = db.get_database_backend();
    if let Some(current) = current_subscriber(db, device.id).await? {
        untag(db, device.id, &current.tags()).await?;
    }
    // In the subscriber's organization still: a move committed since the device was read
    // must not leave it linked to another tenant's subscriber.
    let linked = db
        .execute_raw(statement(
            backend,
            "UPDATE devices SET subscriber_id = ? WHERE id = ? AND org_id = ?",
            [subscriber.id.into(), device.id.into(), subscriber.org_id.into()],
        ))
        .await
        .context("linking the device to its subscriber")?
        .rows_affected();
    anyhow::ensure!(linked == 1, "the device left the subscriber's organization while it was linked");
    tag(db, device.id, &subscriber.tags()).await?;
    let task = queue_push(db, device).await?;
    let payload = serde_json::json!({
        "device_id": device.device_id,
        "subscriber": subscriber.username,
        "plan": subscriber.plan,
        "task_id": task.id.to_string(),
        "by": actor,
    });
    super::events::record(db, EventType::SubscriberAssigned, Some(subscriber.org_id), &device.device_id, &payload)
        .await?;
    Ok(task)
}

async fn unlink<C: ConnectionTrait>(db: &C, device: &Device, subscriber: &Subscriber, actor: &str) -> Result<()> {
    db.execute_raw(statement(
        db.get_database_backend(),
        "UPDATE devices SET subscriber_id = NULL WHERE id = ?",
        [device.id.into()],
    ))
    .await
    .context("unlinking the device from its subscriber")?;
    untag(db, device.id, &subscriber.tags()).await?;
    let payload = serde_json::json!({"device_id": device.device_id, "subscriber": subscriber.username, "by": actor});
    super::events::record(db, EventType::SubscriberUnassigned, Some(subscriber.org_id), &device.device_id, &payload)
        .await
}

async fn tag<C: ConnectionTrait>(db: &C, device_pk: DevicePk, tags: &[String]) -> Result<()> {
    for tag in tags {
        db.execute_raw(statement(
            db.get_database_backend(),
            "INSERT INTO device_tags (device_id, tag) VALUES (?, ?) ON CONFLICT (device_id, tag) DO NOTHING",
            [device_pk.into(), tag.as_str().into()],
        ))
        .await
        .context("tagging the subscriber's device")?;
    }
    Ok(())
}

async fn untag<C: ConnectionTrait>(db: &C, device_pk: DevicePk, tags: &[String]) -> Result<()> {
    for tag in tags {
        db.execute_raw(statement(
            db.get_database_backend(),
            "DELETE FROM device_tags WHERE device_id = ? AND tag = ?",
            [device_pk.into(), Value::from(tag.as_str())],
        ))
        .await
        .context("untagging the subscriber's device")?;
    }
    Ok(())
}
