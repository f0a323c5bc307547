//! m0016 gives devices registered before m0014 the periodic interval their stored tree holds,
//! and the grace it earns from their last Inform, so an upgrade does not report every
//! slow-informing device offline; a value that is not a number is no interval, and an interval
//! written since m0014 stays.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use roost_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Migrations before m0016.
const BEFORE: u32 = 15;

async fn backfills(db: &DatabaseConnection) {
    Migrator::up(db, Some(BEFORE)).await.unwrap();
    let exec = |sql: String| async move { db.execute_unprepared(&sql).await.unwrap() };
    // As m0014 left them: no interval, the default grace from the last Inform; and one whose
    // interval a write stored since (its tree's value is older, the column is right, and its
    // `offline_at` is what an Inform set with the operator's grace: both stay).
    for (serial, root, interval, known) in [
        ("HOURLY", "InternetGatewayDevice", Some("3600"), "NULL"),
        ("MINUTE", "Device", Some("60"), "NULL"),
        ("GARBLED", "Device", Some("soon"), "NULL"),
        ("HUGE", "Device", Some("99999999999999999999"), "NULL"),
        ("NONE", "Device", None, "NULL"),
        ("SPACED", "Device", Some(" 7200 "), "NULL"),
        ("WRITTEN", "Device", Some("86400"), "1800"),
    ] {
        exec(format!(
            "INSERT INTO devices (device_id, oui, product_class, serial_number, manufacturer, registered_at, \
             last_inform_at, inform_interval_s, offline_at) \
             VALUES ('A-B-{serial}', 'A', 'B', '{serial}', 'M', 0, 1000000, {known}, 1600000)"
        ))
        .await;
        if let Some(value) = interval {
            exec(format!(
                "INSERT INTO parameters (device_id, path, value, value_type, refreshed_at) \
                 VALUES ((SELECT id FROM devices WHERE serial_number = '{serial}'), \
                 '{root}.ManagementServer.PeriodicInformInterval', '{value}', 'xsd:unsignedInt', 0)"
            ))
            .await;
        }
    }
    Migrator::up(db, Some(1)).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT serial_number, inform_interval_s, offline_at FROM devices ORDER BY serial_number",
        ))
        .await
        .unwrap();
    let got: Vec<(String, Option<i64>, Option<i64>)> = rows
        .iter()
        .map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap(), r.try_get_by_index(2).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("GARBLED".into(), None, Some(1_600_000)),
            ("HOURLY".into(), Some(3600), Some(1_000_000 + 2 * 3_600_000 + 60_000)),
            ("HUGE".into(), None, Some(1_600_000)),
            ("MINUTE".into(), Some(60), Some(1_600_000)),
            ("NONE".into(), None, Some(1_600_000)),
            ("SPACED".into(), Some(7200), Some(1_000_000 + 2 * 7_200_000 + 60_000)),
            ("WRITTEN".into(), Some(1800), Some(1_600_000)),
        ]
    );
    Migrator::down(db, Some(1)).await.unwrap();
}

#[tokio::test]
async fn sqlite() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    backfills(&db).await;
}

#[tokio::test]
async fn postgres() {
    let (postgres, db) = common::FreshPostgres::create("m0016").await;
    backfills(&db).await;
    postgres.drop(db).await;
}
