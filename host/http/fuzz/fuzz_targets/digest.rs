//! The Digest header parser, fed `Authorization` headers from anyone and `WWW-Authenticate`
//! challenges from CPEs.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| roost_http::fuzzing::digest(bytes));
