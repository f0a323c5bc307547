//! The request framer, fed the bytes of one connection to the CWMP port, before any
//! authentication.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| roost_http::fuzzing::frame(bytes));
