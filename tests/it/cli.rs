//! The binary: check-config and the offline demo.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_idemproxy");

#[test]
fn check_config_accepts_the_example() {
    let out = Command::new(BIN)
        .args([
            "check-config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/idemproxy.toml"),
        ])
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "x")
        .env("IDEMPROXY__DEDUPE__STORE", "memory")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

#[test]
fn check_config_names_the_bad_key_and_exits_64() {
    let out = crate::support::check_config(
        "[retry]
max_atempts = 3
",
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("retry") && err.contains("max_atempts"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/idemproxy.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn the_demo_runs_offline_and_reports_no_duplicates() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("through idemproxy: 6 calls"), "{stdout}");
    assert!(stdout.contains("duplicates = 0"), "{stdout}");
    // The naive baseline shows what the proxy prevents.
    assert!(stdout.contains("naive client"), "{stdout}");
}

#[test]
fn simulate_refuses_bad_faults_and_keys() {
    let out = Command::new(BIN)
        .args(["simulate", "--faults", "Create=boom"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown fault"));
    let out = Command::new(BIN)
        .args(["simulate", "--keys", "idonly"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_missing_ca_is_a_clear_startup_error() {
    let out = crate::support::check_config(
        "[tls]\nca_cert = \"certs/ca.pem\"\nca_key = \"certs/ca-key.pem\"\n",
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot load the local CA") && err.contains("ca.pem"),
        "{err}"
    );
}

#[test]
fn ca_init_writes_a_private_key_refuses_to_overwrite_and_explains_trust() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = Command::new(BIN)
        .args(["ca", "init", "--dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "keytool",
        "update-ca-certificates",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert!(!text.contains("PRIVATE KEY"));
    let again = Command::new(BIN)
        .args(["ca", "init", "--dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[tokio::test]
async fn healthcheck_probes_the_admin_listener() {
    let sim = crate::support::start_sim("").await;
    let proxy = crate::support::start_proxy(&crate::support::proxy_toml(sim.addr, "", "")).await;
    let admin = proxy.admin_addr.unwrap().to_string();
    let ok = tokio::process::Command::new(BIN)
        .args(["healthcheck", "--admin", &admin])
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = tokio::process::Command::new(BIN)
        .args(["healthcheck", "--admin", &admin, "--path", "/nope"])
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
}
