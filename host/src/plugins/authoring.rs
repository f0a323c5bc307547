//! What a plugin author runs before anything reaches a server: `roost plugin new` writes a crate
//! that builds and tests as it stands, `roost plugin build` turns a crate into a component with
//! whichever WebAssembly-capable Rust the machine has.
//!
//! The decisions (the crate's files, the toolchain, which artifacts are components) are plain
//! functions; `cli.rs` does the writing and the running.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::World;

/// The target every component is built for; `wasm-component-ld` (shipped with rustup's
/// toolchains and Debian's `rustc-web`) links the module and wraps it as a component using the
/// WIT the SDK embeds.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Roost's `plugin-sdk/` in the checkout this binary was built from, when it is still there.
pub fn sdk_of_this_checkout() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    is_sdk(&sdk).then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Whether `dir` holds the `roost-plugin-sdk` package.
pub fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == r#"name = "roost-plugin-sdk""#))
}

/// Why `name` cannot be a crate's name, if it cannot: cargo's rules, narrowed to what also
/// reads well as a plugin name (ASCII letters, digits, `-` and `_`, starting with a letter).
pub fn check_crate_name(name: &str) -> Result<(), String> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let allowed = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !starts_with_letter || !allowed || name.len() > 64 {
        return Err(format!(
            "{name:?} cannot name a crate: use 1 to 64 ASCII letters, digits, `-` and `_`, starting with a letter"
        ));
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(format!("{name:?} is a Rust keyword or standard crate: choose another name"));
    }
    if PRELUDE_TYPES.contains(&type_name(name).as_str()) {
        return Err(format!(
            "{name:?} would make a type {} that the SDK's prelude has already: choose another name",
            type_name(name)
        ));
    }
    Ok(())
}

/// Names a crate (or the Rust library it becomes) cannot have.
const RESERVED: [&str; 43] = [
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
    "static", "struct", "super", "trait", "true", "try", "type", "unsafe", "use", "where", "while", "std", "core",
    "alloc", "test",
];

/// The types `roost_plugin_sdk::prelude` brings in, which a new crate's own type must not shadow.
const PRELUDE_TYPES: [&str; 13] = [
    "Adapter",
    "Args",
    "Band",
    "DeviceFacts",
    "Duration",
    "Error",
    "ErrorKind",
    "Identification",
    "Provision",
    "Result",
    "Value",
    "WifiSettings",
    "WifiTarget",
];

/// The Rust type a crate's plugin is: `acme-adapter` → `AcmeAdapter`.
pub fn type_name(crate_name: &str) -> String {
    crate_name
        .split(['-', '_'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The files of a new plugin crate, relative to its directory. `sdk` is written as the path
/// dependency on `roost-plugin-sdk`.
pub fn new_crate_files(world: World, name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    // A TOML basic string: backslashes as slashes (Windows paths), quotes escaped.
    let sdk = sdk.display().to_string().replace('\\', "/").replace('"', "\\\"");
    let fill =
        |template: &str| template.replace("{name}", name).replace("{Type}", &type_name(name)).replace("{sdk}", &sdk);
    let lib = match world {
        World::Adapter => fill(ADAPTER_LIB),
        World::Provision => fill(PROVISION_LIB),
    };
    vec![("Cargo.toml", fill(CARGO_TOML)), ("src/lib.rs", lib), (".gitignore", "/target\n".to_owned())]
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# One crate, one plugin: `roost plugin build` makes the WebAssembly component, `cargo test` runs
# the tests natively.
[lib]
crate-type = ["cdylib", "rlib"] # cdylib: the component; rlib: the native tests

[dependencies]
roost-plugin-sdk = { path = "{sdk}" }

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A workspace of its own, wherever the directory is.
[workspace]
"#;

const ADAPTER_LIB: &str = r#"//! {name}: a Roost vendor adapter.

use roost_plugin_sdk::prelude::*;

pub struct {Type};

impl Adapter for {Type} {
    fn identify(facts: &DeviceFacts) -> Option<Identification> {
        // Claim your vendor's devices: put its OUI here. Scores: 10 a generic data model,
        // 50 a vendor, 80 a model family, 100 one model and firmware line.
        (facts.oui == "000000").then(|| Identification { score: 50, family: "{name}".into() })
    }

    // Every canonical operation (`wifi`, `configure_wifi`, `pppoe`, `health`, …) answers
    // "unsupported" until it is implemented here.
}

export_adapter!({Type});

#[cfg(test)]
mod tests {
    use roost_plugin_sdk::testing::{TestDevice, exports};

    use super::*;

    #[test]
    fn identifies_its_vendor_only() {
        let mut device = TestDevice::from_genieacs_csv(exports::TPLINK_XX230V_TR181).unwrap();
        assert!(device.identify::<{Type}>().is_none(), "a TP-Link is not ours");
        device.facts.oui = "000000".into();
        assert_eq!(device.identify::<{Type}>().unwrap().score, 50);
    }
}
"#;

const PROVISION_LIB: &str = r#"//! {name}: a Roost provision.

use roost_plugin_sdk::prelude::*;

pub struct {Type};

impl Provision for {Type} {
    fn run(args: &Args) -> Result<()> {
        // Declare what the device should hold; Roost works out the CWMP calls.
        let interval: u32 = args.parse("interval")?.unwrap_or(3600);
        declare(format!("{}.ManagementServer.PeriodicInformInterval", device::root())).value(interval);
        Ok(())
    }
}

export_provision!({Type});

#[cfg(test)]
mod tests {
    use roost_plugin_sdk::testing::{TestDevice, exports};

    use super::*;

    #[test]
    fn sets_the_interval() {
        let mut device = TestDevice::from_genieacs_csv(exports::TPLINK_XX230V_TR181).unwrap();
        device.converge::<{Type}>(&[("interval", "900")]).unwrap();
        assert_eq!(device.text("Device.ManagementServer.PeriodicInformInterval").as_deref(), Some("900"));
    }
}
"#;

/// The Rust that builds a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// The `rustc` on `PATH` has the wasm32 target (`rustup target add wasm32-unknown-unknown`).
    WithWasmTarget,
    /// Debian's `rustc-web`: the WebAssembly backend without a prebuilt standard library, which
    /// it builds from Debian's matching sources (`-Zbuild-std`).
    DebianRustcWeb,
}

/// What is on the machine, as far as the choice of toolchain goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub wasm_target_installed: bool,
    pub debian_rustc_web: bool,
}

pub const INSTALL_HINT: &str = "no Rust that can build WebAssembly: `rustup target add wasm32-unknown-unknown`, \
or on Debian without rustup's targets `apt-get install rustc-web cargo-web rust-web-src rust-web-llvm lld-22`";

/// rustup's target when it is there (the toolchain the author chose), Debian's otherwise.
pub fn choose_toolchain(machine: Machine) -> Result<Toolchain, &'static str> {
    match machine {
        Machine { wasm_target_installed: true, .. } => Ok(Toolchain::WithWasmTarget),
        Machine { debian_rustc_web: true, .. } => Ok(Toolchain::DebianRustcWeb),
        _ => Err(INSTALL_HINT),
    }
}

/// Debian's `rustc-web` files, where its packages put them.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUSTDOC: &str = "/usr/bin/rustdoc";
const DEBIAN_STD_SOURCES: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_RUSTLIB: &str = "/usr/lib/rustlib";

/// Looks at the machine from `dir` (where a `rust-toolchain.toml` may pick rustup's toolchain),
/// with the environment the build will have.
pub fn survey(dir: &Path) -> Machine {
    let rustc = |args: &[&str]| {
        let mut command = Command::new("rustc");
        for name in LEAKED_BY_AN_OUTER_CARGO {
            command.env_remove(name);
        }
        command
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let sysroot = rustc(&["--print", "sysroot"]).map(|out| PathBuf::from(out.trim()));
    let host = rustc(&["-vV"]).and_then(|out| out.lines().find_map(|l| l.strip_prefix("host: ")).map(str::to_owned));
    // The target's standard library, and the linker that makes a component (rustup's toolchains
    // ship it from Rust 1.82).
    let wasm_target_installed = match (sysroot, host) {
        (Some(root), Some(host)) => {
            let rustlib = root.join("lib/rustlib");
            rustlib.join(WASM_TARGET).is_dir() && rustlib.join(host).join("bin/wasm-component-ld").is_file()
        }
        _ => false,
    };
    let debian = Command::new(DEBIAN_RUSTC)
        .arg("-vV")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let debian_host = debian.lines().find_map(|l| l.strip_prefix("host: ")).unwrap_or("");
    let debian_rustc_web = debian_can_build_std(debian.lines().next().unwrap_or(""))
        && Path::new(DEBIAN_CARGO).is_file()
        && Path::new(DEBIAN_STD_SOURCES).is_dir()
        && Path::new(DEBIAN_RUSTLIB).join(debian_host).join("bin/wasm-component-ld").is_file();
    Machine { wasm_target_installed, debian_rustc_web }
}

/// Debian's older `rustc` (bookworm's 1.63) has no WebAssembly component linker; `rustc-web`
/// from 1.96 builds the SDK.
fn debian_can_build_std(version_line: &str) -> bool {
    let version = version_line.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 96)
}

/// Variables a cargo that runs `roost` (`cargo run`, a test) leaks into it; the component's build
/// must pick its own toolchain.
const LEAKED_BY_AN_OUTER_CARGO: [&str; 10] = [
    "RUSTUP_TOOLCHAIN",
    "CARGO",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
];

/// The cargo build of the crate (or workspace) in `dir`, in release, for the wasm target, with
/// its messages as JSON on standard output (diagnostics rendered to standard error).
pub fn cargo_build(toolchain: Toolchain, dir: &Path) -> Command {
    let mut command = match toolchain {
        Toolchain::WithWasmTarget => Command::new("cargo"),
        Toolchain::DebianRustcWeb => Command::new(DEBIAN_CARGO),
    };
    for name in LEAKED_BY_AN_OUTER_CARGO {
        command.env_remove(name);
    }
    command.current_dir(dir).args(["build", "--release", "--target", WASM_TARGET]);
    command.args(["--config", &format!("target.{WASM_TARGET}.linker=\"wasm-component-ld\"")]);
    command.arg("--message-format=json-render-diagnostics");
    if toolchain == Toolchain::DebianRustcWeb {
        // Without RUSTC, Debian's cargo would find rustup's proxy first on PATH: a compiler
        // whose standard library sources it does not have.
        command.env("RUSTC", DEBIAN_RUSTC).env("RUSTDOC", DEBIAN_RUSTDOC).env("RUSTC_BOOTSTRAP", "1");
        command.arg("-Zbuild-std=std,panic_abort");
    }
    command
}

/// The components a cargo build wrote, from its JSON messages: the `.wasm` files of `cdylib`
/// targets, in the order they were built.
pub fn built_components(messages: &str) -> Vec<PathBuf> {
    let mut components = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let cdylib = message["target"]["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if !cdylib {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str());
        components.extend(files.filter(|f| f.ends_with(".wasm")).map(PathBuf::from));
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_follow_cargo_and_read_as_plugin_names() {
        for good in ["acme-adapter", "guest_wifi", "a", "x230v"] {
            assert_eq!(check_crate_name(good), Ok(()), "{good}");
        }
        for bad in ["", "1acme", "-acme", "acme adapter", "acme/adapter", "ácme", &"a".repeat(65)] {
            assert!(check_crate_name(bad).is_err(), "{bad:?}");
        }
        // What would not build: a keyword or standard crate, a type the prelude has.
        for clash in ["self", "test", "std", "adapter", "provision", "result", "args", "error-kind"] {
            assert!(check_crate_name(clash).is_err(), "{clash:?}");
        }
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("acme-adapter"), "AcmeAdapter");
        assert_eq!(type_name("guest_wifi"), "GuestWifi");
        assert_eq!(type_name("a--b"), "AB");
        assert_eq!(type_name("x230v"), "X230v");
    }

    #[test]
    fn a_new_crate_names_itself_its_type_and_the_sdk() {
        let files = new_crate_files(World::Adapter, "acme-adapter", Path::new("/src/roost/plugin-sdk"));
        let file = |name: &str| files.iter().find(|(n, _)| *n == name).map(|(_, text)| text.as_str()).unwrap();
        assert!(file("Cargo.toml").contains("name = \"acme-adapter\""));
        assert!(file("Cargo.toml").contains("roost-plugin-sdk = { path = \"/src/roost/plugin-sdk\" }"));
        assert!(file("src/lib.rs").contains("impl Adapter for AcmeAdapter"));
        assert!(file("src/lib.rs").contains("export_adapter!(AcmeAdapter);"));
        let provision = new_crate_files(World::Provision, "guest-wifi", Path::new("../sdk"));
        let lib = &provision.iter().find(|(n, _)| *n == "src/lib.rs").unwrap().1;
        assert!(lib.contains("impl Provision for GuestWifi") && lib.contains("export_provision!(GuestWifi);"));
        for (_, text) in files.iter().chain(&provision) {
            assert!(!text.contains("{name}") && !text.contains("{Type}") && !text.contains("{sdk}"), "{text}");
        }
    }

    #[test]
    fn rustups_target_wins_then_debians_then_advice() {
        let machine = |wasm_target_installed, debian_rustc_web| Machine { wasm_target_installed, debian_rustc_web };
        assert_eq!(choose_toolchain(machine(true, true)), Ok(Toolchain::WithWasmTarget));
        assert_eq!(choose_toolchain(machine(true, false)), Ok(Toolchain::WithWasmTarget));
        assert_eq!(choose_toolchain(machine(false, true)), Ok(Toolchain::DebianRustcWeb));
        let advice = choose_toolchain(machine(false, false)).unwrap_err();
        assert!(advice.contains("rustup target add wasm32-unknown-unknown") && advice.contains("rustc-web"));
    }

    #[test]
    fn only_a_rustc_web_recent_enough_builds_the_sdk() {
        assert!(debian_can_build_std("rustc 1.96.0 (ded5c06cf 2026-05-25) (built from a source tarball)"));
        assert!(debian_can_build_std("rustc 2.0.0"));
        assert!(!debian_can_build_std("rustc 1.63.0"));
        assert!(!debian_can_build_std(""));
    }

    #[test]
    fn the_debian_build_brings_its_own_compiler_and_standard_library() {
        let command = cargo_build(Toolchain::DebianRustcWeb, Path::new("/tmp/acme"));
        assert_eq!(command.get_program(), DEBIAN_CARGO);
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.contains(&"-Zbuild-std=std,panic_abort".to_owned()), "{args:?}");
        assert!(args.contains(&"target.wasm32-unknown-unknown.linker=\"wasm-component-ld\"".to_owned()), "{args:?}");
        let envs: Vec<_> = command.get_envs().map(|(k, v)| (k.to_string_lossy().into_owned(), v.is_some())).collect();
        assert!(envs.contains(&("RUSTC".to_owned(), true)) && envs.contains(&("RUSTUP_TOOLCHAIN".to_owned(), false)));

        let rustup = cargo_build(Toolchain::WithWasmTarget, Path::new("/tmp/acme"));
        assert_eq!(rustup.get_program(), "cargo");
        assert!(!rustup.get_args().any(|a| a.to_string_lossy().starts_with("-Z")));
    }

    #[test]
    fn components_are_the_wasm_files_of_cdylib_targets() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"wit_bindgen"},"filenames":["/t/libwit_bindgen.rlib"]}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"],"name":"acme_adapter"},"filenames":["/t/acme_adapter.wasm","/t/libacme_adapter.rlib"]}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json at all",
        ]
        .join("\n");
        assert_eq!(built_components(&messages), [PathBuf::from("/t/acme_adapter.wasm")]);
        assert!(built_components("").is_empty());
    }
}
