//! The SOAP codec: CWMP envelopes to and from the message types in [`crate::rpc`].
//!
//! Decoding is lenient because real firmware is: elements are matched by local name with
//! prefixes ignored (undeclared ones included), `arrayType` counts and `xsi:type` spellings
//! are not trusted, optional fields default, non-UTF-8 bytes are decoded lossily, and known
//! quirks such as a `cwmp:Fault` nested inside `faultstring` are accepted. It is also safe on
//! hostile input: DOCTYPEs are refused (so no entity is ever expanded), nesting is capped at
//! [`MAX_DEPTH`], element count at [`MAX_ELEMENTS`] and size at [`MAX_MESSAGE_BYTES`], and no
//! code path recurses on input structure.
//!
//! Encoding is conservative because the least capable agents in the field parse only one
//! shape: `SOAP-ENV`/`SOAP-ENC`/`cwmp` prefixes, no XML declaration, method elements prefixed
//! exactly `cwmp:`, unprefixed children, `xsi:type` on every `Value`, and booleans as `0`/`1`.
//!
//! Direction matters: `GetRPCMethods` and its response exist both ways, so each side has its
//! own decoder ([`decode_cpe_message`] on the ACS, [`decode_acs_message`] in the simulator).

mod decode;
mod encode;
mod xml;

pub use decode::{decode_acs_message, decode_cpe_message};
pub use encode::{encode_acs_message, encode_cpe_message};

/// Deepest element nesting accepted. A CWMP envelope needs 7 levels; the margin is for
/// wrappers seen in the field, while the cap keeps hostile input from costing memory.
pub const MAX_DEPTH: usize = 64;

/// Most elements accepted in one message: well above a full-tree GetParameterValuesResponse
/// of a large CPE (about 16,000 elements for 5,400 parameters).
pub const MAX_ELEMENTS: usize = 1_000_000;

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Why a message could not be decoded. Messages name the offending element or value so a
/// log line is enough to tell a broken CPE from a broken ACS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("empty message: no XML in the body")]
    Empty,
    #[error("not well-formed XML at byte {position}: {reason}")]
    NotXml { position: u64, reason: String },
    #[error("DOCTYPE declarations are refused: CWMP never uses them and they enable entity attacks")]
    DoctypeRefused,
    #[error("elements nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("more than {limit} elements in one message")]
    TooManyElements { limit: usize },
    #[error("message of {size} bytes is larger than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a SOAP message: the root element is <{found}>, not <Envelope>")]
    NoEnvelope { found: String },
    #[error("SOAP Envelope without a Body")]
    NoBody,
    #[error("SOAP Body without a method element")]
    EmptyBody,
    #[error("unknown CWMP method {method}")]
    UnknownMethod { method: String },
    #[error("{within}: missing required field {field}")]
    MissingField { within: &'static str, field: &'static str },
    #[error("{field}: {value:?} is not a valid number")]
    BadNumber { field: &'static str, value: String },
    #[error("{field}: {value:?} is not a valid boolean")]
    BadBoolean { field: &'static str, value: String },
}
