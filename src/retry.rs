//! Pure retry logic: what an upstream outcome means ([`decide`]), how long to wait
//! ([`backoff`]) and what the server asked for ([`hint`]); the shared state that bounds
//! retries: the adaptive rate limiter ([`limit`]) and the retry budget ([`budget`]). The async loop that uses them lives
//! in `proxy::call`.

pub mod backoff;
pub mod budget;
pub mod decide;
pub mod hint;
pub mod limit;
