//! Bearer-token authentication: the token (read from `--token-file`, never
//! printed: its `Debug` is redacted and requests are logged without
//! headers) and the check of each request's `Authorization` header,
//! compared in constant time so the answer's timing says nothing about how
//! much of a guess was right.

use std::path::Path;

use crate::error::{Error, Result};

/// Shortest token accepted, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

/// A bearer token.
#[derive(Clone)]
pub struct BearerToken(Vec<u8>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(redacted)")
    }
}

impl BearerToken {
    /// A token from its text (surrounding whitespace and newlines dropped).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when shorter than `MIN_TOKEN_BYTES` or
    /// holding a character a header cannot carry.
    pub fn new(text: &str) -> Result<BearerToken> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_BYTES {
            return Err(Error::InvalidOption(format!(
                "the bearer token must be at least {MIN_TOKEN_BYTES} bytes (it is {})",
                t.len()
            )));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidOption(
                "the bearer token must be printable ASCII without spaces".into(),
            ));
        }
        Ok(BearerToken(t.as_bytes().to_vec()))
    }

    /// The token in the file at `path` (its first line).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; as [`Self::new`].
    pub fn from_file(path: &Path) -> Result<BearerToken> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::new(text.lines().next().unwrap_or("")).map_err(|e| Error::WithPath {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// True when the `Authorization` header value `header` is `Bearer
    /// <this token>`. Constant time in the token's content: every byte
    /// is compared whatever the first difference.
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(h) = header else {
            return false;
        };
        let Some(given) = h
            .strip_prefix(b"Bearer ")
            .or_else(|| h.strip_prefix(b"bearer "))
        else {
            return false;
        };
        constant_time_eq(given, &self.0)
    }
}

/// Equality of two byte strings in time that depends on their lengths
/// only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_token_alone() {
        let t = BearerToken::new("  0123456789abcdef-secret\n").unwrap();
        assert!(t.admits(Some(b"Bearer 0123456789abcdef-secret")));
        for bad in [
            &b"Bearer 0123456789abcdef-secreT"[..],
            b"Bearer 0123456789abcdef-secret ",
            b"Bearer 0123456789abcdef-secre",
            b"Basic 0123456789abcdef-secret",
            b"0123456789abcdef-secret",
            b"Bearer ",
            b"",
        ] {
            assert!(!t.admits(Some(bad)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(!t.admits(None));
        assert!(BearerToken::new("short").is_err());
        assert!(BearerToken::new("0123456789abcdef ghij").is_err());
        assert_eq!(format!("{t:?}"), "BearerToken(redacted)");
    }
}
