//! What Roost has done to a device, rather than what the device says of itself: whether its
//! first configuration settled, and how discovery fares on fragile firmware.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_onboarding_state"
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
            "ALTER TABLE devices DROP COLUMN configured_at;\n\
             ALTER TABLE devices DROP COLUMN discovery_batch;\n\
             ALTER TABLE devices DROP COLUMN discovery_failures;",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// `configured_at`: when a session's provisioning (bootstrap presets included) last settled for
// the device. A device is new to Roost while it is NULL, whatever events it sends: several
// agents never send `0 BOOTSTRAP`. Devices that already hold connection-request credentials from
// Roost were configured before this column existed.
//
// `discovery_batch`: the GetParameterValues batch size that firmware of this device survives (0:
// the configured default); halved each time a batch kills the session.
// `discovery_failures`: sessions in a row that died during discovery; past a bound discovery
// stops and a fault is recorded.
const UP: &str = "ALTER TABLE devices ADD COLUMN configured_at BIGINT;
ALTER TABLE devices ADD COLUMN discovery_batch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN discovery_failures BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET configured_at = COALESCE(last_inform_at, registered_at) WHERE connection_request_password IS NOT NULL;";
