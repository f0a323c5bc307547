//! `roost-cwmp`: the CWMP (TR-069 Amendment 6) protocol without I/O.
//!
//! Bytes and time go in; decoded messages, encoded replies and session decisions come out.
//! Nothing here touches a socket, a clock, a database or an async runtime, so whole
//! conversations can be driven in tests (and fuzzed) with simulated time.
//!
//! - [`rpc`]: the messages, as data.
//! - [`codec`]: lenient SOAP decoding (real firmware is messy) and conservative encoding
//!   (`SOAP-ENV`/`SOAP-ENC`/`cwmp` prefixes, no XML declaration, `xsi:type` everywhere).
//! - [`session`]: the ACS side of one CWMP session as a state machine.
//! - [`device_id`]: the GenieACS-compatible device identifier.
//! - [`stun`]: TR-111 STUN Binding messages and UDP connection requests (devices behind NAT).

pub mod codec;
pub mod data_model;
pub mod device_id;
pub mod fault;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod rpc;
pub mod session;
pub mod stun;
pub mod value;
pub mod version;

pub use codec::{DecodeError, decode_acs_message, decode_cpe_message, encode_acs_message, encode_cpe_message};
pub use data_model::DataModel;
pub use fault::Fault;
pub use rpc::*;
pub use value::{ValueType, is_secret_parameter};
pub use version::CwmpVersion;
