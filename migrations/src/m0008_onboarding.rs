//! Onboarding per tenant: an organization's own CWMP host name, onboarding credentials per
//! device model, serials pre-registered by an organization, and each device's own CWMP
//! credential.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_onboarding"
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
            "DROP TABLE preregistrations;\nDROP INDEX organizations_cwmp_host;\n\
             ALTER TABLE organizations DROP COLUMN cwmp_host;\nALTER TABLE cpe_credentials DROP COLUMN product_class;\n\
             ALTER TABLE devices DROP COLUMN own_credential_at;",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

// `cwmp_host`: a tenant's own name for the ACS (a CNAME such as acs.isp.example); CPEs informing
// at that Host join the organization, as at `/cwmp/{slug}`.
// `cpe_credentials.product_class`: an onboarding credential only for that device model.
// `preregistrations`: serials an organization expects; a device with such a serial joins it at
// its first Inform (when exactly one organization expects it).
// `devices.own_credential_at`: when the device took the CWMP credential Roost made for it (a
// `cpe_credentials` row with its `device_id`); from then on only that credential opens its
// sessions.
const UP: &str = "ALTER TABLE organizations ADD COLUMN cwmp_host TEXT;
CREATE UNIQUE INDEX organizations_cwmp_host ON organizations (cwmp_host);
ALTER TABLE cpe_credentials ADD COLUMN product_class TEXT;
CREATE TABLE preregistrations (
    org_id BIGINT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    serial_number TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, serial_number)
);
CREATE INDEX preregistrations_serial ON preregistrations (serial_number);
ALTER TABLE devices ADD COLUMN own_credential_at BIGINT;";
