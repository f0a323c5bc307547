//! Replays the fuzz corpus through the fuzz target's checks: `fuzz/corpus/decode` (seeds from
//! real captures and what the fuzzer found worth keeping, minimized) and
//! `fuzz/regressions/decode` (every input that once failed, kept by name).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

/// Runs every input of `fuzz/<dir>/decode`; how many there were.
fn replay(dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir).join("decode");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| roost_cwmp::fuzzing::decode(&bytes)) {
            panic!("{} fails the decoder's checks: {panic:?}", path.display());
        }
        inputs += 1;
    }
    inputs
}

#[test]
fn the_decoder_survives_its_fuzz_corpus() {
    let inputs = replay("corpus");
    assert!(inputs >= 50, "the corpus holds {inputs} inputs: the seeds are missing");
}

#[test]
fn the_decoder_survives_what_once_failed() {
    assert!(replay("regressions") >= 2);
}
