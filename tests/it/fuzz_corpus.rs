//! Replays the stored fuzz corpus (`fuzz/corpus/<target>/`, kept minimized with
//! `cargo fuzz cmin`) through the fuzz entry points: every input a fuzzing session found
//! interesting, including the ones that once crashed (`regress-*`), stays checked in CI.

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "corpus {} has only {} inputs",
        dir.display(),
        files.len()
    );
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let result = std::panic::catch_unwind(|| entry(&data));
        assert!(result.is_ok(), "fuzz input {} fails again", f.display());
    }
}

#[test]
fn params_corpus() {
    replay("params", idemproxy::fuzzing::params);
}

#[test]
fn v3_authorization_corpus() {
    replay("v3_authorization", idemproxy::fuzzing::v3_authorization);
}

#[test]
fn config_corpus() {
    replay("config", idemproxy::fuzzing::config);
}

#[test]
fn proxy_request_corpus() {
    replay("proxy_request", idemproxy::fuzzing::proxy_request);
}

#[test]
fn sim_request_corpus() {
    replay("sim_request", idemproxy::fuzzing::sim_request);
}
