//! Decoding `n4a_summary` text as it really is in the wild.
//!
//! nirs4all writes NaN scores as the bare token `NaN` (Python's `json.dumps`
//! default), which is not JSON. The decoder rewrites the bare tokens `NaN`,
//! `Infinity` and `-Infinity` that stand outside strings to `null`, then
//! parses; a summary that is still not JSON, is larger than
//! [`MAX_SUMMARY_BYTES`], or carries a newer major version is an error that
//! names the file.

use std::path::Path;

use crate::error::{Error, Result};
use crate::summary::Summary;

/// Largest summary accepted: a nirs4all summary with ~1,900 configs is
/// ~260 KB; n4a's grows by about 250 bytes per config (one `runs` entry and
/// one state entry), so this allows about a million configs in a file.
pub const MAX_SUMMARY_BYTES: usize = 256 << 20;
/// The major version this build reads.
pub const SUPPORTED_MAJOR: u64 = 1;
/// What the error message says this build reads.
pub const SUPPORTED: &str = "1.x";

/// Replaces bare `NaN`, `Infinity` and `-Infinity` tokens outside JSON
/// strings with `null`. Linear in the input; leaves strings untouched.
pub fn sanitize_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut in_str, mut escaped) = (0, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else {
            let rest = &text[i..];
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                i += t.len();
                continue;
            }
        }
        // Copy the whole UTF-8 character starting here.
        let len = utf8_len(c);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    std::borrow::Cow::Owned(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// The summary's text after the size cap, UTF-8 check and NaN rewrite.
fn checked_text<'a>(path: &Path, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, str>> {
    let invalid = |reason: String| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() > MAX_SUMMARY_BYTES {
        return Err(invalid(format!(
            "{} bytes is over the {MAX_SUMMARY_BYTES}-byte cap",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    Ok(sanitize_non_finite(text))
}

/// Decodes and version-checks a summary read from `path`.
///
/// # Errors
/// [`Error::InvalidSummary`] for oversized, non-UTF-8 or non-JSON text and a
/// missing version; [`Error::UnsupportedVersion`] for a newer major version.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Summary> {
    let invalid = |reason: String| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason,
    };
    let text = checked_text(path, bytes)?;
    // One typed pass in the common case; the version is checked after, and
    // re-read alone only when the typed pass fails (to tell a newer major
    // version from a malformed summary).
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        n4a_version: Option<serde_json::Value>,
    }
    let (version, parsed) = match serde_json::from_str::<Summary>(&text) {
        Ok(s) => (
            Some(serde_json::Value::String(s.n4a_version.clone())),
            Ok(s),
        ),
        Err(e) => {
            let v: VersionOnly =
                serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
            (v.n4a_version, Err(e))
        }
    };
    let version = match version {
        Some(serde_json::Value::String(v)) if !v.is_empty() => v,
        _ => return Err(invalid("no n4a_version string".to_string())),
    };
    check_version(path, &version)?;
    parsed.map_err(|e| invalid(format!("unexpected shape: {e}")))
}

/// The checked `n4a_version` of a summary text, the rest skipped (not
/// typed): a pass over the text at parsing speed, no allocation but for
/// bare `NaN` rewriting.
///
/// # Errors
/// As [`decode`].
pub fn version_of(path: &Path, bytes: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        n4a_version: Option<String>,
    }
    let text = checked_text(path, bytes)?;
    let v: VersionOnly = serde_json::from_str(&text).map_err(|e| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })?;
    let version = v
        .n4a_version
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::InvalidSummary {
            path: path.to_path_buf(),
            reason: "no n4a_version string".to_string(),
        })?;
    check_version(path, &version)?;
    Ok(version)
}

/// A summary's top-level members as raw JSON, in file order.
pub type Fields = Vec<(String, Box<serde_json::value::RawValue>)>;

struct OrderedRaw(Fields);

impl<'de> serde::Deserialize<'de> for OrderedRaw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedRaw;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<OrderedRaw, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(OrderedRaw(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Checks a summary's size against [`MAX_SUMMARY_BYTES`].
///
/// # Errors
/// [`Error::InvalidSummary`] naming the file when it is over the cap.
pub fn check_size(path: &Path, len: usize) -> Result<()> {
    if len > MAX_SUMMARY_BYTES {
        return Err(Error::InvalidSummary {
            path: path.to_path_buf(),
            reason: format!("{len} bytes is over the {MAX_SUMMARY_BYTES}-byte cap"),
        });
    }
    Ok(())
}

/// Decodes `bytes` into its top-level members, kept raw (validated JSON),
/// with the same checks as [`decode`] (size cap, UTF-8, bare `NaN`
/// rewritten, JSON, version). Returns the version and the members.
///
/// # Errors
/// As [`decode`].
pub fn decode_fields(path: &Path, bytes: &[u8]) -> Result<(String, Fields)> {
    let invalid = |reason: String| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason,
    };
    let text = checked_text(path, bytes)?;
    let OrderedRaw(fields) =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let version = fields
        .iter()
        .find(|(k, _)| k == "n4a_version")
        .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("no n4a_version string".to_string()))?;
    check_version(path, &version)?;
    Ok((version, fields))
}

/// A JSON object written member by member from already-valid JSON values.
pub struct ObjectText(String);

impl ObjectText {
    /// An empty object with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut s = String::with_capacity(capacity + 2);
        s.push('{');
        ObjectText(s)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True before the first member.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 1
    }

    /// Adds `"key":value`, `value` being valid JSON text.
    pub fn member(&mut self, key: &str, value: &str) {
        if !self.is_empty() {
            self.0.push(',');
        }
        self.0
            .push_str(&serde_json::to_string(key).expect("a string serialises"));
        self.0.push(':');
        self.0.push_str(value);
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// The JSON text of `fields` as one object, `state` left out and `runs`
/// moved last; returns the text and the byte offset of `,"runs":`.
pub fn relay_fields(fields: &Fields) -> (String, Option<usize>) {
    let len: usize = fields
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut out = ObjectText::with_capacity(len);
    for (k, v) in fields {
        if k != "runs" && k != "state" {
            out.member(k, v.get());
        }
    }
    let mut runs_at = None;
    if let Some((k, v)) = fields.iter().find(|(k, _)| k == "runs") {
        runs_at = (!out.is_empty()).then_some(out.len());
        out.member(k, v.get());
    }
    (out.finish(), runs_at)
}

/// The `n4a_version` of a summary text n4a wrote (its first member), read
/// without parsing the rest.
pub fn leading_version(text: &[u8]) -> Option<String> {
    let rest = text.strip_prefix(b"{\"n4a_version\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// Checks that `version` is of the major version this build reads.
///
/// # Errors
/// [`Error::InvalidSummary`] when it is not `MAJOR.MINOR`,
/// [`Error::UnsupportedVersion`] for another major version.
pub fn check_version(path: &Path, version: &str) -> Result<()> {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok())
        .ok_or_else(|| Error::InvalidSummary {
            path: path.to_path_buf(),
            reason: format!("n4a_version {version:?} is not MAJOR.MINOR"),
        })?;
    if major != SUPPORTED_MAJOR {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version.to_string(),
            supported: SUPPORTED,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_nan_tokens_become_null_outside_strings() {
        let s = r#"{"a": NaN, "b": "NaN \" Infinity", "c": [-Infinity, Infinity], "é": 1}"#;
        let out = sanitize_non_finite(s);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["a"].is_null());
        assert_eq!(v["b"], "NaN \" Infinity");
        assert!(v["c"][0].is_null() && v["c"][1].is_null());
        assert_eq!(v["é"], 1);
    }

    #[test]
    fn newer_major_version_is_refused_by_name() {
        let err = decode(Path::new("x.meta.parquet"), br#"{"n4a_version": "2.0"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.meta.parquet: n4a_summary version 2.0 is not supported (this build reads 1.x)"
        );
    }

    #[test]
    fn fields_relay_with_runs_last_and_no_state() {
        let text =
            br#"{"n4a_version": "1.1", "runs": [1], "total_predictions": 3, "state": {"rows": 3}}"#;
        let (v, fields) = decode_fields(Path::new("f"), text).unwrap();
        assert_eq!(v, "1.1");
        let (relay, at) = relay_fields(&fields);
        assert_eq!(
            relay,
            r#"{"n4a_version":"1.1","total_predictions":3,"runs":[1]}"#
        );
        assert_eq!(&relay[at.unwrap()..], r#","runs":[1]}"#);
        assert_eq!(leading_version(relay.as_bytes()).as_deref(), Some("1.1"));
        let err = decode_fields(Path::new("f"), br#"{"n4a_version": "3.0"}"#).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { .. }));
    }

    #[test]
    fn invalid_json_names_the_file() {
        let err = decode(Path::new("bad.meta.parquet"), b"{\"n4a_version\": ").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("bad.meta.parquet: invalid n4a_summary: not JSON"));
    }
}
