//! Devices registered before m0014 get the periodic interval their stored tree holds: m0014 left
//! `inform_interval_s` empty, and a periodic Inform does not carry the interval, so a device
//! informing every hour would count as offline ten minutes after each Inform (the default grace)
//! until something wrote its interval again. Their `offline_at` is then the grace that interval
//! earns from their last Inform, as an Inform sets it with the default `[health]`; the presence
//! sweep reports those it had called offline as back. A value that is not a whole number of
//! seconds is no interval.

use sea_orm_migration::prelude::*;

use crate::{for_backend, run_script};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0016_inform_interval_backfill"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let digits = for_backend(manager, "p.value NOT GLOB '*[^0-9]*'", "p.value ~ '^[0-9]+$'")?;
        run_script(manager, &UP.replace("{DIGITS}", digits)).await
    }

    /// A backfill of data: an earlier schema has the same columns, and the values stay right.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// The CASE guards the CAST: PostgreSQL would refuse the whole statement over one garbled value,
// and nine digits keep the product below any integer limit. An interval already known (written
// since m0014) is left as it is.
const UP: &str = "UPDATE devices SET inform_interval_s = (SELECT NULLIF(CASE WHEN p.value <> '' AND LENGTH(p.value) <= 9 AND {DIGITS}
    THEN CAST(p.value AS BIGINT) END, 0) FROM parameters p
    WHERE p.device_id = devices.id
    AND p.path IN ('InternetGatewayDevice.ManagementServer.PeriodicInformInterval', 'Device.ManagementServer.PeriodicInformInterval')
    LIMIT 1)
    WHERE inform_interval_s IS NULL;
UPDATE devices SET offline_at = last_inform_at + CASE WHEN inform_interval_s * 2000 + 60000 > 600000
    THEN inform_interval_s * 2000 + 60000 ELSE 600000 END
    WHERE last_inform_at IS NOT NULL AND inform_interval_s IS NOT NULL;";
