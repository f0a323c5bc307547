//! `roost-sim`: simulated TR-069 CPEs that behave like real firmware, for Roost's end-to-end
//! tests and for load testing.
//!
//! Devices are built from parameter trees exported from real devices (`tests/data/cpe/`),
//! talk CWMP over real HTTP to an ACS, answer connection requests with Digest authentication,
//! apply the ACS's RPCs to their own tree with the faults real firmware returns, and carry out
//! reboots, factory resets, downloads, uploads and diagnostics after the session as firmware
//! does.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use roost_sim::{DataModel, DataModelKind, Fleet, FleetConfig, StartMode};
//!
//! let model = Arc::new(DataModel::bundled(DataModelKind::Tr181)?);
//! let mut config = FleetConfig::new("http://127.0.0.1:7547/", model);
//! config.start = StartMode::Manual;
//! let fleet = Fleet::start(config).await?;
//! let device = fleet.device(0);
//! let boot = device.inform_now(&[]).await?; // 0 BOOTSTRAP + 1 BOOT
//! assert!(boot.is_ok(), "{:?}", boot.error);
//! // …ask the ACS to send a connection request, then:
//! let mark = device.session_count();
//! let woken = device
//!     .wait_for_session(mark, Duration::from_secs(10), |r| r.has_event("6 CONNECTION REQUEST"))
//!     .await?;
//! println!("{:?}", woken.methods());
//! # Ok(()) }
//! ```
//!
//! Memory: the base tree is shared by every device of a model ([`DataModel`] behind an `Arc`)
//! and each device keeps only its differences ([`ParameterTree`]), so ten thousand TP-Link
//! devices (6,400 nodes each) cost a few kilobytes apiece.
//!
//! Modules: [`tree`] (models and per-device trees), [`rpc`] (the RPCs applied to a tree),
//! [`session`] (one CWMP session over HTTP), [`device`] (a device's task and handle),
//! [`connection_request`] (the shared listener), [`fleet`] (starting many devices), [`load`]
//! (load statistics), [`auth`] (HTTP Digest/Basic), [`transfer`] (Download/Upload),
//! [`diagnostics`], [`quirks`] (real-firmware habits a fleet can switch on: open or
//! socket-closing connection-request listeners, a challenge asked for with an empty POST,
//! GetParameterValues batches that crash the agent, leaves-only GetParameterNames,
//! non-atomic SetParameterValues; all off by default), [`stun`] (a device behind NAT: its STUN
//! client and UDP connection requests, TR-111).

pub mod auth;
pub mod connection_request;
pub mod device;
pub mod diagnostics;
pub mod fleet;
pub mod inform;
pub mod load;
pub mod quirks;
pub mod rpc;
pub mod session;
pub mod stun;
pub mod transfer;
pub mod tree;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use device::{DeviceHandle, StartMode};
pub use fleet::{FactoryTemplate, FirstContact, Fleet, FleetConfig};
pub use load::{Stats, Summary};
pub use quirks::{CrAuth, Quirks};
pub use rpc::{AfterSession, Attributes, CpeState, Handled};
pub use session::{RpcExchange, SessionError, SessionReport};
pub use stun::StunStatus;
pub use transfer::{FirmwareFailure, FirmwareFailureMode, firmware_image};
pub use tree::{Badge, CsvLayout, DataModel, DataModelKind, LoadError, Node, ParameterTree};

/// Errors of the simulator's API (a failed *session* is not one: see [`SessionReport::error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    #[error("the device has stopped")]
    Stopped,
    #[error("no matching session within {0:?}")]
    Timeout(Duration),
    #[error("no parameter {0}")]
    NoSuchParameter(String),
    #[error("loading the data model: {0}")]
    Load(#[from] LoadError),
    #[error("binding the connection-request listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Directory of the real device exports shipped with the repository (`tests/data/cpe`).
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("data").join("cpe")
}

/// The export each data model defaults to: the Huawei EG8145V5 for TR-098, the TP-Link
/// XX230v for TR-181.
pub fn bundled_model_path(kind: DataModelKind) -> PathBuf {
    data_dir().join(match kind {
        DataModelKind::Tr098 => "huawei-eg8145v5_tr098_genieacs-export.csv",
        DataModelKind::Tr181 => "tplink-xx230v_tr181_genieacs-export.csv",
    })
}

impl DataModel {
    /// Loads the default export for a data model (see [`bundled_model_path`]).
    pub fn bundled(kind: DataModelKind) -> Result<Self, LoadError> {
        Self::load(bundled_model_path(kind))
    }
}
