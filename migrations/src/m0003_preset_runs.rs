//! When each scheduled preset last ran for each device.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_preset_runs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "DROP TABLE preset_runs;").await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// Keyed by the preset's owner and name rather than its row id: a preset replaced with PUT keeps
// its schedule. Only presets with a schedule write here, once per session that ran them.
const UP: &str = "
CREATE TABLE preset_runs (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    org_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    preset TEXT NOT NULL,
    last_run_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, org_id, preset)
);
";
