//! Server hints about when to retry: `x-acs-retry-after` (milliseconds) and `Retry-After`
//! (delta-seconds or an HTTP date).

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// The Alibaba Cloud hint header, in milliseconds.
pub const ACS_RETRY_AFTER: &str = "x-acs-retry-after";

/// The wait the server asked for, if any: `x-acs-retry-after` wins over `Retry-After`.
/// Zero, negative or unparsable values are ignored.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) =
        header_str(headers, ACS_RETRY_AFTER).and_then(|v| v.trim().parse::<u64>().ok())
    {
        if ms > 0 {
            return Some(Duration::from_millis(ms));
        }
    }
    let v = header_str(headers, http::header::RETRY_AFTER.as_str())?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return (secs > 0).then(|| Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    when.duration_since(now).ok().filter(|d| !d.is_zero())
}

/// True if the response carries a positive `x-acs-retry-after` (the current SDKs' throttling
/// signal).
pub fn has_acs_hint(headers: &HeaderMap) -> bool {
    header_str(headers, ACS_RETRY_AFTER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|ms| ms > 0)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            retry_after(&headers(&[("x-acs-retry-after", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(10));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(
                &headers(&[("x-acs-retry-after", "100"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn ignores_bad_zero_and_past_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (k, v) in [
            ("x-acs-retry-after", "0"),
            ("x-acs-retry-after", "-5"),
            ("retry-after", "soon"),
            ("retry-after", "0"),
        ] {
            assert_eq!(retry_after(&headers(&[(k, v)]), now), None, "{k}: {v}");
        }
        let past = httpdate::fmt_http_date(now - Duration::from_secs(10));
        assert_eq!(retry_after(&headers(&[("retry-after", &past)]), now), None);
        assert!(!has_acs_hint(&headers(&[("x-acs-retry-after", "0")])));
        assert!(has_acs_hint(&headers(&[("x-acs-retry-after", "5")])));
    }
}
