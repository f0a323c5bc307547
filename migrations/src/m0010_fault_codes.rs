//! Fault codes get one naming scheme, `area.reason` (see `roost::fault_code`): a CPE's CWMP
//! fault `9002` becomes `cwmp.9002`, as GenieACS writes it; `no_response` and the other answers
//! that are failures become `cwmp.no_response` …; a task's own `invalid_task`,
//! `too_many_attempts` and `expired` become `task.invalid`, `task.too_many_attempts` and
//! `task.expired`. Faults and failed tasks recorded before keep their meaning under the new names.

use sea_orm_migration::prelude::*;

use crate::{for_backend, run_script};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0010_fault_codes"
    }
}

/// Where codes are stored: `(table, column)`.
const CODE_COLUMNS: [(&str, &str); 2] = [("faults", "code"), ("tasks", "fault_code")];

/// Codes renamed by name: `(before, after)`.
const RENAMED: [(&str, &str); 7] = [
    ("no_response", "cwmp.no_response"),
    ("wrong_response", "cwmp.wrong_response"),
    ("empty_response", "cwmp.empty_response"),
    ("invalid_response", "cwmp.invalid_response"),
    ("invalid_task", "task.invalid"),
    ("too_many_attempts", "task.too_many_attempts"),
    ("expired", "task.expired"),
];

/// The renames of every code column, forward (`up`) or back; a CWMP fault number is told apart
/// from the named codes by its digits, which SQLite and PostgreSQL spell differently.
fn script(manager: &SchemaManager<'_>, up: bool) -> Result<String, DbErr> {
    let mut script = String::new();
    for (table, column) in CODE_COLUMNS {
        for (before, after) in RENAMED {
            let (from, to) = if up { (before, after) } else { (after, before) };
            script.push_str(&format!("UPDATE {table} SET {column} = '{to}' WHERE {column} = '{from}';\n"));
        }
        let numbered = if up {
            let condition = for_backend(manager, "{c} <> '' AND {c} NOT GLOB '*[^0-9]*'", "{c} ~ '^[0-9]+$'")?;
            format!("UPDATE {table} SET {column} = 'cwmp.' || {column} WHERE {};\n", condition.replace("{c}", column))
        } else {
            let condition = for_backend(
                manager,
                "{c} GLOB 'cwmp.[0-9]*' AND substr({c}, 6) NOT GLOB '*[^0-9]*'",
                "{c} ~ '^cwmp\\.[0-9]+$'",
            )?;
            format!("UPDATE {table} SET {column} = substr({column}, 6) WHERE {};\n", condition.replace("{c}", column))
        };
        script.push_str(&numbered);
    }
    Ok(script)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &script(manager, true)?).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, &script(manager, false)?).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
