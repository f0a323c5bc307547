//! An organization's own TR-143 test server: the URLs its devices download from and upload to in
//! a speed test, instead of Roost's own endpoints. Either may be absent (that direction then uses
//! Roost's); an organization without one uses its nearest ancestor's.

use sea_orm_migration::prelude::*;

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0017_org_speed_test"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "ALTER TABLE organizations ADD COLUMN speed_test_download_url TEXT;\n\
             ALTER TABLE organizations ADD COLUMN speed_test_upload_url TEXT;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(
            manager,
            "ALTER TABLE organizations DROP COLUMN speed_test_upload_url;\n\
             ALTER TABLE organizations DROP COLUMN speed_test_download_url;",
        )
        .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
