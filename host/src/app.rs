//! The application: built once at start-up and shared by both listeners as `Arc<App>`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use crate::api;
use crate::config::{Config, CpeAuthMode};
use crate::cwmp::{self, Sessions, auth::NonceKey, stun::StunServer};
use crate::plugins::PluginRuntime;
use crate::secrets::Secrets;
use crate::store::Store;

/// How long a shutdown waits for CWMP sessions in flight to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// While draining, a session whose CPE has been silent this long is dropped: a live CPE answers
/// within a second or two.
const DRAIN_IDLE: Duration = Duration::from_secs(5);

/// Connection-request listeners whose breakers are kept (the least recently used go first).
const CONNECTION_REQUEST_BREAKERS: u64 = 200_000;

pub struct App {
    pub config: Config,
    /// The addresses the listeners are bound to (known once they are): a webhook is not taken
    /// to point at them.
    pub listening: std::sync::OnceLock<Vec<SocketAddr>>,
    /// The store of CPE sessions and background work.
    pub store: Store,
    /// The same database through the REST API's own pool (see `Store::with_own_pool`).
    pub api_store: Store,
    /// API requests in flight (`[api] max_concurrent_requests`).
    pub api_slots: Arc<tokio::sync::Semaphore>,
    pub secrets: Secrets,
    /// The API's signing keys, login throttles, and live users and keys.
    pub auth: api::auth::Authenticator,
    pub nonce_key: NonceKey,
    /// CPE authentication failures, per address and username.
    pub auth_failures: crate::cwmp::auth::FailureThrottle,
    pub sessions: Sessions,
    /// Organizations by onboarding URL slug and by own CWMP host (`cwmp::routed_org`).
    pub org_routes: moka::future::Cache<String, Option<i64>>,
    pub plugins: Arc<PluginRuntime>,
    /// Organizations' presets, adapters and plugin settings, and adapter choices.
    pub provisioning: Arc<crate::provisioning::Provisioner>,
    /// Ids of tasks that just finished (done or fault): lets an API call wait for its task.
    pub task_events: broadcast::Sender<i64>,
    /// The outbox as it grows, for the API's event streams.
    pub live: crate::events::live::Live,
    /// For connection requests.
    pub http: reqwest::Client,
    /// Webhook deliveries: connections kept alive per receiver, no redirects followed (a
    /// receiver's redirect would carry signed events elsewhere).
    pub webhook_http: crate::events::client::WebhookClient,
    /// Connection-request listeners that stopped answering (`[connection_request] breaker_*`).
    pub connection_request_breakers: crate::breaker::Breakers,
    /// Where the file store keeps contents (`<data-dir>/files/`).
    pub files: Arc<dyn crate::files::FileStorage>,
    /// File uploads in flight: they stream past the API's admission slots (`take_slot`), which
    /// buffer a body, so they are bounded here.
    pub upload_slots: Arc<tokio::sync::Semaphore>,
    /// What `GET /metrics` reports of this process.
    pub metrics: crate::metrics::Metrics,
    /// The STUN server, once bound (`--stun-listen`): UDP connection requests leave from it.
    pub stun: std::sync::OnceLock<Arc<crate::cwmp::stun::StunServer>>,
    /// This process among the replicas of its database (`replicas`): random at each start.
    pub replica: String,
    draining: AtomicBool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("config", &self.config).finish_non_exhaustive()
    }
}

impl App {
    /// Opens the database (running migrations) and loads the keys. `plugins` is a runtime to
    /// share (its compiled components) with other apps in the process; `None` starts one.
    pub async fn open(config: Config, plugins: Option<Arc<PluginRuntime>>) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let store = Store::open_migrated(&config.database_url)
            .await?
            .with_offline_grace(crate::health::OfflineGrace::of(&config.health));
        let api_store = store.with_own_pool(&config.database_url, config.api.max_concurrent_requests.max(1)).await?;
        let api_slots = Arc::new(tokio::sync::Semaphore::new(config.api.max_concurrent_requests.max(1) as usize));
        let secrets = Secrets::load_or_create(&config.data_dir)?;
        let auth = api::auth::Authenticator::open(&store, &secrets).await?;
        let http = reqwest::Client::builder()
            .timeout(config.connection_request.timeout)
            .connect_timeout(config.connection_request.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // Every CPE is a host of its own, and some close the connection after their 401
            // without saying so: a pooled connection would only fail the authenticated retry.
            .pool_max_idle_per_host(0)
            .build()
            .context("building the HTTP client")?;
        let webhook_http = crate::events::client::WebhookClient::new(&config.events)?;
        let connection_request_breakers = crate::breaker::Breakers::new(
            CONNECTION_REQUEST_BREAKERS,
            crate::breaker::Settings {
                threshold: config.connection_request.breaker_failures.max(1),
                cool_down: config.connection_request.breaker_cool_down,
                max: config.connection_request.breaker_max,
            },
        );
        let (task_events, _) = broadcast::channel(1024);
        let plugins = match plugins {
            Some(shared) => shared,
            None => Arc::new(PluginRuntime::new(config.plugins.clone())?),
        };
        let provisioning = Arc::new(crate::provisioning::Provisioner::new(
            store.clone(),
            secrets.clone(),
            plugins.clone(),
            config.cwmp.discovery_batch,
            &config.plugins,
            Arc::new(crate::health::MetricsBuffer::new(config.health.max_buffered_points)),
        ));
        let files = Arc::new(crate::files::LocalFiles::new(config.data_dir.join("files")));
        let nonce_key = NonceKey::shared(&secrets);
        Ok(Self {
            config,
            store,
            api_store,
            api_slots,
            secrets,
            auth,
            nonce_key,
            auth_failures: Default::default(),
            sessions: Sessions::default(),
            org_routes: moka::future::Cache::builder().max_capacity(100_000).time_to_live(cwmp::ORG_ROUTE_TTL).build(),
            plugins,
            provisioning,
            task_events,
            live: crate::events::live::Live::default(),
            http,
            webhook_http,
            connection_request_breakers,
            files,
            upload_slots: Arc::new(tokio::sync::Semaphore::new(crate::files::CONCURRENT_UPLOADS)),
            metrics: crate::metrics::Metrics::default(),
            stun: std::sync::OnceLock::new(),
            replica: hex::encode(rand::random::<[u8; 6]>()),
            draining: AtomicBool::new(false),
            listening: std::sync::OnceLock::new(),
        })
    }

    /// Tells this replica's waiters, and the other replicas' (PostgreSQL).
    pub fn task_finished(&self, task_id: i64) {
        crate::replicas::publish(self, crate::replicas::Signal::TaskFinished(task_id));
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A running server: both listeners bound, background work started.
pub struct Server {
    pub cwmp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The STUN server's UDP address, when it runs.
    pub stun_addr: Option<SocketAddr>,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("cwmp_addr", &self.cwmp_addr).field("http_addr", &self.http_addr).finish()
    }
}

impl Server {
    pub async fn start(config: Config) -> Result<Self> {
        Self::start_sharing(config, None).await
    }

    /// Starts with a plugin runtime shared with other servers of the process (tests).
    pub async fn start_sharing(config: Config, plugins: Option<Arc<PluginRuntime>>) -> Result<Self> {
        let cwmp_listener = TcpListener::bind(config.cwmp_listen)
            .await
            .with_context(|| format!("binding the CWMP listener on {}", config.cwmp_listen))?;
        let http_listener = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("binding the HTTP listener on {}", config.http_listen))?;
        let stun = match config.stun_listen {
            Some(address) => Some(Arc::new(StunServer::bind(address, &config.stun).await?)),
            None => None,
        };
        // The certificates load before anything else starts: a pair that does not is the
        // operator's to fix, said now rather than at the first CPE.
        let cwmp_tls = match config.tls.cwmp()? {
            Some(tls) => Some(crate::tls::Reloading::load(tls).context("TLS on the CWMP listener")?),
            None => None,
        };
        let http_tls = match config.tls.http()? {
            Some(tls) => Some(crate::tls::Reloading::load(tls).context("TLS on the HTTP listener")?),
            None => None,
        };
        let app = Arc::new(App::open(config, plugins).await?);
        if let Some(dir) = &app.config.plugins.install_dir {
            crate::plugins::install::install_shipped(&app.store, &app.plugins, dir).await?;
        }
        crate::plugins::install::seed_stun_preset(&app.store).await?;
        if app.config.cwmp.auth == CpeAuthMode::Open {
            tracing::warn!("CPE authentication is OFF (--cpe-auth open): any device may connect. Use only in a lab.");
        }
        let cwmp_addr = cwmp_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let _ = app.listening.set(vec![cwmp_addr, http_addr]);
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let reloaded: Vec<_> = [("cwmp", &cwmp_tls), ("http", &http_tls)]
            .into_iter()
            .filter_map(|(listener, tls)| Some((listener, tls.clone()?)))
            .collect();
        if !reloaded.is_empty() {
            tasks.spawn(crate::tls::reload_loop(reloaded, app.config.tls.reload_interval, stopped.clone()));
        }
        tasks.spawn(cwmp::serve(cwmp_listener, app.clone(), cwmp_tls, stopped.clone()));
        let stun_addr = stun.as_ref().map(|server| server.local_addr);
        if let Some(server) = stun {
            let advertised = app.config.stun.advertised()?;
            let offer = crate::provisioning::StunOffer {
                port: advertised.as_ref().and_then(|(_, port)| *port).unwrap_or(server.local_addr.port()),
                host: advertised.map(|(host, _)| host),
            };
            let _ = app.provisioning.stun.set(offer);
            let _ = app.stun.set(server.clone());
            tasks.spawn(crate::cwmp::stun::serve(server, app.clone(), stopped.clone()));
        }

        let api_router = api::router(app.clone());
        let mut signal = stopped.clone();
        let streams = app.clone();
        match http_tls {
            None => {
                tasks.spawn(async move {
                    axum::serve(http_listener, api_router.into_make_service_with_connect_info::<SocketAddr>())
                        .with_graceful_shutdown(async move {
                            let _ = signal.wait_for(|stop| *stop).await;
                            // Event streams would hold the shutdown for their lifetime.
                            streams.live.close();
                        })
                        .await
                        .context("HTTP listener")
                });
            }
            Some(tls) => {
                let handshake = app.config.tls.handshake_timeout;
                let counted = app.clone();
                tasks.spawn(async move {
                    let closing = async move {
                        let _ = signal.wait_for(|stop| *stop).await;
                        streams.live.close();
                    };
                    serve_https(http_listener, api_router, tls, handshake, counted, closing).await
                });
            }
        }

        tasks.spawn(crate::cwmp::diagnostics_poll(app.clone(), stopped.clone()));
        tasks.spawn(crate::health::jobs::flush_loop(app.clone(), stopped.clone()));
        tasks.spawn(crate::health::jobs::presence_loop(app.clone(), stopped.clone()));
        tasks.spawn(crate::jobs::run(app.clone(), stopped.clone()));
        tasks.spawn(crate::events::outbox::run(app.clone(), stopped.clone()));
        tasks.spawn(crate::replicas::listen(app.clone(), stopped.clone()));

        let sweeper_app = app.clone();
        let mut signal = stopped;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = signal.changed() => return Ok(()),
                }
                let dropped = sweeper_app.sessions.sweep(Instant::now(), None, &sweeper_app.metrics).await;
                cwmp::wind_up(&sweeper_app, dropped).await;
            }
        });

        tracing::info!(%cwmp_addr, %http_addr, database = %crate::store::redact_url(&app.config.database_url), "Roost is ready");
        Ok(Self { cwmp_addr, http_addr, stun_addr, app, stop, tasks })
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops taking new sessions, lets the ones in flight finish (up to a deadline), then stops
    /// the listeners and closes the database.
    pub async fn shutdown(mut self) -> Result<()> {
        self.app.draining.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.app.sessions.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let dropped = self.app.sessions.sweep(Instant::now(), Some(DRAIN_IDLE), &self.app.metrics).await;
            cwmp::wind_up(&self.app, dropped).await;
        }
        let _ = self.stop.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!("{error:#}"),
                Err(error) => tracing::error!("background task failed: {error}"),
            }
        }
        // The pool is shared by every clone of the store: closing one closes it.
        self.app.store.clone().close().await?;
        Ok(())
    }

    /// Runs until a background task fails or `shutdown` resolves.
    pub async fn run_until(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::select! {
            _ = shutdown => {
                tracing::info!("shutting down: draining CWMP sessions");
                self.shutdown().await
            }
            Some(joined) = self.tasks.join_next() => {
                let error = match joined {
                    Ok(Ok(())) => anyhow::anyhow!("a listener stopped unexpectedly"),
                    Ok(Err(error)) => error,
                    Err(error) => anyhow::anyhow!("a listener panicked: {error}"),
                };
                Err(error)
            }
        }
    }
}

/// How long an HTTPS connection is given to finish what it does once the server stops.
const HTTPS_DRAIN: Duration = Duration::from_secs(10);

/// The API over TLS: each connection's handshake bounded by `handshake`, then HTTP/1.1 to
/// `router` with the client's address (as `axum::serve` gives it), until `closing` resolves:
/// then no new connection is taken and open ones finish their requests.
async fn serve_https(
    listener: TcpListener,
    router: axum::Router,
    tls: Arc<crate::tls::Reloading>,
    handshake: Duration,
    app: Arc<App>,
    closing: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(closing);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("HTTP accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, router, mut stopped, app) = (tls.acceptor(), router.clone(), stopped.clone(), app.clone());
                connections.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            app.metrics.tls_handshake_failures.inc("http");
                            return tracing::debug!(%peer, "HTTPS handshake failed: {error}");
                        }
                        Err(_) => {
                            app.metrics.tls_handshake_failures.inc("http");
                            return tracing::debug!(%peer, "HTTPS handshake timed out");
                        }
                    };
                    let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        let router = router.clone();
                        async move {
                            let service = hyper_util::service::TowerToHyperService::new(router);
                            hyper::service::Service::call(&service, request).await
                        }
                    });
                    let mut connection = std::pin::pin!(
                        hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(handshake)
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    );
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = stopped.changed() => {
                            connection.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(HTTPS_DRAIN, connection).await;
                        }
                    }
                });
            }
            _ = &mut closing => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // New connections are refused while the open ones finish, not left in the backlog.
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}
