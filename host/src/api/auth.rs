//! Authentication: `POST /auth/login` and `/auth/refresh`, JWTs signed with a key kept in the
//! database (sealed with the master key) so tokens survive restarts and are valid on every
//! replica, and the extractor that turns a bearer token into the caller's tenant context.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::routing::post;

use super::extract::Json;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use crate::app::App;
use crate::secrets::Secrets;
use crate::store::orgs::{self, Scope};
use crate::store::{Store, settings, users};

const SIGNING_KEY_SETTING: &str = "jwt_signing_key";
const REFRESH_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// Role tiers, lowest first: each includes the rights of those below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ReadOnly,
    Basic,
    Advanced,
    OrgAdmin,
    PlatformAdmin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read-only" => Some(Self::ReadOnly),
            "basic" => Some(Self::Basic),
            "advanced" => Some(Self::Advanced),
            "org-admin" => Some(Self::OrgAdmin),
            "platform-admin" => Some(Self::PlatformAdmin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Basic => "basic",
            Self::Advanced => "advanced",
            Self::OrgAdmin => "org-admin",
            Self::PlatformAdmin => "platform-admin",
        }
    }

    pub const NAMES: &'static str = "read-only, basic, advanced, org-admin, platform-admin";
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    /// Loads the signing key, creating it on the very first start.
    pub async fn load_or_create(store: &Store, secrets: &Secrets) -> Result<Self> {
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        let sealed = settings::get_or_insert(store, SIGNING_KEY_SETTING, secrets.seal(&fresh)).await?;
        let key = secrets.open(&sealed).context(
            "the JWT signing key does not open with this master key (was ROOST_MASTER_KEY or data/master.key changed?)",
        )?;
        Ok(Self { encoding: EncodingKey::from_secret(&key), decoding: DecodingKey::from_secret(&key) })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    org: i64,
    role: Role,
    /// `access` or `refresh`.
    typ: String,
    iat: i64,
    exp: i64,
}

/// Who is calling: from the verified token only, never from request data.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub org_id: i64,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {} role or higher", role.as_str())))
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be a Bearer token"))?;
        let claims = decode(app, token.trim(), "access")?;
        let user_id: i64 = claims.sub.parse().map_err(|_| ApiError::unauthorized("invalid token"))?;
        let scope = if claims.role == Role::PlatformAdmin {
            Scope::All
        } else {
            Scope::Orgs(orgs::subtree(&app.api_store, claims.org).await?)
        };
        Ok(Self { user_id, org_id: claims.org, role: claims.role, scope })
    }
}

fn decode(app: &App, token: &str, typ: &str) -> ApiResult<Claims> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    let data = jsonwebtoken::decode::<Claims>(token, &app.tokens.decoding, &validation)
        .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
    if data.claims.typ != typ {
        return Err(ApiError::unauthorized(format!("a {} token cannot be used here", data.claims.typ)));
    }
    Ok(data.claims)
}

fn encode(app: &App, user: &users::User, role: Role, typ: &str, ttl: i64) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims { sub: user.id.to_string(), org: user.org_id, role, typ: typ.into(), iat: now, exp: now + ttl };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &app.tokens.encoding).context("signing token")
}

pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

pub fn router() -> Router<Arc<App>> {
    Router::new().route("/auth/login", post(login)).route("/auth/refresh", post(refresh))
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Json(request): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let email = request.email.trim().to_ascii_lowercase();
    // A brute force is refused before any hashing: it neither succeeds nor costs anyone else.
    if app.login_failures.is_throttled(peer.ip(), &email) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "Too many failed logins for this account or from this address; retry later",
        ));
    }
    let user = users::by_email(&app.api_store, request.email.trim()).await?;
    // Hash even for unknown emails so response times do not reveal which emails exist.
    let hash = user.as_ref().map_or(DUMMY_HASH.to_owned(), |user| user.password_hash.clone());
    let valid = verify_password_off_the_runtime(&app, request.password, hash).await? && user.is_some();
    let user = match user {
        Some(user) if valid && !user.disabled => user,
        _ => {
            app.login_failures.record_failure(peer.ip(), &email);
            return Err(ApiError::unauthorized("wrong email or password"));
        }
    };
    issue(&app, &user)
}

/// Verifies a password on the blocking pool, a few at a time: argon2 takes tens of milliseconds
/// of CPU by design, which on an async worker would stall every CPE session sharing it.
async fn verify_password_off_the_runtime(app: &App, password: String, hash: String) -> Result<bool> {
    let _permit = app.password_checks.acquire().await.context("the password-check limiter is closed")?;
    tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.context("a password check panicked")
}

/// Failed logins per source address and per account, in one-minute windows.
pub struct LoginThrottle {
    by_address: moka::sync::Cache<std::net::IpAddr, Arc<AtomicU32>>,
    by_account: moka::sync::Cache<String, Arc<AtomicU32>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginThrottle(..)")
    }
}

/// Failed logins from one address within a minute before it gets 429.
const MAX_LOGIN_FAILURES_PER_ADDRESS: u32 = 20;
/// Failed logins for one account within a minute before it gets 429.
const MAX_LOGIN_FAILURES_PER_ACCOUNT: u32 = 10;

impl Default for LoginThrottle {
    fn default() -> Self {
        let window = std::time::Duration::from_secs(60);
        Self {
            by_address: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build(),
            by_account: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(window).build(),
        }
    }
}

impl LoginThrottle {
    pub fn is_throttled(&self, client: std::net::IpAddr, account: &str) -> bool {
        let client = crate::cwmp::auth::address_key(client);
        self.by_address.get(&client).is_some_and(|c| c.load(Ordering::Relaxed) >= MAX_LOGIN_FAILURES_PER_ADDRESS)
            || self.by_account.get(account).is_some_and(|c| c.load(Ordering::Relaxed) >= MAX_LOGIN_FAILURES_PER_ACCOUNT)
    }

    pub fn record_failure(&self, client: std::net::IpAddr, account: &str) {
        let client = crate::cwmp::auth::address_key(client);
        let by_address = self.by_address.get_with(client, Default::default).fetch_add(1, Ordering::Relaxed) + 1;
        let by_account =
            self.by_account.get_with(account.to_owned(), Default::default).fetch_add(1, Ordering::Relaxed) + 1;
        if by_address == MAX_LOGIN_FAILURES_PER_ADDRESS || by_account == MAX_LOGIN_FAILURES_PER_ACCOUNT {
            tracing::warn!(%client, account, "logins throttled after repeated failures");
        }
    }
}

async fn refresh(State(app): State<Arc<App>>, Json(request): Json<RefreshRequest>) -> ApiResult<Json<TokenResponse>> {
    let claims = decode(&app, &request.refresh_token, "refresh")?;
    let user_id: i64 = claims.sub.parse().map_err(|_| ApiError::unauthorized("invalid token"))?;
    let user = users::by_id(&app.api_store, user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists or is disabled"))?;
    issue(&app, &user)
}

fn issue(app: &App, user: &users::User) -> ApiResult<Json<TokenResponse>> {
    let role =
        Role::parse(&user.role).ok_or_else(|| anyhow::anyhow!("user {} has unknown role {}", user.id, user.role))?;
    let ttl = app.config.api.access_token_ttl.as_secs();
    Ok(Json(TokenResponse {
        access_token: encode(app, user, role, "access", ttl as i64)?,
        refresh_token: encode(app, user, role, "refresh", REFRESH_TTL_SECONDS)?,
        token_type: "Bearer",
        expires_in: ttl,
    }))
}

/// An argon2id hash of a random password, verified against when the email is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J1G9Q2rQ3D1bWbN1qE8m7O4Jr9X9fB4h3l8rGkq2K0Y";
