//! What plugin runs logged, per device: written after each provisioning round that ran plugins in
//! the sandbox, kept up to a number of lines per device (the oldest go first), listed newest
//! first.

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};

use super::{DevicePk, Store};

/// How much a line matters, as plugins say it (`roost:plugin/log`'s `level`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

stored_names!(LogLevel { Debug => "debug", Info => "info", Warn => "warn", Error => "error" });

impl LogLevel {
    pub const ALL: [LogLevel; 4] = [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error];

    /// This level and the ones above it: what a minimum level selects.
    fn and_above(self) -> impl Iterator<Item = LogLevel> {
        LogLevel::ALL.into_iter().filter(move |level| *level >= self)
    }
}

/// A line to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogLine {
    pub plugin: String,
    pub preset: String,
    pub level: LogLevel,
    pub message: String,
}

/// A stored line.
#[derive(Debug, Clone, FromQueryResult)]
pub struct LogRow {
    pub id: i64,
    pub plugin: String,
    pub preset: String,
    pub level: LogLevel,
    pub message: String,
    pub session_at: i64,
    pub created_at: i64,
}

/// Which lines to list.
#[derive(Debug, Default, Clone)]
pub struct LogFilter {
    pub plugin: Option<String>,
    pub preset: Option<String>,
    /// This level and above.
    pub min_level: Option<LogLevel>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// Lines per INSERT: at 7 values each, well under SQLite's 32,766 bound variables.
const LINES_PER_INSERT: usize = 1_000;

/// Stores a round's lines, then drops the device's oldest beyond `keep`. Nothing to store costs
/// nothing; lines that would be dropped at once are not written.
pub async fn append(
    store: &Store,
    device_pk: DevicePk,
    session_at: i64,
    lines: &[NewLogLine],
    keep: u64,
) -> Result<()> {
    let kept = lines.len().min(usize::try_from(keep).unwrap_or(usize::MAX));
    let lines = &lines[lines.len() - kept..];
    if lines.is_empty() {
        return Ok(());
    }
    let now = super::now_millis();
    let _guard = store.write_guard().await;
    for chunk in lines.chunks(LINES_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO plugin_logs (device_id, plugin, preset, level, message, session_at, created_at) VALUES ",
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        for (i, line) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(?, ?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?, ?)" });
            args.extend([
                device_pk.into(),
                line.plugin.clone().into(),
                line.preset.clone().into(),
                line.level.as_str().into(),
                line.message.clone().into(),
                session_at.into(),
                now.into(),
            ]);
        }
        store.db().execute_raw(store.statement(&sql, args)).await.context("storing plugin log lines")?;
    }
    // The newest `keep` lines stay: everything at or below the id of the first line past them
    // goes.
    store
        .db()
        .execute_raw(store.statement(
            "DELETE FROM plugin_logs WHERE device_id = ? AND id <= (
                 SELECT id FROM plugin_logs WHERE device_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            [device_pk.into(), device_pk.into(), i64::try_from(keep).unwrap_or(i64::MAX).into()],
        ))
        .await
        .context("dropping a device's oldest plugin log lines")?;
    Ok(())
}

/// The device's lines matching `filter`, newest first, before the line `before` when paging.
pub async fn list(
    store: &Store,
    device_pk: DevicePk,
    filter: &LogFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<LogRow>> {
    let mut sql = String::from("SELECT * FROM plugin_logs WHERE device_id = ?");
    let mut args: Vec<Value> = vec![device_pk.into()];
    if let Some(min) = filter.min_level {
        let levels: Vec<Value> = min.and_above().map(|level| level.as_str().into()).collect();
        sql.push_str(&format!(" AND level IN ({})", vec!["?"; levels.len()].join(", ")));
        args.extend(levels);
    }
    let mut push = |clause: &str, value: Value| {
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(plugin) = &filter.plugin {
        push(" AND plugin = ?", plugin.clone().into());
    }
    if let Some(preset) = &filter.preset {
        push(" AND preset = ?", preset.clone().into());
    }
    super::newest_first(&mut sql, &mut args, (filter.since, filter.until), before, limit);
    LogRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing plugin log lines")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimum_level_selects_it_and_those_above() {
        assert_eq!(LogLevel::Warn.and_above().collect::<Vec<_>>(), [LogLevel::Warn, LogLevel::Error]);
        assert_eq!(LogLevel::Debug.and_above().count(), 4);
        assert_eq!(LogLevel::Error.and_above().collect::<Vec<_>>(), [LogLevel::Error]);
    }

    #[test]
    fn levels_read_back_as_written() {
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::parse(level.as_str()), Some(level));
        }
        assert_eq!(LogLevel::parse("fatal"), None);
    }
}
