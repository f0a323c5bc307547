//! The rows of the file store (`files`) and the grants that let a device download one
//! (`file_downloads`). Contents are the storage backend's (`crate::files`).

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, FromQueryResult};

use super::orgs::Scope;
use super::{DevicePk, Store, now_millis};

#[derive(Debug, Clone, FromQueryResult)]
pub struct FileRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub file_type: String,
    pub oui: Option<String>,
    pub product_class: Option<String>,
    pub version: Option<String>,
    pub size: i64,
    pub sha256: String,
    /// Where the backend keeps the contents.
    pub storage_key: String,
    pub created_at: i64,
}

impl FileRow {
    /// Its size in bytes (never negative: it is what an upload measured).
    pub fn bytes(&self) -> u64 {
        u64::try_from(self.size).unwrap_or(0)
    }
}

/// A file to record, its contents stored already.
#[derive(Debug)]
pub struct NewFile<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub file_type: &'a str,
    pub oui: Option<&'a str>,
    pub product_class: Option<&'a str>,
    pub version: Option<&'a str>,
    pub size: u64,
    pub sha256: &'a str,
    pub storage_key: &'a str,
}

impl NewFile<'_> {
    /// `file_type, oui, product_class, version, size, sha256, storage_key`, as bound.
    fn contents(&self) -> [sea_orm::Value; 7] {
        [
            self.file_type.into(),
            self.oui.into(),
            self.product_class.into(),
            self.version.into(),
            i64::try_from(self.size).unwrap_or(i64::MAX).into(),
            self.sha256.into(),
            self.storage_key.into(),
        ]
    }
}

/// `None` when the organization has a file of that name already.
pub async fn insert(store: &Store, new: NewFile<'_>) -> Result<Option<FileRow>> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "INSERT INTO files (org_id, name, file_type, oui, product_class, version, size, sha256, storage_key, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id, name) DO NOTHING RETURNING *",
        [vec![new.org_id.into(), new.name.into()], new.contents().to_vec(), vec![now_millis().into()]].concat(),
    );
    super::first::<FileRow, _>(store.db(), stmt).await.context("recording a file")
}

/// Gives `old`'s row the contents and labels of `new`, keeping its id (and so the download
/// grants and rollouts that name it); `None` when another upload replaced or deleted it first.
pub async fn replace(store: &Store, old: &FileRow, new: NewFile<'_>) -> Result<Option<FileRow>> {
    let _guard = store.write_guard().await;
    let stmt = store.statement(
        "UPDATE files SET file_type = ?, oui = ?, product_class = ?, version = ?, size = ?, sha256 = ?, storage_key = ?,
         created_at = ? WHERE id = ? AND storage_key = ? RETURNING *",
        [
            new.contents().to_vec(),
            vec![now_millis().into(), old.id.into(), old.storage_key.as_str().into()],
        ]
        .concat(),
    );
    super::first::<FileRow, _>(store.db(), stmt).await.context("replacing a file")
}

/// A file the scope sees.
pub async fn visible(store: &Store, scope: &Scope, id: i64) -> Result<Option<FileRow>> {
    let (condition, mut args) = scope.condition("org_id");
    args.insert(0, id.into());
    let stmt = store.statement(&format!("SELECT * FROM files WHERE id = ? AND {condition}"), args);
    super::first::<FileRow, _>(store.db(), stmt).await.context("loading a file")
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<FileRow>> {
    visible(store, &Scope::All, id).await
}

/// The firmware images of some organizations that say which version they install: where a
/// rollout looks for each device's rollback image.
pub async fn versioned_firmware(store: &Store, org_ids: &[i64]) -> Result<Vec<FileRow>> {
    if org_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM files WHERE org_id IN ({}) AND file_type = ? AND version IS NOT NULL ORDER BY id",
        super::placeholders(org_ids.len())
    );
    let mut args: Vec<sea_orm::Value> = org_ids.iter().map(|id| (*id).into()).collect();
    args.push(crate::files::DEFAULT_FILE_TYPE.into());
    FileRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing firmware images")
}

/// The scope's files by id, after `after`; `name` narrows to one name.
pub async fn list(
    store: &Store,
    scope: &Scope,
    name: Option<&str>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<FileRow>> {
    let (condition, mut args) = scope.condition("org_id");
    let mut sql = format!("SELECT * FROM files WHERE {condition}");
    if let Some(name) = name {
        sql.push_str(" AND name = ?");
        args.push(name.into());
    }
    super::page_by_id(&mut sql, &mut args, after, limit);
    FileRow::find_by_statement(store.statement(&sql, args)).all(store.db()).await.context("listing files")
}

/// Deletes a file's row and its download grants (the caller removes the contents).
pub async fn delete(store: &Store, id: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    for sql in ["DELETE FROM file_downloads WHERE file_id = ?", "DELETE FROM files WHERE id = ?"] {
        store.db().execute_raw(store.statement(sql, [id.into()])).await.context("deleting a file")?;
    }
    Ok(())
}

/// Lets `device` download `file` with the token whose hash is `token_hash`, until `expires_at`.
/// Grants past their time are swept on the way.
pub async fn grant(store: &Store, file_id: i64, device: DevicePk, token_hash: &str, expires_at: i64) -> Result<()> {
    let _guard = store.write_guard().await;
    let sweep = store.statement("DELETE FROM file_downloads WHERE expires_at < ?", [now_millis().into()]);
    store.db().execute_raw(sweep).await.context("sweeping expired downloads")?;
    let stmt = store.statement(
        "INSERT INTO file_downloads (token_hash, file_id, device_id, expires_at) VALUES (?, ?, ?, ?)",
        [token_hash.into(), file_id.into(), device.0.into(), expires_at.into()],
    );
    store.db().execute_raw(stmt).await.context("granting a download")?;
    Ok(())
}

/// The file a download token is good for now, if any.
pub async fn by_token(store: &Store, token_hash: &str) -> Result<Option<FileRow>> {
    let stmt = store.statement(
        "SELECT f.* FROM file_downloads d JOIN files f ON f.id = d.file_id WHERE d.token_hash = ? AND d.expires_at >= ?",
        [token_hash.into(), now_millis().into()],
    );
    super::first::<FileRow, _>(store.db(), stmt).await.context("checking a download token")
}
