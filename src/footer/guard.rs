//! A damaged file must never bring the process down: the parquet and arrow
//! crates panic on some malformed inputs (a mutated data page can make a
//! bit-buffer slice go out of bounds). Every read of one file's bytes runs
//! in [`guarded`], which turns such a panic into
//! [`Error::DamagedData`] naming the file, so the file is reported and the
//! others answered, as for any unreadable file. The panic message is not
//! printed by the process's panic hook while a guarded read runs (the
//! error carries it); panics elsewhere print as before. Cost: a
//! `catch_unwind` and a thread-local flag per file read.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use crate::error::{Error, Result};

thread_local! {
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Installs, once, a panic hook that stays silent inside [`guarded`] and
/// calls the previous hook elsewhere.
fn quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, a read of the file at `path`; a panic inside becomes
/// [`Error::DamagedData`] for that file.
///
/// # Errors
/// What `f` returns, or the panic as [`Error::DamagedData`].
pub fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    quiet_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let out = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    out.unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        Err(Error::DamagedData {
            path: path.to_path_buf(),
            cause: format!("the parquet reader failed on it ({msg})"),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_the_files_error() {
        let p = Path::new("/ws/x.meta.parquet");
        let e = guarded::<()>(p, || panic!("offset + len out of bounds")).unwrap_err();
        assert_eq!(e.kind(), "damaged_data");
        assert_eq!(
            e.to_string(),
            "/ws/x.meta.parquet: damaged row data: the parquet reader failed on it (offset + len out of bounds)"
        );
        assert_eq!(guarded(p, || Ok(3)).unwrap(), 3);
    }
}
