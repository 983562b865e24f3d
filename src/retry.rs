//! Pure retry logic: what an upstream outcome means ([`decide`]), how long to wait
//! ([`backoff`]) and what the server asked for ([`hint`]). The async loop that uses them lives
//! in `proxy::call`.

pub mod backoff;
pub mod decide;
pub mod hint;
