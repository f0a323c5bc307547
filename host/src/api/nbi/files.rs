//! GenieACS's `/files/`: a firmware image or configuration file put by name, with its labels in
//! the request's headers (`fileType`, `oui`, `productClass`, `version`), listed in GenieACS's
//! shape, deleted by name. They are the firmware store's files (`/api/v1/files`) of the key's
//! own organization, where names are unique: a `download` task's `"file": "<name>"` finds them.
//! The body streams to the store as `/api/v1/files`' does (`take_slot` lets it through).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::super::audit::AuditOrg;
use super::super::authenticate::Caller;
use super::super::error::{ApiError, ApiResult, ErrorCode};
use super::super::extract::{Json, Path, Query};
use super::super::files::{Declared, SameName, delete, receive};
use super::super::timestamp;
use super::{FindQuery, invalid_query};
use crate::app::App;
use crate::permissions::Permission;
use crate::store::files::{self, FileRow};
use crate::store::orgs::Scope;

/// Where a put streams past the API's buffering slots (`take_slot`), on the whole path.
pub const UPLOAD_PREFIX: &str = "/nbi/files/";

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(find_files))
        .routes(routes!(find_files_slash))
        .routes(routes!(put_file, delete_file))
}

/// A file as GenieACS lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct NbiFile {
    /// The file's name.
    #[serde(rename = "_id")]
    pub id: String,
    pub filename: String,
    /// Bytes.
    pub length: u64,
    #[serde(rename = "uploadDate")]
    pub upload_date: String,
    pub metadata: NbiFileMetadata,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NbiFileMetadata {
    #[serde(rename = "fileType")]
    pub file_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oui: Option<String>,
    #[serde(rename = "productClass", skip_serializing_if = "Option::is_none")]
    pub product_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the contents, hex (Roost's; GenieACS has none).
    pub sha256: String,
}

impl NbiFile {
    fn new(file: &FileRow) -> Self {
        Self {
            id: file.name.clone(),
            filename: file.name.clone(),
            length: file.bytes(),
            upload_date: timestamp(file.created_at),
            metadata: NbiFileMetadata {
                file_type: file.file_type.clone(),
                oui: file.oui.clone(),
                product_class: file.product_class.clone(),
                version: file.version.clone(),
                sha256: file.sha256.clone(),
            },
        }
    }
}

/// A file's field a query may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileField {
    Name,
    FileType,
    Oui,
    ProductClass,
    Version,
}

impl FileField {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "_id" | "filename" => Self::Name,
            "metadata.fileType" => Self::FileType,
            "metadata.oui" => Self::Oui,
            "metadata.productClass" => Self::ProductClass,
            "metadata.version" => Self::Version,
            _ => return None,
        })
    }

    fn of(self, file: &FileRow) -> Option<&str> {
        match self {
            Self::Name => Some(&file.name),
            Self::FileType => Some(&file.file_type),
            Self::Oui => file.oui.as_deref(),
            Self::ProductClass => file.product_class.as_deref(),
            Self::Version => file.version.as_deref(),
        }
    }
}

/// A files query: each field equal to a text, or to one of several (`$in`).
#[derive(Debug, Default, PartialEq)]
struct FileQuery(Vec<(FileField, Vec<String>)>);

impl FileQuery {
    fn parse(query: Option<&Value>) -> ApiResult<Self> {
        let Some(query) = query else { return Ok(Self::default()) };
        let members = query.as_object().ok_or_else(|| invalid_query("a files query is a JSON object"))?;
        let mut conditions = Vec::new();
        for (name, wanted) in members {
            let field = FileField::parse(name).ok_or_else(|| {
                invalid_query(format!(
                    "files are queried by _id, filename, metadata.fileType, metadata.oui, metadata.productClass and \
                     metadata.version, not {name}"
                ))
            })?;
            let text = |value: &Value| {
                value.as_str().map(str::to_owned).ok_or_else(|| invalid_query(format!("{name}: a text to equal")))
            };
            let values = match wanted {
                Value::Object(operator) if operator.len() == 1 && operator.contains_key("$eq") => {
                    vec![text(&operator["$eq"])?]
                }
                Value::Object(operator) if operator.len() == 1 && operator.contains_key("$in") => operator["$in"]
                    .as_array()
                    .ok_or_else(|| invalid_query(format!("{name}: $in takes a list")))?
                    .iter()
                    .map(text)
                    .collect::<ApiResult<Vec<_>>>()?,
                Value::Object(_) => return Err(invalid_query(format!("{name}: files take equality and $in only"))),
                value => vec![text(value)?],
            };
            conditions.push((field, values));
        }
        Ok(Self(conditions))
    }

    fn matches(&self, file: &FileRow) -> bool {
        self.0.iter().all(|(field, values)| field.of(file).is_some_and(|actual| values.iter().any(|v| v == actual)))
    }
}

/// The files of the caller's organization that `query` matches, in upload order.
#[utoipa::path(get, path = "/files", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Files", body = Vec<NbiFile>)))]
async fn find_files(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(params): Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiFile>>> {
    caller.require(Permission::ReadFleet)?;
    let query = FileQuery::parse(params.parsed()?.as_ref())?;
    let (skip, limit) = (params.skip.unwrap_or(0), params.limit()?);
    let scope = Scope::Orgs(vec![caller.org_id]);
    // An organization keeps tens or hundreds of files: all read, by pages, and matched here.
    const PAGE: u64 = 500;
    let (mut matched, mut after) = (Vec::new(), None);
    loop {
        let page = files::list(&app.api_store, &scope, None, after, PAGE).await?;
        matched.extend(page.iter().filter(|file| query.matches(file)).map(NbiFile::new));
        match page.last() {
            Some(last) if page.len() as u64 == PAGE => after = Some(last.id),
            _ => break,
        }
    }
    let (skip, limit) = (usize::try_from(skip).unwrap_or(usize::MAX), usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(Json(matched.into_iter().skip(skip).take(limit).collect()))
}

#[utoipa::path(get, path = "/files/", tag = "nbi", params(FindQuery),
    responses((status = 200, description = "Files", body = Vec<NbiFile>)))]
async fn find_files_slash(
    state: State<Arc<App>>,
    caller: Caller,
    params: Query<FindQuery>,
) -> ApiResult<Json<Vec<NbiFile>>> {
    find_files(state, caller, params).await
}

/// A file's name in a path.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documents the path; handlers read it with `Path<String>`
struct FileName {
    name: String,
}

/// A label from GenieACS's request headers; refused when it is not text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::bad_request(ErrorCode::InvalidFile, format!("the {name} header is not visible ASCII text"))
            })
        })
        .transpose()
}

/// Stores a file under `name`, or replaces the one of that name (keeping its id), with the
/// labels in the `fileType` (default `1 Firmware Upgrade Image`), `oui`, `productClass` and
/// `version` headers. 200, as GenieACS answers; 409 while a rollout that has not finished uses
/// the file; 413 past `[files] max_bytes`.
#[utoipa::path(put, path = "/files/{name}", tag = "nbi", params(FileName,
        ("fileType" = Option<String>, Header, description = "The CWMP FileType"),
        ("oui" = Option<String>, Header, description = "The ManufacturerOUI of the devices it is for"),
        ("productClass" = Option<String>, Header, description = "The ProductClass of the devices it is for"),
        ("version" = Option<String>, Header, description = "The SoftwareVersion it installs")),
    request_body(content((super::super::files::FileContents = "application/octet-stream")), description = "The file"),
    responses((status = 200, description = "Stored or replaced", body = NbiFile)))]
async fn put_file(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, Extension<AuditOrg>, Json<NbiFile>)> {
    let declared = Declared {
        name: &name,
        file_type: header(&headers, "fileType")?,
        oui: header(&headers, "oui")?,
        product_class: header(&headers, "productClass")?,
        version: header(&headers, "version")?,
        size: None,
        sha256: None,
        org: None,
    };
    let stored = receive(&app, &caller, &declared, SameName::Replace, &headers, body).await?;
    Ok((StatusCode::OK, Extension(AuditOrg(Some(stored.org.id))), Json(NbiFile::new(&stored.file))))
}

/// Deletes the caller's organization's file of that name. 409 while a rollout that has not
/// finished uses it.
#[utoipa::path(delete, path = "/files/{name}", tag = "nbi", params(FileName),
    responses((status = 200, description = "Deleted")))]
async fn delete_file(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Extension<AuditOrg>)> {
    caller.require(Permission::ManageFiles)?;
    let file = files::list(&app.api_store, &Scope::Orgs(vec![caller.org_id]), Some(&name), None, 1)
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found("file"))?;
    delete(&app, &file).await?;
    Ok((StatusCode::OK, Extension(AuditOrg(Some(file.org_id)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(name: &str, version: Option<&str>) -> FileRow {
        FileRow {
            id: 1,
            org_id: 1,
            name: name.into(),
            file_type: "1 Firmware Upgrade Image".into(),
            oui: Some("00259E".into()),
            product_class: None,
            version: version.map(Into::into),
            size: 10,
            sha256: "00".repeat(32),
            storage_key: "k".into(),
            created_at: 0,
        }
    }

    #[test]
    fn queries_are_equalities_of_the_listed_fields() {
        let image = file("fw-2.bin", Some("2.0"));
        let matches = |query: Value| FileQuery::parse(Some(&query)).map(|q| q.matches(&image));
        assert!(matches(json!({})).unwrap_or(false));
        assert!(matches(json!({"filename": "fw-2.bin"})).unwrap_or(false));
        assert!(matches(json!({"_id": {"$eq": "fw-2.bin"}, "metadata.oui": "00259E"})).unwrap_or(false));
        assert!(matches(json!({"metadata.version": {"$in": ["1.0", "2.0"]}})).unwrap_or(false));
        assert!(!matches(json!({"metadata.version": "1.0"})).unwrap_or(true));
        // A label the file lacks matches nothing.
        assert!(!matches(json!({"metadata.productClass": "HG8245H"})).unwrap_or(true));
        assert!(FileQuery::parse(Some(&json!({"length": 10}))).is_err(), "not a queried field");
        assert!(FileQuery::parse(Some(&json!({"_id": {"$regex": "fw"}}))).is_err(), "no other operator");
        assert!(FileQuery::parse(Some(&json!({"_id": 3}))).is_err(), "names are text");
        assert!(FileQuery::parse(Some(&json!(["_id"]))).is_err(), "an object");
        assert_eq!(FileQuery::parse(None).map(|q| q.0.len()).ok(), Some(0));
    }
}
