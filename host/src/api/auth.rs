//! Authentication: `POST /auth/login`, `/auth/refresh` and `/auth/logout`; short-lived JWT
//! access tokens signed with rotating keys kept in the database (sealed with the master key, so
//! tokens are valid on every replica and survive restarts); opaque refresh tokens that rotate on
//! every use; login throttling.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::authenticate::{Caller, Principal};
use super::error::{ApiError, ApiResult, ErrorCode};
use super::extract::Json;
use crate::app::App;
use crate::permissions::{Permission, Role};
use crate::secrets::Secrets;
use crate::secrets::random_token;
use crate::store::tokens::{self, Redemption};
use crate::store::{Store, users};

const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Unknown `kid`s reload the keys from the database (another replica may have rotated) at most
/// this often, so tokens with made-up key ids cost no query each.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The JWT signing keys: the newest signs, all verify.
pub struct TokenKeys {
    keys: std::sync::RwLock<Keys>,
    last_reload: std::sync::Mutex<Instant>,
}

struct Keys {
    signing: (String, EncodingKey),
    verifying: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

/// A new random signing key: its id and its sealed bytes.
pub fn new_signing_key(secrets: &Secrets) -> (String, Vec<u8>) {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut kid = [0u8; 8];
    rand::rng().fill_bytes(&mut kid);
    (hex::encode(kid), secrets.seal(&key))
}

impl TokenKeys {
    /// Loads the signing keys, creating the first on the very first start.
    pub async fn load_or_create(store: &Store, secrets: &Secrets) -> Result<Self> {
        let (kid, sealed) = new_signing_key(secrets);
        tokens::add_first_signing_key(store, &kid, sealed).await?;
        let keys = Self::load(store, secrets).await?;
        Ok(Self { keys: std::sync::RwLock::new(keys), last_reload: std::sync::Mutex::new(Instant::now()) })
    }

    async fn load(store: &Store, secrets: &Secrets) -> Result<Keys> {
        let rows = tokens::signing_keys(store).await?;
        let mut verifying = HashMap::new();
        let mut signing = None;
        for row in rows {
            let key = secrets.open(&row.sealed_key).context(
                "a JWT signing key does not open with this master key (was ROOST_MASTER_KEY or data/master.key changed?)",
            )?;
            if signing.is_none() {
                signing = Some((row.kid.clone(), EncodingKey::from_secret(&key)));
            }
            verifying.insert(row.kid, DecodingKey::from_secret(&key));
        }
        let signing = signing.context("no JWT signing key is stored")?;
        Ok(Keys { signing, verifying })
    }

    /// Reads the keys again: `roost keys rotate` may have added one.
    pub async fn reload(&self, store: &Store, secrets: &Secrets) -> Result<()> {
        let keys = Self::load(store, secrets).await?;
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys;
        }
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Instant::now();
        }
        Ok(())
    }

    fn sign(&self, claims: &Claims) -> Result<String> {
        let keys = self.keys.read().map_err(|_| anyhow::anyhow!("the signing keys' lock is poisoned"))?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.signing.0.clone());
        jsonwebtoken::encode(&header, claims, &keys.signing.1).context("signing token")
    }

    fn verifying(&self, kid: &str) -> Option<DecodingKey> {
        self.keys.read().ok()?.verifying.get(kid).cloned()
    }

    fn may_reload(&self) -> bool {
        self.last_reload.lock().is_ok_and(|last| last.elapsed() >= KEY_RELOAD_INTERVAL)
    }
}

/// What an access token says. The user's role and organization are read live on every request
/// (see `authenticate`); these are for the client's information.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub org: i64,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    /// Issued at, in milliseconds: compared with `users.credentials_changed_at`.
    pub iat_ms: i64,
}

/// Verifies an access token's signature and expiry.
pub async fn verify_access_token(app: &App, token: &str) -> ApiResult<Claims> {
    let invalid = |detail: String| ApiError::unauthorized(detail);
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("invalid token: {e}")))?;
    let kid = header.kid.ok_or_else(|| invalid("the token names no signing key; sign in again".into()))?;
    let key = match app.auth.tokens.verifying(&kid) {
        Some(key) => key,
        None if app.auth.tokens.may_reload() => {
            app.auth.tokens.reload(&app.api_store, &app.secrets).await?;
            app.auth.tokens.verifying(&kid).ok_or_else(|| invalid("the token's signing key is unknown".into()))?
        }
        None => return Err(invalid("the token's signing key is unknown".into())),
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    let data =
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| invalid(format!("invalid token: {e}")))?;
    Ok(data.claims)
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

/// Hashes a password on the blocking pool, a few at a time (see `verify_password_off_the_runtime`).
pub async fn hash_password_off_the_runtime(app: &App, password: String) -> Result<String> {
    let _permit = app.auth.password_checks.acquire().await.context("the password-check limiter is closed")?;
    tokio::task::spawn_blocking(move || hash_password(&password)).await.context("a password hash panicked")?
}

/// The shortest password accepted, for people and for the command line alike.
pub const MIN_PASSWORD_CHARS: usize = 10;

pub fn check_password_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("a password has at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > 1024 {
        return Err("a password has at most 1024 bytes".into());
    }
    Ok(())
}

/// The authentication state of the API: keys, throttles and the caches that make a token or key
/// check cost at most one query every few seconds.
#[derive(Debug)]
pub struct Authenticator {
    pub tokens: TokenKeys,
    /// Failed logins, per address and account.
    pub login_failures: LoginThrottle,
    /// Password hashes computed at once, on the blocking pool: one per core.
    pub password_checks: tokio::sync::Semaphore,
    pub principals: super::authenticate::Principals,
}

impl Authenticator {
    pub async fn open(store: &Store, secrets: &Secrets) -> Result<Self> {
        Ok(Self {
            tokens: TokenKeys::load_or_create(store, secrets).await?,
            login_failures: LoginThrottle::default(),
            password_checks: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(2),
            ),
            principals: super::authenticate::Principals::default(),
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RefreshRequest {
    refresh_token: String,
}

/// A new pair of tokens.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    refresh_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String)]
    token_type: &'static str,
    /// Seconds the access token is valid.
    expires_in: u64,
}

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new().routes(routes!(login)).routes(routes!(refresh)).routes(routes!(logout)).routes(routes!(me))
}

/// Who is calling, and what their role lets them do: what the portal shows and offers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallerView {
    /// `user` or `api-key`.
    pub kind: &'static str,
    pub id: String,
    /// The user's email, or the key's name.
    pub name: String,
    pub role: Role,
    /// The organization's slug.
    pub org: String,
    pub org_name: String,
    /// Everything the role allows (`docs/PERMISSIONS.md`), within the organization's subtree.
    pub permissions: Vec<Permission>,
}

/// The caller: who, in which organization, with which role and permissions.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, description = "The caller", body = CallerView)))]
async fn me(State(app): State<Arc<App>>, caller: Caller) -> ApiResult<Json<CallerView>> {
    let org = crate::store::orgs::by_id(&app.api_store, caller.org_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the caller's organization {} is gone", caller.org_id))?;
    let (kind, id, name) = match &caller.principal {
        Principal::User { id, email } => ("user", id.to_string(), email.clone()),
        Principal::ApiKey { id, name } => ("api-key", id.to_string(), name.clone()),
    };
    Ok(Json(CallerView {
        kind,
        id,
        name,
        role: caller.role,
        org: org.slug,
        org_name: org.name,
        permissions: Permission::ALL.into_iter().filter(|p| caller.role.allows(*p)).collect(),
    }))
}

/// Signs in with email and password: a 15-minute access token and a refresh token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = TokenResponse)))]
async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Json(request): Json<LoginRequest>,
) -> ApiResult<Response> {
    let email = request.email.trim().to_ascii_lowercase();
    // A brute force is refused before any hashing: it neither succeeds nor costs anyone else.
    if app.auth.login_failures.is_throttled(peer.ip(), &email) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyAttempts,
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
            app.auth.login_failures.record_failure(peer.ip(), &email);
            return Err(ApiError::unauthorized("wrong email or password"));
        }
    };
    let family = random_token("");
    let pair = issue(&app, &user, &family, None).await?;
    Ok(super::audit::as_actor(Json(pair).into_response(), &user))
}

/// Verifies a password on the blocking pool, a few at a time: argon2 takes tens of milliseconds
/// of CPU by design, which on an async worker would stall every CPE session sharing it.
pub async fn verify_password_off_the_runtime(app: &App, password: String, hash: String) -> Result<bool> {
    let _permit = app.auth.password_checks.acquire().await.context("the password-check limiter is closed")?;
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

/// Trades a refresh token for a new pair. The token is used up; presenting it again (it leaked,
/// or a client kept a stale copy) revokes the whole login, so a thief's copy dies with the
/// owner's next refresh and the owner's with the thief's.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "A new pair; the presented refresh token is used up", body = TokenResponse)))]
async fn refresh(State(app): State<Arc<App>>, Json(request): Json<RefreshRequest>) -> ApiResult<Response> {
    let next = random_token(REFRESH_PREFIX);
    let ttl = REFRESH_TTL.as_millis() as i64;
    let redeemed =
        tokens::redeem_refresh(&app.api_store, &token_hash(&request.refresh_token), &token_hash(&next), ttl).await?;
    let user_id = match redeemed {
        Redemption::Redeemed { user_id } => user_id,
        Redemption::Reused { user_id } => {
            tracing::warn!(user_id, "a refresh token was presented twice: the login is revoked");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::RefreshTokenReused,
                "this refresh token was used before; the login it belongs to is revoked: sign in again",
            ));
        }
        Redemption::Invalid => return Err(ApiError::unauthorized("the refresh token is unknown, expired or revoked")),
    };
    let user = users::by_id(&app.api_store, user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| ApiError::unauthorized("the user no longer exists or is disabled"))?;
    let pair = issue(&app, &user, "", Some(next)).await?;
    Ok(super::audit::as_actor(Json(pair).into_response(), &user))
}

/// Ends the login a refresh token belongs to. Answers 204 whether or not the token was live:
/// logging out twice is not an error.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "The login is ended")))]
async fn logout(State(app): State<Arc<App>>, Json(request): Json<RefreshRequest>) -> ApiResult<StatusCode> {
    tokens::revoke_family_of(&app.api_store, &token_hash(&request.refresh_token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

const REFRESH_PREFIX: &str = "rrt_";

pub use crate::secrets::token_hash;

/// A new access token, and a refresh token: `next` (already stored by the refresh that made
/// it), or a new one stored in `family`.
async fn issue(app: &App, user: &users::User, family: &str, next: Option<String>) -> ApiResult<TokenResponse> {
    let role =
        Role::parse(&user.role).ok_or_else(|| anyhow::anyhow!("user {} has unknown role {}", user.id, user.role))?;
    // New tokens use the newest key, wherever it was rotated.
    app.auth.tokens.reload(&app.api_store, &app.secrets).await?;
    let ttl = app.config.api.access_token_ttl.as_secs();
    let now = chrono::Utc::now();
    let claims = Claims {
        sub: user.id.to_string(),
        org: user.org_id,
        role,
        iat: now.timestamp(),
        exp: now.timestamp() + ttl as i64,
        iat_ms: now.timestamp_millis(),
    };
    let refresh_token = match next {
        Some(token) => token,
        None => {
            let token = random_token(REFRESH_PREFIX);
            tokens::insert_refresh(
                &app.api_store,
                &token_hash(&token),
                family,
                user.id,
                REFRESH_TTL.as_millis() as i64,
            )
            .await?;
            token
        }
    };
    Ok(TokenResponse {
        access_token: app.auth.tokens.sign(&claims)?,
        refresh_token,
        token_type: "Bearer",
        expires_in: ttl,
    })
}

/// An argon2id hash of a random password, verified against when the email is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J1G9Q2rQ3D1bWbN1qE8m7O4Jr9X9fB4h3l8rGkq2K0Y";
