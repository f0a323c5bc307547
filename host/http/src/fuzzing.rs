//! What the fuzz targets in `fuzz/` check, kept here so that the test suite replays their
//! corpus through the very same code (`tests/corpus.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::digest;
use crate::framing::{Gate, RequestHead, Settings, Verdict, Verdicts, serve_requests};

/// The body limit of a fuzzed connection: small, so that inputs reach the too-large paths.
const MAX_BODY: usize = 4096;

/// The verdicts of a gate that admits what carries credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    Admitted,
    Refused,
    TooLarge,
    Busy,
}

impl Verdict for Seen {
    fn admits(&self) -> bool {
        *self == Seen::Admitted
    }
    fn too_large() -> Self {
        Seen::TooLarge
    }
    fn busy() -> Self {
        Seen::Busy
    }
}

/// Admits requests that carry an Authorization header, as the CWMP gate does for credentials
/// that verify.
pub(crate) fn gate() -> Gate<Seen> {
    Arc::new(|head: RequestHead| {
        Box::pin(async move { if head.authorization.is_some() { Seen::Admitted } else { Seen::Refused } })
    })
}

/// Frames `bytes` as one connection's input, as the CWMP listener would: the gate admits a
/// request that carries `Authorization`, as it does credentials that verify. The first byte
/// picks strict or lenient framing. Nothing may panic, and what reaches the HTTP parser is
/// bounded by the input: the framer rewrites heads (a corrected `Content-Length`, a closing
/// `Connection: close`) but never invents bodies.
pub fn frame(bytes: &[u8]) {
    let strict = bytes.first().is_some_and(|b| b & 1 == 1);
    let settings = Settings {
        max_body: MAX_BODY,
        idle: Duration::from_secs(1),
        request_deadline: Duration::from_secs(1),
        // Room for any one request: a budget that waits would cost the fuzzer its real seconds
        // (the budget's waits are covered by the framer's own tests).
        budget: Some(Settings::budget_of(1 << 20)),
        strict,
    };
    let verdicts: Verdicts<Seen> = Arc::default();
    let mut out = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build();
    let Ok(runtime) = runtime else { return };
    let _ = runtime.block_on(serve_requests(bytes, &mut out, settings, gate(), verdicts.clone()));
    // Each request the framer passed on can grow by a rewritten head; there are at most as
    // many requests as blank lines in the input.
    let heads = bytes.windows(2).filter(|w| w == b"\n\n" || w == b"\r\n").count() + 1;
    assert!(out.len() <= bytes.len() + heads * 64, "{} bytes out of {} in", out.len(), bytes.len());
    let verdicts = verdicts.lock().map(|v| v.len()).unwrap_or(0);
    assert!(verdicts <= heads, "{verdicts} verdicts for at most {heads} requests");
}

/// Parses `bytes` as a `WWW-Authenticate` or `Authorization` Digest header, and computes the
/// response the parsed fields give, as the ACS does both ways. Nothing may panic.
pub fn digest(bytes: &[u8]) {
    let header = String::from_utf8_lossy(bytes);
    let Some(params) = digest::parse_params(&header) else { return };
    for (key, _) in &params {
        assert_eq!(key, &key.to_ascii_lowercase());
        assert!(digest::param(&params, key).is_some());
    }
    let field = |key: &str| digest::param(&params, key).unwrap_or("");
    let qop = digest::param(&params, "qop").map(|qop| (qop, field("nc"), field("cnonce")));
    let response =
        digest::response(field("username"), field("realm"), "secret", "POST", field("uri"), field("nonce"), qop);
    assert_eq!(response.len(), 32);
    assert_eq!(digest::constant_time_eq(&response, field("response")), field("response") == response);
}
