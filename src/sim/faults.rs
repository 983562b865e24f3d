//! Simulator faults: scripted per action, or seeded random.
//!
//! ```text
//! SPEC  := RULE (';' RULE)*
//! RULE  := ACTION '=' FAULT (',' FAULT)*   the next requests for ACTION ('*': any action)
//!                                          get these faults in order, then none
//!        | 'random=' PROB                  every other request gets a random fault with
//!                                          probability PROB (0 to 1)
//!        | 'seed=' N                       seed of the random faults (default 1)
//!        | 'kinds=' FAULT ('|' FAULT)*     what random faults pick from
//!                                          (default 503|500|reset|throttle)
//!        | 'ratelimit=' N                  at most N requests per second per AccessKeyId and
//!                                          action (a token bucket holding one second's worth);
//!                                          over it: 400 Throttling.User with x-acs-retry-after
//! FAULT := ok | 503 | 500 | reset | throttle[:MS] | throttle-nohint | slow:MS
//! ```
//! `503` and `throttle*` refuse before acting; `500`, `reset` and `slow` act first, then
//! answer 500, reset the connection, or answer late.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault.
    Ok,
    /// 503 `ServiceUnavailable`, before acting.
    Unavailable,
    /// Act, then 500 `InternalError`.
    InternalAfter,
    /// Act, then reset the connection without answering.
    ResetAfter,
    /// 400 `Throttling` with `x-acs-retry-after: MS`, before acting.
    Throttle(u64),
    /// 400 `Throttling.User` with no hint header, before acting.
    ThrottleNoHint,
    /// Act, then answer after MS milliseconds.
    SlowAfter(u64),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Ok => f.write_str("ok"),
            Fault::Unavailable => f.write_str("503"),
            Fault::InternalAfter => f.write_str("500"),
            Fault::ResetAfter => f.write_str("reset"),
            Fault::Throttle(ms) => write!(f, "throttle:{ms}"),
            Fault::ThrottleNoHint => f.write_str("throttle-nohint"),
            Fault::SlowAfter(ms) => write!(f, "slow:{ms}"),
        }
    }
}

/// A fault spec that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fault spec {rule:?}: {message}")]
pub struct FaultSpecError {
    rule: String,
    message: String,
}

fn spec_err(rule: &str, message: impl Into<String>) -> FaultSpecError {
    FaultSpecError {
        rule: rule.to_owned(),
        message: message.into(),
    }
}

impl Fault {
    /// Parses one fault name.
    pub fn parse(s: &str) -> Result<Fault, FaultSpecError> {
        let ms = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| spec_err(s, "expected milliseconds after ':'"))
        };
        Ok(match s.split_once(':') {
            None => match s {
                "ok" => Fault::Ok,
                "503" => Fault::Unavailable,
                "500" => Fault::InternalAfter,
                "reset" => Fault::ResetAfter,
                "throttle" => Fault::Throttle(100),
                "throttle-nohint" => Fault::ThrottleNoHint,
                _ => {
                    return Err(spec_err(
                        s,
                        "unknown fault; use ok, 503, 500, reset, throttle[:MS], throttle-nohint, slow:MS",
                    ));
                }
            },
            Some(("throttle", v)) => Fault::Throttle(ms(v)?),
            Some(("slow", v)) => Fault::SlowAfter(ms(v)?),
            Some(_) => return Err(spec_err(s, "only throttle and slow take :MS")),
        })
    }
}

/// The faults a simulator plays.
#[derive(Debug)]
pub struct FaultPlan {
    /// Requests per second per AccessKeyId and action, if limited.
    pub rate_limit: Option<f64>,
    scripted: HashMap<String, VecDeque<Fault>>,
    random: f64,
    kinds: Vec<Fault>,
    rng: StdRng,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            rate_limit: None,
            scripted: HashMap::new(),
            random: 0.0,
            kinds: vec![
                Fault::Unavailable,
                Fault::InternalAfter,
                Fault::ResetAfter,
                Fault::Throttle(100),
            ],
            rng: StdRng::seed_from_u64(1),
        }
    }
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// Parses a fault spec (see the module docs). An empty spec means no faults.
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut plan = FaultPlan::default();
        for rule in spec.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let (key, value) = rule
                .split_once('=')
                .ok_or_else(|| spec_err(rule, "expected KEY=VALUE"))?;
            match key.trim() {
                "random" => {
                    let p: f64 = value
                        .parse()
                        .map_err(|_| spec_err(rule, "expected a probability"))?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(spec_err(rule, "probability must be between 0 and 1"));
                    }
                    plan.random = p;
                }
                "ratelimit" => {
                    let n: f64 = value
                        .parse()
                        .map_err(|_| spec_err(rule, "expected requests per second"))?;
                    if !(n.is_finite() && n > 0.0) {
                        return Err(spec_err(rule, "the rate must be positive"));
                    }
                    plan.rate_limit = Some(n);
                }
                "seed" => {
                    let n: u64 = value
                        .parse()
                        .map_err(|_| spec_err(rule, "expected an integer seed"))?;
                    plan.rng = StdRng::seed_from_u64(n);
                }
                "kinds" => {
                    plan.kinds = value
                        .split('|')
                        .map(|f| Fault::parse(f.trim()))
                        .collect::<Result<_, _>>()?;
                    if plan.kinds.is_empty() {
                        return Err(spec_err(rule, "kinds needs at least one fault"));
                    }
                }
                action => {
                    if action.is_empty()
                        || !(action == "*" || action.bytes().all(|b| b.is_ascii_alphanumeric()))
                    {
                        return Err(spec_err(rule, "expected an action name or '*'"));
                    }
                    let faults = value
                        .split(',')
                        .map(|f| Fault::parse(f.trim()))
                        .collect::<Result<VecDeque<_>, _>>()?;
                    plan.scripted
                        .entry(action.to_owned())
                        .or_default()
                        .extend(faults);
                }
            }
        }
        Ok(plan)
    }

    /// The fault for the next request of `action`.
    pub fn next(&mut self, action: &str) -> Fault {
        for key in [action, "*"] {
            if let Some(f) = self.scripted.get_mut(key).and_then(VecDeque::pop_front) {
                return f;
            }
        }
        if self.random > 0.0 && self.rng.random_bool(self.random) {
            let i = self.rng.random_range(0..self.kinds.len());
            return self.kinds[i];
        }
        Fault::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_play_in_order_then_stop() {
        let mut p = FaultPlan::parse("CreateDBInstance=reset,503; *=throttle:250").unwrap();
        assert_eq!(p.next("CreateDBInstance"), Fault::ResetAfter);
        assert_eq!(p.next("CreateDBInstance"), Fault::Unavailable);
        assert_eq!(p.next("CreateDBInstance"), Fault::Throttle(250));
        assert_eq!(p.next("CreateDBInstance"), Fault::Ok);
        assert_eq!(p.next("DescribeDBInstances"), Fault::Ok);
    }

    #[test]
    fn random_faults_are_seeded() {
        let draw = |spec| {
            let mut p = FaultPlan::parse(spec).unwrap();
            (0..50).map(|_| p.next("X")).collect::<Vec<_>>()
        };
        let a = draw("random=0.5;seed=7;kinds=503|slow:5");
        assert_eq!(a, draw("random=0.5;seed=7;kinds=503|slow:5"));
        assert!(a.contains(&Fault::Unavailable) && a.contains(&Fault::Ok));
        assert!(
            a.iter()
                .all(|f| matches!(f, Fault::Ok | Fault::Unavailable | Fault::SlowAfter(5)))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for bad in [
            "x", "A=boom", "random=2", "random=x", "seed=-1", "kinds=", "A=slow", "A=slow:x",
            "A B=ok", "=ok",
        ] {
            let e = FaultPlan::parse(bad).unwrap_err();
            assert!(e.to_string().contains("bad fault spec"), "{bad}: {e}");
        }
        assert!(FaultPlan::parse("").is_ok());
    }
}
