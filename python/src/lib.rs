//! `n4a._n4a`: the Rust side of the Python package `n4a`.
//!
//! A thin layer over the `n4a` crate: options arrive as Python keywords
//! and become the library's queries once ([`workspace`]), answers leave as
//! Arrow batches handed to pyarrow through the Arrow C data interface, with
//! no copy of their buffers ([`convert`]), rows arrive as Arrow streams
//! from pyarrow, polars or pandas ([`writer`]). Every call that reads or
//! writes files runs with the GIL released. Library errors become the
//! exceptions of `n4a.errors` ([`errors`]), which mirror
//! [`n4a::Error::kind`].
//!
//! The Python-facing API, its documentation and type stubs are in the
//! package (`n4a/__init__.py`, `n4a/__init__.pyi`); this module's names
//! start with an underscore where the package wraps them.

mod convert;
mod errors;
mod workspace;
mod writer;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _n4a(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<workspace::Workspace>()?;
    m.add_class::<writer::RawWriter>()?;
    m.add_function(wrap_pyfunction!(workspace::refresh, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
