//! The file store over REST: firmware images and configuration files an organization keeps for
//! its devices.
//!
//! `POST /files?name=&file_type=&oui=&product_class=&version=` with the file as the body. The
//! body streams to the store as it arrives, measured and hashed (`crate::files`), so it is not
//! held in memory nor admitted through the API's buffering slots (`take_slot`); uploads have
//! slots of their own. `size` and `sha256` in the query, when given, must match what arrived.
//! A `download` task names a stored file with `"file": "<id>"` (`download_body`): Roost gives
//! the device a URL of its own CWMP listener with a token good for that device and file.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit::AuditOrg;
use super::authenticate::Caller;
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::{Json, Path, Query};
use super::{ListResponse, Page, org_slugs, timestamp};
use crate::app::App;
use crate::files::WriteError;
use crate::permissions::Permission;
use crate::store::devices::Device;
use crate::store::files::{self, FileRow, NewFile};

/// The path of an upload, which `take_slot` lets through unbuffered.
pub const UPLOAD_PATH: &str = "/api/v1/files";

/// Where Roost serves stored files to devices, on the CWMP listener.
pub const DEVICE_PATH: &str = "/files/";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(list, upload)).routes(routes!(show, remove))
}

/// A stored file as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    pub id: String,
    /// The organization's slug.
    pub org: String,
    pub name: String,
    /// The CWMP FileType a `download` of it sends.
    pub file_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oui: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
    pub created_at: String,
}

impl FileView {
    fn new(file: &FileRow, org: &str) -> Self {
        Self {
            id: file.id.to_string(),
            org: org.to_owned(),
            name: file.name.clone(),
            file_type: file.file_type.clone(),
            oui: file.oui.clone(),
            product_class: file.product_class.clone(),
            version: file.version.clone(),
            size: file.bytes(),
            sha256: file.sha256.clone(),
            created_at: timestamp(file.created_at),
        }
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidFile, detail)
}

async fn visible(app: &App, caller: &Caller, id: &str) -> ApiResult<FileRow> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("file"))?;
    files::visible(&app.api_store, &caller.scope, id).await?.ok_or_else(|| ApiError::not_found("file"))
}

/// A file's contents, as bytes.
#[derive(Debug, ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documents the body; the handler streams it
pub struct FileContents(Vec<u8>);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// Unique in the organization: what operators know the file by.
    name: String,
    /// The CWMP FileType: `1 Firmware Upgrade Image` (the default), `3 Vendor Configuration
    /// File`, … or `X <OUI> <name>`.
    file_type: Option<String>,
    /// The ManufacturerOUI of the devices it is for.
    oui: Option<String>,
    /// The ProductClass of the devices it is for.
    product_class: Option<String>,
    /// The SoftwareVersion it installs (a firmware image).
    version: Option<String>,
    /// The size the uploader sent: a file that arrives with another is refused.
    size: Option<u64>,
    /// The SHA-256 (hex) the uploader computed: a file that arrives with another is refused.
    sha256: Option<String>,
    /// The organization's slug; the caller's own when absent.
    org: Option<String>,
}

/// Stores a file, streamed. 413 past `[files] max_bytes`; 422 when the declared `size` or
/// `sha256` differ from what arrived.
#[utoipa::path(post, path = "/files", tag = "files", params(UploadQuery),
    request_body(content((FileContents = "application/octet-stream")), description = "The file"),
    responses((status = 201, description = "Stored", body = FileView)))]
async fn upload(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<FileView>)> {
    let declared = Declared {
        name: &query.name,
        file_type: query.file_type.as_deref(),
        oui: query.oui.as_deref(),
        product_class: query.product_class.as_deref(),
        version: query.version.as_deref(),
        size: query.size,
        sha256: query.sha256.as_deref(),
        org: query.org.as_deref(),
    };
    let stored = receive(&app, &caller, &declared, SameName::Refuse, &headers, body).await?;
    Ok((
        StatusCode::CREATED,
        Extension(AuditOrg(Some(stored.org.id))),
        Json(FileView::new(&stored.file, &stored.org.slug)),
    ))
}

/// What an upload says of the file it brings: `/api/v1/files` in its query, `/nbi/files` in
/// GenieACS's headers.
pub(crate) struct Declared<'a> {
    pub name: &'a str,
    pub file_type: Option<&'a str>,
    pub oui: Option<&'a str>,
    pub product_class: Option<&'a str>,
    pub version: Option<&'a str>,
    /// What the uploader says it sends: a file that arrives otherwise is refused.
    pub size: Option<u64>,
    pub sha256: Option<&'a str>,
    /// The organization's slug; the caller's own when absent.
    pub org: Option<&'a str>,
}

/// What an upload does to a file of the same name in the organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SameName {
    /// 409: Roost's API never overwrites a file under its users.
    Refuse,
    /// Its contents and labels are replaced, its id kept, as GenieACS's `PUT /files/<name>`
    /// does; refused while a rollout that has not finished uses it.
    Replace,
}

pub(crate) struct Received {
    pub file: FileRow,
    pub org: crate::store::orgs::Organization,
}

/// Receives an upload: checks what it declares, streams the body to the file store and records
/// it. A refused client still sending is read until it ends (bounded), so that it sees the
/// refusal rather than a reset; one waiting on `Expect: 100-continue` before its first byte
/// sends nothing once refused, and is not asked to.
pub(crate) async fn receive(
    app: &App,
    caller: &Caller,
    declared: &Declared<'_>,
    same_name: SameName,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Received> {
    let started = std::sync::atomic::AtomicBool::new(false);
    let chunks = body.into_data_stream().map(|chunk| {
        started.store(true, std::sync::atomic::Ordering::Relaxed);
        chunk.map_err(|e| e.to_string())
    });
    // A client that stops sending holds its slot no longer than this.
    // Fused: a refusal after the last byte drains nothing more.
    let mut chunks = Box::pin(tokio_stream_idle(chunks, crate::files::UPLOAD_IDLE).fuse());
    let stored = store_upload(app, caller, declared, same_name, headers, &mut chunks).await;
    if stored.is_err() && (started.load(std::sync::atomic::Ordering::Relaxed) || !expects_continue(headers)) {
        crate::files::discard(&mut chunks, crate::files::REFUSED_DRAIN_BYTES, crate::files::REFUSED_DRAIN_TIME).await;
    }
    stored
}

async fn store_upload(
    app: &App,
    caller: &Caller,
    declared: &Declared<'_>,
    same_name: SameName,
    headers: &axum::http::HeaderMap,
    chunks: &mut (impl futures::Stream<Item = Result<bytes::Bytes, String>> + Send + Unpin),
) -> ApiResult<Received> {
    caller.require(Permission::ManageFiles)?;
    crate::files::check_name(declared.name).map_err(invalid)?;
    let file_type = declared.file_type.unwrap_or(crate::files::DEFAULT_FILE_TYPE);
    crate::files::check_file_type(file_type).map_err(invalid)?;
    for (field, value) in
        [("oui", declared.oui), ("product_class", declared.product_class), ("version", declared.version)]
    {
        if let Some(value) = value {
            crate::files::check_label(field, value).map_err(invalid)?;
        }
    }
    let expected_sha256 = declared.sha256.map(str::to_ascii_lowercase);
    if let Some(sha256) = &expected_sha256
        && !(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(invalid("sha256: 64 hex digits"));
    }
    let org = super::orgs::named_or_own(app, caller, declared.org).await?;
    let existing =
        files::list(&app.api_store, &crate::store::orgs::Scope::Orgs(vec![org.id]), Some(declared.name), None, 1)
            .await?
            .pop();
    if let Some(existing) = &existing {
        match same_name {
            SameName::Refuse => return Err(taken(&org.slug, declared.name)),
            SameName::Replace => refuse_in_use(app, existing).await?,
        }
    }
    let Ok(_slot) = app.upload_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy,
            format!("{} uploads are under way; retry later", crate::files::CONCURRENT_UPLOADS),
        ));
    };
    let max = app.config.files.max_bytes;
    let too_large =
        || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BodyTooLarge, WriteError::TooLarge(max).to_string());
    let content_length =
        headers.get(axum::http::header::CONTENT_LENGTH).and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    if content_length.is_some_and(|length| length > max) {
        // Refused before a byte is read.
        return Err(too_large());
    }
    let key = uuid::Uuid::now_v7().to_string();
    let written = app.files.write(&key, chunks.boxed(), max).await.map_err(|error| match error {
        WriteError::TooLarge(_) => too_large(),
        WriteError::Body(_) => ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidBody, error.to_string()),
        WriteError::Storage(error) => ApiError::from(error),
    })?;
    let mismatch = match (declared.size, &expected_sha256) {
        (Some(size), _) if size != written.size => {
            Some(format!("size: {size} bytes declared, {} arrived", written.size))
        }
        (_, Some(sha256)) if *sha256 != written.sha256 => {
            Some(format!("sha256: {sha256} declared, {} arrived", written.sha256))
        }
        _ => None,
    };
    if let Some(mismatch) = mismatch {
        app.files.remove(&key).await?;
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidFile, mismatch));
    }
    let new = NewFile {
        org_id: org.id,
        name: declared.name,
        file_type,
        oui: declared.oui,
        product_class: declared.product_class,
        version: declared.version,
        size: written.size,
        sha256: &written.sha256,
        storage_key: &key,
    };
    let recorded = match &existing {
        None => files::insert(&app.api_store, new).await,
        Some(existing) => files::replace(&app.api_store, existing, new).await,
    };
    let stored = match recorded {
        Ok(Some(stored)) => stored,
        failed => {
            app.files.remove(&key).await?;
            // Another upload of the name finished first (or replaced it first).
            failed?;
            return Err(taken(&org.slug, declared.name));
        }
    };
    if let Some(existing) = &existing {
        app.files.remove(&existing.storage_key).await?;
    }
    Ok(Received { file: stored, org })
}

/// 409 while a rollout that has not finished uses the file.
async fn refuse_in_use(app: &App, file: &FileRow) -> ApiResult<()> {
    if crate::store::rollouts::uses_file(&app.api_store, file.id).await? {
        return Err(ApiError::conflict(
            ErrorCode::FileInUse,
            "a rollout that has not finished uses this file (as its image or to roll back with); abort or finish it first",
        ));
    }
    Ok(())
}

/// Deletes a file the caller sees and its contents; the download URLs given for it stop working.
pub(crate) async fn delete(app: &App, file: &FileRow) -> ApiResult<()> {
    refuse_in_use(app, file).await?;
    files::delete(&app.api_store, file.id).await?;
    app.files.remove(&file.storage_key).await?;
    Ok(())
}

fn taken(org: &str, name: &str) -> ApiError {
    ApiError::conflict(ErrorCode::FileExists, format!("name: {org} has a file {name:?} already; delete it first"))
}

fn expects_continue(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Ends a stream with an error when `idle` passes without an item.
fn tokio_stream_idle<S>(
    stream: S,
    idle: std::time::Duration,
) -> impl futures::Stream<Item = Result<bytes::Bytes, String>>
where
    S: futures::Stream<Item = Result<bytes::Bytes, String>> + Send,
{
    futures::stream::unfold((Box::pin(stream), false), move |(mut stream, ended)| async move {
        if ended {
            return None;
        }
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((item, (stream, false))),
            Ok(None) => None,
            Err(_) => Some((Err(format!("nothing arrived for {} s", idle.as_secs())), (stream, true))),
        }
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[serde(flatten)]
    #[param(ignore)] // documented by `Page` itself
    page: Page,
    /// Only the file of this name.
    name: Option<String>,
}

#[utoipa::path(get, path = "/files", tag = "files", params(ListQuery, Page),
    responses((status = 200, description = "A page of files", body = ListResponse<FileView>)))]
async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<ListResponse<FileView>>> {
    caller.require(Permission::ReadFleet)?;
    let limit = query.page.limit()?;
    let rows =
        files::list(&app.api_store, &caller.scope, query.name.as_deref(), query.page.id_cursor()?, limit).await?;
    let slugs = org_slugs(&app).await?;
    let last = rows.last().map(|f| f.id.to_string());
    let items =
        rows.iter().map(|f| FileView::new(f, slugs.get(&f.org_id).map(String::as_str).unwrap_or_default())).collect();
    Ok(Json(ListResponse::new(items, limit, last)))
}

/// A file's id in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct FileId {
    id: String,
}

#[utoipa::path(get, path = "/files/{id}", tag = "files", params(FileId),
    responses((status = 200, description = "The file", body = FileView)))]
async fn show(State(app): State<Arc<App>>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<FileView>> {
    caller.require(Permission::ReadFleet)?;
    let file = visible(&app, &caller, &id).await?;
    Ok(Json(FileView::new(&file, &super::org_slug(&app, file.org_id).await?)))
}

/// Deletes a file and its contents; the download URLs given for it stop working.
#[utoipa::path(delete, path = "/files/{id}", tag = "files", params(FileId),
    responses((status = 204, description = "Deleted")))]
async fn remove(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    caller.require(Permission::ManageFiles)?;
    let file = visible(&app, &caller, &id).await?;
    delete(&app, &file).await?;
    Ok((StatusCode::NO_CONTENT, Extension(AuditOrg(Some(file.org_id)))))
}

/// A `download` task body naming a stored file (`"file"`: its id, or its name as GenieACS
/// clients give it) made into one a device can carry out: the URL of the file on Roost's CWMP
/// listener with a token for this device, good for `[files] download_ttl`; `fileSize` and
/// `fileType` from the file unless the body gives them. The file must be the device's
/// organization's or one above it (a device no organization has claimed takes the platform's
/// only). `"file"` stays in the body, so the stored task shows which file it was while its URL
/// is blanked (`tasks::redact`). Any other body is returned as it is.
pub async fn download_body(app: &App, caller: &Caller, device: &Device, body: &Value) -> ApiResult<Option<Value>> {
    let Some(reference) = body.get("file").filter(|_| body.get("name").and_then(Value::as_str) == Some("download"))
    else {
        return Ok(None);
    };
    let task = |detail: String| ApiError::bad_request(ErrorCode::InvalidTask, detail);
    if body.get("url").is_some() {
        return Err(task("a download names a url or a stored file, not both".into()));
    }
    let candidates = match reference {
        Value::Number(id) => id.as_i64().map(|id| files::visible(&app.api_store, &caller.scope, id)),
        Value::String(id) if id.parse::<i64>().is_ok() => {
            id.parse::<i64>().ok().map(|id| files::visible(&app.api_store, &caller.scope, id))
        }
        _ => None,
    };
    let found: Vec<FileRow> = match (candidates, reference.as_str()) {
        (Some(by_id), _) => by_id.await?.into_iter().collect(),
        (None, Some(name)) => files::list(&app.api_store, &caller.scope, Some(name), None, 100).await?,
        (None, None) => return Err(task("file: the id or the name of a stored file (GET /api/v1/files)".into())),
    };
    let mut file = None;
    for candidate in found {
        if serves(app, &candidate, device).await? {
            // The device's own organization's file wins over one from above.
            let own = Some(candidate.org_id) == device.org_id;
            if own || file.is_none() {
                file = Some(candidate);
            }
        }
    }
    let file = file.ok_or_else(|| {
        task(format!("file: no stored file {reference} of the device's organization or one above it that you can see"))
    })?;
    let base = super::diagnostics::device_base(app, device).await?.ok_or_else(|| {
        ApiError::conflict(
            ErrorCode::InvalidTask,
            "file: the device's ACS URL is not known yet, so Roost cannot give it a URL of its own; \
             give url instead, or wait for the device's first session",
        )
    })?;
    let token = crate::secrets::random_token("");
    let ttl = i64::try_from(app.config.files.download_ttl.as_millis()).unwrap_or(i64::MAX);
    let expires_at = crate::store::now_millis().saturating_add(ttl);
    files::grant(&app.api_store, file.id, device.id, &crate::secrets::token_hash(&token), expires_at).await?;
    let mut body = body.clone();
    if let Some(object) = body.as_object_mut() {
        object.insert("file".into(), Value::String(file.id.to_string()));
        object.insert("url".into(), Value::String(crate::files::device_url(&base, &token, &file.name)));
        object.entry("fileSize").or_insert_with(|| Value::from(file.bytes()));
        object.entry("fileType").or_insert_with(|| Value::String(file.file_type.clone()));
    }
    Ok(Some(body))
}

/// Whether `file` may go to `device`: the file belongs to the device's organization or one
/// above it; a device no organization has claimed takes the platform's files only.
async fn serves(app: &App, file: &FileRow, device: &Device) -> ApiResult<bool> {
    Ok(match device.org_id {
        Some(org) => crate::store::orgs::subtree(&app.api_store, file.org_id).await?.contains(&org),
        None => crate::store::orgs::by_id(&app.api_store, file.org_id).await?.is_some_and(|o| o.parent_id.is_none()),
    })
}
