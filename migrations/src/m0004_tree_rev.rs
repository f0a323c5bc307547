//! A revision number of each device's stored parameter tree.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_tree_rev"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "ALTER TABLE devices DROP COLUMN tree_rev;").await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// Every write to a device's parameter rows increments it, in the statement that already marks
// the device row (the Inform digest's reset): a replica that kept what provisions read of a
// device knows from the Inform's own `RETURNING *` whether that is still what the store holds,
// whichever replica wrote since. A constant default makes the column free to add on both
// backends, even to a large table.
const UP: &str = "ALTER TABLE devices ADD COLUMN tree_rev BIGINT NOT NULL DEFAULT 0;";
