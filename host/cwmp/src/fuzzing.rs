//! What the fuzz targets in `fuzz/` check, kept here so that the test suite replays their
//! corpus through the very same code (`tests/corpus.rs`).

use crate::limits::{MessageLimits, clamp_cpe_message};
use crate::{decode_acs_message, decode_cpe_message, encode_acs_message, encode_cpe_message};

/// Decodes `bytes` as a CPE's message and as an ACS's. Nothing may panic, and whatever
/// decodes must survive encode → decode unchanged: the ACS re-encodes what it understood
/// (TransferComplete faults, values it echoes), so a decoder that reads something the encoder
/// cannot write back is a bug in one of them. The version is not compared: it is told from
/// the namespace and the headers, and the non-standard `cwmp-1-3`/`cwmp-1-4` namespaces are
/// answered with `cwmp-1-2` on purpose. A message that decodes is also clamped to the default
/// limits, as the listener does.
pub fn decode(bytes: &[u8]) {
    if let Ok(envelope) = decode_cpe_message(bytes) {
        let encoded = encode_cpe_message(envelope.version, &envelope.header, &envelope.body);
        let again = decode_cpe_message(encoded.as_bytes()).map(|e| (e.header, e.body));
        assert_eq!(again.ok(), Some((envelope.header, envelope.body.clone())), "re-encoded as {encoded}");
        let mut body = envelope.body;
        clamp_cpe_message(&mut body, &MessageLimits::default());
    }
    if let Ok(envelope) = decode_acs_message(bytes) {
        let encoded = encode_acs_message(envelope.version, &envelope.header, &envelope.body);
        let again = decode_acs_message(encoded.as_bytes()).map(|e| (e.header, e.body));
        assert_eq!(again.ok(), Some((envelope.header, envelope.body)), "re-encoded as {encoded}");
    }
}
