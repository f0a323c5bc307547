//! The end-to-end harness: a real Roost server in this process, on loopback ports, with its own
//! data directory and database (a fresh SQLite file, or a fresh PostgreSQL database created for
//! the test and dropped after it), an admin user logged in over the API, and helpers to call it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::StatusCode;
use roost::app::Server;
use roost::config::{Config, CpeAuthMode};
use roost::plugins::{PluginLimits, PluginRuntime, PluginSettings};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;

pub use roost_sim::{DataModel, DataModelKind, Fleet, FleetConfig, StartMode};
pub use serde_json::{Value as JsonValue, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
pub const USER_PASSWORD: &str = "a tenant user password";

fn postgres_admin_url() -> String {
    std::env::var("ROOST_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL database that exists for one test.
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Result<(Self, String)> {
        let admin_url = postgres_admin_url();
        let name = format!("roost_e2e_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(&admin_url).await.context("connecting to PostgreSQL (is it running?)")?;
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
        admin.close().await?;
        let base = admin_url.rsplit_once('/').map(|(base, _)| base.to_owned()).unwrap_or(admin_url);
        Ok((Self { name: name.clone() }, format!("{base}/{name}")))
    }

    pub async fn drop_now(&self) -> Result<()> {
        let admin = Database::connect(&postgres_admin_url()).await?;
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await?;
        admin.close().await?;
        Ok(())
    }
}

/// The shipped plugins, installed in every test server as `roost serve` installs them.
pub fn shipped_plugins() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    assert!(
        roost::plugins::install::shipped_component(&dir, "bootstrap").is_some(),
        "{} has no shipped plugins: run scripts/build-plugins.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The bytes of shipped plugin `name`, whatever its version.
pub fn shipped_plugin(name: &str) -> Vec<u8> {
    let path = roost::plugins::install::shipped_component(&shipped_plugins(), name)
        .unwrap_or_else(|| panic!("no shipped plugin {name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plugin limits of test servers: the default CPU budget, which counts a plugin's own work
/// and so holds while many servers, component compilations and spinning hostile plugins crowd
/// two cores; the wall-clock backstop raised, since that crowd can keep a run from a core for
/// long. The backstop itself is tested with its own limits (host/tests/plugin_runtime.rs).
/// For tests that count the statements a session costs (`Store::statements_executed` counts
/// the whole server's): the loops that read or write on their own wait an hour between rounds,
/// so none lands inside the counted session however slowly a loaded machine runs it.
pub fn quiet_loops(config: &mut Config) {
    let hour = Duration::from_secs(3600);
    config.events.poll = hour;
    config.jobs.tick = hour;
    config.diagnostics.poll_interval = hour;
    config.health.flush_interval = hour;
    config.health.presence_interval = hour;
}

pub fn test_plugin_limits() -> PluginLimits {
    PluginLimits { wall_clock_ms: 30_000, ..PluginLimits::default() }
}

/// One plugin runtime for every server of the test process: components compile once, not once
/// per test.
fn shared_plugin_runtime() -> Arc<PluginRuntime> {
    static RUNTIME: OnceLock<Arc<PluginRuntime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let settings = PluginSettings { limits: test_plugin_limits(), ..PluginSettings::default() };
            Arc::new(PluginRuntime::new(settings).expect("plugin runtime"))
        })
        .clone()
}

/// A server under test.
pub struct Harness {
    pub backend: Backend,
    data_dir: tempfile::TempDir,
    database_url: Option<String>,
    database: Option<TestDatabase>,
    server: Option<Server>,
    cwmp_addr: SocketAddr,
    http_addr: SocketAddr,
    stun_addr: Option<SocketAddr>,
    cpe_auth: CpeAuthMode,
    adjust: Arc<dyn Fn(&mut Config) + Send + Sync>,
    pub http: reqwest::Client,
    pub token: String,
}

impl Harness {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, CpeAuthMode::Open).await
    }

    pub async fn start_with(backend: Backend, cpe_auth: CpeAuthMode) -> Self {
        Self::start_configured(backend, cpe_auth, |_| {}).await
    }

    /// Starts with a configuration adjusted by `adjust` (kept across restarts).
    pub async fn start_configured(
        backend: Backend,
        cpe_auth: CpeAuthMode,
        adjust: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let (database, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (db, url) = TestDatabase::create().await.expect("creating a PostgreSQL test database");
                (Some(db), Some(url))
            }
        };
        let mut harness = Self {
            backend,
            data_dir,
            database_url,
            database,
            server: None,
            cwmp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stun_addr: None,
            cpe_auth,
            adjust: Arc::new(adjust),
            // Pooled connections are dropped well before the server closes idle ones (hyper's
            // 30 s header timeout): a request sent on one the server is closing fails.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_idle_timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            token: String::new(),
        };
        harness.boot().await;
        let app = harness.app().clone();
        let platform = roost::store::orgs::by_slug(&app.store, "platform").await.unwrap().expect("platform org");
        let hash = roost::api::auth::hash_password(ADMIN_PASSWORD).unwrap();
        roost::store::users::create(&app.store, platform.id, ADMIN_EMAIL, &hash, "platform-admin").await.unwrap();
        harness.token = harness.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.expect("admin login");
        harness
    }

    fn config(&self) -> Config {
        let mut config = Config::for_loopback(self.data_dir.path().to_path_buf(), self.database_url.clone());
        config.cwmp_listen = self.cwmp_addr;
        config.http_listen = self.http_addr;
        if let Some(stun) = self.stun_addr {
            config.stun_listen = Some(stun);
        }
        config.cwmp.auth = self.cpe_auth;
        config.cwmp.session_timeout = Duration::from_secs(20);
        config.tasks.connection_request_wait = Duration::from_secs(20);
        config.connection_request.timeout = Duration::from_secs(5);
        config.plugins.install_dir = Some(shipped_plugins());
        config.plugins.limits = test_plugin_limits();
        (self.adjust)(&mut config);
        config
    }

    async fn boot(&mut self) {
        let config = self.config();
        // A test that changes the runtime's own settings gets a runtime of its own.
        let shared = (config.plugins.limits == test_plugin_limits()).then(shared_plugin_runtime);
        let server = Server::start_sharing(config, shared).await.expect("server start");
        // Later restarts keep the same ports, so simulated devices keep their ACS URL.
        self.cwmp_addr = server.cwmp_addr;
        self.http_addr = server.http_addr;
        self.stun_addr = server.stun_addr;
        self.server = Some(server);
    }

    /// Stops the server as SIGTERM would and starts it again on the same data and ports.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        self.boot().await;
    }

    pub fn app(&self) -> &Arc<roost::app::App> {
        self.server.as_ref().expect("server running").app()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().to_path_buf()
    }

    /// Runs a `roost` command against this server's database, as an operator would.
    pub async fn roost_command(&self, args: &[&str]) -> anyhow::Result<()> {
        use clap::Parser;
        let mut argv: Vec<String> = std::iter::once("roost").chain(args.iter().copied()).map(str::to_owned).collect();
        argv.push("--data-dir".into());
        argv.push(self.data_dir.path().display().to_string());
        if let Some(url) = &self.database_url {
            argv.push("--database-url".into());
            argv.push(url.clone());
        }
        roost::cli::run(roost::cli::Cli::try_parse_from(argv)?).await
    }

    /// The CWMP listener's address (for clients that speak TLS to it).
    pub fn cwmp_addr(&self) -> SocketAddr {
        self.cwmp_addr
    }

    /// Another replica of this server: the same database and master key (the same data
    /// directory, which with PostgreSQL holds only the key and stored files), its own ports.
    pub async fn replica(&self) -> Server {
        let mut config = self.config();
        config.cwmp_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.stun_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = (config.plugins.limits == test_plugin_limits()).then(shared_plugin_runtime);
        Server::start_sharing(config, shared).await.expect("replica start")
    }

    /// A request to another replica's API, as the platform administrator.
    pub async fn request_to(
        &self,
        replica: &Server,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request =
            self.http.request(method, format!("http://{}{path}", replica.http_addr)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request to the replica");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The STUN server's UDP address, when it runs.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun_addr
    }

    pub fn cwmp_url(&self) -> String {
        format!("http://{}/", self.cwmp_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<String> {
        let response = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "login answered {}", response.status());
        let body: Value = response.json().await?;
        Ok(body["access_token"].as_str().context("access_token")?.to_owned())
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.request_as(&self.token, method, path, body).await
    }

    /// A request with another bearer token or API key.
    pub async fn request_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        let text = response.text().await.expect("API body");
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    /// The full answer to a login: access and refresh tokens.
    pub async fn login_pair(&self, email: &str, password: &str) -> Value {
        let response = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), StatusCode::OK, "login of {email}");
        response.json().await.expect("login body")
    }

    /// Creates a user through the API as the platform administrator and signs it in.
    pub async fn user(&self, org: &str, email: &str, role: &str) -> String {
        let (status, body) = self
            .post("/api/v1/users", json!({"email": email, "password": USER_PASSWORD, "role": role, "org": org}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "creating {email}: {body}");
        self.login(email, USER_PASSWORD).await.expect("new user's login")
    }

    /// Creates an organization through the API as the platform administrator.
    pub async fn org(&self, slug: &str, parent: Option<&str>) {
        let (status, body) =
            self.post("/api/v1/orgs", json!({"name": slug.to_uppercase(), "slug": slug, "parent": parent})).await;
        assert_eq!(status, StatusCode::CREATED, "creating {slug}: {body}");
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// Queues a task and wakes the device for it; returns the task as the API reports it.
    pub async fn run_task(&self, device_id: &str, body: Value) -> Value {
        let path = format!("/api/v1/devices/{}/tasks?connection_request=true", encode_id(device_id));
        let (status, task) = self.post(&path, body.clone()).await;
        assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "task {body}: {status} {task}");
        task
    }

    /// Polls a task until it leaves `pending`.
    pub async fn wait_task(&self, task_id: &str) -> Value {
        for _ in 0..300 {
            let (status, task) = self.get(&format!("/api/v1/tasks/{task_id}")).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            if task["status"] != "pending" {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("task {task_id} still pending after 30 s");
    }

    pub async fn device(&self, device_id: &str) -> Value {
        let (status, device) = self.get(&format!("/api/v1/devices/{}", encode_id(device_id))).await;
        assert_eq!(status, StatusCode::OK, "{device}");
        device
    }

    /// Every stored parameter under `prefix`, following cursors.
    pub async fn parameters(&self, device_id: &str, prefix: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!(
                "/api/v1/devices/{}/parameters?limit=1000&prefix={}",
                encode_id(device_id),
                percent_encoding::utf8_percent_encode(prefix, percent_encoding::NON_ALPHANUMERIC)
            );
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            out.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return out,
            }
        }
    }

    /// The stored value of one parameter.
    pub async fn stored_value(&self, device_id: &str, path: &str) -> Option<String> {
        self.parameters(device_id, path)
            .await
            .into_iter()
            .find(|p| p["path"] == path)
            .and_then(|p| p["value"].as_str().map(str::to_owned))
    }

    /// A simulated fleet pointed at this server, started by hand.
    pub async fn fleet(&self, kind: DataModelKind, devices: usize, prefix: &str) -> Fleet {
        self.fleet_of(DataModel::bundled(kind).expect("bundled model"), devices, prefix).await
    }

    /// A fleet of devices of `model`, started manually.
    pub async fn fleet_of(&self, model: DataModel, devices: usize, prefix: &str) -> Fleet {
        self.fleet_with_quirks(model, devices, prefix, roost_sim::Quirks::default()).await
    }

    /// A fleet of devices of `model` with firmware habits, started manually.
    pub async fn fleet_with_quirks(
        &self,
        model: DataModel,
        devices: usize,
        prefix: &str,
        quirks: roost_sim::Quirks,
    ) -> Fleet {
        let model = Arc::new(model);
        let mut config = FleetConfig::new(self.cwmp_url(), model);
        config.quirks = quirks;
        config.devices = devices;
        config.serial_prefix = prefix.to_owned();
        config.start = StartMode::Manual;
        config.retry = false;
        config.reboot_delay = Duration::from_millis(200);
        config.cr_min_interval = Duration::from_millis(0);
        Fleet::start(config).await.expect("fleet start")
    }

    /// Devices of `kind` informing at `/cwmp/{org}` (or the bare URL: pending), each informed
    /// once, quick to come back from a reboot and to retry a lost session (what rollouts and
    /// the portal's flows put them through); `adjust` sets what else the test needs.
    pub async fn informed_fleet(
        &self,
        org: Option<&str>,
        kind: DataModelKind,
        devices: usize,
        prefix: &str,
        adjust: impl FnOnce(&mut FleetConfig),
    ) -> Fleet {
        let url = match org {
            Some(org) => format!("{}cwmp/{org}", self.cwmp_url()),
            None => self.cwmp_url(),
        };
        let mut config = FleetConfig::new(url, Arc::new(DataModel::bundled(kind).expect("bundled model")));
        config.devices = devices;
        config.serial_prefix = prefix.to_owned();
        config.start = StartMode::Manual;
        config.retry = true;
        config.retry_min_wait = Duration::from_millis(300);
        config.reboot_delay = Duration::from_millis(200);
        config.cr_min_interval = Duration::ZERO;
        adjust(&mut config);
        let fleet = Fleet::start(config).await.expect("fleet start");
        for device in fleet.devices() {
            assert!(device.inform_now(&[]).await.expect("first Inform").is_ok(), "{}", device.serial_number());
        }
        fleet
    }

    /// Stops the server and drops the test database.
    /// Runs `sql` on the PostgreSQL server as its administrator (to take the test's database
    /// away and give it back); `{db}` stands for the test's database. SQLite: does nothing.
    pub async fn postgres_admin(&self, sql: &str) {
        let Some(db) = &self.database else { return };
        let admin = Database::connect(&postgres_admin_url()).await.expect("connecting to PostgreSQL");
        admin.execute_unprepared(&sql.replace("{db}", &db.name)).await.expect("administrative SQL");
        admin.close().await.expect("closing the admin connection");
    }

    pub async fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
        if let Some(db) = self.database.take() {
            db.drop_now().await.expect("dropping the test database");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A failed test never reaches finish(): drop its database anyway.
        if let Some(db) = self.database.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    let _ = runtime.block_on(db.drop_now());
                }
            })
            .join();
        }
    }
}

/// A device id as it goes into a URL path: percent-encoded once more.
pub fn encode_id(device_id: &str) -> String {
    percent_encoding::utf8_percent_encode(device_id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($(async fn $name:ident($h:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body($h: $crate::Backend) $body

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    body($crate::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    body($crate::Backend::Postgres).await
                }
            }
        )*
    };
}

/// Serves `router` on a free loopback port until the sender is dropped or sent to.
pub async fn serve_loopback(router: axum::Router) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop)
}

/// A certificate authority of the test's own, and the files it signs (in a directory removed
/// with it).
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Self { dir, issuer: rcgen::Issuer::new(params, key) }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `localhost` and 127.0.0.1 (a server's) or for a device (a client's),
    /// written as `<name>.pem` and `<name>.key`.
    pub fn issue(&self, name: &str, client: bool) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) =
            (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// [`serve_loopback`] over TLS, presenting `cert` and `key` (PEM files): an https receiver.
pub async fn serve_loopback_tls(
    router: axum::Router,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let tls = roost::tls::ListenerTls {
        cert: cert.to_owned(),
        key: key.to_owned(),
        client_ca: None,
        client_auth: Default::default(),
    };
    let acceptor =
        tokio_rustls::TlsAcceptor::from(roost::tls::server_config(&tls, std::time::SystemTime::now()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
                _ = &mut stopped => return,
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends here.
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, stop)
}

/// A loopback HTTP file server for Download and Upload tasks: `GET /files/<name>` serves what
/// was put there (404 otherwise), `PUT /uploads/<name>` stores the body.
pub struct FileServer {
    pub addr: SocketAddr,
    files: Arc<std::sync::Mutex<std::collections::HashMap<String, bytes::Bytes>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FileServer {
    pub async fn start() -> Self {
        use axum::extract::{Path, State};
        use axum::routing::{get, put};
        type Files = Arc<std::sync::Mutex<std::collections::HashMap<String, bytes::Bytes>>>;

        async fn fetch(State(files): State<Files>, Path(name): Path<String>) -> Result<bytes::Bytes, StatusCode> {
            files.lock().unwrap().get(&format!("files/{name}")).cloned().ok_or(StatusCode::NOT_FOUND)
        }
        async fn store(State(files): State<Files>, Path(name): Path<String>, body: bytes::Bytes) -> StatusCode {
            files.lock().unwrap().insert(format!("uploads/{name}"), body);
            StatusCode::CREATED
        }

        let files: Files = Arc::default();
        let router = axum::Router::new()
            .route("/files/{name}", get(fetch))
            .route("/uploads/{name}", put(store))
            .with_state(files.clone());
        let (addr, stop) = serve_loopback(router).await;
        Self { addr, files, stop: Some(stop) }
    }

    pub fn put_file(&self, name: &str, contents: &[u8]) -> String {
        self.files.lock().unwrap().insert(format!("files/{name}"), bytes::Bytes::copy_from_slice(contents));
        format!("http://{}/files/{name}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn uploaded(&self, name: &str) -> Option<bytes::Bytes> {
        self.files.lock().unwrap().get(&format!("uploads/{name}")).cloned()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A CPE speaking HTTP/1.1 by hand on one TCP connection, for the quirks a well-behaved client
/// never produces: no cookies, chunked bodies, odd headers, empty POSTs at the wrong time.
pub struct RawCpe {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl RawCpe {
    pub async fn connect(cwmp_url: &str) -> Self {
        let host = cwmp_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.expect("connect to the CWMP listener");
        Self { stream: tokio::io::BufReader::new(stream), host }
    }

    /// Sends `host` as the `Host` header from now on: a CPE that reached the ACS by another name.
    pub fn presenting_host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// Connects from another loopback address (`127.0.0.2`, …): another host, as the server
    /// sees it.
    pub async fn connect_from(cwmp_url: &str, local: std::net::Ipv4Addr) -> Self {
        let host = cwmp_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let remote: SocketAddr = host.parse().expect("a numeric CWMP address");
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::from((local, 0))).expect("bind to the local address");
        let stream = socket.connect(remote).await.expect("connect to the CWMP listener");
        Self { stream: tokio::io::BufReader::new(stream), host }
    }

    /// The `roost_session` cookie a response set, as `name=value` for a Cookie header.
    pub fn session_cookie(response: &RawResponse) -> String {
        let set = response.header("set-cookie").expect("a session cookie");
        set.split(';').next().unwrap_or_default().trim().to_owned()
    }

    /// POSTs `body` (`chunked`: with Transfer-Encoding: chunked) and reads the response.
    pub async fn post(&mut self, path: &str, body: &str, headers: &[(&str, &str)], chunked: bool) -> RawResponse {
        self.send(path, body, headers, chunked, body.len()).await
    }

    /// POSTs `body`, then shuts the write side of the connection down (shutdown(SHUT_WR)), as
    /// some firmware does once its request is sent, and reads the response.
    pub async fn post_and_half_close(&mut self, path: &str, body: &str, headers: &[(&str, &str)]) -> RawResponse {
        use tokio::io::AsyncWriteExt;
        let mut request = format!("POST {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.get_mut().write_all(request.as_bytes()).await.expect("write request");
        self.stream.get_mut().shutdown().await.expect("half-close");
        self.read_response().await
    }

    /// Writes raw bytes: a request head alone, a body in pieces.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.get_mut().write_all(bytes).await
    }

    /// Reads one response.
    pub async fn response(&mut self) -> RawResponse {
        self.read_response().await
    }

    /// Whether the server closes the connection within `within` (a read ends, or fails).
    pub async fn is_closed_within(&mut self, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 512];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// POSTs `body` declaring a Content-Length of its *characters*, as some firmware does.
    pub async fn post_counting_characters(&mut self, path: &str, body: &str, headers: &[(&str, &str)]) -> RawResponse {
        self.send(path, body, headers, false, body.chars().count()).await
    }

    async fn send(
        &mut self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
        chunked: bool,
        content_length: usize,
    ) -> RawResponse {
        use tokio::io::AsyncWriteExt;
        let mut request = format!("POST {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if chunked {
            request.push_str("Transfer-Encoding: chunked\r\n\r\n");
            for piece in body.as_bytes().chunks(100) {
                request.push_str(&format!("{:x}\r\n", piece.len()));
                request.push_str(std::str::from_utf8(piece).unwrap_or(""));
                request.push_str("\r\n");
            }
            request.push_str("0\r\n\r\n");
        } else {
            request.push_str(&format!("Content-Length: {content_length}\r\n\r\n{body}"));
        }
        self.stream.get_mut().write_all(request.as_bytes()).await.expect("write request");
        self.read_response().await
    }

    /// Ends the session as a CPE with nothing to say would: empty POSTs until the ACS answers
    /// 204 (each one also fails whatever RPC the ACS had sent).
    pub async fn end_session(&mut self, path: &str) {
        for _ in 0..20 {
            if self.post(path, "", &[], false).await.status == 204 {
                return;
            }
        }
        panic!("the ACS did not end the session");
    }

    async fn read_response(&mut self) -> RawResponse {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header line");
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await.expect("body");
        RawResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }
}

/// The bodies of one direction of a wire capture in `tests/data/cpe/captures/`, in order.
pub fn capture_bodies(file: &str, direction: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cpe/captures").join(file);
    let text = std::fs::read_to_string(&path).expect("capture file");
    text.split("\n===== ")
        .filter(|block| block.contains(direction))
        .filter_map(|block| block.split_once("\n\n").map(|(_, body)| body))
        .map(|body| body.lines().filter(|l| !l.starts_with("STUB")).collect::<Vec<_>>().join("\n").trim().to_owned())
        .filter(|body| !body.is_empty())
        .collect()
}

/// A TCP load balancer, as a Kubernetes Service or HAProxy in TCP mode puts in front of
/// replicas: each new connection goes to the next backend in turn that is let through and
/// accepts it. The e2e replica tests and `roost-bench balance` use it.
pub struct Balancer {
    pub addr: SocketAddr,
    backends: Arc<std::sync::Mutex<Vec<(SocketAddr, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// A balancer on a port of 127.0.0.1 of its own.
    pub async fn start(backends: &[SocketAddr]) -> Self {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), backends).await.expect("starting the balancer")
    }

    /// A balancer listening on `listen`.
    pub async fn bind(listen: SocketAddr, backends: &[SocketAddr]) -> Result<Self> {
        anyhow::ensure!(!backends.is_empty(), "no backend to balance to");
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr().context("the balancer's address")?;
        let backends = Arc::new(std::sync::Mutex::new(backends.iter().map(|b| (*b, true)).collect::<Vec<_>>()));
        let shared = backends.clone();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    // Out of descriptors, say: a pause rather than a loop that spins on the error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let candidates: Vec<SocketAddr> = {
                    let list = shared.lock().unwrap();
                    (0..list.len())
                        .map(|i| list[(next + i) % list.len()])
                        .filter(|(_, on)| *on)
                        .map(|(a, _)| a)
                        .collect()
                };
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    for backend in candidates {
                        if let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await {
                            let _ = client.set_nodelay(true);
                            let _ = upstream.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self { addr, backends, task })
    }

    /// Sends to `new` the connections `old` took: a replica's successor in its place.
    pub fn replace(&self, old: SocketAddr, new: SocketAddr) {
        for (addr, _) in self.backends.lock().unwrap().iter_mut().filter(|(addr, _)| *addr == old) {
            *addr = new;
        }
    }

    /// Lets connections through to `backend` only (`None`: to every backend again).
    pub fn only(&self, backend: Option<SocketAddr>) {
        for (addr, on) in self.backends.lock().unwrap().iter_mut() {
            *on = backend.is_none_or(|only| only == *addr);
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A periodic Inform for a simulated device's identity, written by hand.
pub fn periodic_inform(cpe: &roost_sim::DeviceHandle) -> String {
    use roost_cwmp::{CpeBody, CpeRequest, CwmpVersion, EventStruct, Header, Inform};
    let inform = Inform {
        device_id: cpe.identity().clone(),
        events: vec![EventStruct { code: "2 PERIODIC".into(), command_key: String::new() }],
        max_envelopes: 1,
        current_time: "2026-11-21T12:00:00Z".into(),
        retry_count: 0,
        parameters: vec![],
    };
    roost_cwmp::encode_cpe_message(CwmpVersion::V1_0, &Header::default(), &CpeBody::Request(CpeRequest::Inform(inform)))
}
