//! What a workspace needs of one file's footer, read the cheapest way the
//! footer allows ([`read_info_for`]).
//!
//! * **I/O.** One `pread` of the file's last 24 KiB, which holds the whole
//!   footer of a file of a few thousand rows.
//! * **n4a 1.2, read from its end.** The state's head is the footer's last
//!   key/value: [`thrift::locate_state`] finds it by its Thrift framing, the
//!   head's first fields give the summary text's length (and hash), the
//!   framing just before the text is checked, and the row count and row
//!   groups come from the footer's first bytes ([`thrift::parse_counts`]):
//!   the column chunks' metadata (35 a row group) is not walked. A text in
//!   the tail read is kept; a larger one is read once, hashed and dropped,
//!   and relayed later straight from the file ([`FileSummary::text_at`]).
//!   The head stays as its compact bytes, decoded when merged; the runs
//!   (`n4a_runs`) stay in the file until an append or a config filter asks.
//! * **Other footers** are skimmed whole ([`thrift::parse_with_stats`]: row
//!   count, row groups, key/values, and the chunk statistics of `metric` and
//!   the scores, [`ColumnFacts`]); a larger footer's start is read and its
//!   key/values located without reading the values it does not need. A 1.1
//!   summary (state inside the JSON) is decoded with its state; nirs4all's
//!   1.0 has only the parts a merge uses typed, and the text relayed is
//!   rebuilt with nirs4all's maxima left out where they are not bests
//!   ([`relay_text`]).
//! * **Memory.** On these VMs a page of fresh memory costs about 2 µs to
//!   fault in, more than reading it from the page cache, so a workspace
//!   summary is bound by what it holds as much as by what it reads: read
//!   buffers are per thread and reused, large texts are not held.

#[cfg(feature = "store")]
mod held;
pub(crate) mod persist;
mod read;
mod text;

pub use read::read_info_for;

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::FileKey;
use crate::error::{Error, Result};
use crate::footer::thrift::ChunkStats;
use crate::summary::codec::{self, Encoded, TextCheck};
use crate::summary::legacy::{LegacyRanking, LegacySummary};
use crate::summary::{Summary, SummaryState};

/// Bytes read from the end of a file in the first `pread`, and from the
/// start of a larger footer in the second.
pub const WINDOW: u64 = 24 << 10;

/// Columns whose chunk statistics [`read_info_for`] keeps.
const WATCHED: [&str; 4] = ["metric", "val_score", "test_score", "train_score"];

/// What the parquet column statistics of a file say (every writer of
/// nirs4all's files, pyarrow and arrow-rs, writes them by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnFacts {
    /// What the `metric` column holds.
    pub metric: MetricFact,
    /// Per score column (val, test, train): the non-null count, minimum
    /// and maximum over every row group; `None` when some chunk has no
    /// statistics.
    pub scores: [Option<ScoreFact>; 3],
}

/// What a file's `metric` column statistics prove.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum MetricFact {
    /// Every row with a metric has this one, and `rows` rows have one.
    One {
        /// The metric.
        name: String,
        /// Rows with a (non-null) metric.
        rows: u64,
    },
    /// No row has a metric.
    None,
    /// Several metrics, or no statistics to tell.
    #[default]
    Unknown,
}

/// A score column's statistics over a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreFact {
    /// Non-null values (NaN included).
    pub non_null: u64,
    /// Smallest value (NaN excluded), if any.
    pub min: Option<f64>,
    /// Largest value (NaN excluded), if any.
    pub max: Option<f64>,
}

impl ColumnFacts {
    fn of(stats: &[ChunkStats<'_>], num_row_groups: usize) -> ColumnFacts {
        let chunks = |col: usize| stats.iter().filter(move |s| s.column == col);
        let complete = |col: usize| {
            chunks(col).count() == num_row_groups && chunks(col).all(|s| s.null_count.is_some())
        };
        let metric = if !complete(0) {
            MetricFact::Unknown
        } else {
            let rows: i64 = chunks(0)
                .map(|s| s.num_values - s.null_count.unwrap_or(0))
                .sum();
            let mut names = chunks(0).filter(|s| s.num_values > s.null_count.unwrap_or(0));
            let first = names.clone().next();
            match first {
                None => MetricFact::None,
                Some(f)
                    if f.min.is_some()
                        && f.min == f.max
                        && names.all(|s| s.min == f.min && s.max == f.min) =>
                {
                    match std::str::from_utf8(f.min.unwrap_or_default()) {
                        Ok(name) => MetricFact::One {
                            name: name.to_string(),
                            rows: rows.max(0) as u64,
                        },
                        Err(_) => MetricFact::Unknown,
                    }
                }
                Some(_) => MetricFact::Unknown,
            }
        };
        let score = |col: usize| -> Option<ScoreFact> {
            if !complete(col) {
                return None;
            }
            let f64_of = |b: Option<&[u8]>| {
                b.and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(f64::from_le_bytes)
                    .filter(|v| !v.is_nan())
            };
            let mut fact = ScoreFact {
                non_null: 0,
                min: None,
                max: None,
            };
            for s in chunks(col) {
                fact.non_null += (s.num_values - s.null_count.unwrap_or(0)).max(0) as u64;
                let (lo, hi) = (f64_of(s.min), f64_of(s.max));
                if s.num_values > s.null_count.unwrap_or(0) && (lo.is_none() || hi.is_none()) {
                    // Values without bounds (all NaN, or bounds not written).
                    return None;
                }
                fact.min = match (fact.min, lo) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                fact.max = match (fact.max, hi) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            Some(fact)
        };
        ColumnFacts {
            metric,
            scores: [score(1), score(2), score(3)],
        }
    }
}

/// One prediction file's footer: the one footer type of n4a. A workspace
/// reads it the cheapest way the footer allows (see the module docs) and
/// keeps it cached; [`Footer::read`] reads one file the same way.
///
/// What it holds is what merges, prunes and appends use: row counts, the
/// column statistics of `metric` and the scores, and the summary located
/// (its state decoded on first use). What is stored whole (the summary as
/// written, every key/value, the row groups) is read on demand from the
/// file by [`Footer::summary`] and [`Footer::metadata`], checked to be the
/// file read.
///
/// ```
/// # fn main() -> n4a::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # n4a::generate::generate(dir.path(), &n4a::generate::GenOptions { datasets: 1, rows: 10, ..Default::default() })?;
/// let footer = n4a::footer::Footer::read(&dir.path().join("corn_000.meta.parquet"))?;
/// assert_eq!(footer.num_rows(), 10);
/// assert_eq!(footer.version(), Some(n4a::summary::N4A_VERSION));
/// let summary = footer.summary()?.expect("n4a writes a summary");
/// assert_eq!(summary.total_predictions, 10);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Footer {
    /// The file read.
    pub(crate) path: std::path::PathBuf,
    /// Rows, from the parquet metadata.
    pub(crate) num_rows: u64,
    /// Row groups.
    pub(crate) num_row_groups: usize,
    /// The file's identity when read (its summary text is read again only
    /// while it is unchanged).
    pub(crate) key: FileKey,
    /// The column statistics of `metric` and the scores.
    pub(crate) columns: ColumnFacts,
    /// The summary, if the file has one.
    pub(crate) summary: Option<FileSummary>,
    /// The whole parquet metadata, read when first asked for.
    pub(crate) meta: OnceLock<Box<parquet::file::metadata::ParquetMetaData>>,
}

impl Footer {
    /// Reads the footer of `path` the way a workspace does: one open, one
    /// `pread` of its last 24 KiB for a footer n4a wrote (a second for a
    /// larger one), the summary located, not parsed. A decoder panic on a
    /// damaged file is an error naming it.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be opened, [`Error::Parquet`] or
    /// [`Error::Corrupt`] if it is not a parquet file or is truncated,
    /// [`Error::InvalidSummary`] or [`Error::UnsupportedVersion`] for a
    /// summary that does not decode.
    pub fn read(path: &Path) -> Result<Footer> {
        let file = crate::blob::Blob::open(path).map_err(|e| Error::io(path, e))?;
        let key = FileKey::of_blob(&file).map_err(|e| Error::io(path, e))?;
        super::guard::guarded(path, || read_info_for(path, file, key, true))
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows, from the parquet metadata.
    pub fn num_rows(&self) -> u64 {
        self.num_rows
    }

    /// Row groups.
    pub fn num_row_groups(&self) -> usize {
        self.num_row_groups
    }

    /// The identity of the file version read.
    pub fn key(&self) -> FileKey {
        self.key
    }

    /// The summary's `n4a_version`, if the file has a summary.
    pub fn version(&self) -> Option<&str> {
        self.summary.as_ref().map(|s| s.version.as_str())
    }

    /// The summary as the file stores it, with its mergeable state (from
    /// n4a's state, from inside the JSON for 1.1; none for nirs4all's
    /// 1.0); `Ok(None)` when the file has no summary (normal for files
    /// written before summaries existed). Cost: the whole footer read by
    /// the parquet crate (once, see [`Self::metadata`]) and the JSON
    /// parsed, on every call.
    ///
    /// # Errors
    /// As [`Self::metadata`]; [`Error::InvalidSummary`] or
    /// [`Error::UnsupportedVersion`].
    pub fn summary(&self) -> Result<Option<Summary>> {
        super::meta::decode_summary(&self.path, self.metadata()?)
    }

    /// The file's whole parquet metadata (schema, row groups, statistics,
    /// every key/value), read by the parquet crate on the first call and
    /// kept.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Parquet`]; [`Error::ChangedDuringRefresh`]
    /// when the file is no longer the one whose footer was read.
    pub fn metadata(&self) -> Result<&parquet::file::metadata::ParquetMetaData> {
        if let Some(m) = self.meta.get() {
            return Ok(m);
        }
        let (file, meta) = super::meta::open_metadata(&self.path)?;
        let now = FileKey::of_blob(&file).map_err(|e| Error::io(&self.path, e))?;
        if now != self.key {
            return Err(Error::ChangedDuringRefresh {
                path: self.path.clone(),
            });
        }
        Ok(self.meta.get_or_init(|| Box::new(meta)))
    }

    /// The value of `key` in the footer's key/value metadata (see
    /// [`Self::metadata`] for the cost).
    ///
    /// # Errors
    /// As [`Self::metadata`].
    pub fn key_value(&self, key: &str) -> Result<Option<&str>> {
        Ok(super::meta::key_value(self.metadata()?, key))
    }

    /// The bytes of the file a workspace summary reads of this file
    /// besides what the footer read kept: its summary text when it stays
    /// in the file (relayed into the answer) and, then, its runs (their
    /// index, at their end, locates each run in the text), as one range;
    /// `None` when the text is held. What a bucket workspace fetches for a
    /// footer that came from a cache, in one request.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn body_range(&self) -> Option<std::ops::Range<u64>> {
        let s = self.summary.as_ref()?;
        let TextSource::InFile { offset, check, .. } = &s.text else {
            return None;
        };
        let mut r = *offset..offset.saturating_add(check.len);
        if let Content::State(st) = &s.content {
            if let Some(RunsSource::Body(b)) = &st.runs {
                r = r.start.min(b.at)..r.end.max(b.at.saturating_add(b.len));
            }
        }
        Some(r)
    }

    /// The raw `n4a_summary` text, as stored (nirs4all's bare `NaN`
    /// included).
    ///
    /// # Errors
    /// As [`Self::metadata`].
    pub fn summary_text(&self) -> Result<Option<&str>> {
        self.key_value(crate::schema::SUMMARY_KEY)
    }

    /// True when the footer's summary carries n4a's binary state (1.2 on):
    /// read with or without summaries, such a footer is the same.
    pub(crate) fn has_packed_state(&self) -> bool {
        self.summary
            .as_ref()
            .is_some_and(|s| matches!(&s.content, Content::State(st) if st.packed.is_some()))
    }

    /// The file's mergeable state when it agrees with the file (same row
    /// count), decoded on first use: for a 1.2 footer its head, whose `runs`
    /// and `pipelines` are empty (see [`FileSummary::full_state`]).
    pub(crate) fn state_head(&self) -> Option<&SummaryState> {
        match &self.summary.as_ref()?.content {
            Content::State(s) => s.head().ok(),
            Content::Legacy { .. } => None,
        }
    }
}

/// One file's summary as a workspace uses it: where its text is, and what a
/// merge can use.
#[derive(Debug)]
pub struct FileSummary {
    /// `n4a_version`.
    pub version: String,
    /// The summary object as valid JSON text, `runs` its last member, no
    /// `state` in it.
    pub text: TextSource,
    /// What a merge uses.
    pub content: Content,
}

/// Where a summary's relayed text is.
#[derive(Debug)]
pub enum TextSource {
    /// In memory (rebuilt from a 1.0 or 1.1 summary).
    Held {
        /// The text.
        text: Bytes,
        /// Byte offset of `,"runs":` in it.
        runs_at: Option<usize>,
    },
    /// In the file, as n4a 1.2 wrote it beside its state.
    InFile {
        /// Byte offset of the text in the file.
        offset: u64,
        /// Its length, hash and `runs` offset, from the state.
        check: TextCheck,
        /// Set once a read matched the hash: later reads of the unchanged
        /// file (same key) skip hashing.
        verified: std::sync::atomic::AtomicBool,
    },
}

/// A summary text located for relaying ([`FileSummary::text_at`]); each
/// variant carries the byte offset of `,"runs":` in the text.
#[derive(Debug)]
pub enum TextAt<'a> {
    /// In memory.
    Bytes(&'a [u8], Option<usize>),
    /// Read now.
    Owned(Vec<u8>, Option<usize>),
    /// In this open file, at this offset, this long (checked).
    File(File, u64, usize, Option<usize>),
}

/// What a merge can use of a file's summary.
// One per file and both variants hold hundreds of bytes: boxing either
// would add an allocation per file and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Content {
    /// n4a's mergeable state, agreeing with the file.
    State(StateSource),
    /// No usable state (nirs4all's 1.0, or a state that disagrees with
    /// the file): the typed parts and how n4a reads its rankings.
    Legacy {
        /// The typed parts.
        parts: LegacySummary,
        /// The file's metric and direction, from its column statistics.
        ranking: LegacyRanking,
    },
}

/// A state kept compact: 1.2's head bytes (decoded on demand) and packed
/// runs, or 1.1's state decoded from its JSON.
pub struct StateSource {
    /// Rows the state counts.
    pub rows: u64,
    /// Distinct configs in the full state.
    pub n_runs: u64,
    /// Distinct pipelines in the full state.
    pub n_pipelines: u64,
    packed: Option<Encoded>,
    runs: Option<RunsSource>,
    head: OnceLock<std::result::Result<SummaryState, String>>,
    full: OnceLock<std::result::Result<Arc<SummaryState>, String>>,
    /// (1.5) The group aggregates, read from the body on first use.
    groups: OnceLock<std::result::Result<Option<Arc<crate::summary::groups::Groups>>, String>>,
}

/// Where a state's runs are: read when the whole state is asked for
/// (appends, config pruning), not for a summary.
#[derive(Debug, Clone)]
pub enum RunsSource {
    /// 1.2's `n4a_runs` value in the file: offset and length of the value.
    InFile(u64, usize),
    /// 1.2's `n4a_runs` value, already read.
    Held(Vec<u8>),
    /// 1.3's runs in the file's body, where the head names them.
    Body(codec::RunsRef),
}

impl std::fmt::Debug for StateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSource")
            .field("rows", &self.rows)
            .field("n_runs", &self.n_runs)
            .finish_non_exhaustive()
    }
}

impl StateSource {
    /// A 1.2-on state: its counts, its decoded head bytes and where its
    /// runs are; nothing decoded yet.
    fn packed(
        (rows, n_runs, n_pipelines): (u64, u64, u64),
        packed: Encoded,
        runs: Option<RunsSource>,
    ) -> StateSource {
        StateSource {
            rows,
            n_runs,
            n_pipelines,
            packed: Some(packed),
            runs,
            head: OnceLock::new(),
            full: OnceLock::new(),
            groups: OnceLock::new(),
        }
    }

    /// The head (the state without runs and pipelines for 1.2, whole for
    /// 1.1), decoded once and kept.
    ///
    /// # Errors
    /// The decoder's message, when the head does not decode (it decoded
    /// when the footer was read, so only memory corruption gets here).
    pub fn head(&self) -> std::result::Result<&SummaryState, &str> {
        self.head
            .get_or_init(|| match &self.packed {
                Some(p) => p.head().map(|h| h.state).map_err(|e| e.0),
                None => Err("no packed head".to_string()),
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Folds the head into `m` with its top entries tagged `dataset`,
    /// reading 1.2's bytes in place (no string copied unless it stays in
    /// the merge). Returns the file's metrics, or `None` when the head does
    /// not decode.
    pub fn merge_into(
        &self,
        m: &mut crate::summary::StateMerger,
        dataset: &str,
    ) -> Option<FileMetrics> {
        match &self.packed {
            Some(p) => {
                let v = p.view().ok()?;
                m.add_view(&v, Some(dataset));
                Some(FileMetrics(
                    v.metrics
                        .iter()
                        .map(|(name, ms)| (name.to_string(), ms.direction, ms.count))
                        .collect(),
                ))
            }
            None => {
                let st = self.head().ok()?;
                m.add(st, 0, Some(dataset));
                Some(FileMetrics(
                    st.metrics
                        .iter()
                        .map(|(name, ms)| (name.clone(), ms.direction, ms.count))
                        .collect(),
                ))
            }
        }
    }
}

/// A file's metrics as its state tells them: (name, direction, rows), in
/// name order. Kept per file by a workspace merge, so the runs and the
/// files' rankings need not decode the state again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileMetrics(pub Vec<(String, crate::metric::Direction, u64)>);

impl FileMetrics {
    /// The metric with the most rows (ties: the first by name), with its
    /// direction: the file's ranking metric.
    pub fn primary(&self) -> Option<(&str, crate::metric::Direction)> {
        self.0
            .iter()
            .max_by(|a, b| a.2.cmp(&b.2).then_with(|| b.0.cmp(&a.0)))
            .map(|(n, d, _)| (n.as_str(), *d))
    }

    /// The direction of `metric`, if the file holds it.
    pub fn direction(&self, metric: &str) -> Option<crate::metric::Direction> {
        self.0
            .iter()
            .find(|(n, _, _)| n == metric)
            .map(|(_, d, _)| *d)
    }
}
