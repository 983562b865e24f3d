//! Metric families, registered once and shared (`Arc<Metrics>`) by the request path.
//!
//! Names are `idemproxy_<thing>_<unit>`; labels are small closed sets (class, outcome, reason,
//! source), never per-key or per-token values.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set of `N` static pairs: a fixed-size array, so that counting allocates nothing.
pub type Labels<const N: usize = 1> = [(&'static str, &'static str); N];

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Client API calls by action class and outcome.
    pub requests: Family<Labels<2>, Counter>,
    /// Attempts sent upstream, by action class.
    pub attempts: Family<Labels, Counter>,
    /// Retries by reason.
    pub retries: Family<Labels, Counter>,
    /// Tokens by source: injected, reused, caller.
    pub tokens: Family<Labels, Counter>,
    /// Throttling answers from the upstream.
    pub throttled: Counter,
    /// Seconds spent waiting between attempts (backoff and server hints).
    pub backoff_wait: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Seconds spent waiting for a rate-limiter permit.
    pub limiter_wait: Counter<f64, std::sync::atomic::AtomicU64>,
    /// Retries refused by the retry budget.
    pub budget_refusals: Counter,
    /// Times a limiter key's rate was cut after throttling.
    pub limiter_decreases: Counter,
    /// Limiter keys currently tracked.
    pub limiter_keys: Gauge,
    /// Limiter keys currently below their maximum rate.
    pub limiter_tightened: Gauge,
    /// Upstream latency of one attempt (until response headers).
    pub upstream_latency: Histogram,
    /// Requests forwarded once, untouched, by reason.
    pub passthrough: Family<Labels, Counter>,
    /// Dedupe store failures.
    pub dedupe_store_errors: Counter,
    /// Re-sends that waited for a call in flight.
    pub dedupe_waits: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("idemproxy");
        let m = Metrics {
            requests: Family::default(),
            attempts: Family::default(),
            retries: Family::default(),
            tokens: Family::default(),
            throttled: Counter::default(),
            backoff_wait: Counter::default(),
            limiter_wait: Counter::default(),
            budget_refusals: Counter::default(),
            limiter_decreases: Counter::default(),
            limiter_keys: Gauge::default(),
            limiter_tightened: Gauge::default(),
            upstream_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            passthrough: Family::default(),
            dedupe_store_errors: Counter::default(),
            dedupe_waits: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Client API calls by action class and outcome",
            m.requests.clone(),
        );
        registry.register(
            "attempts",
            "Attempts sent upstream by action class",
            m.attempts.clone(),
        );
        registry.register("retries", "Retries by reason", m.retries.clone());
        registry.register(
            "tokens",
            "ClientTokens by source (injected, reused, caller)",
            m.tokens.clone(),
        );
        registry.register(
            "throttled",
            "Throttling answers from the upstream",
            m.throttled.clone(),
        );
        registry.register(
            "backoff_wait_seconds",
            "Time spent waiting between attempts",
            m.backoff_wait.clone(),
        );
        registry.register(
            "limiter_wait_seconds",
            "Time spent waiting for a rate-limiter permit",
            m.limiter_wait.clone(),
        );
        registry.register(
            "budget_refusals",
            "Retries refused by the retry budget",
            m.budget_refusals.clone(),
        );
        registry.register(
            "limiter_decreases",
            "Rate cuts after throttling",
            m.limiter_decreases.clone(),
        );
        registry.register(
            "limiter_keys",
            "Rate-limiter keys tracked",
            m.limiter_keys.clone(),
        );
        registry.register(
            "limiter_tightened_keys",
            "Rate-limiter keys below their maximum rate",
            m.limiter_tightened.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Upstream latency of one attempt",
            m.upstream_latency.clone(),
        );
        registry.register(
            "passthrough",
            "Requests forwarded once, untouched, by reason",
            m.passthrough.clone(),
        );
        registry.register(
            "dedupe_store_errors",
            "Dedupe store failures",
            m.dedupe_store_errors.clone(),
        );
        registry.register(
            "dedupe_waits",
            "Re-sends that waited for the same call in flight",
            m.dedupe_waits.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_the_prefix() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&[("class", "token"), ("outcome", "2xx")])
            .inc();
        m.throttled.inc();
        m.upstream_latency.observe(0.002);
        let text = m.render();
        assert!(
            text.contains("idemproxy_requests_total{class=\"token\",outcome=\"2xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("idemproxy_throttled_total 1"), "{text}");
        assert!(
            text.contains("idemproxy_upstream_latency_seconds_bucket"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
