//! Reading prediction files: one file's footer (summary, row counts,
//! schema), a whole workspace's footers in parallel with a cache and a
//! merged summary, and, where a summary must be rebuilt, the rows.

pub mod arrays;
pub(crate) mod best;
pub(crate) mod cache;
pub mod configs;
pub mod footer;
pub(crate) mod guard;
pub(crate) mod info;
pub(crate) mod listing;
pub mod merge;
pub mod rows;
pub mod scores;
pub(crate) mod workspace;

pub use footer::Footer;
pub use listing::{DatasetFile, FileError, Listing};
pub use merge::WorkspaceSummary;
pub use workspace::Workspace;
