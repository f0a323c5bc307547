//! Replays the fuzz corpora through the fuzz targets' checks: `fuzz/corpus/<target>` (seeds
//! from real captures and what the fuzzer found worth keeping, minimized) and
//! `fuzz/regressions/<target>` (every input that once failed, kept by name).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

/// Runs every input of `fuzz/<dir>/<target>` through `check`; how many there were.
fn replay(dir: &str, target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir).join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| check(&bytes)) {
            panic!("{} fails the {target} checks: {panic:?}", path.display());
        }
        inputs += 1;
    }
    inputs
}

#[test]
fn the_framer_survives_its_fuzz_corpus() {
    let inputs = replay("corpus", "framer", roost_http::fuzzing::frame);
    assert!(inputs >= 20, "the framer corpus holds {inputs} inputs: the seeds are missing");
}

#[test]
fn the_framer_survives_what_once_failed() {
    assert!(replay("regressions", "framer", roost_http::fuzzing::frame) >= 1);
}

#[test]
fn the_digest_parser_survives_its_fuzz_corpus() {
    let inputs = replay("corpus", "digest", roost_http::fuzzing::digest);
    assert!(inputs >= 20, "the digest corpus holds {inputs} inputs: the seeds are missing");
}
