//! The parameter set of an RPC call, merged from the query and a form body.
//!
//! V1 signs query and form-body parameters together, so both are kept in one sorted map; each
//! parameter remembers where the caller put it so that a re-signed request keeps the caller's
//! placement. Duplicate names (within or across the two places) are refused: the API would
//! sign one of them and the proxy cannot know which.

use std::collections::BTreeMap;

use super::encode::{DecodeError, form_decode, join_pairs};

/// Where a parameter travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In the URL query string.
    Query,
    /// In an `application/x-www-form-urlencoded` body.
    Body,
}

impl Place {
    fn as_str(self) -> &'static str {
        match self {
            Place::Query => "query",
            Place::Body => "form body",
        }
    }
}

/// Parameters that carry no business meaning: the signature's own, the response format and the
/// ClientToken. Two calls whose other parameters are equal are the same logical operation (the
/// API's ClientToken semantics, and the proxy's dedupe fingerprint).
pub const NON_BUSINESS: &[&str] = &[
    "AccessKeyId",
    "Action",
    "ClientToken",
    "Format",
    "SecurityToken",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureType",
    "SignatureVersion",
    "Timestamp",
    "Version",
];

/// True if the body is `application/x-www-form-urlencoded` (its parameters are signed too).
pub fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Why parameters could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// Broken percent-encoding or invalid UTF-8.
    #[error("malformed {place} encoding near parameter {name:?}: {source}")]
    Malformed {
        /// Query or body.
        place: &'static str,
        /// The raw (undecoded) name of the offending pair.
        name: String,
        /// What was wrong.
        source: DecodeError,
    },
    /// A pair with an empty name, like `=value`.
    #[error("empty parameter name in the {0}")]
    EmptyName(&'static str),
    /// The same name twice.
    #[error("duplicate parameter {0:?}")]
    Duplicate(String),
}

/// A sorted, duplicate-free parameter map with per-parameter placement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, (String, Place)>,
}

impl Params {
    /// Parses a query string and an optional form body into one map.
    pub fn parse(query: Option<&str>, body: Option<&str>) -> Result<Self, ParamError> {
        let mut params = Params::default();
        if let Some(q) = query {
            params.add_encoded(q, Place::Query)?;
        }
        if let Some(b) = body {
            params.add_encoded(b, Place::Body)?;
        }
        Ok(params)
    }

    fn add_encoded(&mut self, raw: &str, place: Place) -> Result<(), ParamError> {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let malformed = |source| ParamError::Malformed {
                place: place.as_str(),
                name: raw_name.chars().take(64).collect(),
                source,
            };
            let name = form_decode(raw_name).map_err(malformed)?;
            let value = form_decode(raw_value).map_err(malformed)?;
            if name.is_empty() {
                return Err(ParamError::EmptyName(place.as_str()));
            }
            if self.map.contains_key(&name) {
                return Err(ParamError::Duplicate(name));
            }
            self.map.insert(name, (value, place));
        }
        Ok(())
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(|(v, _)| v.as_str())
    }

    /// Where `name` travels, if present.
    pub fn place_of(&self, name: &str) -> Option<Place> {
        self.map.get(name).map(|(_, p)| *p)
    }

    /// Sets `name`, keeping its current placement if present, else putting it at `place`.
    pub fn set(&mut self, name: &str, value: impl Into<String>, place: Place) {
        let value = value.into();
        match self.map.get_mut(name) {
            Some(slot) => slot.0 = value,
            None => {
                self.map.insert(name.to_owned(), (value, place));
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.map.remove(name).map(|(v, _)| v)
    }

    /// True if any parameter travels in `place`.
    pub fn any_in(&self, place: Place) -> bool {
        self.map.values().any(|(_, p)| *p == place)
    }

    /// All parameters sorted by name (byte order), as the signature needs them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    /// The parameters that travel in `place`, sorted by name.
    pub fn iter_in(&self, place: Place) -> impl Iterator<Item = (&str, &str)> {
        self.map
            .iter()
            .filter(move |(_, (_, p))| *p == place)
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Encodes the parameters that travel in `place` as `k=v&k=v` (RFC 3986, `%20` for space).
    pub fn encode(&self, place: Place) -> String {
        join_pairs(self.iter_in(place))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_query_and_body_keeping_empty_values() {
        let p = Params::parse(Some("b=2&SignatureType=&a=x+y"), Some("c=%2A")).unwrap();
        let all: Vec<_> = p.iter().collect();
        assert_eq!(
            all,
            vec![("SignatureType", ""), ("a", "x y"), ("b", "2"), ("c", "*")]
        );
        assert_eq!(p.place_of("c"), Some(Place::Body));
        assert_eq!(p.encode(Place::Query), "SignatureType=&a=x%20y&b=2");
        assert_eq!(p.encode(Place::Body), "c=%2A");
    }

    #[test]
    fn a_name_without_equals_is_an_empty_value() {
        let p = Params::parse(Some("flag&x=1&"), None).unwrap();
        assert_eq!(p.get("flag"), Some(""));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn refuses_duplicates_within_and_across_places() {
        assert_eq!(
            Params::parse(Some("a=1&a=2"), None),
            Err(ParamError::Duplicate("a".into()))
        );
        assert_eq!(
            Params::parse(Some("a=1"), Some("a=1")),
            Err(ParamError::Duplicate("a".into()))
        );
    }

    #[test]
    fn refuses_bad_encoding_and_empty_names() {
        let err = Params::parse(Some("Action=%G0"), None).unwrap_err();
        assert!(
            err.to_string().contains("malformed query encoding"),
            "{err}"
        );
        assert_eq!(
            Params::parse(None, Some("=x")),
            Err(ParamError::EmptyName("form body"))
        );
    }

    #[test]
    fn set_keeps_existing_placement() {
        let mut p = Params::parse(None, Some("Timestamp=old")).unwrap();
        p.set("Timestamp", "new", Place::Query);
        p.set("ClientToken", "t", Place::Query);
        assert_eq!(p.encode(Place::Body), "Timestamp=new");
        assert_eq!(p.encode(Place::Query), "ClientToken=t");
    }
}
