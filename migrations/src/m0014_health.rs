//! Device health: whether a device is online (from its last Inform against its periodic
//! interval) and the time series of its health figures, raw and rolled up by the hour.

use sea_orm_migration::prelude::*;

use crate::{for_backend, run_script};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0014_health"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (without_rowid, now_ms) = match for_backend(manager, "sqlite", "postgres")? {
            "sqlite" => (" WITHOUT ROWID", "CAST(strftime('%s', 'now') AS INTEGER) * 1000"),
            _ => ("", "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) * 1000"),
        };
        run_script(manager, &UP.replace("{WITHOUT_ROWID}", without_rowid).replace("{NOW_MS}", now_ms)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "DROP INDEX tasks_org_status;\n\
             DROP INDEX devices_version_model;\n\
             CREATE INDEX devices_software_version ON devices (software_version);\n\
             DROP TABLE device_metrics_hourly;\n\
             DROP TABLE device_metrics;\n\
             DROP INDEX devices_reported_offline;\n\
             DROP INDEX devices_org_presence;\n\
             ALTER TABLE devices DROP COLUMN reported_online;\n\
             ALTER TABLE devices DROP COLUMN offline_at;\n\
             ALTER TABLE devices DROP COLUMN inform_interval_s;",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// `inform_interval_s`: the device's `ManagementServer.PeriodicInformInterval` as last stored.
// `offline_at`: when the device counts as offline unless it informs again, set by every Inform
// (the last Inform plus the grace its interval earns). `reported_online`: what the last
// `device.online` / `device.offline` event said, so the presence sweep reports each change once;
// the dashboard counts it. Existing devices get ten minutes from their last Inform, the default
// grace, until they inform. No index holds `offline_at` for online devices: the periodic Inform
// moves it, and an index on it would cost every Inform an index update (measured: 10 to 18 % of
// the ceiling). The sweep finds devices going offline through `last_inform_at`'s index, those
// coming back through the partial index of the devices reported offline (which an Inform of an
// online device does not touch); counts by organization read `(org_id, reported_online)`.
//
// `device_metrics`: one row per figure per report (`metric`: `health::Metric`'s code), clustered
// by device and figure so a series is one index range. `device_metrics_hourly`: min, max, sum
// and count per hour (`hour`: its first millisecond), maintained by the same batched write that
// stores the raw points, so it never lags or misses a late point. Both indexed by time for
// retention.
//
// The dashboard (`store::dashboard`) answers from indexes alone: devices by organization and
// presence; by software version and model (this index, with the organization last, replaces the one of
// software versions alone, which device filters still find as its first column: the Inform sets
// the software version, so SQLite rewrites every index holding it at every Inform, and one such
// index costs what it did); tasks by organization and status (faults by organization and time:
// m0015).
const UP: &str = "ALTER TABLE devices ADD COLUMN inform_interval_s BIGINT;
ALTER TABLE devices ADD COLUMN offline_at BIGINT;
ALTER TABLE devices ADD COLUMN reported_online BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE devices SET offline_at = last_inform_at + 600000 WHERE last_inform_at IS NOT NULL;
UPDATE devices SET reported_online = TRUE WHERE offline_at > {NOW_MS};
CREATE INDEX devices_org_presence ON devices (org_id, reported_online);
CREATE INDEX devices_reported_offline ON devices (offline_at) WHERE reported_online = FALSE;
CREATE TABLE device_metrics (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    metric SMALLINT NOT NULL,
    at BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device_id, metric, at)
){WITHOUT_ROWID};
CREATE INDEX device_metrics_at ON device_metrics (at);
CREATE TABLE device_metrics_hourly (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    metric SMALLINT NOT NULL,
    hour BIGINT NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (device_id, metric, hour)
){WITHOUT_ROWID};
CREATE INDEX device_metrics_hourly_hour ON device_metrics_hourly (hour);
DROP INDEX devices_software_version;
CREATE INDEX devices_version_model ON devices (software_version, manufacturer, product_class, org_id);
CREATE INDEX tasks_org_status ON tasks (org_id, status, name)";
