//! The serde mirror of the TOML file and `IDEMPROXY__SECTION__KEY` environment overrides.
//! Every struct rejects unknown keys; defaults live here, validation in `config.rs`.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub credentials: Vec<RawCredential>,
    #[serde(default)]
    pub classification: RawClassification,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub dedupe: RawDedupe,
    #[serde(default)]
    pub limiter: RawLimiter,
    #[serde(default)]
    pub signing: RawSigning,
    #[serde(default)]
    pub admin: RawAdmin,
}

/// `[limiter]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimiter {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_scope")]
    pub scope: Vec<String>,
    #[serde(default)]
    pub initial_rate: Option<f64>,
    #[serde(default = "default_max_rate")]
    pub max_rate: f64,
    #[serde(default = "default_min_rate")]
    pub min_rate: f64,
    #[serde(default = "default_decrease")]
    pub decrease: f64,
    #[serde(default = "default_increase")]
    pub increase: f64,
    #[serde(default = "default_decrease_cooldown")]
    pub decrease_cooldown: String,
}

fn default_decrease_cooldown() -> String {
    "50ms".into()
}

impl Default for RawLimiter {
    fn default() -> Self {
        RawLimiter {
            enabled: true,
            scope: default_scope(),
            initial_rate: None,
            max_rate: default_max_rate(),
            min_rate: default_min_rate(),
            decrease: default_decrease(),
            increase: default_increase(),
            decrease_cooldown: default_decrease_cooldown(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_scope() -> Vec<String> {
    vec!["access_key".into(), "region".into(), "action".into()]
}
fn default_max_rate() -> f64 {
    1000.0
}
fn default_min_rate() -> f64 {
    1.0
}
fn default_decrease() -> f64 {
    0.5
}
fn default_increase() -> f64 {
    10.0
}

/// `[admin]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}

/// `[dedupe]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedupe {
    #[serde(default = "default_store")]
    pub store: String,
    #[serde(default = "default_window")]
    pub window: String,
    #[serde(default = "default_store_path")]
    pub path: String,
    #[serde(default)]
    pub redis_url: Option<String>,
    #[serde(default = "default_on_store_error")]
    pub on_store_error: String,
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    #[serde(default)]
    pub actions: std::collections::HashMap<String, String>,
}

impl Default for RawDedupe {
    fn default() -> Self {
        RawDedupe {
            store: default_store(),
            window: default_window(),
            path: default_store_path(),
            redis_url: None,
            on_store_error: default_on_store_error(),
            max_entries: default_max_entries(),
            actions: Default::default(),
        }
    }
}

fn default_store() -> String {
    "embedded".into()
}
fn default_window() -> String {
    "5m".into()
}
fn default_store_path() -> String {
    "state/dedupe.redb".into()
}
fn default_on_store_error() -> String {
    "closed".into()
}
fn default_max_entries() -> u64 {
    100_000
}

/// `[tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_cert: String,
    pub ca_key: String,
    #[serde(default = "default_leaf_cache")]
    pub leaf_cache: usize,
}

fn default_leaf_cache() -> usize {
    1000
}

/// `[proxy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub gateway_upstream: Option<String>,
    #[serde(default = "default_max_replay_body")]
    pub max_replay_body: u64,
    #[serde(default = "default_connect_other")]
    pub connect_other: String,
    #[serde(default = "default_replay_window")]
    pub replay_window: String,
    #[serde(default = "default_replay_max_nonces")]
    pub replay_max_nonces: usize,
    #[serde(default)]
    pub allow_clients: Vec<String>,
    #[serde(default)]
    pub auth_token_env: Option<String>,
    #[serde(default)]
    pub auth_token_file: Option<String>,
    #[serde(default)]
    pub allow_targets: Vec<String>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: String,
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: String,
}

fn default_replay_window() -> String {
    "15m".into()
}
fn default_replay_max_nonces() -> usize {
    200_000
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> String {
    "10s".into()
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_shutdown_grace() -> String {
    "30s".into()
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: default_listen(),
            gateway_upstream: None,
            max_replay_body: default_max_replay_body(),
            connect_other: default_connect_other(),
            replay_window: default_replay_window(),
            replay_max_nonces: default_replay_max_nonces(),
            allow_clients: Vec::new(),
            auth_token_env: None,
            auth_token_file: None,
            allow_targets: Vec::new(),
            max_connections: default_max_connections(),
            header_read_timeout: default_header_read_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// `[retry]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_per_try_timeout")]
    pub per_try_timeout: String,
    #[serde(default = "default_deadline")]
    pub deadline: String,
    #[serde(default = "default_base_delay")]
    pub base_delay: String,
    #[serde(default = "default_throttle_base_delay")]
    pub throttle_base_delay: String,
    #[serde(default = "default_max_delay")]
    pub max_delay: String,
    #[serde(default = "default_retry_statuses")]
    pub retry_statuses: Vec<u16>,
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    #[serde(default = "default_budget_min_per_sec")]
    pub budget_min_per_sec: f64,
}

fn default_budget_ratio() -> f64 {
    0.2
}
fn default_budget_min_per_sec() -> f64 {
    10.0
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_attempts: default_max_attempts(),
            per_try_timeout: default_per_try_timeout(),
            deadline: default_deadline(),
            base_delay: default_base_delay(),
            throttle_base_delay: default_throttle_base_delay(),
            max_delay: default_max_delay(),
            retry_statuses: default_retry_statuses(),
            budget_ratio: default_budget_ratio(),
            budget_min_per_sec: default_budget_min_per_sec(),
        }
    }
}

/// `[[upstreams]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub hosts: Vec<String>,
    #[serde(default)]
    pub connect_to: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub roots: Option<String>,
}

/// `[[credentials]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub access_key_id: String,
    #[serde(default)]
    pub access_key_secret: Option<String>,
    #[serde(default)]
    pub access_key_secret_env: Option<String>,
    #[serde(default)]
    pub access_key_secret_file: Option<String>,
    #[serde(default)]
    pub security_token: Option<String>,
    #[serde(default)]
    pub security_token_env: Option<String>,
    #[serde(default)]
    pub security_token_file: Option<String>,
}

/// `[signing]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigning {
    #[serde(default)]
    pub sign_unsigned: bool,
    #[serde(default)]
    pub access_key_id: Option<String>,
}

/// `[classification]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassification {
    #[serde(default)]
    pub read_only: Vec<String>,
    #[serde(default)]
    pub token: Vec<String>,
    #[serde(default)]
    pub token_in_body: Vec<String>,
    #[serde(default)]
    pub mutating: Vec<String>,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default = "default_format")]
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_level(),
            format: default_format(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_connect_other() -> String {
    "tunnel".into()
}
fn default_max_replay_body() -> u64 {
    1024 * 1024
}
fn default_max_attempts() -> u32 {
    5
}
fn default_per_try_timeout() -> String {
    "15s".into()
}
fn default_deadline() -> String {
    "60s".into()
}
fn default_base_delay() -> String {
    "200ms".into()
}
fn default_throttle_base_delay() -> String {
    "500ms".into()
}
fn default_max_delay() -> String {
    "10s".into()
}
fn default_retry_statuses() -> Vec<u16> {
    vec![500, 503]
}
fn default_level() -> String {
    "info".into()
}
fn default_format() -> String {
    "text".into()
}
