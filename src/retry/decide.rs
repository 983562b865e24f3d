//! The one place where retry safety is decided (SPEC "Retries").
//!
//! | outcome                                      | decision                              |
//! |----------------------------------------------|---------------------------------------|
//! | 2xx, 3xx                                     | done                                  |
//! | 4xx `Throttling*` or with `x-acs-retry-after`| retry after a wait (server refused)   |
//! | 4xx `IdempotentProcessing`                   | retry after a wait, if safe           |
//! | other 4xx                                    | done                                  |
//! | status in the retry list (500, 503)          | retry if read-only or token-protected |
//! | connect failed (nothing sent)                | retry, any call                       |
//! | sent, then reset / EOF / per-try timeout     | retry if read-only or token-protected |
//!
//! "Safe" means read-only, or mutating with a `ClientToken` that every attempt carries.

/// Whether a call may be re-sent after the server may have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// Read-only: running it twice changes nothing.
    ReadOnly,
    /// Mutating with a `ClientToken` the API deduplicates by.
    TokenProtected,
    /// Mutating without protection: must never run twice.
    Unsafe,
}

impl Safety {
    fn may_repeat(self) -> bool {
        !matches!(self, Safety::Unsafe)
    }
}

/// What one attempt produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// An HTTP response.
    Response {
        /// Its status code.
        status: u16,
        /// The API error `Code` from its body, if any.
        code: Option<&'a str>,
        /// True if the server sent a positive `x-acs-retry-after`.
        retry_after_hint: bool,
    },
    /// The connection could not be established: the request never left.
    NotSent,
    /// The request was (or may have been) sent and no complete response came back.
    Lost,
    /// The per-try timeout fired after the request was sent.
    TimedOut,
}

/// Why a retry happens (for headers, logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// The API throttled the call.
    Throttled,
    /// `IdempotentProcessing`: the first attempt is still running.
    Processing,
    /// A retryable status such as 500 or 503.
    Status,
    /// The connection failed before sending.
    Connect,
    /// The response was lost after sending.
    Lost,
    /// The per-try timeout fired.
    Timeout,
}

impl RetryReason {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::Processing => "processing",
            RetryReason::Status => "status",
            RetryReason::Connect => "connect",
            RetryReason::Lost => "lost",
            RetryReason::Timeout => "timeout",
        }
    }

    /// True for reasons where the server asked the client to slow down.
    pub fn is_throttle(self) -> bool {
        matches!(self, RetryReason::Throttled | RetryReason::Processing)
    }
}

/// The decision for one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Return this outcome to the client.
    Done,
    /// Retrying is safe and useful.
    Retry(RetryReason),
    /// A retry would help but could run the call twice: return the outcome as is.
    Withheld(RetryReason),
}

/// True for `Throttling` and every `Throttling.*` code.
pub fn is_throttling_code(code: &str) -> bool {
    code == "Throttling" || code.starts_with("Throttling.")
}

/// Decides what to do with `outcome` for a call of `safety`; `retry_statuses` lists the
/// statuses that mean "transient server error" (500 and 503 by default).
pub fn decide(outcome: Outcome<'_>, safety: Safety, retry_statuses: &[u16]) -> Decision {
    let guarded = |reason| {
        if safety.may_repeat() {
            Decision::Retry(reason)
        } else {
            Decision::Withheld(reason)
        }
    };
    match outcome {
        Outcome::NotSent => Decision::Retry(RetryReason::Connect),
        Outcome::Lost => guarded(RetryReason::Lost),
        Outcome::TimedOut => guarded(RetryReason::Timeout),
        Outcome::Response {
            status,
            code,
            retry_after_hint,
        } => {
            let throttled = code.is_some_and(is_throttling_code);
            if (400..500).contains(&status) {
                if throttled || retry_after_hint {
                    // A throttling refusal: the server did not act, any call may retry.
                    Decision::Retry(RetryReason::Throttled)
                } else if code == Some("IdempotentProcessing") {
                    guarded(RetryReason::Processing)
                } else {
                    Decision::Done
                }
            } else if retry_statuses.contains(&status) {
                guarded(RetryReason::Status)
            } else {
                Decision::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATUSES: &[u16] = &[500, 503];

    fn resp(status: u16, code: Option<&str>, hint: bool) -> Outcome<'_> {
        Outcome::Response {
            status,
            code,
            retry_after_hint: hint,
        }
    }

    #[test]
    fn the_spec_table() {
        use Decision::*;
        use RetryReason::*;
        use Safety::*;
        let cases: &[(Outcome<'_>, Safety, Decision)] = &[
            (resp(200, None, false), Unsafe, Done),
            (
                resp(400, Some("Throttling"), false),
                Unsafe,
                Retry(Throttled),
            ),
            (
                resp(400, Some("Throttling.User"), false),
                ReadOnly,
                Retry(Throttled),
            ),
            (resp(429, Some("Whatever"), true), Unsafe, Retry(Throttled)),
            (
                resp(403, Some("IdempotentProcessing"), false),
                TokenProtected,
                Retry(Processing),
            ),
            (
                resp(403, Some("IdempotentProcessing"), false),
                Unsafe,
                Withheld(Processing),
            ),
            (
                resp(400, Some("IdempotentParameterMismatch"), false),
                TokenProtected,
                Done,
            ),
            (
                resp(400, Some("SignatureDoesNotMatch"), false),
                ReadOnly,
                Done,
            ),
            (resp(400, Some("ThrottlingX"), false), ReadOnly, Done),
            (
                resp(500, Some("InternalError"), false),
                ReadOnly,
                Retry(Status),
            ),
            (resp(503, None, false), TokenProtected, Retry(Status)),
            (
                resp(503, Some("ServiceUnavailable"), false),
                Unsafe,
                Withheld(Status),
            ),
            (resp(502, None, false), ReadOnly, Done),
            (Outcome::NotSent, Unsafe, Retry(Connect)),
            (Outcome::Lost, Unsafe, Withheld(Lost)),
            (Outcome::Lost, TokenProtected, Retry(Lost)),
            (Outcome::TimedOut, ReadOnly, Retry(Timeout)),
            (Outcome::TimedOut, Unsafe, Withheld(Timeout)),
        ];
        for (o, s, want) in cases {
            assert_eq!(decide(*o, *s, STATUSES), *want, "{o:?} {s:?}");
        }
    }

    proptest! {
        /// The safety rule: an unprotected mutating call that may have reached the server is
        /// retried only on a throttling refusal, which says the server did not act.
        #[test]
        fn never_retries_an_unsafe_call_that_may_have_run(
            status in 100u16..600,
            code in proptest::option::of("[A-Za-z.]{0,20}"),
            hint in any::<bool>(),
            kind in 0u8..4,
        ) {
            let outcome = match kind {
                0 => Outcome::Response { status, code: code.as_deref(), retry_after_hint: hint },
                1 => Outcome::NotSent,
                2 => Outcome::Lost,
                _ => Outcome::TimedOut,
            };
            if let Decision::Retry(reason) = decide(outcome, Safety::Unsafe, STATUSES) {
                prop_assert!(matches!(reason, RetryReason::Connect | RetryReason::Throttled));
                if reason == RetryReason::Throttled {
                    prop_assert!((400..500).contains(&status));
                }
            }
        }
    }
}
