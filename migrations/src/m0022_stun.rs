//! Devices behind NAT (TR-111): the public UDP address a device's STUN Binding Requests came
//! from, once a signed one said it is where UDP connection requests reach the device, and when
//! that was last said.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0022_stun"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "ALTER TABLE devices ADD COLUMN udp_connection_request_address TEXT NOT NULL DEFAULT '';\nALTER TABLE devices ADD COLUMN udp_binding_at BIGINT",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "ALTER TABLE devices DROP COLUMN udp_binding_at;\nALTER TABLE devices DROP COLUMN udp_connection_request_address",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
