//! The validated, typed configuration.
//!
//! Sources, later wins: serde defaults, the TOML file, `IDEMPROXY__SECTION__KEY` environment
//! variables. Unknown keys are refused, and every error names the key it is about.

mod credentials;
mod proxy;
mod raw;

pub use credentials::{Credentials, SigningSettings};
pub use proxy::{Cidr, ConnectOther, ProxySettings};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Environment, File, FileFormat};

use crate::api::classify::{ActionClass, Classifier};
use crate::api::params::Place;
use crate::retry::backoff::Backoff;
pub use crate::retry::limit::{LimiterSettings, ScopePart};
use crate::secret::Secret;
use raw::{RawConfig, RawRetry, RawUpstream};

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML or an environment override does not fit the schema.
    #[error("{0}")]
    Parse(String),
    /// A value is out of range or inconsistent.
    #[error("{key}: {message}")]
    Invalid {
        /// The key path, e.g. `upstreams[0].scheme`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[proxy]`
    pub proxy: ProxySettings,
    /// `[retry]`
    pub retry: RetrySettings,
    /// `[[upstreams]]`: the intercepted API hosts.
    pub upstreams: Vec<Upstream>,
    /// `[[credentials]]` (or the SDKs' environment variables): AccessKeyId -> secret.
    pub credentials: HashMap<String, Secret>,
    /// STS security tokens of the credentials that have one.
    pub security_tokens: HashMap<String, Secret>,
    /// `[signing]`
    pub signing: SigningSettings,
    /// Built-in table plus `[classification]` overrides.
    pub classifier: Classifier,
    /// `[log]`
    pub log: LogSettings,
    /// `[tls]`: the local CA for intercepting `CONNECT` to API hosts, if configured.
    pub tls: Option<TlsSettings>,
    /// `[dedupe]`: the window for the tool's own re-sends.
    pub dedupe: DedupeSettings,
    /// `[limiter]`: the adaptive rate limiter, unless disabled.
    pub limiter: Option<LimiterSettings>,
    /// `[admin] listen`: the metrics and health listener, unless "off".
    pub admin_listen: Option<SocketAddr>,
}

/// Where dedupe state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory (lost on restart).
    Memory,
    /// A redb file (survives restarts; one process).
    Embedded(PathBuf),
    /// A Redis server (shared by replicas). The URL may hold a password.
    Redis(Secret),
}

/// `[dedupe]`
#[derive(Debug, Clone)]
pub struct DedupeSettings {
    /// The store.
    pub store: StoreKind,
    /// Default window; zero disables.
    pub window: Duration,
    /// Per-action windows.
    pub per_action: HashMap<String, Duration>,
    /// On a store failure: go on with a fresh token (true) or answer 503 (false).
    pub fail_open: bool,
    /// Bound on stored fingerprints (memory and embedded stores).
    pub max_entries: u64,
}

impl DedupeSettings {
    /// True if no action has a window.
    pub fn disabled(&self) -> bool {
        self.window.is_zero() && self.per_action.values().all(Duration::is_zero)
    }
}

/// `[tls]`
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// The CA private key (PEM).
    pub ca_key: PathBuf,
    /// How many hosts' leaf certificates are kept in memory.
    pub leaf_cache: usize,
}

/// `[retry]`
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts per call, the first one included.
    pub max_attempts: u32,
    /// Time allowed for one attempt (until the response headers and an error body arrive).
    pub per_try_timeout: Duration,
    /// Time allowed for the whole call, waits included.
    pub deadline: Duration,
    /// Backoff after 5xx and lost responses.
    pub backoff: Backoff,
    /// Backoff after throttling without a server hint.
    pub throttle_backoff: Backoff,
    /// Statuses that mean "transient server error".
    pub retry_statuses: Vec<u16>,
    /// Retries may add at most this fraction of the calls (per upstream, 10 s window)…
    pub budget_ratio: f64,
    /// …plus this many per second.
    pub budget_min_per_sec: f64,
}

/// Upstream URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (test rigs, the simulator).
    Http,
    /// HTTPS, verified (the default).
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Which root certificates verify an HTTPS upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// Mozilla's roots compiled in (webpki-roots): the same everywhere.
    Webpki,
    /// The operating system's store.
    Native,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Host patterns; `*` matches exactly one DNS label.
    pub hosts: Vec<HostPattern>,
    /// Connect here instead of resolving the host (`host:port`).
    pub connect_to: Option<String>,
    /// Upstream scheme.
    pub scheme: Scheme,
    /// Extra CA file (PEM) trusted for this upstream, besides `roots`.
    pub ca_file: Option<PathBuf>,
    /// Root store.
    pub roots: Roots,
}

/// A host pattern like `gpdb.*.aliyuncs.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    labels: Vec<String>,
}

impl HostPattern {
    /// Parses a pattern: lowercase DNS labels, `*` only as a whole label.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s.is_empty() {
            return Err("empty host pattern".into());
        }
        let labels: Vec<String> = s.split('.').map(str::to_owned).collect();
        for l in &labels {
            let ok = l == "*"
                || (!l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !ok {
                return Err(format!("invalid label {l:?} in host pattern {s:?}"));
            }
        }
        Ok(HostPattern { labels })
    }

    /// True if `host` (no port, any case) matches.
    pub fn matches(&self, host: &str) -> bool {
        let mut n = 0;
        for (i, label) in host.split('.').enumerate() {
            match self.labels.get(i) {
                Some(p) if p == "*" || p.eq_ignore_ascii_case(label) => n += 1,
                _ => return false,
            }
        }
        n == self.labels.len()
    }
}

/// `[log]`
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A `tracing` filter directive, e.g. `info` or `idemproxy=debug`.
    pub level: String,
    /// Emit JSON lines instead of text.
    pub json: bool,
}

impl Config {
    /// The upstream whose host patterns match `host` (no port).
    pub fn upstream_for(&self, host: &str) -> Option<(usize, &Upstream)> {
        self.upstreams
            .iter()
            .enumerate()
            .find(|(_, u)| u.hosts.iter().any(|p| p.matches(host)))
    }
}

/// Loads a config file, with overrides from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let env: HashMap<String, String> = std::env::vars().collect();
    load_str(&text, &env, base)
}

/// Loads a config from TOML text and an environment map; relative paths resolve against `base`.
pub fn load_str(
    toml: &str,
    env: &HashMap<String, String>,
    base: &Path,
) -> Result<Config, ConfigError> {
    let overrides: HashMap<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with("IDEMPROXY__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let built = config::Config::builder()
        .add_source(File::from_str(toml, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("IDEMPROXY")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| ConfigError::Parse(e.to_string()))?;
    let raw: RawConfig = serde_path_to_error::deserialize(built).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::Parse(format!("{path}: {}", e.into_inner()))
    })?;
    validate(raw, env, base)
}

fn validate(
    raw: RawConfig,
    env: &HashMap<String, String>,
    base: &Path,
) -> Result<Config, ConfigError> {
    let upstreams = raw
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| upstream(i, u, base))
        .collect::<Result<Vec<_>, _>>()?;
    let creds = credentials::credentials(&raw.credentials, env, base)?;
    let config = Config {
        proxy: proxy::settings(raw.proxy, env, base)?,
        dedupe: dedupe(&raw.dedupe, base)?,
        limiter: limiter(&raw.limiter)?,
        admin_listen: match raw.admin.listen.as_str() {
            "off" => None,
            a => Some(a.parse().map_err(|_| {
                invalid(
                    "admin.listen",
                    format!("{a:?} is not an address like 127.0.0.1:9090, or \"off\""),
                )
            })?),
        },
        tls: raw.tls.map(|t| TlsSettings {
            ca_cert: base.join(t.ca_cert),
            ca_key: base.join(t.ca_key),
            leaf_cache: t.leaf_cache,
        }),
        retry: retry(&raw.retry)?,
        upstreams,
        credentials: creds.secrets.clone(),
        security_tokens: creds.security_tokens.clone(),
        signing: credentials::signing(&raw.signing, &creds)?,
        classifier: classifier(&raw.classification)?,
        log: LogSettings {
            level: raw.log.level,
            json: match raw.log.format.as_str() {
                "text" => false,
                "json" => true,
                other => {
                    return Err(invalid(
                        "log.format",
                        format!("{other:?} is not \"text\" or \"json\""),
                    ));
                }
            },
        },
    };
    if let Some(g) = &config.proxy.gateway_upstream {
        if config.upstream_for(&g.to_ascii_lowercase()).is_none() {
            return Err(invalid(
                "proxy.gateway_upstream",
                format!("{g:?} matches no [[upstreams]] hosts entry"),
            ));
        }
    }
    Ok(config)
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| {
        invalid(
            key,
            format!("{value:?} is not a duration like \"500ms\" or \"5s\": {e}"),
        )
    })
}

fn retry(r: &RawRetry) -> Result<RetrySettings, ConfigError> {
    if r.max_attempts == 0 {
        return Err(invalid("retry.max_attempts", "must be at least 1"));
    }
    let per_try_timeout = duration("retry.per_try_timeout", &r.per_try_timeout)?;
    let deadline = duration("retry.deadline", &r.deadline)?;
    if per_try_timeout.is_zero() || deadline.is_zero() {
        return Err(invalid(
            "retry.per_try_timeout",
            "timeouts must be greater than zero",
        ));
    }
    let max = duration("retry.max_delay", &r.max_delay)?;
    let backoff = Backoff::try_new(duration("retry.base_delay", &r.base_delay)?, max)
        .map_err(|e| invalid("retry.base_delay", e.to_string()))?;
    let throttle_backoff = Backoff::try_new(
        duration("retry.throttle_base_delay", &r.throttle_base_delay)?,
        max,
    )
    .map_err(|e| invalid("retry.throttle_base_delay", e.to_string()))?;
    if let Some(s) = r.retry_statuses.iter().find(|s| !(500..600).contains(*s)) {
        return Err(invalid(
            "retry.retry_statuses",
            format!("{s} is not a 5xx status"),
        ));
    }
    if !(r.budget_ratio.is_finite() && r.budget_ratio >= 0.0) {
        return Err(invalid("retry.budget_ratio", "must be 0 or more"));
    }
    if !(r.budget_min_per_sec.is_finite() && r.budget_min_per_sec >= 0.0) {
        return Err(invalid("retry.budget_min_per_sec", "must be 0 or more"));
    }
    Ok(RetrySettings {
        max_attempts: r.max_attempts,
        per_try_timeout,
        deadline,
        backoff,
        throttle_backoff,
        retry_statuses: r.retry_statuses.clone(),
        budget_ratio: r.budget_ratio,
        budget_min_per_sec: r.budget_min_per_sec,
    })
}

fn upstream(i: usize, u: &RawUpstream, base: &Path) -> Result<Upstream, ConfigError> {
    let key = |k: &str| format!("upstreams[{i}].{k}");
    if u.hosts.is_empty() {
        return Err(invalid(key("hosts"), "needs at least one host pattern"));
    }
    let hosts = u
        .hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key("hosts"), e))?;
    let scheme = match u.scheme.as_deref() {
        None | Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        Some(other) => {
            return Err(invalid(
                key("scheme"),
                format!("{other:?} is not \"http\" or \"https\""),
            ));
        }
    };
    let roots = match u.roots.as_deref() {
        None | Some("webpki") => Roots::Webpki,
        Some("native") => Roots::Native,
        Some(other) => {
            return Err(invalid(
                key("roots"),
                format!("{other:?} is not \"webpki\" or \"native\""),
            ));
        }
    };
    if let Some(c) = &u.connect_to {
        let ok = c
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(invalid(
                key("connect_to"),
                format!("{c:?} is not host:port"),
            ));
        }
    }
    let ca_file = u.ca_file.as_ref().map(|f| base.join(f));
    if let Some(f) = &ca_file {
        if !f.is_file() {
            return Err(invalid(
                key("ca_file"),
                format!("{} is not a readable file", f.display()),
            ));
        }
    }
    Ok(Upstream {
        hosts,
        connect_to: u.connect_to.clone(),
        scheme,
        ca_file,
        roots,
    })
}

fn limiter(l: &raw::RawLimiter) -> Result<Option<LimiterSettings>, ConfigError> {
    if !l.enabled {
        return Ok(None);
    }
    let positive = |key: &str, v: f64| {
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(invalid(key, format!("{v} must be a positive number")))
        }
    };
    let max_rate = positive("limiter.max_rate", l.max_rate)?;
    let min_rate = positive("limiter.min_rate", l.min_rate)?;
    if min_rate > max_rate {
        return Err(invalid(
            "limiter.min_rate",
            "must not exceed limiter.max_rate",
        ));
    }
    let initial_rate = positive("limiter.initial_rate", l.initial_rate.unwrap_or(max_rate))?
        .clamp(min_rate, max_rate);
    if !(l.decrease > 0.0 && l.decrease < 1.0) {
        return Err(invalid(
            "limiter.decrease",
            "must be between 0 and 1 (exclusive)",
        ));
    }
    let increase = positive("limiter.increase", l.increase)?;
    let scope = l
        .scope
        .iter()
        .map(|p| match p.as_str() {
            "access_key" => Ok(ScopePart::AccessKey),
            "region" => Ok(ScopePart::Region),
            "action" => Ok(ScopePart::Action),
            "host" => Ok(ScopePart::Host),
            other => Err(invalid(
                "limiter.scope",
                format!("{other:?} is not access_key, region, action or host"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let decrease_cooldown = duration("limiter.decrease_cooldown", &l.decrease_cooldown)?;
    Ok(Some(LimiterSettings {
        initial_rate,
        max_rate,
        min_rate,
        decrease: l.decrease,
        increase,
        decrease_cooldown,
        scope,
    }))
}

fn dedupe(d: &raw::RawDedupe, base: &Path) -> Result<DedupeSettings, ConfigError> {
    let store = match (d.store.as_str(), &d.redis_url) {
        ("memory", _) => StoreKind::Memory,
        ("embedded", _) => StoreKind::Embedded(base.join(&d.path)),
        ("redis", Some(url)) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            StoreKind::Redis(Secret::new(url.clone()))
        }
        ("redis", Some(_)) => {
            return Err(invalid(
                "dedupe.redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        ("redis", None) => {
            return Err(invalid(
                "dedupe.redis_url",
                "is required with store = \"redis\"",
            ));
        }
        (other, _) => {
            return Err(invalid(
                "dedupe.store",
                format!("{other:?} is not \"embedded\", \"redis\" or \"memory\""),
            ));
        }
    };
    let mut per_action = HashMap::new();
    for (action, w) in &d.actions {
        if action.is_empty() || !action.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "dedupe.actions",
                format!("{action:?} is not an action name"),
            ));
        }
        per_action.insert(
            action.clone(),
            duration(&format!("dedupe.actions.{action}"), w)?,
        );
    }
    Ok(DedupeSettings {
        store,
        window: duration("dedupe.window", &d.window)?,
        per_action,
        fail_open: match d.on_store_error.as_str() {
            "closed" => false,
            "open" => true,
            other => {
                return Err(invalid(
                    "dedupe.on_store_error",
                    format!("{other:?} is not \"closed\" or \"open\""),
                ));
            }
        },
        max_entries: d.max_entries.max(1),
    })
}

fn classifier(c: &raw::RawClassification) -> Result<Classifier, ConfigError> {
    let mut map = HashMap::new();
    let lists = [
        (
            "classification.read_only",
            &c.read_only,
            ActionClass::ReadOnly,
        ),
        (
            "classification.token",
            &c.token,
            ActionClass::Token(Place::Query),
        ),
        (
            "classification.token_in_body",
            &c.token_in_body,
            ActionClass::Token(Place::Body),
        ),
        (
            "classification.mutating",
            &c.mutating,
            ActionClass::Mutating,
        ),
    ];
    for (key, names, class) in lists {
        for name in names {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(invalid(key, format!("{name:?} is not an action name")));
            }
            if map.insert(name.clone(), class).is_some() {
                return Err(invalid(key, format!("{name} is classified twice")));
            }
        }
    }
    Ok(Classifier::new(map))
}

#[cfg(test)]
mod tests;
