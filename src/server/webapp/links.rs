//! Which folders the web app may link: those inside a root the user gave
//! at start (`--root DIR`, repeatable; none by default, so linking is off).
//!
//! A path is checked twice before anything under it is opened: lexically
//! (absolute, `.` and `..` resolved by hand, inside a root's real path),
//! then by its real path (symbolic links resolved: a link from inside a
//! root to outside is refused). A path outside every root gets the same
//! answer whether or not it exists, so a request learns nothing about
//! folders outside the roots.

use std::path::{Component, Path, PathBuf};

/// Why a link was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Outside every root, or no root given (403).
    Forbidden(String),
    /// Inside a root but not usable (400).
    Invalid(String),
}

/// `path` with `.` and `..` resolved without touching the file system
/// (`None` for a relative path or one that climbs above `/`).
pub fn lexical(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// The real path of a folder the app asks to link, if it is inside one of
/// `roots` (given as real paths, see `ServeOptions::roots`).
///
/// # Errors
/// [`Refused::Forbidden`] with no roots, for a relative path, or one
/// outside every root (lexically or once links are resolved);
/// [`Refused::Invalid`] for a path inside a root that does not exist.
pub fn check(path: &str, roots: &[PathBuf]) -> Result<PathBuf, Refused> {
    if roots.is_empty() {
        return Err(Refused::Forbidden(
            "linking folders is off: start n4a serve with --root DIR to allow linking folders under DIR"
                .into(),
        ));
    }
    let outside = || {
        Refused::Forbidden(format!(
            "{path:?} is outside the folders this server may open (--root: {})",
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    if path.is_empty() || path.chars().any(char::is_control) {
        return Err(outside());
    }
    let lex = lexical(Path::new(path)).ok_or_else(outside)?;
    if !roots.iter().any(|r| lex.starts_with(r)) {
        return Err(outside());
    }
    let real = lex
        .canonicalize()
        .map_err(|_| Refused::Invalid("Path does not exist".into()))?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        return Err(outside());
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_resolves_dots_and_refuses_relative_paths() {
        assert_eq!(
            lexical(Path::new("/a/b/../c/./d")),
            Some(PathBuf::from("/a/c/d"))
        );
        assert_eq!(lexical(Path::new("a/b")), None);
        assert_eq!(lexical(Path::new("/..")), None);
    }

    #[test]
    fn no_roots_refuses_everything() {
        assert!(matches!(check("/tmp", &[]), Err(Refused::Forbidden(_))));
    }
}
