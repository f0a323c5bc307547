//! `Idempotency-Key` on task POSTs: the key is written in the transaction that queues the task,
//! so a client that saw an error (a timeout, a server killed mid-answer) can retry without
//! queueing the task twice.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_idempotency_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, "DROP TABLE idempotency_keys;").await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// `principal`: who sent the key (`user:<id>`): keys of different callers never meet.
// `request_hash`: the request the key was first used with; the same key with another request is
// refused. Rows older than a day are ignored and deleted.
const UP: &str = "CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    task_id BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);";
