use super::*;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    load_str(toml, &env, Path::new("."))
}

const MINIMAL: &str = r#"
[proxy]
listen = "127.0.0.1:8080"
[[upstreams]]
hosts = ["gpdb.aliyuncs.com", "gpdb.*.aliyuncs.com"]
connect_to = "127.0.0.1:9000"
scheme = "http"
[[credentials]]
access_key_id = "testid"
access_key_secret = "testsecret"
"#;

#[test]
fn the_issue_example_loads_with_defaults() {
    let c = load(MINIMAL, &[]).unwrap();
    assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.retry.max_attempts, 5);
    assert_eq!(c.retry.retry_statuses, vec![500, 503]);
    let (_, u) = c.upstream_for("gpdb.cn-beijing.aliyuncs.com").unwrap();
    assert_eq!(u.scheme, Scheme::Http);
    assert!(c.upstream_for("gpdb.a.b.aliyuncs.com").is_none());
    assert!(c.upstream_for("ecs.aliyuncs.com").is_none());
    assert_eq!(c.credentials["testid"].expose(), "testsecret");
}

#[test]
fn the_shipped_example_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/idemproxy.toml"
    ))
    .unwrap();
    load(&text, &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "x")]).unwrap();
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = load("[proxy]\nlissten = \"127.0.0.1:1\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("proxy") && err.contains("lissten"), "{err}");
    let err = load("[[upstreams]]\nhosts=[\"a.b\"]\nconect_to=\"x:1\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("upstreams[0]") && err.contains("conect_to"),
        "{err}"
    );
    let err = load("[nope]\nx = 1\n", &[]).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("[proxy]\nlisten = \"localhost\"\n", "proxy.listen"),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts"),
        ("[retry]\ndeadline = \"soon\"\n", "retry.deadline"),
        ("[retry]\nretry_statuses = [404]\n", "retry.retry_statuses"),
        ("[retry]\nmax_attempts = \"many\"\n", "retry.max_attempts"),
        ("[[upstreams]]\nhosts = []\n", "upstreams[0].hosts"),
        ("[[upstreams]]\nhosts = [\"a..b\"]\n", "upstreams[0].hosts"),
        (
            "[[upstreams]]\nhosts = [\"a.b\"]\nscheme = \"ftp\"\n",
            "upstreams[0].scheme",
        ),
        (
            "[[upstreams]]\nhosts = [\"a.b\"]\nconnect_to = \"nowhere\"\n",
            "upstreams[0].connect_to",
        ),
        (
            "[[credentials]]\naccess_key_id = \"a\"\n",
            "credentials[0].access_key_secret",
        ),
        (
            "[[credentials]]\naccess_key_id = \"a\"\naccess_key_secret_env = \"NOPE_UNSET\"\n",
            "credentials[0].access_key_secret_env",
        ),
        (
            "[classification]\nread_only = [\"X\"]\nmutating = [\"X\"]\n",
            "classification.mutating",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        (
            "[proxy]\ngateway_upstream = \"ecs.aliyuncs.com\"\n",
            "proxy.gateway_upstream",
        ),
    ];
    for (toml, key) in cases {
        let err = load(toml, &[]).unwrap_err().to_string();
        assert!(err.contains(key), "{toml:?} -> {err}");
    }
}

#[test]
fn env_overrides_win_and_secrets_come_from_env() {
    let toml = "[[credentials]]\naccess_key_id = \"a\"\naccess_key_secret_env = \"MY_SECRET\"\n";
    let c = load(
        toml,
        &[
            ("IDEMPROXY__PROXY__LISTEN", "127.0.0.1:9999"),
            ("IDEMPROXY__RETRY__MAX_ATTEMPTS", "2"),
            ("MY_SECRET", "s3"),
        ],
    )
    .unwrap();
    assert_eq!(c.proxy.listen.port(), 9999);
    assert_eq!(c.retry.max_attempts, 2);
    assert_eq!(c.credentials["a"].expose(), "s3");
    let err = load("", &[("IDEMPROXY__RETRY__BOGUS", "1")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn errors_never_contain_the_secret() {
    let toml = "[[credentials]]\naccess_key_id = \"a\"\naccess_key_secret = \"topsecret\"\naccess_key_secret_env = \"X\"\n";
    let err = load(toml, &[]).unwrap_err().to_string();
    assert!(!err.contains("topsecret"), "{err}");
    let c = load(MINIMAL, &[]).unwrap();
    assert!(!format!("{c:?}").contains("testsecret"));
}

#[test]
fn host_patterns() {
    let p = HostPattern::parse("gpdb.*.aliyuncs.com").unwrap();
    assert!(p.matches("gpdb.cn-beijing.aliyuncs.com"));
    assert!(p.matches("GPDB.CN-BEIJING.ALIYUNCS.COM"));
    assert!(!p.matches("gpdb.aliyuncs.com"));
    assert!(!p.matches("x.gpdb.cn.aliyuncs.com"));
    assert!(HostPattern::parse("gp*.com").is_err());
    assert!(HostPattern::parse("").is_err());
}

#[test]
fn tls_paths_resolve_against_the_config_folder() {
    let env = HashMap::new();
    let c = load_str(
        "[tls]\nca_cert = \"certs/ca.pem\"\nca_key = \"/abs/key.pem\"\n",
        &env,
        Path::new("/etc/idemproxy"),
    )
    .unwrap();
    let t = c.tls.unwrap();
    assert_eq!(t.ca_cert, Path::new("/etc/idemproxy/certs/ca.pem"));
    assert_eq!(t.ca_key, Path::new("/abs/key.pem"));
    assert_eq!(c.proxy.connect_other, ConnectOther::Tunnel);
}

#[test]
fn dedupe_defaults_and_overrides() {
    let env = HashMap::new();
    let c = load_str("", &env, Path::new("/etc/idemproxy")).unwrap();
    assert_eq!(
        c.dedupe.store,
        StoreKind::Embedded(PathBuf::from("/etc/idemproxy/state/dedupe.redb"))
    );
    assert_eq!(c.dedupe.window, Duration::from_secs(300));
    assert!(!c.dedupe.fail_open);
    let c = load_str(
        "[dedupe]\nstore = \"redis\"\nredis_url = \"redis://:pw@127.0.0.1:6379\"\nwindow = \"0s\"\n[dedupe.actions]\nCreateDBInstance = \"2m\"\n",
        &env,
        Path::new("."),
    )
    .unwrap();
    assert!(!c.dedupe.disabled());
    assert_eq!(
        c.dedupe.per_action["CreateDBInstance"],
        Duration::from_secs(120)
    );
    assert!(
        !format!("{c:?}").contains(":pw@"),
        "the Redis password never prints"
    );
}

#[test]
fn credentials_from_files_env_defaults_and_sts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "from-file\n").unwrap();
    let toml = "[[credentials]]\naccess_key_id = \"a\"\naccess_key_secret_file = \"secret\"\nsecurity_token_env = \"STS\"\n";
    let env: HashMap<String, String> = [("STS".to_owned(), "sts-token".to_owned())].into();
    let c = load_str(toml, &env, dir.path()).unwrap();
    assert_eq!(c.credentials["a"].expose(), "from-file");
    assert_eq!(c.security_tokens["a"].expose(), "sts-token");
    // No [[credentials]]: the SDKs' environment variables.
    let env: HashMap<String, String> = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID".to_owned(), "envid".to_owned()),
        (
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET".to_owned(),
            "envsecret".to_owned(),
        ),
        (
            "ALIBABA_CLOUD_SECURITY_TOKEN".to_owned(),
            "envsts".to_owned(),
        ),
    ]
    .into();
    let c = load_str("", &env, Path::new(".")).unwrap();
    assert_eq!(c.credentials["envid"].expose(), "envsecret");
    assert_eq!(c.security_tokens["envid"].expose(), "envsts");
    let err = load_str("[[credentials]]\naccess_key_id = \"a\"\naccess_key_secret = \"x\"\naccess_key_secret_file = \"y\"\n", &HashMap::new(), Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("credentials[0].access_key_secret") && !err.contains("\"x\""),
        "{err}"
    );
}

#[test]
fn signing_unsigned_requests_is_opt_in_and_names_its_key() {
    let two = "[[credentials]]\naccess_key_id = \"a\"\naccess_key_secret = \"x\"\n[[credentials]]\naccess_key_id = \"b\"\naccess_key_secret = \"y\"\n";
    assert!(load(two, &[]).unwrap().signing.sign_unsigned_as.is_none());
    let err = load(&format!("{two}[signing]\nsign_unsigned = true\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("signing.access_key_id"), "{err}");
    let c = load(
        &format!("{two}[signing]\nsign_unsigned = true\naccess_key_id = \"b\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.signing.sign_unsigned_as.as_deref(), Some("b"));
    let err = load(
        &format!("{two}[signing]\nsign_unsigned = true\naccess_key_id = \"c\"\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("signing.access_key_id"), "{err}");
}
