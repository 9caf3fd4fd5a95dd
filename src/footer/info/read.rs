//! The read of one footer: one `pread` of the tail, an n4a 1.2 or 1.3 footer located
//! from its end, any other footer skimmed whole, and the summary typed only
//! where a merge needs it (see the parent module for the costs).

use super::{
    ColumnFacts, Content, FileSummary, Footer, RunsSource, StateSource, TextSource, WATCHED, WINDOW,
};
use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::footer::meta::{key_value, open_metadata};
use crate::footer::thrift::{self, SkimError};
use crate::footer::FileKey;
use crate::schema::{RUNS_KEY, STATE_KEY, SUMMARY_KEY};
use crate::summary::codec::{self, Encoded, RunsPlace};
use crate::summary::json;
use crate::summary::SummaryState;
use bytes::Bytes;
use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

/// Reads a file's footer the cheapest way (see the module docs). `key` is
/// the file's identity from a `stat` the caller already made. On anything
/// the skim does not understand it falls back to the full parquet decoder,
/// whose error names the problem.
///
/// # Errors
/// [`Error::Io`], [`Error::Parquet`], [`Error::InvalidSummary`] or
/// [`Error::UnsupportedVersion`], naming the file.
#[cfg(test)]
pub fn read_info(path: &Path, key: FileKey) -> Result<Footer> {
    let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
    read_info_open(path, file, key)
}

/// [`read_info`] of a file already open (`key` taken from it).
///
/// # Errors
/// As [`read_info`].
#[cfg(test)]
pub fn read_info_open(path: &Path, file: Blob, key: FileKey) -> Result<Footer> {
    read_info_for(path, file, key, true)
}

/// [`read_info_open`]; without `summaries`, a summary that carries no n4a
/// state (nirs4all's 1.0, n4a's 1.1) is not decoded and the footer reads
/// as having none: what a row scan needs (row counts, column facts, the
/// 1.2 state for pruning) at a fraction of the cost (a 1.0 summary of a
/// 100,000-row file is ~0.5 ms of JSON).
///
/// # Errors
/// As [`read_info`].
pub fn read_info_for(path: &Path, file: Blob, key: FileKey, summaries: bool) -> Result<Footer> {
    thread_local! {
        // Read buffers per thread, reused: fresh buffers per file cost more
        // in page faults than the reads themselves.
        static BUFS: std::cell::RefCell<(Vec<u8>, Scratch)> = const {
            std::cell::RefCell::new((
                Vec::new(),
                Scratch {
                    head: Vec::new(),
                    schema: Vec::new(),
                    window: WINDOW as usize,
                },
            ))
        };
    }
    BUFS.with(|b| {
        let mut bufs = b.borrow_mut();
        let (tail, scratch) = &mut *bufs;
        let out = read_with(path, &file, key, tail, scratch, summaries);
        for buf in [tail, &mut scratch.head, &mut scratch.schema] {
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
        }
        out
    })
}

/// What one thread keeps between footer reads (besides the tail buffer).
struct Scratch {
    /// Buffer for reads at a footer's start, or for a large summary text.
    head: Vec<u8>,
    /// The last footer's serialized schema (see [`thrift::parse_counts`]).
    schema: Vec<u8>,
    /// Bytes of the first read at a file's end: [`WINDOW`], grown to the
    /// largest whole footer seen by this thread up to [`MAX_WINDOW`], so
    /// that in a workspace of like files (1.3 footers of a few hundred
    /// rows are ~30 KB: their `ARROW:schema` holds the summary again) each
    /// footer is one read, not two.
    window: usize,
}

/// The largest first read (see [`Scratch::window`]).
const MAX_WINDOW: usize = 64 << 10;

/// Largest read buffer a thread keeps between files.
const KEEP_BUFFER: usize = 4 << 20;

/// What the skim gives, values fetched.
struct Skimmed<'b> {
    num_rows: i64,
    num_row_groups: usize,
    columns: ColumnFacts,
    summary: Option<Located<'b>>,
    state: Option<std::result::Result<Encoded, codec::CodecError>>,
    runs: Option<RunsSource>,
}

/// A summary text found in a footer: its bytes when already read, its
/// offset in the file and its length.
struct Located<'b> {
    text: Option<Cow<'b, [u8]>>,
    offset: u64,
    len: usize,
}

fn read_with(
    path: &Path,
    file: &Blob,
    key: FileKey,
    tail: &mut Vec<u8>,
    scratch: &mut Scratch,
    summaries: bool,
) -> Result<Footer> {
    let len = key.len;
    let skimmed = match skim(file, path, len, tail, scratch)? {
        Some(s) => s,
        None => {
            // The parquet crate reads what the skim did not understand, or
            // says what is wrong with it.
            let (_, full) = open_metadata(path)?;
            let kv = |key: &str| key_value(&full, key).map(|v| v.as_bytes().to_vec());
            Skimmed {
                num_rows: full.file_metadata().num_rows(),
                num_row_groups: full.num_row_groups(),
                columns: ColumnFacts::default(),
                summary: kv(SUMMARY_KEY).map(|t| Located {
                    len: t.len(),
                    text: Some(Cow::Owned(t)),
                    offset: 0,
                }),
                state: kv(STATE_KEY).map(|v| codec::split(&v)),
                runs: kv(RUNS_KEY).map(RunsSource::Held),
            }
        }
    };
    let num_rows = skimmed.num_rows.max(0) as u64;
    let columns = skimmed.columns;
    let summary = match skimmed.summary {
        None => None,
        Some(_) if !summaries && skimmed.state.is_none() => None,
        Some(at) => Some(file_summary(
            path,
            (file, summaries.then_some(&mut scratch.head)),
            at,
            (skimmed.state, skimmed.runs),
            num_rows,
            &columns,
        )?),
    };
    Ok(Footer {
        path: path.to_path_buf(),
        num_rows,
        num_row_groups: skimmed.num_row_groups,
        key,
        columns,
        summary,
        meta: OnceLock::new(),
    })
}

/// Skims the footer: `None` when it is not a plain parquet footer the skim
/// understands.
fn skim<'b>(
    file: &Blob,
    path: &Path,
    len: u64,
    tail: &'b mut Vec<u8>,
    scratch: &mut Scratch,
) -> Result<Option<Skimmed<'b>>> {
    let n = len.min(scratch.window as u64) as usize;
    let tail: &'b mut [u8] = sized(tail, n);
    file.read_exact_at(tail, len - n as u64)
        .map_err(|e| Error::io(path, e))?;
    if n < 12 || &tail[n - 4..] != b"PAR1" {
        return Ok(None);
    }
    let meta_len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    if meta_len as u64 + 12 > len {
        return Ok(None);
    }
    let footer_at = len - 8 - meta_len as u64;
    if meta_len + 8 > scratch.window && meta_len + 8 <= MAX_WINDOW {
        scratch.window = (meta_len + 8).next_multiple_of(4096).min(MAX_WINDOW);
    }
    let tail: &'b [u8] = tail;
    // n4a's state key near the end (its head is the last key/value), or
    // anywhere in the tail read: one search, which rules out nirs4all's
    // footers before any parsing.
    let window = &tail[..n - 8];
    let state_hit = thrift::find_state_key(window);
    let state_key = state_hit.is_some();
    if let Some(hit) = state_hit {
        let fast = skim_n4a(file, path, (meta_len, footer_at), (window, hit), scratch)?;
        if let Some(fast) = fast {
            return Ok(Some(fast));
        }
    }
    if meta_len + 8 <= n {
        // The whole footer is in the tail read.
        let meta = &tail[n - 8 - meta_len..n - 8];
        // A summary found by its framing spares the walk past the watched
        // columns' statistics (nirs4all's footers).
        if let Some(at) = thrift::locate_summary(meta).filter(|_| !state_key) {
            if let Ok(skim) = thrift::parse_stats_only(meta, &WATCHED) {
                let t = &meta[at.clone()];
                return Ok(Some(Skimmed {
                    num_rows: skim.num_rows,
                    num_row_groups: skim.num_row_groups,
                    columns: ColumnFacts::of(&skim.chunk_stats, skim.num_row_groups),
                    summary: Some(Located {
                        text: Some(Cow::Borrowed(t)),
                        offset: footer_at + at.start as u64,
                        len: t.len(),
                    }),
                    state: None,
                    runs: None,
                }));
            }
        }
        let Ok(skim) = thrift::parse_with_stats(meta, &WATCHED) else {
            return Ok(None);
        };
        let find = |key: &str| {
            skim.key_values
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .and_then(|(_, v)| *v)
        };
        let summary = find(SUMMARY_KEY).map(|t| {
            let at = t.as_ptr() as usize - meta.as_ptr() as usize;
            Located {
                text: Some(Cow::Borrowed(t)),
                offset: footer_at + at as u64,
                len: t.len(),
            }
        });
        return Ok(Some(Skimmed {
            num_rows: skim.num_rows,
            num_row_groups: skim.num_row_groups,
            columns: ColumnFacts::of(&skim.chunk_stats, skim.num_row_groups),
            summary,
            state: find(STATE_KEY).map(codec::split),
            runs: find(RUNS_KEY).map(|v| {
                let at = v.as_ptr() as usize - meta.as_ptr() as usize;
                RunsSource::InFile(footer_at + at as u64, v.len())
            }),
        }));
    }
    // A larger footer: its start, then its key/values located.
    let h = meta_len.min(WINDOW as usize);
    let head: &mut [u8] = sized(&mut scratch.head, h);
    file.read_exact_at(head, footer_at)
        .map_err(|e| Error::io(path, e))?;
    let head: &[u8] = head;
    let Ok(prefix) = thrift::parse_prefix(head, &WATCHED) else {
        return Ok(None);
    };
    let tail_at = meta_len - (n - 8);
    let tail_meta = &tail[..n - 8];
    let mut fetch = |pos: usize, want: usize| -> std::result::Result<Cow<'_, [u8]>, SkimError> {
        let end = (pos + want).min(meta_len);
        if end <= h {
            return Ok(Cow::Borrowed(&head[pos..end]));
        }
        if pos >= tail_at {
            return Ok(Cow::Borrowed(&tail_meta[pos - tail_at..end - tail_at]));
        }
        let mut v = vec![0u8; end - pos];
        file.read_exact_at(&mut v, footer_at + pos as u64)
            .map_err(|_| SkimError("footer read failed"))?;
        Ok(Cow::Owned(v))
    };
    let entries = match prefix.kv_at {
        Some(at) => match thrift::locate_key_values(at, meta_len, &mut fetch) {
            Ok(e) => e,
            Err(_) => return Ok(None),
        },
        None => Vec::new(),
    };
    let value = |key: &str| {
        entries
            .iter()
            .find(|e| e.key == key.as_bytes())
            .and_then(|e| e.value)
    };
    let state = match value(STATE_KEY) {
        Some((pos, n)) => match fetch(pos, n) {
            Ok(v) => Some(codec::split(&v)),
            Err(_) => return Ok(None),
        },
        None => None,
    };
    let summary = value(SUMMARY_KEY).map(|(pos, n)| Located {
        text: None,
        offset: footer_at + pos as u64,
        len: n,
    });
    let runs = value(RUNS_KEY).map(|(pos, n)| RunsSource::InFile(footer_at + pos as u64, n));
    Ok(Some(Skimmed {
        num_rows: prefix.skim.num_rows,
        num_row_groups: prefix.skim.num_row_groups,
        columns: ColumnFacts::of(&prefix.skim.chunk_stats, prefix.skim.num_row_groups),
        summary,
        state,
        runs,
    }))
}

/// An n4a 1.2 footer read from its end: the state (the last key/value)
/// found by its framing, the summary text's place from the state's check
/// and the framing before it, the row count and row groups from the
/// footer's first bytes; the row groups' metadata (35 column chunks each)
/// is not walked. `None` when the footer is not laid out that way (the
/// general skim then reads it). `window` is the footer's last bytes.
fn skim_n4a<'b>(
    file: &Blob,
    path: &Path,
    (meta_len, footer_at): (usize, u64),
    (window, hit): (&'b [u8], usize),
    scratch: &mut Scratch,
) -> Result<Option<Skimmed<'b>>> {
    let window_at = meta_len.saturating_sub(window.len());
    // The window's bytes before the footer (a small file's tail read takes
    // in its last data pages) are cut off.
    let cut = window.len() - (meta_len - window_at);
    let window = &window[cut..];
    let Some(hit) = hit.checked_sub(cut) else {
        return Ok(None);
    };
    let Some((state, text_end)) = thrift::locate_state(window, window_at, hit) else {
        return Ok(None);
    };
    let Ok(packed) = codec::split(&window[state.start - window_at..state.end - window_at]) else {
        return Ok(None);
    };
    let Ok(prefix) = packed.prefix() else {
        return Ok(None);
    };
    let text_len = prefix.text.len as usize;
    let framing = thrift::summary_framing(text_len);
    let Some(text_start) = text_end.checked_sub(text_len) else {
        return Ok(None);
    };
    let Some(framed_at) = text_start.checked_sub(framing.len()) else {
        return Ok(None);
    };
    let read = |at: usize, n: usize| -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        file.read_exact_at(&mut v, footer_at + at as u64)
            .map_err(|e| Error::io(path, e))?;
        Ok(v)
    };
    let framed_ok = if framed_at >= window_at {
        window[framed_at - window_at..text_start - window_at] == framing[..]
    } else {
        read(framed_at, framing.len())? == framing
    };
    if !framed_ok {
        return Ok(None);
    }
    let start: &[u8] = if window_at == 0 {
        window
    } else {
        let h = meta_len.min(START_READ);
        let head = sized(&mut scratch.head, h);
        file.read_exact_at(head, footer_at)
            .map_err(|e| Error::io(path, e))?;
        &*head
    };
    let counts = thrift::parse_counts(start, meta_len, &mut scratch.schema);
    let Ok((num_rows, num_row_groups)) = counts else {
        return Ok(None);
    };
    let text = (text_start >= window_at)
        .then(|| Cow::Borrowed(&window[text_start - window_at..text_end - window_at]));
    Ok(Some(Skimmed {
        num_rows,
        num_row_groups,
        columns: ColumnFacts::default(),
        summary: Some(Located {
            text,
            offset: footer_at + text_start as u64,
            len: text_len,
        }),
        state: Some(Ok(packed)),
        // 1.2: `n4a_runs` ends where the summary's key/value starts
        // (checked by its magic and counts when read); 1.3: in the body,
        // where the head says (taken from the head when the summary is).
        runs: match prefix.runs {
            RunsPlace::KeyValue { len } => (framed_at as u64)
                .checked_sub(1 + len)
                .map(|at| RunsSource::InFile(footer_at + at, len as usize)),
            RunsPlace::Body(r) => Some(RunsSource::Body(r)),
        },
    }))
}

/// The first `n` bytes of a reused buffer, grown (never cleared: a read
/// overwrites what it uses) to hold them.
fn sized(buf: &mut Vec<u8>, n: usize) -> &mut [u8] {
    if buf.len() < n {
        buf.resize(n, 0);
    }
    &mut buf[..n]
}

/// Bytes read from a large footer's start for its row count (the schema
/// comes first: 35 columns take about 1 KB).
const START_READ: usize = 8 << 10;

/// Decodes one summary for a workspace, the cheapest way its format allows.
/// `text` is the summary's bytes when already read; `at` is where they are
/// in the file (offset, length).
fn file_summary(
    path: &Path,
    (file, scratch): (&Blob, Option<&mut Vec<u8>>),
    found: Located<'_>,
    (state, runs): (
        Option<std::result::Result<Encoded, codec::CodecError>>,
        Option<RunsSource>,
    ),
    num_rows: u64,
    columns: &ColumnFacts,
) -> Result<FileSummary> {
    let Located { text, offset, len } = found;
    let at = (offset, len);
    json::check_size(path, at.1)?;
    let read_text = |text: Option<Cow<'_, [u8]>>| -> Result<Vec<u8>> {
        match text {
            Some(t) => Ok(t.into_owned()),
            None => {
                let mut v = vec![0u8; at.1];
                file.read_exact_at(&mut v, at.0)
                    .map_err(|e| Error::io(path, e))?;
                Ok(v)
            }
        }
    };
    if let Some(packed) = state {
        let packed = packed.map_err(|e| invalid_state(path, &e))?;
        // The head is fully read (and checked) when merged.
        let h = packed.prefix().map_err(|e| invalid_state(path, &e))?;
        let (check, rows, n_runs, n_pipelines) = (h.text, h.rows, h.n_runs, h.n_pipelines);
        // 1.3: the runs are in the body, where the head says.
        let runs = match h.runs {
            RunsPlace::Body(r) => Some(RunsSource::Body(r)),
            RunsPlace::KeyValue { .. } => runs,
        };
        // The text n4a wrote beside this state has its length; its hash is
        // checked whenever it is read (relayed, typed).
        let version = match &text {
            Some(t) => json::leading_version(t),
            None => {
                let mut start = [0u8; 40];
                let n = start.len().min(at.1);
                file.read_exact_at(&mut start[..n], at.0)
                    .map_err(|e| Error::io(path, e))?;
                json::leading_version(&start[..n])
            }
        };
        // A text in the footer's last bytes is checked now. A large one
        // stays in the file: read for a summary (`scratch` given), it is
        // checked now (read into a reused buffer, hashed, dropped), so
        // relaying it later needs only the file unchanged and can be a
        // kernel-side copy; read for a query that never shows it, only
        // its length is checked now and its hash when first read
        // (`FileSummary::read_text`): on big-n4a a group-by read and
        // hashed 25 MB of text for a millisecond of its own work.
        let mut ours = check.len == at.1 as u64
            && version.is_some()
            && text.as_ref().is_none_or(|t| check.matches(t));
        let mut verified = text.is_some();
        if let (true, None, Some(scratch)) = (ours, &text, scratch) {
            if scratch.len() < at.1 {
                scratch.resize(at.1, 0);
            }
            file.read_exact_at(&mut scratch[..at.1], at.0)
                .map_err(|e| Error::io(path, e))?;
            ours = check.matches(&scratch[..at.1]);
            verified = true;
        }
        if ours {
            let version = version.expect("checked above");
            json::check_version(path, &version)?;
            if rows == num_rows {
                // A text in the footer's last bytes (a small footer) is
                // kept; a large one stays in the file, checked.
                let text = match text {
                    Some(t) => TextSource::Held {
                        text: Bytes::copy_from_slice(&t),
                        runs_at: check.runs_at.map(|a| a as usize),
                    },
                    None => TextSource::InFile {
                        offset: at.0,
                        check,
                        verified: verified.into(),
                    },
                };
                return Ok(FileSummary {
                    version,
                    text,
                    content: Content::State(StateSource::packed(
                        (rows, n_runs, n_pipelines),
                        packed,
                        runs,
                    )),
                });
            }
            // Rows changed under the footer (another tool rewrote them and
            // kept our key/values): read the text as a summary without state.
        }
        let text = read_text(text)?;
        let (version, fields) = json::decode_fields(path, &text)?;
        return legacy::legacy_summary(path, version, &fields, columns);
    }
    let text = read_text(text)?;
    let (version, mut fields) = json::decode_fields(path, &text)?;
    let state = match fields.iter().position(|(k, _)| k == "state") {
        Some(i) => {
            let (_, raw) = fields.remove(i);
            Some(
                serde_json::from_str::<SummaryState>(raw.get())
                    .map_err(|e| invalid(path, &format!("state: {e}")))?,
            )
        }
        None => None,
    };
    match state.filter(|st| st.rows == num_rows) {
        Some(st) => {
            let (text, runs_at) = json::relay_fields(&fields);
            let (n_runs, n_pipelines) = (st.runs.len() as u64, st.pipelines.len() as u64);
            let rows = st.rows;
            let head = OnceLock::new();
            let _ = head.set(Ok(st));
            Ok(FileSummary {
                version,
                text: TextSource::Held {
                    text: Bytes::from(text),
                    runs_at,
                },
                content: Content::State(StateSource {
                    rows,
                    n_runs,
                    n_pipelines,
                    packed: None,
                    runs: None,
                    head,
                    full: OnceLock::new(),
                    groups: OnceLock::new(),
                }),
            })
        }
        None => legacy::legacy_summary(path, version, &fields, columns),
    }
}

pub(super) fn invalid(path: &Path, reason: &str) -> Error {
    Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn invalid_state(path: &Path, e: &codec::CodecError) -> Error {
    invalid(path, &format!("{STATE_KEY}: {e}"))
}

mod legacy;
#[cfg(test)]
mod tests;
