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
        let digits = for_backend(manager, "TRIM(p.value) NOT GLOB '*[^0-9]*'", "TRIM(p.value) ~ '^[0-9]+$'")?;
        let interval = INTERVAL.replace("{DIGITS}", digits);
        run_script(manager, &UP.replace("{INTERVAL}", &interval)).await
    }

    /// A backfill of data: an earlier schema has the same columns, and the values stay right.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// The interval a device's stored tree holds, or NULL. The CASE guards the CAST: PostgreSQL would
// refuse the whole statement over one garbled value; ten digits hold any unsignedInt, and keep
// the product below any integer limit.
const INTERVAL: &str = "(SELECT NULLIF(CASE WHEN TRIM(p.value) <> '' AND LENGTH(TRIM(p.value)) <= 10 AND {DIGITS}
    THEN CAST(TRIM(p.value) AS BIGINT) END, 0) FROM parameters p
    WHERE p.device_id = devices.id
    AND p.path IN ('InternetGatewayDevice.ManagementServer.PeriodicInformInterval', 'Device.ManagementServer.PeriodicInformInterval')
    LIMIT 1)";

// Only the devices still without an interval: `offline_at` first (computed from the interval
// it is about to get), then the interval. An interval written since m0014 stays, and so does
// the `offline_at` an Inform set from it with the operator's `[health]`.
const UP: &str = "UPDATE devices SET offline_at = last_inform_at + CASE WHEN {INTERVAL} * 2000 + 60000 > 600000
    THEN {INTERVAL} * 2000 + 60000 ELSE 600000 END
    WHERE inform_interval_s IS NULL AND last_inform_at IS NOT NULL AND {INTERVAL} IS NOT NULL;
UPDATE devices SET inform_interval_s = {INTERVAL} WHERE inform_interval_s IS NULL;";
