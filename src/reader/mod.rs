//! Reading prediction files: one file's footer (summary, row counts,
//! schema), a whole workspace's footers in parallel with a cache and a
//! merged summary, and, where a summary must be rebuilt, the rows.

pub mod arrays;
pub mod best;
pub mod cache;
pub mod footer;
pub mod guard;
pub mod info;
pub mod listing;
pub mod merge;
pub mod rows;
pub mod thrift;
pub mod workspace;

pub use merge::WorkspaceSummary;
pub use workspace::Workspace;
