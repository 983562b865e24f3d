//! The parameter set of an RPC call, merged from the query and a form body.
//!
//! V1 signs query and form-body parameters together, so both are kept in one sorted map; each
//! parameter remembers where the caller put it so that a re-signed request keeps the caller's
//! placement. Duplicate names (within or across the two places) are refused: the API would
//! sign one of them and the proxy cannot know which.

use super::encode::{DecodeError, form_decode_into, join_pairs};

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
    /// More parameters than any API call has.
    #[error("more than {MAX_PARAMS} parameters")]
    TooMany,
}

/// The most parameters a call may have (query and form body together). API calls have tens;
/// the bound keeps a hostile body of many tiny pairs from costing memory and a sort.
pub const MAX_PARAMS: usize = 4096;

/// A sorted, duplicate-free parameter map with per-parameter placement.
///
/// Every decoded name and value lives in one string (`buf`); the entries, sorted by name, hold
/// ranges into it. Parsing a call's parameters makes a handful of allocations instead of two
/// per parameter, and re-signing appends the new nonce, timestamp and signature without
/// copying the rest (the replaced values stay in `buf` as garbage, a few bytes per attempt).
#[derive(Debug, Clone, Default)]
pub struct Params {
    buf: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: (usize, usize),
    value: (usize, usize),
    place: Place,
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| {
                a.place == b.place
                    && self.slice(a.name) == other.slice(b.name)
                    && self.slice(a.value) == other.slice(b.value)
            })
    }
}

impl Eq for Params {}

impl Params {
    /// Parses a query string and an optional form body into one map.
    pub fn parse(query: Option<&str>, body: Option<&str>) -> Result<Self, ParamError> {
        let raw_len = query.map_or(0, str::len) + body.map_or(0, str::len);
        let mut params = Params {
            buf: String::with_capacity(raw_len + 128),
            entries: Vec::new(),
        };
        if let Some(q) = query {
            params.add_encoded(q, Place::Query)?;
        }
        if let Some(b) = body {
            params.add_encoded(b, Place::Body)?;
        }
        // Sorting once (rather than inserting in order) keeps parsing O(n log n) for hostile
        // inputs with very many parameters.
        let buf = &params.buf;
        params
            .entries
            .sort_by(|a, b| buf[a.name.0..a.name.1].cmp(&buf[b.name.0..b.name.1]));
        if let Some(w) = params
            .entries
            .windows(2)
            .find(|w| params.slice(w[0].name) == params.slice(w[1].name))
        {
            return Err(ParamError::Duplicate(params.slice(w[0].name).to_owned()));
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
            let name = self.decode_into_buf(raw_name).map_err(malformed)?;
            let value = self.decode_into_buf(raw_value).map_err(malformed)?;
            if name.0 == name.1 {
                return Err(ParamError::EmptyName(place.as_str()));
            }
            if self.entries.len() == MAX_PARAMS {
                return Err(ParamError::TooMany);
            }
            self.entries.push(Entry { name, value, place });
        }
        Ok(())
    }

    fn decode_into_buf(&mut self, raw: &str) -> Result<(usize, usize), DecodeError> {
        let start = self.buf.len();
        form_decode_into(&mut self.buf, raw)?;
        Ok((start, self.buf.len()))
    }

    fn push(&mut self, s: &str) -> (usize, usize) {
        let start = self.buf.len();
        self.buf.push_str(s);
        (start, self.buf.len())
    }

    fn slice(&self, (start, end): (usize, usize)) -> &str {
        self.buf.get(start..end).unwrap_or_default()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        // Byte order is `str` order; comparing bytes skips the char-boundary checks.
        let buf = self.buf.as_bytes();
        self.entries.binary_search_by(|e| {
            buf.get(e.name.0..e.name.1)
                .unwrap_or_default()
                .cmp(name.as_bytes())
        })
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.find(name).ok()?;
        self.entries.get(i).map(|e| self.slice(e.value))
    }

    /// Where `name` travels, if present.
    pub fn place_of(&self, name: &str) -> Option<Place> {
        let i = self.find(name).ok()?;
        self.entries.get(i).map(|e| e.place)
    }

    /// Sets `name`, keeping its current placement if present, else putting it at `place`.
    pub fn set(&mut self, name: &str, value: impl AsRef<str>, place: Place) {
        match self.find(name) {
            Ok(i) => {
                let value = self.push(value.as_ref());
                if let Some(e) = self.entries.get_mut(i) {
                    e.value = value;
                }
            }
            Err(i) => {
                let name = self.push(name);
                let value = self.push(value.as_ref());
                self.entries.insert(i, Entry { name, value, place });
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.find(name).ok()?;
        let e = self.entries.remove(i);
        Some(self.slice(e.value).to_owned())
    }

    /// True if any parameter travels in `place`.
    pub fn any_in(&self, place: Place) -> bool {
        self.entries.iter().any(|e| e.place == place)
    }

    /// All parameters sorted by name (byte order), as the signature needs them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (self.slice(e.name), self.slice(e.value)))
    }

    /// The parameters that travel in `place`, sorted by name.
    pub fn iter_in(&self, place: Place) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter(move |e| e.place == place)
            .map(|e| (self.slice(e.name), self.slice(e.value)))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
    fn refuses_more_parameters_than_any_call_has() {
        let many = vec!["a=1"; MAX_PARAMS + 1].join("&");
        assert_eq!(Params::parse(Some(&many), None), Err(ParamError::TooMany));
        let empties = "&".repeat(MAX_PARAMS * 2) + "a=1";
        assert_eq!(Params::parse(Some(&empties), None).unwrap().len(), 1);
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
