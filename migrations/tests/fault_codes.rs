//! m0010 renames the fault codes stored by earlier versions, on both backends, and back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use roost_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Codes as versions before m0010 stored them, and as m0010 leaves them.
const CODES: [(&str, &str); 11] = [
    ("9002", "cwmp.9002"),
    ("8005", "cwmp.8005"),
    ("no_response", "cwmp.no_response"),
    ("wrong_response", "cwmp.wrong_response"),
    ("empty_response", "cwmp.empty_response"),
    ("invalid_response", "cwmp.invalid_response"),
    ("invalid_task", "task.invalid"),
    ("too_many_attempts", "task.too_many_attempts"),
    ("expired", "task.expired"),
    // Already `area.reason`: left as they are.
    ("plugin.timeout", "plugin.timeout"),
    ("provisioning.not_converging", "provisioning.not_converging"),
];

/// Migrations before m0010.
const BEFORE: u32 = 9;

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get_by_index::<String>(0).unwrap()).collect()
}

async fn renames_and_restores(db: &DatabaseConnection) {
    Migrator::up(db, Some(BEFORE)).await.unwrap();
    let exec = |sql: String| async move { db.execute_unprepared(&sql).await.unwrap() };
    exec(
        "INSERT INTO devices (device_id, oui, product_class, serial_number, manufacturer, registered_at)
          VALUES ('A-B-C', 'A', 'B', 'C', 'M', 0)"
            .into(),
    )
    .await;
    for (i, (before, _)) in CODES.iter().enumerate() {
        exec(format!(
            "INSERT INTO tasks (device_id, name, body, status, fault_code, created_at)
             VALUES ((SELECT id FROM devices), 'reboot', '{{}}', 'fault', '{before}', {i})"
        ))
        .await;
        exec(format!(
            "INSERT INTO faults (device_id, channel, code, message, created_at)
             VALUES ((SELECT id FROM devices), 'task', '{before}', 'm', {i})"
        ))
        .await;
    }
    let stored = async || {
        (
            rows(db, "SELECT fault_code FROM tasks ORDER BY created_at").await,
            rows(db, "SELECT code FROM faults ORDER BY created_at").await,
        )
    };
    let before: Vec<String> = CODES.iter().map(|(b, _)| b.to_string()).collect();
    let after: Vec<String> = CODES.iter().map(|(_, a)| a.to_string()).collect();

    // m0010 alone, then back: what later migrations do is not this test's.
    Migrator::up(db, Some(1)).await.unwrap();
    assert_eq!(stored().await, (after.clone(), after));
    Migrator::down(db, Some(1)).await.unwrap();
    assert_eq!(stored().await, (before.clone(), before));
}

#[tokio::test]
async fn sqlite() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    renames_and_restores(&db).await;
}

#[tokio::test]
async fn postgres() {
    let (postgres, db) = common::FreshPostgres::create("m0010").await;
    renames_and_restores(&db).await;
    postgres.drop(db).await;
}
