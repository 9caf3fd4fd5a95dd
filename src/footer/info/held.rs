//! A footer held in memory for rows that are not in a `.meta.parquet`
//! file (a store read in place): what [`super::read_info_for`] would have
//! read from the copy of those rows, built from the rows' own summary.

use std::path::Path;
use std::sync::OnceLock;

use bytes::Bytes;

use super::{ColumnFacts, Content, FileSummary, Footer, StateSource, TextSource};
use crate::error::Result;
use crate::footer::FileKey;
use crate::summary::Summary;

impl Footer {
    /// The footer of `num_rows` rows known by `path` (a name, no file is
    /// read), with their column facts and, when given, their summary (its
    /// state kept whole, its text relayed as a file's would be). Its key is
    /// the default one: such rows are never checked against a file.
    ///
    /// # Errors
    /// None today (the summary's text is rendered, not parsed); kept for
    /// the summaries a later source may hold as text.
    pub(crate) fn held(
        path: &Path,
        num_rows: u64,
        columns: ColumnFacts,
        summary: Option<Summary>,
    ) -> Result<Footer> {
        let summary = match summary {
            None => None,
            Some(mut s) => {
                let state = s.state.take();
                // The text exactly as the writer stores it in a footer
                // (runs last, no state: what a 1.2+ footer relays).
                let text = s.to_json();
                let runs_at = crate::summary::codec::TextCheck::of(&text)
                    .runs_at
                    .map(|at| at as usize);
                let version = s.n4a_version.clone();
                let content = state.map(|st| {
                    let (rows, n_runs, n_pipelines) =
                        (st.rows, st.runs.len() as u64, st.pipelines.len() as u64);
                    let head = OnceLock::new();
                    let _ = head.set(Ok(st));
                    StateSource {
                        rows,
                        n_runs,
                        n_pipelines,
                        packed: None,
                        runs: None,
                        head,
                        full: OnceLock::new(),
                        groups: OnceLock::new(),
                    }
                });
                content.map(|c| FileSummary {
                    version,
                    text: TextSource::Held {
                        text: Bytes::from(text),
                        runs_at,
                    },
                    content: Content::State(c),
                })
            }
        };
        Ok(Footer {
            path: path.to_path_buf(),
            num_rows,
            num_row_groups: 0,
            key: FileKey::default(),
            columns,
            summary,
            meta: OnceLock::new(),
        })
    }
}
