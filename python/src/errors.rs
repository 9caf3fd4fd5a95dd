//! Library errors as Python exceptions. The classes live in
//! `n4a/errors.py` (plain Python, so they can also derive from `OSError`
//! or `ValueError`); `n4a.errors.from_kind` picks the class for an
//! [`n4a::Error::kind`] and sets `kind` and `path` on the instance.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The Python exception for `e`: its message once (the library's messages
/// already name the file), its kind, and its file when known.
pub(crate) fn to_py(e: n4a::Error) -> PyErr {
    Python::attach(|py| {
        let path = e.path().map(|p| p.display().to_string());
        let made = py
            .import("n4a.errors")
            .and_then(|m| m.call_method1("from_kind", (e.kind(), e.to_string(), path)));
        match made {
            Ok(exc) => PyErr::from_value(exc),
            Err(import_failed) => PyRuntimeError::new_err(format!(
                "{e} (and n4a.errors could not be used: {import_failed})"
            )),
        }
    })
}

/// `Result` of the library, its error converted.
pub(crate) trait OrRaise<T> {
    /// The value, or the Python exception for the error.
    fn or_raise(self) -> PyResult<T>;
}

impl<T> OrRaise<T> for n4a::Result<T> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
