//! API-shaped response bodies (JSON or XML, chosen by the `Format` parameter) and reading the
//! error `Code` back out of an upstream response.

use serde_json::{Map, Value};

/// The response format a V1 caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Format=JSON` (any case); also every V3 call.
    Json,
    /// `Format=XML`, and the API's default when `Format` is absent.
    Xml,
}

impl Format {
    /// The format for a `Format` parameter value: JSON if it says so (any case), else XML.
    pub fn from_param(value: Option<&str>) -> Format {
        match value {
            Some(v) if v.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Xml,
        }
    }

    /// The `Content-Type` the API uses for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json;charset=utf-8",
            Format::Xml => "text/xml;charset=utf-8",
        }
    }
}

/// The fields of an API error.
#[derive(Debug, Clone)]
pub struct ApiError<'a> {
    /// Request id to report (the proxy mints one for its own errors).
    pub request_id: &'a str,
    /// The API host the call was for.
    pub host_id: &'a str,
    /// The error code, e.g. `SignatureDoesNotMatch`.
    pub code: &'a str,
    /// A human-readable explanation.
    pub message: &'a str,
}

impl ApiError<'_> {
    /// Renders the error in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut m = Map::new();
        m.insert("RequestId".into(), self.request_id.into());
        m.insert("HostId".into(), self.host_id.into());
        m.insert("Code".into(), self.code.into());
        m.insert("Message".into(), self.message.into());
        m.insert(
            "Recommend".into(),
            format!("https://api.aliyun.com/troubleshoot?q={}", self.code).into(),
        );
        render_value("Error", &Value::Object(m), format)
    }
}

/// Renders a JSON object as the API would in `format` (XML root element `root`).
pub fn render_value(root: &str, value: &Value, format: Format) -> String {
    match format {
        Format::Json => value.to_string(),
        Format::Xml => {
            let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>");
            write_xml(&mut out, root, value);
            out
        }
    }
}

fn write_xml(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| write_xml(out, name, v)),
        Value::Object(map) => {
            open_tag(out, name);
            for (k, v) in map {
                write_xml(out, k, v);
            }
            close_tag(out, name);
        }
        Value::Null => {
            open_tag(out, name);
            close_tag(out, name);
        }
        Value::String(s) => {
            open_tag(out, name);
            escape_xml(out, s);
            close_tag(out, name);
        }
        other => {
            open_tag(out, name);
            out.push_str(&other.to_string());
            close_tag(out, name);
        }
    }
}

fn open_tag(out: &mut String, name: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
}

fn close_tag(out: &mut String, name: &str) {
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn escape_xml(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// Reads the error `Code` from a JSON or XML API response body, if there is one.
pub fn extract_code(body: &[u8]) -> Option<String> {
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"{") {
        let v: Value = serde_json::from_slice(trimmed).ok()?;
        return match v.get("Code")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
    }
    let text = std::str::from_utf8(trimmed).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(text[start..start + len].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err() -> ApiError<'static> {
        ApiError {
            request_id: "r-1",
            host_id: "gpdb.aliyuncs.com",
            code: "SignatureDoesNotMatch",
            message: "a<b & c",
        }
    }

    #[test]
    fn format_defaults_to_xml() {
        assert_eq!(Format::from_param(None), Format::Xml);
        assert_eq!(Format::from_param(Some("None")), Format::Xml);
        assert_eq!(Format::from_param(Some("json")), Format::Json);
        assert_eq!(Format::from_param(Some("JSON")), Format::Json);
    }

    #[test]
    fn json_and_xml_errors_carry_the_code() {
        let json = err().render(Format::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["Code"], "SignatureDoesNotMatch");
        assert_eq!(v["RequestId"], "r-1");
        let xml = err().render(Format::Xml);
        assert!(
            xml.starts_with("<?xml version='1.0' encoding='UTF-8'?><Error><"),
            "{xml}"
        );
        assert!(xml.contains("<Message>a&lt;b &amp; c</Message>"), "{xml}");
        assert_eq!(
            extract_code(json.as_bytes()).as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(
            extract_code(xml.as_bytes()).as_deref(),
            Some("SignatureDoesNotMatch")
        );
    }

    #[test]
    fn arrays_repeat_the_element() {
        let v = serde_json::json!({"Items": {"DBInstance": [{"Id": "a"}, {"Id": "b"}]}});
        let xml = render_value("R", &v, Format::Xml);
        assert!(xml.ends_with("<R><Items><DBInstance><Id>a</Id></DBInstance><DBInstance><Id>b</Id></DBInstance></Items></R>"), "{xml}");
    }

    #[test]
    fn extract_code_tolerates_garbage() {
        assert_eq!(extract_code(b""), None);
        assert_eq!(extract_code(b"{not json"), None);
        assert_eq!(extract_code(b"<html>502</html>"), None);
        assert_eq!(extract_code(b"{\"Code\": 5}").as_deref(), Some("5"));
        assert_eq!(extract_code(&[0xff, 0xfe]), None);
    }
}
