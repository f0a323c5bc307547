//! Organizations, users, settings, devices with their parameter trees, events, tags, tasks and
//! faults. Times are milliseconds since the Unix epoch in BIGINT columns: identical on both
//! backends, cheap to compare, and free of time-zone conversions.

use sea_orm_migration::prelude::*;

use crate::{for_backend, run_script};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let script = for_backend(manager, &SQLITE, &POSTGRES)?;
        run_script(manager, script).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DOWN).await
    }

    /// A half-created schema is worse than none: SQLite gets a transaction too.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

const DOWN: &str = "
DROP TABLE faults;
DROP TABLE tasks;
DROP TABLE device_events;
DROP TABLE device_tags;
DROP TABLE parameters;
DROP TABLE devices;
DROP TABLE settings;
DROP TABLE cpe_credentials;
DROP TABLE users;
DROP TABLE organizations;
";

/// Shared by both backends, with `{ID}` (an auto-increment primary key), `{BLOB}` and `{PATH}`
/// (the parameter path type) filled in per backend.
const TEMPLATE: &str = "
CREATE TABLE organizations (
    id {ID},
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    parent_id BIGINT REFERENCES organizations(id),
    created_at BIGINT NOT NULL
);
INSERT INTO organizations (slug, name, parent_id, created_at) VALUES ('platform', 'Platform', NULL, 0);
CREATE INDEX organizations_parent ON organizations (parent_id);

CREATE TABLE users (
    id {ID},
    org_id BIGINT NOT NULL REFERENCES organizations(id),
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE INDEX users_org ON users (org_id);

-- Platform-wide settings (the JWT signing key, sealed with the master key).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value {BLOB} NOT NULL
);

-- Credentials CPEs present to the CWMP endpoint. Scoped to an organization (NULL: any) and
-- optionally to one device (its GenieACS-style id). The password is sealed, not hashed: HTTP
-- Digest needs it to verify a response.
CREATE TABLE cpe_credentials (
    id {ID},
    org_id BIGINT REFERENCES organizations(id),
    device_id TEXT,
    username TEXT NOT NULL UNIQUE,
    password {BLOB} NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per CPE. org_id is NULL until the device is claimed by (or onboarded into) an
-- organization. The columns are what the Inform hot path and the device filters read; the whole
-- tree lives in parameters.
CREATE TABLE devices (
    id {ID},
    device_id TEXT NOT NULL UNIQUE,
    org_id BIGINT REFERENCES organizations(id),
    oui TEXT NOT NULL,
    product_class TEXT NOT NULL,
    serial_number TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    software_version TEXT NOT NULL DEFAULT '',
    hardware_version TEXT NOT NULL DEFAULT '',
    data_model TEXT NOT NULL DEFAULT '',
    cwmp_version TEXT NOT NULL DEFAULT '',
    remote_address TEXT NOT NULL DEFAULT '',
    parameter_key TEXT NOT NULL DEFAULT '',
    connection_request_url TEXT NOT NULL DEFAULT '',
    connection_request_username TEXT NOT NULL DEFAULT '',
    connection_request_password {BLOB},
    last_events TEXT NOT NULL DEFAULT '',
    -- Digest of the parameters the last Inform carried, as stored. Equal digest: the periodic
    -- Inform changed nothing and writes nothing but this row. Empty: unknown (anything else
    -- that writes parameter rows clears it).
    inform_digest TEXT NOT NULL DEFAULT '',
    registered_at BIGINT NOT NULL,
    last_inform_at BIGINT,
    last_boot_at BIGINT,
    last_bootstrap_at BIGINT,
    discovered_at BIGINT,
    connection_request_at BIGINT,
    connection_request_outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX devices_org ON devices (org_id, id);
CREATE INDEX devices_serial ON devices (serial_number);
CREATE INDEX devices_oui ON devices (oui);
CREATE INDEX devices_product_class ON devices (product_class);
CREATE INDEX devices_software_version ON devices (software_version);
CREATE INDEX devices_last_inform ON devices (last_inform_at);

-- The parameter tree: one row per parameter or object node, clustered by device then path so
-- that a device's subtree is one contiguous range. Objects have is_object and no value.
-- Owned through devices: a row is never addressed without its device, whose org_id is the
-- tenancy gate, so claiming a device does not rewrite thousands of rows.
CREATE TABLE parameters (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    path {PATH} NOT NULL,
    value TEXT,
    value_type TEXT NOT NULL DEFAULT '',
    writable BOOLEAN NOT NULL DEFAULT FALSE,
    is_object BOOLEAN NOT NULL DEFAULT FALSE,
    refreshed_at BIGINT NOT NULL,
    -- For secrets (value always ''): what Roost set, sealed with the master key.
    sealed_value {BLOB},
    PRIMARY KEY (device_id, path)
){WITHOUT_ROWID};

CREATE TABLE device_tags (
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (device_id, tag)
){WITHOUT_ROWID};
CREATE INDEX device_tags_tag ON device_tags (tag);

-- Inform events other than a lone periodic one (those are on devices.last_events only, or the
-- table would grow by a row per device per interval).
CREATE TABLE device_events (
    id {ID},
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    org_id BIGINT REFERENCES organizations(id),
    codes TEXT NOT NULL,
    command_keys TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX device_events_device ON device_events (device_id, id);

-- The durable task queue. Tasks of a device run in id order in its next session.
-- stage: queued | sent (an RPC is outstanding) | transferring (Download/Upload accepted,
-- waiting for TransferComplete with command_key).
CREATE TABLE tasks (
    id {ID},
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    org_id BIGINT REFERENCES organizations(id),
    name TEXT NOT NULL,
    -- The request as submitted, with secret values replaced by '********'; the original is in
    -- sealed_body (sealed with the master key) when they differ.
    body TEXT NOT NULL,
    sealed_body {BLOB},
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued',
    command_key TEXT NOT NULL DEFAULT '',
    fault_code TEXT,
    fault_message TEXT,
    fault_detail TEXT,
    result TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    done_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX tasks_device_status ON tasks (device_id, status, id);
CREATE INDEX tasks_org ON tasks (org_id, id);

-- Faults of a device: CPE faults against tasks, and (later) provisioning faults.
CREATE TABLE faults (
    id {ID},
    device_id BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    org_id BIGINT REFERENCES organizations(id),
    task_id BIGINT REFERENCES tasks(id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    detail TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX faults_device ON faults (device_id, id);
CREATE INDEX faults_org ON faults (org_id, id);
";

fn render(id: &str, blob: &str, path: &str, without_rowid: &str) -> String {
    TEMPLATE
        .replace("{ID}", id)
        .replace("{BLOB}", blob)
        .replace("{PATH}", path)
        .replace("{WITHOUT_ROWID}", without_rowid)
}

static SQLITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| render("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "TEXT", " WITHOUT ROWID"));

static POSTGRES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    render("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BYTEA", "TEXT COLLATE \"C\"", "")
});
