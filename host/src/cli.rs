//! The `roost` command line (a contract: see DESIGN.md).

use std::io::Read;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use crate::api::auth::{check_password_strength, hash_password};
use crate::app::Server;
use crate::config::{Config, DatabaseArgs, ServeArgs};
use crate::permissions::{Role, may_grant};
use crate::plugins::{PluginRuntime, PluginSettings, World, authoring, install};
use crate::secrets::Secrets;
use crate::store::{Store, credentials, orgs, users};

#[derive(Debug, Parser)]
#[command(name = "roost", version, about = "Roost: a multi-tenant TR-069 auto-configuration server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: CWMP for devices, REST API for people and integrations.
    Serve(ServeArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Manage the credentials CPEs use to authenticate to the CWMP endpoint.
    CpeCredential {
        #[command(subcommand)]
        command: CpeCredentialCommand,
    },
    /// Manage the API's JWT signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Work with plugins (WebAssembly components).
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Print the OpenAPI 3.1 document of the REST API and the NBI (as served at
    /// `/api/v1/openapi.json`), for generating clients.
    Openapi,
    /// Copy the embedded SQLite database to FILE while the server runs (one consistent
    /// snapshot, checked). PostgreSQL: pg_dump (docs/DEPLOY.md). Keep the master key apart.
    Backup {
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Replace the embedded SQLite database with the backup FILE; `roost serve` must be stopped.
    /// The database replaced is kept beside it (`roost.db.replaced-<seconds>`).
    Restore {
        file: std::path::PathBuf,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Ask a running server whether it is alive (`/healthz`) or ready (`/readyz`): exits 0 on a
    /// 2xx answer within 3 s, 1 otherwise. For container health checks, which have no curl.
    Probe {
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin crate that builds and tests as it stands: `roost plugin new adapter
    /// acme-adapter` makes `./acme-adapter/` (an adapter to fill in, with a native test).
    New {
        /// `adapter` or `provision`: one crate is one component.
        #[arg(value_parser = parse_world)]
        world: World,
        /// The crate's name, also its directory's.
        name: String,
        /// The directory to write (default: ./NAME); it must not exist, or be empty.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Roost's `plugin-sdk/` directory (default: the one of the checkout this roost was built
        /// from).
        #[arg(long)]
        sdk: Option<std::path::PathBuf>,
    },
    /// Build the plugin crate (or workspace) in DIR into WebAssembly components, with rustup's
    /// wasm32 target or, without it, Debian's `rustc-web`; then check each as `validate` does.
    Build {
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Check a component as an upload would: it compiles, implements a roost:plugin world, and
    /// imports nothing else. Prints its world and hash.
    Validate {
        /// The component (`.wasm`).
        file: std::path::PathBuf,
    },
    /// Install components into the database, as `POST /api/v1/plugins` would: files named
    /// `<name>@<version>.wasm` (what `scripts/build-plugins.sh` writes to `plugins/dist/`), or one
    /// file with `--name` and `--version`. Installing what is installed already changes nothing.
    Install {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The owner; the platform's plugins are visible to every organization.
        #[arg(long, default_value = orgs::PLATFORM_SLUG)]
        org: String,
        #[arg(long, requires = "version")]
        name: Option<String>,
        #[arg(long, requires = "name")]
        version: Option<String>,
        /// Components, or directories of them.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key: tokens issued from now on (on every replica) are signed with it;
    /// tokens signed with older keys stay valid until they expire.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, help = Role::NAMES)]
        role: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    Create {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        parent: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CpeCredentialCommand {
    /// Create a credential; the password is read from standard input.
    Create {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        username: String,
        /// Only devices of (and onboarding into) this organization may use it.
        #[arg(long)]
        org: Option<String>,
        /// Only this device (its `OUI-ProductClass-Serial` id) may use it.
        #[arg(long)]
        device: Option<String>,
        /// Only devices of this product class (model) may use it.
        #[arg(long)]
        product_class: Option<String>,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

/// `roost probe`: one GET, no retries (the orchestrator retries).
async fn probe(url: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .no_proxy()
        .build()
        .context("building the HTTP client")?;
    let response = client.get(url).send().await.with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    Ok(())
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plugin { command: PluginCommand::Validate { file } } => {
            let runtime = PluginRuntime::new(PluginSettings { concurrent_instances: 4, ..PluginSettings::default() })?;
            println!("{}", validate(&runtime, &file)?);
            Ok(())
        }
        Command::Plugin { command: PluginCommand::New { world, name, dir, sdk } } => {
            authoring::check_crate_name(&name).map_err(anyhow::Error::msg)?;
            let sdk = match sdk {
                Some(sdk) if authoring::is_sdk(&sdk) => sdk.canonicalize().unwrap_or(sdk),
                Some(sdk) => bail!("{} is not Roost's plugin-sdk directory (no roost-plugin-sdk there)", sdk.display()),
                None => authoring::sdk_of_this_checkout().context(
                    "this roost was not built from a Roost checkout it can still find: give --sdk PATH, Roost's plugin-sdk directory",
                )?,
            };
            let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(&name));
            if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
                bail!("{} exists and is not empty", dir.display());
            }
            for (file, text) in authoring::new_crate_files(world, &name, &sdk) {
                let path = dir.join(file);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            }
            println!(
                "wrote {} in {}: `cargo test` there runs its test, `roost plugin build {}` makes the component",
                world.with_article(),
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        Command::Plugin { command: PluginCommand::Build { dir } } => {
            if !dir.join("Cargo.toml").is_file() {
                bail!("{} has no Cargo.toml: give the directory of a plugin crate", dir.display());
            }
            let toolchain = authoring::choose_toolchain(authoring::survey(&dir)).map_err(anyhow::Error::msg)?;
            let output = authoring::cargo_build(toolchain, &dir)
                .stderr(std::process::Stdio::inherit())
                .output()
                .context("running cargo")?;
            if !output.status.success() {
                bail!("cargo could not build {} ({})", dir.display(), output.status);
            }
            let components = authoring::built_components(&String::from_utf8_lossy(&output.stdout));
            if components.is_empty() {
                bail!(
                    "{} builds no component: a plugin crate has crate-type = [\"cdylib\", \"rlib\"] under [lib]",
                    dir.display()
                );
            }
            let runtime = PluginRuntime::new(PluginSettings { concurrent_instances: 4, ..PluginSettings::default() })?;
            for component in components {
                println!("built {}", validate(&runtime, &component)?);
            }
            Ok(())
        }
        Command::Plugin { command: PluginCommand::Install { database, org, name, version, files } } => {
            let mut components = Vec::new();
            for path in files {
                if path.is_dir() {
                    components.extend(install::components_in(&path)?);
                } else {
                    components.push(path);
                }
            }
            if name.is_some() && components.len() != 1 {
                bail!("--name and --version name one component; {} were given", components.len());
            }
            let store = open(&database).await?;
            let owner = orgs::by_slug(&store, &org).await?.with_context(|| format!("no organization {org:?}"))?;
            let settings = PluginSettings { concurrent_instances: 4, ..PluginSettings::default() };
            let runtime = std::sync::Arc::new(PluginRuntime::new(settings)?);
            for path in components {
                let (name, version) = match (&name, &version) {
                    (Some(n), Some(v)) => (n.clone(), v.clone()),
                    _ => install::name_and_version(&path).with_context(|| {
                        format!("{}: name it <name>@<version>.wasm, or give --name and --version", path.display())
                    })?,
                };
                crate::api::plugins::check_name(&name).map_err(|e| anyhow::anyhow!("{name}: {}", e.detail))?;
                let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                match install::install(&store, &runtime, owner.id, &name, &version, bytes).await? {
                    install::Installed::Added { name, version, world } => {
                        println!("installed {name} {version} ({world}) for {}", owner.slug)
                    }
                    install::Installed::AlreadyThere { name, version } => {
                        println!("{name} {version} is installed already for {}", owner.slug)
                    }
                }
            }
            store.close().await
        }
        Command::Probe { url } => probe(&url).await,
        Command::Backup { file, database } => {
            let summary = crate::store::backup::backup(&database.database_url(), &file).await?;
            println!("backed up to {}: {summary}", file.display());
            println!("the master key is not in the backup: keep a copy of it, apart from the backups");
            Ok(())
        }
        Command::Restore { file, database } => {
            let (summary, kept) = crate::store::backup::restore(&database.database_url(), &file).await?;
            println!("restored {}: {summary}", file.display());
            if let Some(kept) = kept {
                println!("the database it replaced is kept as {}", kept.display());
            }
            println!("start `roost serve` with the master key the backup was taken under");
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&crate::api::openapi_document())?);
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rotate { database } } => {
            let store = open(&database).await?;
            let secrets = Secrets::load_or_create(&database.data_dir)?;
            // Keep retired keys as long as the tokens they signed can live: the longest access
            // token lifetime anyone would configure, with room to spare.
            const KEEP_RETIRED_MS: i64 = 24 * 3600 * 1000;
            let (kid, sealed) = crate::api::auth::new_signing_key(&secrets);
            crate::store::tokens::add_signing_key(&store, &kid, sealed, KEEP_RETIRED_MS).await?;
            println!("new signing key {kid}: new tokens use it; tokens signed before stay valid until they expire");
            store.close().await
        }
        Command::Serve(args) => {
            let config = Config::resolve(&args)?;
            let server = Server::start(config).await?;
            server.run_until(shutdown_signal()).await
        }
        Command::User { command: UserCommand::Create { database, org, email, role, .. } } => {
            let role = Role::parse(&role).with_context(|| format!("unknown role {role:?}; one of {}", Role::NAMES))?;
            let email = email.trim();
            if !email.contains('@') || email.len() > 254 {
                bail!("{email:?} is not an email address");
            }
            let password = read_password()?;
            check_password_strength(&password).map_err(anyhow::Error::msg)?;
            let store = open(&database).await?;
            let org = orgs::by_slug(&store, &org).await?.with_context(|| format!("no organization {org:?}"))?;
            // The operator at the command line holds the platform's rights, under the same
            // rules as the API.
            may_grant(Role::PlatformAdmin, role, org.slug == orgs::PLATFORM_SLUG)?;
            if users::by_email(&store, email).await?.is_some() {
                bail!("a user with email {email:?} exists already");
            }
            let user = users::create(&store, org.id, email, &hash_password(&password)?, role.as_str()).await?;
            println!("created user {} ({}) in {} as {}", user.id, user.email, org.slug, role.as_str());
            store.close().await
        }
        Command::Org { command: OrgCommand::Create { database, name, slug, parent } } => {
            let store = open(&database).await?;
            let parent = match parent {
                Some(slug) => {
                    Some(orgs::by_slug(&store, &slug).await?.with_context(|| format!("no organization {slug:?}"))?.id)
                }
                None => Some(
                    orgs::by_slug(&store, orgs::PLATFORM_SLUG)
                        .await?
                        .context("the platform organization is missing")?
                        .id,
                ),
            };
            if orgs::by_slug(&store, &slug).await?.is_some() {
                bail!("an organization with slug {slug:?} exists already");
            }
            let org = orgs::create(&store, &name, &slug, parent).await?;
            println!("created organization {} ({})", org.slug, org.name);
            store.close().await
        }
        Command::CpeCredential {
            command: CpeCredentialCommand::Create { database, username, org, device, product_class, .. },
        } => {
            let password = read_password()?;
            if username.is_empty() || username.contains(':') {
                bail!("a CPE username must be non-empty and contain no ':'");
            }
            let store = open(&database).await?;
            let secrets = Secrets::load_or_create(&database.data_dir)?;
            let org_id = match org {
                Some(slug) => {
                    Some(orgs::by_slug(&store, &slug).await?.with_context(|| format!("no organization {slug:?}"))?.id)
                }
                None => None,
            };
            if credentials::by_username(&store, &username).await?.is_some() {
                bail!("a CPE credential named {username:?} exists already");
            }
            let scope = credentials::CredentialScope {
                org_id,
                device_id: device.as_deref(),
                product_class: product_class.as_deref(),
            };
            credentials::create(&store, scope, &username, secrets.seal(password.as_bytes())).await?;
            println!("created CPE credential {username}");
            store.close().await
        }
    }
}

/// Checks a component file as an upload would, and describes it.
fn validate(runtime: &PluginRuntime, file: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    match runtime.validate(&bytes) {
        Ok(valid) => Ok(format!(
            "{}: {} of roost:plugin@{}, {} bytes, sha256 {}",
            file.display(),
            valid.world.with_article(),
            valid.loaded.api_version(),
            bytes.len(),
            valid.hash
        )),
        Err(error) => bail!("{}: {error}", file.display()),
    }
}

fn parse_world(name: &str) -> Result<World, String> {
    World::parse(name).ok_or_else(|| format!("{name:?} is not a plugin world: `adapter` or `provision`"))
}

async fn open(database: &DatabaseArgs) -> Result<Store> {
    std::fs::create_dir_all(&database.data_dir)
        .with_context(|| format!("creating data directory {}", database.data_dir.display()))?;
    let store = Store::open_migrated(&database.database_url()).await?;
    Ok(store)
}

fn read_password() -> Result<String> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading the password from standard input")?;
    let password = input.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&input);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password.to_owned())
}

/// SIGTERM (how service managers stop us) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::error!("cannot listen for SIGTERM: {error}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
