//! Installing components from files: the plugins Roost ships (`scripts/build-plugins.sh` puts
//! them in `plugins/dist/` as `<name>@<version>.wasm`), installed as the platform's at start, and
//! `roost plugin install` for an operator's own.
//!
//! Installing is idempotent: a name and version already stored with the same content is left as
//! it is; with other content it is refused (versions are immutable), as an upload would be.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::PluginRuntime;
use crate::store::plugins::{self, InsertError, NewPlugin};
use crate::store::{Store, settings};

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    Added { name: String, version: String, world: &'static str },
    AlreadyThere { name: String, version: String },
}

/// `<name>@<version>.wasm` → (name, version).
pub fn name_and_version(path: &Path) -> Option<(String, String)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".wasm")?;
    let (name, version) = stem.split_once('@')?;
    (!name.is_empty() && !version.is_empty()).then(|| (name.to_owned(), version.to_owned()))
}

/// The file of shipped plugin `name` in `dir`, whatever its version (`scripts/build-plugins.sh`
/// leaves one version there).
pub fn shipped_component(dir: &Path, name: &str) -> Option<PathBuf> {
    components_in(dir).ok()?.into_iter().find(|path| name_and_version(path).is_some_and(|(n, _)| n == name))
}

/// Installs one component for `org_id`. Blocking work (compiling) runs on the blocking pool.
pub async fn install(
    store: &Store,
    runtime: &std::sync::Arc<PluginRuntime>,
    org_id: i64,
    name: &str,
    version: &str,
    bytes: Vec<u8>,
) -> Result<Installed> {
    let hash = PluginRuntime::hash(&bytes);
    if let Some(existing) = plugins::by_name_version(store, org_id, name, version).await? {
        if existing.hash != hash {
            bail!("{name} {version} is installed with other content; versions are immutable: give it a new version");
        }
        return Ok(Installed::AlreadyThere { name: name.to_owned(), version: version.to_owned() });
    }
    let runtime = runtime.clone();
    let component = bytes.clone();
    let validated = tokio::task::spawn_blocking(move || runtime.validate(&component))
        .await
        .context("plugin validation task")?
        .map_err(|e| anyhow::anyhow!("{name} {version}: {e}"))?;
    let world = validated.world.as_str();
    let stored = plugins::insert(
        store,
        &NewPlugin {
            org_id,
            name,
            version,
            world,
            api_version: validated.loaded.api_version(),
            hash: &hash,
            component: &bytes,
        },
    )
    .await;
    match stored {
        Ok(_) => Ok(Installed::Added { name: name.to_owned(), version: version.to_owned(), world }),
        // Another replica starting at the same moment stored it first.
        Err(InsertError::Exists(..)) => {
            Ok(Installed::AlreadyThere { name: name.to_owned(), version: version.to_owned() })
        }
        Err(InsertError::Other(e)) => Err(e),
    }
}

/// The `.wasm` files of a directory, by name.
pub fn components_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    Ok(files)
}

/// Installs every `<name>@<version>.wasm` of `dir` as a platform plugin, then, the first time
/// only, creates the platform's default presets. A file that cannot be installed is reported and
/// skipped: one broken component must not keep the server from starting.
pub async fn install_shipped(store: &Store, runtime: &std::sync::Arc<PluginRuntime>, dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        tracing::warn!(
            "no shipped plugins in {}: devices get no bootstrap provisioning (periodic Inform, connection-request \
             credentials) until plugins are installed; build them with scripts/build-plugins.sh",
            dir.display()
        );
        return Ok(());
    }
    let platform = plugins::platform_id(store).await?;
    let mut installed = Vec::new();
    for path in components_in(dir)? {
        let Some((name, version)) = name_and_version(&path) else {
            tracing::warn!(file = %path.display(), "skipped: shipped plugins are named <name>@<version>.wasm");
            continue;
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        match install(store, runtime, platform, &name, &version, bytes).await {
            Ok(Installed::Added { name, version, world }) => {
                tracing::info!(%name, %version, world, "installed shipped plugin");
                installed.push(name);
            }
            Ok(Installed::AlreadyThere { name, .. }) => installed.push(name),
            Err(error) => tracing::error!(file = %path.display(), "shipped plugin not installed: {error:#}"),
        }
    }
    if installed.iter().any(|n| n == "bootstrap") {
        seed_default_presets(store, platform).await?;
    }
    Ok(())
}

/// The platform's `bootstrap` preset, created once: an operator who deletes or changes it keeps
/// that choice across restarts.
async fn seed_default_presets(store: &Store, platform: i64) -> Result<()> {
    const MARK: &str = "default_presets_seeded";
    if settings::get(store, MARK).await?.is_some() {
        return Ok(());
    }
    let bootstrap = serde_json::json!({
        "weight": -100,
        "events": ["0 BOOTSTRAP"],
        "provision": "bootstrap",
        "args": {"interval": "3600"},
    });
    crate::store::presets::put(store, platform, "bootstrap", -100, &bootstrap.to_string()).await?;
    settings::get_or_insert(store, MARK, b"1".to_vec()).await?;
    tracing::info!("created the platform's default preset: bootstrap");
    Ok(())
}

/// The platform's `stun` preset, created once like `bootstrap`: at bootstrap and at each boot
/// (devices bootstrapped before it existed, or reset), devices with a STUN client are pointed at
/// Roost's STUN server. It needs no plugin.
pub async fn seed_stun_preset(store: &Store) -> Result<()> {
    const MARK: &str = "stun_preset_seeded";
    if settings::get(store, MARK).await?.is_some() {
        return Ok(());
    }
    let platform = plugins::platform_id(store).await?;
    let stun = serde_json::json!({
        "weight": -90,
        "events": ["0 BOOTSTRAP", "1 BOOT"],
        "provision": "stun",
    });
    crate::store::presets::put(store, platform, "stun", -90, &stun.to_string()).await?;
    settings::get_or_insert(store, MARK, b"1".to_vec()).await?;
    tracing::info!("created the platform's default preset: stun");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_names_carry_name_and_version() {
        assert_eq!(
            name_and_version(Path::new("plugins/dist/bootstrap@0.1.0.wasm")),
            Some(("bootstrap".into(), "0.1.0".into()))
        );
        assert_eq!(name_and_version(Path::new("bootstrap.wasm")), None);
        assert_eq!(name_and_version(Path::new("@0.1.0.wasm")), None);
        assert_eq!(name_and_version(Path::new("bootstrap@0.1.0.txt")), None);
    }
}
