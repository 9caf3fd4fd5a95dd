//! n4a: a columnar analytics engine for nirs4all prediction files.
//!
//! nirs4all writes one `<dataset>.meta.parquet` per dataset (one row per
//! pipeline config, model, fold and partition) beside a
//! `<dataset>.arrays.parquet`, with a JSON summary in the Parquet footer
//! under `n4a_summary`. n4a writes, reads and queries those files.
//!
//! ```text
//!  rows ──► writer ──► <dataset>.meta.parquet  (row groups + n4a_summary)
//!   │         │          <dataset>.arrays.parquet (arrays by content hash)
//!   │         └── summary::SummaryBuilder (Welford, sketch, top-k, facets)
//!   └── schema (the 35 columns, row ids)
//!
//!  folder or store.sqlite ──► Workspace ──► footer::Footer per file (cached)
//!                                 ├──► WorkspaceSummary (footers only)
//!                                 └──► QueryEngine (pages, top-k, group-bys)
//! ```
//!
//! Principal types, re-exported here: [`Prediction`] (one row),
//! [`PredictionWriter`] (streams rows into a dataset file, atomically),
//! [`Summary`] (a file's footer summary), [`Workspace`] (a folder's files
//! or a nirs4all store's, their footers cached and merged into a
//! [`WorkspaceSummary`]), [`QueryEngine`] (pages, top-k and group-bys over
//! a workspace), [`Error`].
//!
//! ```
//! use n4a::{schema::Prediction, writer::{PredictionWriter, WriterOptions}};
//! let dir = tempfile::tempdir().unwrap();
//! let mut w = PredictionWriter::create(dir.path(), "corn", WriterOptions::default()).unwrap();
//! w.write(&Prediction {
//!     config_name: Some("0001_cfg".into()),
//!     model_name: Some("PLS".into()),
//!     fold_id: Some("0".into()),
//!     partition: Some("val".into()),
//!     val_score: Some(0.12),
//!     metric: Some("mse".into()),
//!     ..Default::default()
//! }).unwrap();
//! let summary = w.finish().unwrap();
//! assert_eq!(summary.total_predictions, 1);
//! assert_eq!(summary.ranking.unwrap().direction, n4a::metric::Direction::Minimize);
//! ```

#![warn(unnameable_types)]

pub mod blob;
#[cfg(feature = "object-store")]
pub mod bucket;
pub mod error;
pub mod files;
pub mod footer;
pub mod generate;
pub mod ingest;
pub mod memory;
pub mod metric;
pub mod query;
pub mod refresh;
pub mod rows;
pub mod schema;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "store")]
pub mod store;
pub mod summary;
pub mod workspace;
pub mod writer;

pub use error::{Error, Result};
pub use query::QueryEngine;
pub use schema::Prediction;
pub use summary::Summary;
pub use workspace::{Workspace, WorkspaceSummary};
pub use writer::PredictionWriter;
