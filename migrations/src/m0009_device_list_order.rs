//! Device lists sorted by last Inform or registration time, over a whole platform, walk an
//! index in order instead of sorting every device (measured: 330 ms for the newest 100 of
//! 100,000 devices without it). The index on `last_inform_at` is replaced, not doubled: the
//! periodic Inform updates that column, and pays for every index on it.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_device_list_order"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP INDEX devices_last_inform_id;\nDROP INDEX devices_registered_id;\n\
             CREATE INDEX devices_last_inform ON devices (last_inform_at);",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

const UP: &str = "DROP INDEX devices_last_inform;
CREATE INDEX devices_last_inform_id ON devices (last_inform_at, id);
CREATE INDEX devices_registered_id ON devices (registered_at, id);";
