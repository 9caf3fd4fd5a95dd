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

/// Largest summary accepted (a nirs4all summary with ~1,900 configs is ~260 KB).
pub const MAX_SUMMARY_BYTES: usize = 64 << 20;
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
    if bytes.len() > MAX_SUMMARY_BYTES {
        return Err(invalid(format!(
            "{} bytes is over the {MAX_SUMMARY_BYTES}-byte cap",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8: {e}")))?;
    let text = sanitize_non_finite(text);
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
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok())
        .ok_or_else(|| invalid(format!("n4a_version {version:?} is not MAJOR.MINOR")))?;
    if major != SUPPORTED_MAJOR {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SUPPORTED,
        });
    }
    parsed.map_err(|e| invalid(format!("unexpected shape: {e}")))
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
    fn invalid_json_names_the_file() {
        let err = decode(Path::new("bad.meta.parquet"), b"{\"n4a_version\": ").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("bad.meta.parquet: invalid n4a_summary: not JSON"));
    }
}
