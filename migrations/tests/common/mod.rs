//! A database of its own on the test PostgreSQL server, for a migration test that runs the
//! migrations from the start.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection};

pub struct FreshPostgres {
    admin: DatabaseConnection,
    name: String,
}

impl FreshPostgres {
    /// A new, empty database named after `tag` and this process, and a connection to it.
    pub async fn create(tag: &str) -> (Self, DatabaseConnection) {
        let admin_url = std::env::var("ROOST_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("roost_{tag}_{}", std::process::id());
        let admin = Database::connect(&admin_url).await.expect("connecting to PostgreSQL (is it running?)");
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
        let db = Database::connect(format!("{base}/{name}")).await.unwrap();
        (FreshPostgres { admin, name }, db)
    }

    /// Closes `db` and drops its database.
    pub async fn drop(self, db: DatabaseConnection) {
        db.close().await.unwrap();
        self.admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await.unwrap();
    }
}
