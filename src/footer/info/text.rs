//! A located summary read back from its file: the relayed text (checked
//! against its hash, or in memory), the summary typed from it, a 1.4
//! file's stored runs index, and the whole state with its runs. Each read
//! first checks the file is still the version whose footer was read.

use crate::blob::Blob;
use std::path::Path;
use std::sync::Arc;

use super::{Content, FileSummary, RunsSource, TextAt, TextSource};
use crate::error::{Error, Result};
use crate::footer::FileKey;
use crate::schema::{RUNS_KEY, STATE_KEY};
use crate::summary::codec;
use crate::summary::{Summary, SummaryState};

/// `len` bytes at `offset` of the file at `path`, while it is the version
/// `key` names.
fn read_at(
    path: &Path,
    key: &FileKey,
    offset: u64,
    len: usize,
) -> std::result::Result<Vec<u8>, String> {
    let file = Blob::open(path).map_err(|e| e.to_string())?;
    let now = FileKey::of_blob(&file).map_err(|e| e.to_string())?;
    if now != *key {
        return Err("the file changed since its footer was read".to_string());
    }
    let mut v = vec![0u8; len];
    file.read_exact_at(&mut v, offset)
        .map_err(|e| e.to_string())?;
    Ok(v)
}

impl FileSummary {
    /// The file's group aggregates (1.5, [`crate::summary::groups`]):
    /// one `pread` of the bytes the head names in the body (a few KB),
    /// checked against their hash, decoded once and kept with the footer.
    /// `None` for a file written before 1.5 or without them.
    ///
    /// # Errors
    /// The reason, when the bytes are not the ones the head names, do not
    /// decode, or the file changed since its footer was read.
    pub(crate) fn groups(
        &self,
        path: &Path,
        key: &FileKey,
    ) -> std::result::Result<Option<Arc<crate::summary::groups::Groups>>, String> {
        let Content::State(s) = &self.content else {
            return Ok(None);
        };
        s.groups
            .get_or_init(|| {
                let Some(p) = &s.packed else {
                    return Ok(None);
                };
                let Some(r) = p.groups_place().map_err(|e| e.0)? else {
                    return Ok(None);
                };
                let len = usize::try_from(r.len).map_err(|e| e.to_string())?;
                let bytes = read_at(path, key, r.at, len)?;
                codec::decode_groups(&bytes, &r)
                    .map(|g| Some(Arc::new(g)))
                    .map_err(|e| e.0)
            })
            .clone()
    }

    /// The index of the text's runs array as n4a stored it after the
    /// state's runs in the body (`N4R3`: one `pread` of 16 bytes a run),
    /// checked to be the one made for this text; `None` for a text held in
    /// memory, a file of another format, or one changed since its footer
    /// was read (then the caller makes the index from the text).
    pub fn stored_runs_index(
        &self,
        path: &Path,
        key: &FileKey,
    ) -> Option<crate::summary::runs_index::RunsIndex> {
        use crate::summary::runs_index::RunsIndex;
        let (TextSource::InFile { check, .. }, Content::State(s)) = (&self.text, &self.content)
        else {
            return None;
        };
        let Some(RunsSource::Body(r)) = &s.runs else {
            return None;
        };
        // The index is inside the runs' bytes, at their end, and those are
        // inside the file: a head whose numbers say otherwise is not
        // believed (no read, no allocation).
        let n = usize::try_from(s.n_runs).ok()?;
        let len = n.checked_mul(16)?.checked_add(16)?;
        debug_assert_eq!(len, RunsIndex::stored_len(n));
        let end = r.at.checked_add(r.len)?;
        let at = end.checked_sub(len as u64).filter(|&a| a >= r.at)?;
        let file = Blob::open(path).ok()?;
        let now = FileKey::of_blob(&file).ok()?;
        if now != *key || end > now.len {
            return None;
        }
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, at).ok()?;
        RunsIndex::from_bytes(&bytes, n, check.hash, usize::try_from(check.len).ok()?)
    }

    /// The relayed text, read from the file when it stays there (one
    /// `pread` into `buf`, then checked against the hash the state
    /// carries). Returns the text and the byte offset of `,"runs":` in it.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::ChangedDuringRefresh`]
    /// when it is no longer the file whose footer was read (another
    /// writer replaced it), or its text no longer matches its state.
    pub fn read_text<'b>(
        &'b self,
        path: &Path,
        key: &FileKey,
        buf: &'b mut Vec<u8>,
    ) -> Result<(&'b [u8], Option<usize>)> {
        match &self.text {
            TextSource::Held { text, runs_at } => Ok((text, *runs_at)),
            TextSource::InFile {
                offset,
                check,
                verified,
            } => {
                let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
                let now = FileKey::of_blob(&file).map_err(|e| Error::io(path, e))?;
                let changed = || Error::ChangedDuringRefresh {
                    path: path.to_path_buf(),
                };
                if now != *key {
                    return Err(changed());
                }
                // Grown, never cleared: the read overwrites what it uses.
                let n = check.len as usize;
                if buf.len() < n {
                    buf.resize(n, 0);
                }
                let buf = &mut buf[..n];
                file.read_exact_at(buf, *offset)
                    .map_err(|e| Error::io(path, e))?;
                use std::sync::atomic::Ordering::Relaxed;
                if !verified.load(Relaxed) {
                    if !check.matches(buf) {
                        return Err(changed());
                    }
                    verified.store(true, Relaxed);
                }
                Ok((buf, check.runs_at.map(|a| a as usize)))
            }
        }
    }

    /// Where the relayed text is now, for a writer that may copy file
    /// ranges itself ([`crate::workspace::merge::Sink`]): in memory, or the
    /// file opened (its key checked unchanged) with the text's offset, once
    /// its hash was checked; otherwise read and checked now into a buffer.
    ///
    /// # Errors
    /// As [`Self::read_text`].
    pub fn text_at(&self, path: &Path, key: &FileKey) -> Result<TextAt<'_>> {
        match &self.text {
            TextSource::Held { text, runs_at } => Ok(TextAt::Bytes(text, *runs_at)),
            TextSource::InFile {
                offset,
                check,
                verified,
            } if verified.load(std::sync::atomic::Ordering::Relaxed)
                && crate::blob::remote(path).is_none() =>
            {
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let now = file.metadata().map_err(|e| Error::io(path, e))?;
                if FileKey::from_metadata(&now) != *key {
                    return Err(Error::ChangedDuringRefresh {
                        path: path.to_path_buf(),
                    });
                }
                Ok(TextAt::File(
                    file,
                    *offset,
                    check.len as usize,
                    check.runs_at.map(|a| a as usize),
                ))
            }
            TextSource::InFile { .. } => {
                let mut buf = Vec::new();
                let (_, runs_at) = self.read_text(path, key, &mut buf)?;
                Ok(TextAt::Owned(buf, runs_at))
            }
        }
    }

    /// The summary typed (decoded now from the relayed text, without its
    /// state). O(size of the text), one read for a 1.2 file.
    ///
    /// # Errors
    /// As [`Self::read_text`]; [`Error::InvalidSummary`] for a member of an
    /// unexpected type.
    pub fn to_summary(&self, path: &Path, key: &FileKey) -> Result<Summary> {
        let mut buf = Vec::new();
        let (text, _) = self.read_text(path, key, &mut buf)?;
        serde_json::from_slice(text).map_err(|e| Error::InvalidSummary {
            path: path.to_path_buf(),
            reason: format!("unexpected shape: {e}"),
        })
    }

    /// The whole mergeable state (runs and pipelines included), decoded
    /// once and kept: for config pruning and appends. `None` for a summary
    /// without state. A 1.2 state's runs are read from the file then (one
    /// `pread`), while it is the file whose footer was read (`key`).
    ///
    /// # Errors
    /// [`Error::InvalidSummary`] when the runs do not decode or the file
    /// changed.
    pub fn full_state(&self, path: &Path, key: &FileKey) -> Result<Option<Arc<SummaryState>>> {
        let Content::State(s) = &self.content else {
            return Ok(None);
        };
        let full = s.full.get_or_init(|| {
            let mut st = s.head().map_err(str::to_string)?.clone();
            if s.packed.is_none() {
                return Ok(Arc::new(st));
            }
            let read = |offset: u64, len: usize| read_at(path, key, offset, len);
            st.groups = self.groups(path, key)?.map(|g| g.as_ref().clone());
            let counts = (s.n_runs, s.n_pipelines);
            match &s.runs {
                Some(RunsSource::Held(v)) => codec::fill_runs(v, &mut st, counts),
                Some(RunsSource::InFile(offset, len)) => {
                    codec::fill_runs(&read(*offset, *len)?, &mut st, counts)
                }
                Some(RunsSource::Body(r)) => {
                    let len = usize::try_from(r.len).map_err(|e| e.to_string())?;
                    codec::fill_runs_body(&read(r.at, len)?, r, &mut st, counts)
                }
                None => return Err(format!("{STATE_KEY} without {RUNS_KEY}")),
            }
            .map_err(|e| e.0)?;
            Ok(Arc::new(st))
        });
        full.clone()
            .map(Some)
            .map_err(|reason| Error::InvalidSummary {
                path: path.to_path_buf(),
                reason: format!("{STATE_KEY}: {reason}"),
            })
    }
}
