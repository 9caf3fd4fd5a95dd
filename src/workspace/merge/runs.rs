//! The workspace's runs, listed once: a config run on several datasets is
//! one entry naming every dataset it touched (the webapp concatenated each
//! file's runs, repeating a run once per dataset). Its best scores are
//! taken across its datasets only where they rank one metric; scores of
//! different metrics are never compared.
//!
//! Cost: each file's runs index (entry spans and name hashes,
//! [`RunsIndex`]) is read where n4a stored it, after the file's runs in
//! its body (16 bytes a run), else made from the text; configs met
//! in several files are found by a bit per hash (most are met once), then
//! their names compared; each file's text is read again once (`pread`
//! into a reused buffer) and its entries copied with their dataset and
//! metric appended. Only the entries of configs met in several files (and
//! of files of several metrics) are decoded. On `big` (100 files, 189,000
//! runs, 24 MB of entries) the listing takes about 10 ms.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::relay::js;
use super::{DatasetEntry, WorkspaceSummary};
use crate::metric::Direction;
use crate::summary::runs_index::{name_of, RunsIndex};

/// A runs entry: (file index, entry index).
type Slot = (usize, usize);

/// One run (pipeline config) of the workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkspaceRun {
    /// The config name (nirs4all's run id in a `.meta.parquet` workspace).
    pub id: Option<String>,
    /// The same, as nirs4all's `runs[].name`.
    pub name: Option<String>,
    /// Predictions of this config over every dataset.
    pub n_predictions: u64,
    /// Best validation score, by the metric's direction (4 decimals, as
    /// nirs4all's runs).
    pub best_val_score: Option<f64>,
    /// The test score beside it.
    pub best_test_score: Option<f64>,
    /// The datasets it touched, in workspace order.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// The metric its best scores rank by; `None` when its datasets rank
    /// different metrics (then no best is given).
    pub metric: Option<String>,
}

/// A run entry as a summary text stores it.
#[derive(Deserialize)]
struct Stored {
    id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    n_predictions: u64,
    best_val_score: Option<f64>,
    best_test_score: Option<f64>,
    /// (1.3) Written by a file of several metrics: the entry's own.
    metric: Option<String>,
}

/// One file's runs: its runs index, and what each of its entries gets
/// appended.
struct FileRuns<'a> {
    d: &'a DatasetEntry,
    index: RunsIndex,
    /// Appended to a single-file entry in place of its closing brace.
    suffix: Vec<u8>,
    metric: Option<String>,
    direction: Option<Direction>,
    /// The file holds several metrics: each entry names its own (and is
    /// decoded, not copied, to say it once).
    per_entry: bool,
}

impl<'a> FileRuns<'a> {
    /// The file's runs, its index from the footer read where it was made
    /// there; `None` when the file has no summary text with runs, or its
    /// text cannot be read again unchanged.
    fn scan(d: &'a DatasetEntry) -> Option<FileRuns<'a>> {
        let summary = d.info.summary.as_ref()?;
        let index = match summary.stored_runs_index(&d.path, &d.info.key) {
            Some(index) => index,
            None => {
                let mut buf = Vec::new();
                let (text, runs_at) = summary.read_text(&d.path, &d.info.key, &mut buf).ok()?;
                RunsIndex::of(text, runs_at?)?
            }
        };
        let (metric, direction, per_entry) = d.metric();
        let mut suffix = b",\"datasets\":[".to_vec();
        suffix.extend(js(&d.dataset));
        suffix.extend(b"],\"metric\":");
        suffix.extend(js(&metric));
        suffix.push(b'}');
        Some(FileRuns {
            d,
            index,
            suffix,
            metric,
            direction,
            per_entry,
        })
    }

    /// Calls `f` with the file's summary text: held, or read into `buf`
    /// (checked unchanged since its footer was read). `None` when it
    /// cannot be read unchanged.
    fn with_text<R>(&self, buf: &mut Vec<u8>, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let summary = self.d.info.summary.as_ref()?;
        let (text, _) = summary
            .read_text(&self.d.path, &self.d.info.key, buf)
            .ok()?;
        Some(f(text))
    }

    /// Entry `i`'s bytes in the file's `text`.
    fn entry<'t>(&self, text: &'t [u8], i: usize) -> &'t [u8] {
        let (s, e) = self.index.spans[i];
        &text[s as usize..e as usize]
    }

    fn len(&self) -> usize {
        self.index.spans.len()
    }

    /// The metric and direction of entry `s` of this file.
    fn metric_of(&self, s: &Stored) -> (Option<String>, Option<Direction>) {
        if !self.per_entry {
            return (self.metric.clone(), self.direction);
        }
        let dir = s.metric.as_deref().and_then(|m| match &self.d.metrics {
            Some(fm) => fm.direction(m),
            None => self
                .d
                .info
                .state_head()?
                .metrics
                .get(m)
                .map(|x| x.direction),
        });
        (s.metric.clone(), dir)
    }

    /// The stored entries `wanted` of this file, decoded (reading its text
    /// once).
    fn decode(&self, wanted: &[usize], buf: &mut Vec<u8>) -> Vec<(usize, Stored)> {
        self.with_text(buf, |text| {
            wanted
                .iter()
                .filter_map(|&i| {
                    Some((
                        i,
                        serde_json::from_slice::<Stored>(self.entry(text, i)).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
    }
}

impl WorkspaceSummary {
    fn scan_runs(&self) -> Vec<Option<FileRuns<'_>>> {
        self.datasets.par_iter().map(FileRuns::scan).collect()
    }

    /// The configs met in several files: for each, its entries (file,
    /// entry) in workspace order. Names are told apart by hash, then
    /// compared where hashes meet.
    fn shared(&self, files: &[Option<FileRuns<'_>>]) -> Vec<Vec<(usize, usize)>> {
        // Two bits per hash value (its low bits: seen, seen twice), side by
        // side in one array that stays in the L2 cache: most configs are
        // met once, and a bit test is a few nanoseconds where a map insert
        // is tens. Slots met twice mark candidates (false ones, about 15%
        // at 190,000 names, fall out when full hashes are compared).
        let total: usize = files.iter().flatten().map(FileRuns::len).sum();
        let slots = (total * 4).next_power_of_two().max(1 << 12);
        let mask = (slots - 1) as u64;
        let mut bits = vec![0u64; slots / 32];
        for h in files.iter().flatten().flat_map(|f| &f.index.hashes) {
            let b = (h & mask) as usize;
            let (w, shift) = (b / 32, 2 * (b % 32));
            let seen = (bits[w] >> shift) & 1;
            bits[w] |= 1 << (shift + seen as usize);
        }
        let mut cands: Vec<(u64, u32, u32)> = Vec::new();
        for (fi, f) in files.iter().enumerate() {
            let Some(f) = f else { continue };
            for (i, h) in f.index.hashes.iter().enumerate() {
                let b = (h & mask) as usize;
                if (bits[b / 32] >> (2 * (b % 32) + 1)) & 1 != 0 {
                    cands.push((*h, fi as u32, i as u32));
                }
            }
        }
        cands.sort_unstable();
        let runs: Vec<&[(u64, u32, u32)]> = cands
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|r| r.len() > 1)
            .collect();
        if runs.is_empty() {
            return Vec::new();
        }
        // Exact names of the entries whose hashes meet, each file read once.
        let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for r in &runs {
            for &(_, fi, i) in *r {
                wanted.entry(fi as usize).or_default().push(i as usize);
            }
        }
        let mut names: HashMap<(usize, usize), Vec<u8>> = HashMap::new();
        let mut buf = Vec::new();
        for (fi, entries) in wanted {
            let f = files[fi].as_ref().expect("scanned");
            f.with_text(&mut buf, |text| {
                for i in entries {
                    names.insert((fi, i), name_of(f.entry(text, i)).into_owned());
                }
            });
        }
        let mut groups = Vec::new();
        for r in runs {
            let mut by_name: Vec<(&[u8], Vec<Slot>)> = Vec::new();
            for &(_, fi, i) in r {
                let key = (fi as usize, i as usize);
                let Some(name) = names.get(&key) else {
                    continue;
                };
                match by_name.iter_mut().find(|(n, _)| *n == name.as_slice()) {
                    Some((_, v)) => v.push(key),
                    None => by_name.push((name, vec![key])),
                }
            }
            groups.extend(by_name.into_iter().map(|(_, m)| m).filter(|m| m.len() > 1));
        }
        for g in &mut groups {
            g.sort_unstable();
        }
        groups.sort_unstable();
        groups
    }

    /// The merged entries of the configs met in several files, keyed by
    /// their first entry.
    fn merged(
        &self,
        files: &[Option<FileRuns<'_>>],
        groups: &[Vec<(usize, usize)>],
    ) -> HashMap<(usize, usize), WorkspaceRun> {
        // Every member's stored entry, decoded, reading each file once.
        let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(fi, i) in groups.iter().flatten() {
            wanted.entry(fi).or_default().push(i);
        }
        let mut stored: HashMap<(usize, usize), Stored> = HashMap::new();
        let mut buf = Vec::new();
        for (fi, entries) in wanted {
            let f = files[fi].as_ref().expect("scanned");
            for (i, s) in f.decode(&entries, &mut buf) {
                stored.insert((fi, i), s);
            }
        }
        let mut out = HashMap::new();
        for members in groups {
            let mut run: Option<(WorkspaceRun, Option<Direction>)> = None;
            for key @ &(fi, _) in members {
                let Some(s) = stored.get(key) else { continue };
                let f = files[fi].as_ref().expect("scanned");
                let (metric, direction) = f.metric_of(s);
                let dataset = &f.d.dataset;
                let (r, dir) = run.get_or_insert_with(|| {
                    (
                        WorkspaceRun {
                            id: s.id.clone(),
                            name: s.name.clone(),
                            n_predictions: 0,
                            best_val_score: s.best_val_score,
                            best_test_score: s.best_test_score,
                            datasets: Vec::new(),
                            metric: metric.clone(),
                        },
                        direction,
                    )
                });
                r.n_predictions += s.n_predictions;
                if !r.datasets.contains(dataset) {
                    r.datasets.push(dataset.clone());
                }
                if r.metric.is_some() && r.metric == metric {
                    let better = match (dir.or(direction), s.best_val_score, r.best_val_score) {
                        (Some(d), Some(new), Some(old)) => d.is_better(new, old),
                        (_, Some(_), None) => true,
                        _ => false,
                    };
                    if better {
                        r.best_val_score = s.best_val_score;
                        r.best_test_score = s.best_test_score;
                    }
                } else {
                    r.metric = None;
                    r.best_val_score = None;
                    r.best_test_score = None;
                }
            }
            if let Some((r, _)) = run {
                out.insert(members[0], r);
            }
        }
        out
    }

    /// Writes the workspace's runs as a JSON array (see the module docs):
    /// each config once, in the order first met (file order, each file's
    /// best first), with the datasets it touched and the metric its best
    /// ranks. Files whose text cannot be read again are left out. Memory:
    /// the index (16 bytes a run), one file's text and its entries.
    ///
    /// # Errors
    /// What `out` returns.
    pub fn write_runs(&self, out: &mut impl Write) -> std::io::Result<()> {
        let files = self.scan_runs();
        let groups = self.shared(&files);
        let merged = self.merged(&files, &groups);
        // Per file and entry: 0 alone, 1 the first of a shared config
        // (merged there), 2 a later one (left out).
        let mut marks: Vec<Vec<u8>> = files
            .iter()
            .map(|f| vec![0u8; f.as_ref().map_or(0, FileRuns::len)])
            .collect();
        for members in &groups {
            for (n, &(fi, i)) in members.iter().enumerate() {
                marks[fi][i] = if n == 0 { 1 } else { 2 };
            }
        }
        out.write_all(b"[")?;
        let (mut text_buf, mut chunk) = (Vec::new(), Vec::new());
        let mut first = true;
        let sep = |chunk: &mut Vec<u8>, first: &mut bool| {
            if !std::mem::take(first) {
                chunk.push(b',');
            }
        };
        for (fi, f) in files.iter().enumerate() {
            let Some(f) = f else { continue };
            let mut text_first = first;
            chunk.clear();
            let done = f.with_text(&mut text_buf, |text| {
                for (i, mark) in marks[fi].iter().enumerate() {
                    match mark {
                        2 => {}
                        1 => {
                            if let Some(r) = merged.get(&(fi, i)) {
                                sep(&mut chunk, &mut text_first);
                                chunk.extend(js(r));
                            }
                        }
                        // Entries of files of several metrics (and of a
                        // file whose state does not say): decoded, to name
                        // their own metric once.
                        _ if f.per_entry => {
                            if let Ok(s) = serde_json::from_slice::<Stored>(f.entry(text, i)) {
                                let (metric, _) = f.metric_of(&s);
                                sep(&mut chunk, &mut text_first);
                                chunk.extend(js(&WorkspaceRun {
                                    id: s.id,
                                    name: s.name,
                                    n_predictions: s.n_predictions,
                                    best_val_score: s.best_val_score,
                                    best_test_score: s.best_test_score,
                                    datasets: vec![f.d.dataset.clone()],
                                    metric,
                                }));
                            }
                        }
                        _ => {
                            let e = f.entry(text, i);
                            sep(&mut chunk, &mut text_first);
                            let inner = &e[..e.len() - 1];
                            chunk.extend_from_slice(inner);
                            // An entry with no member takes the suffix
                            // without its leading comma.
                            let empty = inner[1..].iter().all(u8::is_ascii_whitespace);
                            chunk.extend_from_slice(&f.suffix[usize::from(empty)..]);
                        }
                    }
                }
            });
            if done.is_none() {
                // The text cannot be read again unchanged (replaced since
                // its footer was read): its own entries are left out, but
                // a config it shares with other files is still listed.
                text_first = first;
                chunk.clear();
                for (i, mark) in marks[fi].iter().enumerate() {
                    if let (1, Some(r)) = (mark, merged.get(&(fi, i))) {
                        sep(&mut chunk, &mut text_first);
                        chunk.extend(js(r));
                    }
                }
            }
            first = text_first;
            out.write_all(&chunk)?;
        }
        out.write_all(b"]")
    }

    /// The workspace's runs, each config once ([`Self::write_runs`]),
    /// decoded. O(runs).
    pub fn runs_once(&self) -> Vec<WorkspaceRun> {
        let mut buf = Vec::new();
        if self.write_runs(&mut buf).is_err() {
            return Vec::new();
        }
        serde_json::from_slice::<Vec<WorkspaceRun>>(&buf).unwrap_or_default()
    }
}
