//! Reading prediction files: the footer alone (summary, row counts, schema)
//! and, where a summary must be rebuilt, the rows themselves.

pub mod footer;
pub mod rows;
