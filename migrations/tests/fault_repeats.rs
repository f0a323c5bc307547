//! m0015 merges the repeats of a fault recorded before it into one row with their count, first
//! and last time and latest message; a task's fault stays its own; and back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use roost_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Migrations before m0015.
const BEFORE: u32 = 14;

async fn merges_repeats(db: &DatabaseConnection) {
    Migrator::up(db, Some(BEFORE)).await.unwrap();
    let exec = |sql: String| async move { db.execute_unprepared(&sql).await.unwrap() };
    exec(
        "INSERT INTO devices (device_id, oui, product_class, serial_number, manufacturer, registered_at) \
          VALUES ('A-B-C', 'A', 'B', 'C', 'M', 0)"
            .into(),
    )
    .await;
    exec("INSERT INTO tasks (device_id, name, body, status, created_at) VALUES ((SELECT id FROM devices), 'reboot', '{}', 'fault', 0)".into()).await;
    for (channel, code, task, at) in [
        ("preset:wifi", "cwmp.9007", false, 10),
        ("preset:wifi", "cwmp.9007", false, 20),
        ("preset:wifi", "cwmp.9007", false, 30),
        ("preset:wifi", "plugin.trap", false, 15),
        ("task", "cwmp.9002", true, 40),
    ] {
        let task = if task { "(SELECT id FROM tasks)" } else { "NULL" };
        exec(format!(
            "INSERT INTO faults (device_id, task_id, channel, code, message, created_at) \
             VALUES ((SELECT id FROM devices), {task}, '{channel}', '{code}', 'at {at}', {at})"
        ))
        .await;
    }
    Migrator::up(db, Some(1)).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT code, occurrences, created_at, last_seen_at, message FROM faults ORDER BY created_at",
        ))
        .await
        .unwrap();
    let merged: Vec<(String, i64, i64, i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
                r.try_get_by_index(3).unwrap(),
                r.try_get_by_index(4).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        merged,
        [
            ("cwmp.9007".into(), 3, 10, 30, "at 30".into()),
            ("plugin.trap".into(), 1, 15, 15, "at 15".into()),
            ("cwmp.9002".into(), 1, 40, 40, "at 40".into()),
        ]
    );
    Migrator::down(db, Some(1)).await.unwrap();
}

#[tokio::test]
async fn sqlite() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    merges_repeats(&db).await;
}

#[tokio::test]
async fn postgres() {
    let (postgres, db) = common::FreshPostgres::create("m0015").await;
    merges_repeats(&db).await;
    postgres.drop(db).await;
}
