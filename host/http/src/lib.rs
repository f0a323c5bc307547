//! The CWMP port's HTTP edge: what reads a request before anyone knows who sent it.
//!
//! Everything here handles bytes from the internet before authentication, so it lives in a
//! crate of its own, small enough to fuzz on its own ([`framing`]: the request framer;
//! [`digest`]: the Digest header parser and the response hash). It opens no socket: the
//! framer works on any `AsyncRead`/`AsyncWrite` pair the `roost` host gives it.

pub mod digest;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
