//! The SOAP decoder, fed anything a CPE (or a hostile client past authentication) could POST.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| roost_cwmp::fuzzing::decode(bytes));
