//! The OpenAPI 3.1 document of `/api/v1` and `/nbi`, built from the same `routes!` calls that
//! build the router (so an operation cannot be served without being documented), served at
//! `/api/v1/openapi.json`, and a page that browses it at `/api/docs`, served from the binary.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder, SecurityRequirement};

use super::error::Problem;

/// The security schemes: a JWT access token or an API key as a bearer token, or an API key in
/// `X-API-Key`.
const BEARER: &str = "bearer";
const API_KEY_HEADER: &str = "api_key";

/// The document's fixed part: metadata, the shared schemas and the tags in reading order.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Roost API",
        description = "Roost's REST API (`/api/v1`) and its GenieACS-compatible northbound interface (`/nbi`).\n\n\
            Every operation except signing in takes an access token from `POST /api/v1/auth/login` or an \
            API key, as `Authorization: Bearer …` or (keys only) `X-API-Key: …`. Every error is an \
            RFC 9457 problem document whose `code` is stable. Lists are pages: pass `next_cursor` back \
            as `cursor`.",
        license(name = "Proprietary"),
    ),
    components(schemas(Problem)),
    tags(
        (name = "auth", description = "Signing in: access and refresh tokens"),
        (name = "dashboard", description = "The fleet at a glance: presence, models, software versions, organizations, faults, tasks"),
        (name = "devices", description = "The fleet: devices, parameters, tags, faults, health series, connection requests"),
        (name = "tasks", description = "CWMP operations queued for a device"),
        (name = "faults", description = "What went wrong across the fleet, a repeated fault counted once; clear and retry"),
        (name = "device actions", description = "What a support desk does to one device: reboot, reset, Wi-Fi, parameters, refresh, subscriber links"),
        (name = "diagnostics", description = "Ping, trace route, UDP echo and TR-143 speed tests, with their history"),
        (name = "subscribers", description = "An organization's customers: plan, PPPoE account, devices"),
        (name = "files", description = "Firmware images and configuration files, served to devices by download tasks"),
        (name = "bulk", description = "One action over a device query, fanned out at the organization's pace"),
        (name = "firmware", description = "Staged firmware rollouts: canary, batches, health gates, pause, resume, abort, rollback"),
        (name = "presets", description = "Configuration applied by matching devices"),
        (name = "plugins", description = "Adapters and provisions as WebAssembly components; their limits and configuration"),
        (name = "organizations", description = "Tenants, nested to any depth"),
        (name = "users", description = "People who sign in, each with a role in an organization"),
        (name = "api-keys", description = "Keys for integrations"),
        (name = "onboarding", description = "Pending devices, claims, pre-registration and CPE credentials"),
        (name = "audit", description = "Who changed what"),
        (name = "events", description = "The caller's events as they happen, as Server-Sent Events"),
        (name = "nbi", description = "GenieACS-compatible northbound interface"),
    )
)]
struct Base;

/// The base document, to which the routers add their operations.
pub fn base() -> OpenApi {
    <Base as utoipa::OpenApi>::openapi()
}

/// Operations that take no credential.
const PUBLIC: &[&str] = &["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout"];

/// Completes the document the routers built: every operation answers errors as problem
/// documents and, except the public ones, requires a credential.
pub fn finish(mut document: OpenApi) -> OpenApi {
    let components = document.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        BEARER.into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An access token (JWT) from `POST /api/v1/auth/login`, or an API key"))
                .build(),
        ),
    );
    components.security_schemes.insert(
        API_KEY_HEADER.into(),
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("X-API-Key", "An API key"))),
    );
    let problem = ResponseBuilder::new()
        .description("An error, as an RFC 9457 problem document with a stable `code`")
        .content("application/problem+json", Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))))
        .build();
    let secured = vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::new(API_KEY_HEADER, Vec::<String>::new()),
    ];
    for (path, item) in document.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        for (method, operation) in operations(item) {
            operation.operation_id = Some(operation_id(method, path));
            operation.responses.responses.insert("default".into(), RefOr::T(problem.clone()));
            operation.security = Some(if public { Vec::new() } else { secured.clone() });
        }
    }
    document
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// A unique, stable name for an operation, from its method and path, as client generators use
/// it: `get /api/v1/devices/{id}/tasks` is `getApiV1DevicesIdTasks`; a trailing slash (the NBI's
/// GenieACS spelling) ends in `Slash`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for word in path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    if path.ends_with('/') {
        id.push_str("Slash");
    }
    id
}

/// The page at `/api/docs`: reads `openapi.json` and lists the operations, their parameters,
/// bodies and answers. Self-contained, so it works where no CDN is reachable.
pub const DOCS_PAGE: &str = include_str!("docs.html");

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn operation_ids_are_unique_and_read_as_their_route() {
        assert_eq!(operation_id("get", "/api/v1/devices/{id}/tasks"), "getApiV1DevicesIdTasks");
        assert_eq!(operation_id("get", "/nbi/devices/"), "getNbiDevicesSlash");
        assert_eq!(operation_id("get", "/api/v1/plugin-config/{plugin}"), "getApiV1PluginConfigPlugin");
        let document = crate::api::openapi_document();
        let mut ids = std::collections::BTreeSet::new();
        for item in document.paths.paths.values() {
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch].into_iter().flatten() {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "{id} names two operations");
            }
        }
        assert!(ids.len() > 40, "{} operations", ids.len());
    }

    #[test]
    fn every_operation_answers_problems_and_only_sign_in_is_public() {
        let mut document = crate::api::openapi_document();
        assert!(matches!(document.openapi, utoipa::openapi::OpenApiVersion::Version31));
        for (path, item) in document.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                assert!(operation.responses.responses.contains_key("default"), "{method} {path}");
                let security = operation.security.clone().unwrap_or_default();
                assert_eq!(security.is_empty(), PUBLIC.contains(&path.as_str()), "{method} {path}");
            }
        }
    }

    /// Handlers reach the router only through `routes!`, which documents them: an axum
    /// `.route(` in the API's modules would serve an operation the document does not list.
    /// (The end-to-end suite holds the served router to the document from the other side.)
    #[test]
    fn the_api_adds_routes_only_through_the_document() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.join("api.rs")];
        let mut dirs = vec![root.join("api")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("openapi.rs") {
                    files.push(path);
                }
            }
        }
        // Outside the document on purpose: the probes, the metrics (Prometheus text, for a
        // scraper), and the document and its page themselves.
        let undocumented = ["\"/healthz\"", "\"/readyz\"", "\"/metrics\"", "\"/api/v1/openapi.json\"", "\"/api/docs\""];
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (line_number, line) in text.lines().enumerate() {
                if line.contains(".route(")
                    && !line.trim_start().starts_with("//")
                    && !undocumented.iter().any(|path| line.contains(path))
                {
                    panic!("{}:{}: a route outside `routes!`: {line}", file.display(), line_number + 1);
                }
            }
        }
    }
}
