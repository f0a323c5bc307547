//! The Roost database schema, for SQLite (embedded default) and PostgreSQL (production).
//!
//! Migrations are plain SQL per backend: the parameter store depends on things a portable
//! schema builder cannot say (`WITHOUT ROWID` tables on SQLite, byte-ordered `COLLATE "C"`
//! paths on PostgreSQL so that prefix queries are index range scans), and a reviewer should see
//! exactly what runs. Released migrations are never edited; changes go in a new one.

pub use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_plugins;
mod m0003_preset_runs;
mod m0004_tree_rev;
mod m0005_onboarding_state;
mod m0006_idempotency_keys;
mod m0007_tenancy;
mod m0008_onboarding;
mod m0009_device_list_order;
mod m0010_fault_codes;
mod m0011_plugin_logs;
mod m0012_subscribers;
mod m0013_diagnostics;
mod m0014_health;
mod m0015_fault_repeats;
mod m0016_inform_interval_backfill;
mod m0017_org_speed_test;
mod m0018_files;
mod m0019_rollouts;
mod m0020_bulk;
mod m0021_webhooks;
mod m0022_stun;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_plugins::Migration),
            Box::new(m0003_preset_runs::Migration),
            Box::new(m0004_tree_rev::Migration),
            Box::new(m0005_onboarding_state::Migration),
            Box::new(m0006_idempotency_keys::Migration),
            Box::new(m0007_tenancy::Migration),
            Box::new(m0008_onboarding::Migration),
            Box::new(m0009_device_list_order::Migration),
            Box::new(m0010_fault_codes::Migration),
            Box::new(m0011_plugin_logs::Migration),
            Box::new(m0012_subscribers::Migration),
            Box::new(m0013_diagnostics::Migration),
            Box::new(m0014_health::Migration),
            Box::new(m0015_fault_repeats::Migration),
            Box::new(m0016_inform_interval_backfill::Migration),
            Box::new(m0017_org_speed_test::Migration),
            Box::new(m0018_files::Migration),
            Box::new(m0019_rollouts::Migration),
            Box::new(m0020_bulk::Migration),
            Box::new(m0021_webhooks::Migration),
            Box::new(m0022_stun::Migration),
        ]
    }
}

/// Runs each statement of a `;`-separated script. Statements are split here because PostgreSQL
/// refuses several commands in one prepared statement.
async fn run_script(manager: &SchemaManager<'_>, script: &str) -> Result<(), DbErr> {
    let connection = manager.get_connection();
    for statement in script.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        connection.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Picks the script for the connected backend.
fn for_backend<'a>(manager: &SchemaManager<'_>, sqlite: &'a str, postgres: &'a str) -> Result<&'a str, DbErr> {
    match manager.get_database_backend() {
        sea_orm_migration::sea_orm::DatabaseBackend::Sqlite => Ok(sqlite),
        sea_orm_migration::sea_orm::DatabaseBackend::Postgres => Ok(postgres),
        other => Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
    }
}
