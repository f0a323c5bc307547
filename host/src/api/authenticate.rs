//! Who is calling: a bearer JWT or an API key (`Authorization: Bearer`, or `X-API-Key`) turned
//! into a [`Caller`] once per request, by a middleware in front of every route that also
//! rate-limits API keys and audits mutations.
//!
//! Users and keys are read live (cached for [`LIVE_FOR`]): a disabled or deleted user, a
//! revoked key or a changed role takes effect within seconds, not at a token's expiry, and a
//! key check costs no password hash and at most one query every few seconds.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult, ErrorCode};
use crate::app::App;
use crate::permissions::{Permission, Role};
use crate::store::api_keys::{self, ApiKey};
use crate::store::now_millis;
use crate::store::orgs::{self, Scope};
use crate::store::users::{self, User};

/// How long a user's or key's state is trusted before it is read again.
pub const LIVE_FOR: Duration = Duration::from_secs(2);

/// API keys start with this, so a bearer token is told apart without trying both.
pub const API_KEY_PREFIX: &str = "roost_";

/// Who the request acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User { id: i64, email: String },
    ApiKey { id: i64, name: String },
}

/// The caller of a request: from a verified token or key only, never from request data.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub org_id: i64,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {} role or higher", permission.minimum_role().as_str())))
        }
    }

    /// `user:<id>` or `api-key:<id>`: who, in the audit log and idempotency keys.
    pub fn actor(&self) -> String {
        match &self.principal {
            Principal::User { id, .. } => format!("user:{id}"),
            Principal::ApiKey { id, .. } => format!("api-key:{id}"),
        }
    }

    pub fn actor_name(&self) -> &str {
        match &self.principal {
            Principal::User { email, .. } => email,
            Principal::ApiKey { name, .. } => name,
        }
    }

    /// Whether an organization is the caller's own or below it.
    pub fn covers(&self, org_id: i64) -> bool {
        self.scope.contains(Some(org_id))
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _app: &Arc<App>) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::unauthorized("missing credentials: Authorization: Bearer <token or API key>, or X-API-Key")
        })
    }
}

/// What a request presents.
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    Jwt(String),
    ApiKey(String),
}

fn credential(headers: &HeaderMap) -> ApiResult<Option<Credential>> {
    if let Some(key) = headers.get("x-api-key") {
        let key = key.to_str().map_err(|_| ApiError::unauthorized("X-API-Key is not a key"))?;
        return Ok(Some(Credential::ApiKey(key.trim().to_owned())));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized("the Authorization header must be a Bearer token or API key"));
    }
    let token = token.trim().to_owned();
    Ok(Some(if token.starts_with(API_KEY_PREFIX) { Credential::ApiKey(token) } else { Credential::Jwt(token) }))
}

/// A user as last read, with its scope.
#[derive(Debug)]
struct LiveUser {
    user: User,
    scope: Scope,
}

#[derive(Debug)]
struct LiveKey {
    key: ApiKey,
    scope: Scope,
}

/// The caches behind authentication, and API keys' request buckets.
pub struct Principals {
    users: moka::future::Cache<i64, Option<Arc<LiveUser>>>,
    keys: moka::future::Cache<String, Arc<LiveKey>>,
    /// Each key's request bucket: (when it was last counted in ms, requests left).
    buckets: moka::sync::Cache<i64, Arc<std::sync::Mutex<(i64, f64)>>>,
    /// Keys whose `last_used_at` was written within the minute.
    touched: moka::sync::Cache<i64, ()>,
}

impl std::fmt::Debug for Principals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Principals(..)")
    }
}

impl Default for Principals {
    fn default() -> Self {
        Self {
            users: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LIVE_FOR).build(),
            keys: moka::future::Cache::builder().max_capacity(100_000).time_to_live(LIVE_FOR).build(),
            buckets: moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(120)).build(),
            touched: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        }
    }
}

impl Principals {
    /// Forgets what is cached: after a change to users, keys or the organization tree on this
    /// replica, it takes effect at once (other replicas follow within [`LIVE_FOR`]).
    pub fn forget(&self) {
        self.users.invalidate_all();
        self.keys.invalidate_all();
    }

    async fn user(&self, app: &App, id: i64) -> ApiResult<Option<Arc<LiveUser>>> {
        let loaded = self
            .users
            .try_get_with(id, async {
                let Some(user) = users::by_id(&app.api_store, id).await? else { return Ok(None) };
                let role = parse_role(&user.role)?;
                let scope = scope_of(app, user.org_id, role).await?;
                anyhow::Ok(Some(Arc::new(LiveUser { user, scope })))
            })
            .await;
        loaded.map_err(|e| ApiError::from(anyhow::anyhow!("{e:#}")))
    }

    async fn key(&self, app: &App, hash: String) -> ApiResult<Option<Arc<LiveKey>>> {
        if let Some(live) = self.keys.get(&hash).await {
            return Ok(Some(live));
        }
        // Unknown keys are not cached: guessing costs the guesser a query, not memory here.
        let Some(key) = api_keys::usable_by_hash(&app.api_store, &hash).await? else { return Ok(None) };
        let scope = scope_of(app, key.org_id, parse_role(&key.role)?).await?;
        let live = Arc::new(LiveKey { key, scope });
        self.keys.insert(hash, live.clone()).await;
        Ok(Some(live))
    }

    /// Takes a request from a key's bucket. The bucket holds `limit` requests and refills at
    /// `limit` a minute, continuously: a client can burst up to its limit, then goes at the
    /// limit's pace, and no window boundary lets it send twice its limit in a moment.
    fn count(&self, key_id: i64, limit: u64, now_ms: i64) -> RateState {
        let capacity = limit as f64;
        let per_ms = capacity / 60_000.0;
        let bucket = self.buckets.get_with(key_id, || Arc::new(std::sync::Mutex::new((now_ms, capacity))));
        let (tokens, allowed) = match bucket.lock() {
            Ok(mut bucket) => {
                let elapsed = (now_ms - bucket.0).max(0) as f64;
                let tokens = (bucket.1 + elapsed * per_ms).min(capacity);
                let allowed = tokens >= 1.0;
                *bucket = (now_ms, if allowed { tokens - 1.0 } else { tokens });
                (bucket.1, allowed)
            }
            Err(_) => (capacity, true),
        };
        let seconds_until = |missing: f64| ((missing / per_ms) / 1000.0).ceil().max(1.0) as u64;
        RateState {
            limit,
            remaining: tokens.floor() as u64,
            reset: if allowed { seconds_until(capacity - tokens) } else { seconds_until(1.0 - tokens) },
            exceeded: !allowed,
        }
    }
}

fn parse_role(role: &str) -> anyhow::Result<Role> {
    Role::parse(role).ok_or_else(|| anyhow::anyhow!("stored role {role:?} is not one Roost knows"))
}

async fn scope_of(app: &App, org_id: i64, role: Role) -> anyhow::Result<Scope> {
    Ok(if role == Role::PlatformAdmin { Scope::All } else { Scope::Orgs(orgs::subtree(&app.api_store, org_id).await?) })
}

/// A key's rate window after this request, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RateState {
    limit: u64,
    remaining: u64,
    /// Seconds until the bucket is full again; when exceeded, until the next request is allowed.
    reset: u64,
    exceeded: bool,
}

impl RateState {
    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert("ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(self.reset));
    }
}

async fn resolve(app: &App, credential: Credential) -> ApiResult<(Caller, Option<RateState>)> {
    match credential {
        Credential::Jwt(token) => {
            let claims = super::auth::verify_access_token(app, &token).await?;
            let id: i64 = claims.sub.parse().map_err(|_| ApiError::unauthorized("invalid token"))?;
            let live = app.auth.principals.user(app, id).await?;
            let live = live
                .filter(|live| !live.user.disabled)
                .ok_or_else(|| ApiError::unauthorized("the user no longer exists or is disabled"))?;
            if claims.iat_ms < live.user.credentials_changed_at {
                return Err(ApiError::unauthorized(
                    "the token was issued before the user's password changed or the user was disabled; sign in again",
                ));
            }
            let caller = Caller {
                principal: Principal::User { id, email: live.user.email.clone() },
                org_id: live.user.org_id,
                role: parse_role(&live.user.role)?,
                scope: live.scope.clone(),
            };
            Ok((caller, None))
        }
        Credential::ApiKey(text) => {
            let hash = super::auth::token_hash(&text);
            let now = now_millis();
            let live = app.auth.principals.key(app, hash).await?;
            let live = live
                .filter(|live| live.key.expires_at.is_none_or(|at| at > now))
                .ok_or_else(|| ApiError::unauthorized("the API key is unknown, revoked or expired"))?;
            let key = &live.key;
            let limit = key
                .rate_limit_per_minute
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(app.config.api.api_key_rate_limit_per_minute);
            let rate = app.auth.principals.count(key.id, limit, now);
            if app.auth.principals.touched.get(&key.id).is_none() {
                app.auth.principals.touched.insert(key.id, ());
                if let Err(error) = api_keys::touch(&app.api_store, key.id).await {
                    tracing::warn!(key = key.id, "recording an API key's use: {error:#}");
                }
            }
            let caller = Caller {
                principal: Principal::ApiKey { id: key.id, name: key.name.clone() },
                org_id: key.org_id,
                role: parse_role(&key.role)?,
                scope: live.scope.clone(),
            };
            Ok((caller, Some(rate)))
        }
    }
}

/// The middleware in front of every authenticated route: resolves the caller (a request with no
/// credentials goes on without one, and handlers that need one answer 401), enforces API keys'
/// rate limits, and records mutations in the audit log.
pub async fn authenticate(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = credential(request.headers());
    let resolved = match presented {
        Ok(None) => None,
        Ok(Some(credential)) => match resolve(&app, credential).await {
            Ok(resolved) => Some(resolved),
            Err(error) => return error.into_response(),
        },
        Err(error) => return error.into_response(),
    };
    let (caller, rate) = match resolved {
        Some((caller, rate)) => (Some(caller), rate),
        None => (None, None),
    };
    if let Some(rate) = rate.filter(|rate| rate.exceeded) {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("this API key is limited to {} requests a minute", rate.limit),
        )
        .with_retry_after(rate.reset)
        .into_response();
        rate.apply(response.headers_mut());
        return response;
    }
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    // The whole path: inside the nested router, `uri()` has lost its `/api/v1`.
    let target = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| request.uri().path().to_owned(), |uri| uri.path().to_owned());
    let forwarded = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let client = crate::cwmp::Origin::of(peer, forwarded.as_deref(), &app.config.cwmp.trusted_proxies).client;
    if let Some(caller) = &caller {
        request.extensions_mut().insert(caller.clone());
    }
    let mut response = next.run(request).await;
    if let Some(rate) = rate {
        rate.apply(response.headers_mut());
    }
    if is_mutation(&method) {
        let action = format!("{method} {route}");
        let outcome = super::audit::Outcome::of(&response);
        super::audit::record(&app, caller.as_ref(), &action, &target, client, outcome).await;
    }
    response
}

fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn credentials_are_told_apart_by_header_and_prefix() {
        assert_eq!(credential(&headers(&[])).unwrap(), None);
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer a.b.c")])).unwrap(),
            Some(Credential::Jwt("a.b.c".into()))
        );
        assert_eq!(
            credential(&headers(&[("authorization", "bearer roost_abc")])).unwrap(),
            Some(Credential::ApiKey("roost_abc".into()))
        );
        assert_eq!(
            credential(&headers(&[("x-api-key", "roost_k")])).unwrap(),
            Some(Credential::ApiKey("roost_k".into()))
        );
        // X-API-Key wins: NBI clients send it beside whatever else their HTTP library adds.
        assert_eq!(
            credential(&headers(&[("x-api-key", "roost_k"), ("authorization", "Bearer a.b.c")])).unwrap(),
            Some(Credential::ApiKey("roost_k".into()))
        );
        assert!(credential(&headers(&[("authorization", "Basic dXNlcjpwYXNz")])).is_err());
    }

    #[test]
    fn key_buckets_allow_a_burst_of_the_limit_then_its_pace() {
        let principals = Principals::default();
        let start = 1_000_000;
        let first = principals.count(1, 2, start);
        assert_eq!(first, RateState { limit: 2, remaining: 1, reset: 30, exceeded: false });
        assert!(!principals.count(1, 2, start + 1).exceeded);
        let third = principals.count(1, 2, start + 2);
        assert!(third.exceeded);
        assert_eq!((third.remaining, third.reset), (0, 30), "one request comes back every 30 s");
        assert!(!principals.count(2, 2, start + 2).exceeded, "another key has its own bucket");
        assert!(!principals.count(1, 2, start + 30_002).exceeded, "refilled at the limit's pace");
        assert!(principals.count(1, 2, start + 30_003).exceeded);
        let rested = principals.count(1, 2, start + 600_000);
        assert_eq!(
            rested,
            RateState { limit: 2, remaining: 1, reset: 30, exceeded: false },
            "never more than the limit"
        );
    }
}
