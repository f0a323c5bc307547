//! A fault that repeats is one row: the same device, channel and code outside a task (a preset
//! refused every session, a plugin over its limit every Inform) counts its occurrences and keeps
//! its first (`created_at`) and last time, with the latest message. Faults recorded before are
//! merged the same way. A task's fault stays its own row (a task faults once; a retry clears it).

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0015_fault_repeats"
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
            "DROP INDEX faults_org_last_seen;\n\
             DROP INDEX faults_repeat;\n\
             ALTER TABLE faults DROP COLUMN last_seen_at;\n\
             ALTER TABLE faults DROP COLUMN occurrences;",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// `faults_repeat`: the key a repeat is found by (the store's upsert names it). `faults_org_last_seen`:
// the dashboard's faults of the last day and `GET /faults` newest first, per organization.
const UP: &str = "ALTER TABLE faults ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1;
ALTER TABLE faults ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE faults SET last_seen_at = created_at;
UPDATE faults SET
    occurrences = (SELECT COUNT(*) FROM faults f WHERE f.task_id IS NULL AND f.device_id = faults.device_id
        AND f.channel = faults.channel AND f.code = faults.code),
    last_seen_at = (SELECT MAX(f.created_at) FROM faults f WHERE f.task_id IS NULL AND f.device_id = faults.device_id
        AND f.channel = faults.channel AND f.code = faults.code),
    message = (SELECT f.message FROM faults f WHERE f.task_id IS NULL AND f.device_id = faults.device_id
        AND f.channel = faults.channel AND f.code = faults.code ORDER BY f.id DESC LIMIT 1)
    WHERE task_id IS NULL;
DELETE FROM faults WHERE task_id IS NULL
    AND id NOT IN (SELECT MIN(id) FROM faults WHERE task_id IS NULL GROUP BY device_id, channel, code);
CREATE UNIQUE INDEX faults_repeat ON faults (device_id, channel, code) WHERE task_id IS NULL;
CREATE INDEX faults_org_last_seen ON faults (org_id, last_seen_at, code)";
