//! Timestamps as the OpenAPI writes them: UTC `yyyy-MM-ddTHH:mm:ssZ`, no fractional seconds.

use std::time::{Duration, SystemTime};

/// Formats `t` as an OpenAPI timestamp.
pub fn format_timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an OpenAPI timestamp; `None` if it is not one.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    if s.len() != 20 || !s.ends_with('Z') {
        return None;
    }
    humantime::parse_rfc3339(s).ok()
}

/// The absolute distance between two instants.
pub fn skew(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_456_231_584);
        assert_eq!(format_timestamp(t), "2016-02-23T12:46:24Z");
        assert_eq!(parse_timestamp("2016-02-23T12:46:24Z"), Some(t));
        let later = t + Duration::from_millis(1500);
        assert_eq!(format_timestamp(later), "2016-02-23T12:46:25Z");
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "2016-02-23 12:46:24Z",
            "2016-02-23T12:46:24.5Z",
            "2016-02-23T12:46:24+08:00",
            "",
            "x",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn skew_is_symmetric() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let u = t + Duration::from_secs(7);
        assert_eq!(skew(t, u), Duration::from_secs(7));
        assert_eq!(skew(u, t), Duration::from_secs(7));
    }
}
