//! Replicas are upgraded one at a time (docs/DEPLOY.md, "Rolling upgrade"): once the first new
//! replica has migrated the schema, the old ones still serve on it until their turn comes. So no
//! migration takes away a table or a column an earlier one made; a release that must would need
//! every replica stopped, and this test is where it would have to say so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use roost_migrations::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

/// Every (table, column) of the schema.
async fn columns(db: &DatabaseConnection) -> BTreeSet<(String, String)> {
    let sql = "SELECT table_name::text AS table_name, column_name::text AS column_name \
               FROM information_schema.columns WHERE table_schema = current_schema()";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter()
        .map(|row| {
            (row.try_get::<String>("", "table_name").unwrap(), row.try_get::<String>("", "column_name").unwrap())
        })
        .collect()
}

#[tokio::test]
async fn no_migration_takes_away_a_table_or_a_column() {
    let (fresh, db) = common::FreshPostgres::create("only_add").await;
    let mut before = columns(&db).await;
    for migration in Migrator::migrations() {
        Migrator::up(&db, Some(1)).await.unwrap();
        let after = columns(&db).await;
        let gone: Vec<_> = before.difference(&after).collect();
        assert!(
            gone.is_empty(),
            "{} takes away {gone:?}: replicas of the release before it would fail on the new schema",
            migration.name()
        );
        before = after;
    }
    assert!(before.contains(&("devices".to_owned(), "udp_binding_at".to_owned())), "every migration ran");
    fresh.drop(db).await;
}
