//! The workspace summary as JSON: the merged parts serialised, each file's
//! summary text relayed from the footer (or from the file, for a large 1.2
//! text left there) without being parsed, `runs` cut out for the brief
//! form.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use serde::Serialize;

use crate::footer::info::TextAt;
use crate::summary::RunSummary;

use super::{DatasetEntry, Form, WorkspaceSummary};

impl WorkspaceSummary {
    /// The workspace runs: every file's runs in file order (the webapp's
    /// concatenation), decoded now (each 1.2 file's text read again).
    /// O(runs). Files whose text cannot be read again are skipped.
    pub fn runs(&self) -> Vec<RunSummary> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for d in &self.datasets {
            let Some(s) = &d.info.summary else { continue };
            if let Ok((text, Some(at))) = s.read_text(&d.path, &d.info.key, &mut buf) {
                let runs = &text[at + RUNS_KEY.len()..text.len() - 1];
                out.extend(serde_json::from_slice::<Vec<RunSummary>>(runs).unwrap_or_default());
            }
        }
        out
    }

    /// Writes the answer as JSON (see [`Form`]). The file summaries and
    /// their runs are copied as stored: from memory, or, for a large 1.2
    /// text left in its file, by [`Sink::copy_range`] (`sendfile` to a
    /// descriptor), so the answer is never held whole in memory; plus a few
    /// serialised sections. A file that changed since its footer was read
    /// gets an entry with `summary_error` instead of its summary, and its
    /// runs are left out: the answer stays valid JSON.
    ///
    /// # Errors
    /// What `out` returns.
    pub fn write_json(&self, out: &mut impl Sink, form: Form) -> std::io::Result<()> {
        out.write_all(b"{\"total_predictions\":")?;
        write!(out, "{}", self.total_predictions)?;
        write!(out, ",\"total_datasets\":{}", self.total_datasets)?;
        out.write_all(b",\"datasets\":[")?;
        for (i, d) in self.datasets.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write_entry(out, d, form)?;
        }
        out.write_all(b"],\"models\":")?;
        out.write_all(&js(&self.models[..]))?;
        if form == Form::Full {
            // Each config once, with the datasets it touched.
            out.write_all(b",\"runs\":")?;
            self.write_runs(out)?;
        }
        for (k, v) in [
            ("top_predictions", js(&self.top_predictions)),
            ("stats", js(&self.stats)),
            ("generated_at", js(&self.generated_at)),
            ("workspace", js(&self.workspace)),
            ("ranking", js(&self.ranking)),
            ("metrics", js(&self.metrics)),
            ("top_by_metric", js(&self.top_by_metric)),
            ("facets", js(&self.facets)),
            ("merged_files", js(&self.merged_files)),
            ("files_without_state", js(&self.files_without_state)),
            ("exactness", js(&self.exactness)),
            ("errors", js(&self.errors)),
        ] {
            write!(out, ",\"{k}\":")?;
            out.write_all(&v)?;
        }
        out.write_all(b"}")
    }

    /// [`Self::write_json`] into a new buffer (relayed file texts read
    /// into it directly).
    pub fn to_json(&self, form: Form) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_size_hint(form));
        self.write_json(&mut out, form)
            .expect("writing to memory does not fail");
        out
    }

    fn json_size_hint(&self, form: Form) -> usize {
        let per_file: usize = self
            .datasets
            .iter()
            .map(|d| {
                let text = d.info.summary.as_ref().map_or(64, |s| match &s.text {
                    crate::footer::info::TextSource::Held { text, .. } => text.len(),
                    crate::footer::info::TextSource::InFile { check, .. } => check.len as usize,
                });
                let factor = if form == Form::Full { 2 } else { 1 };
                text * factor + d.path.as_os_str().len() + 128
            })
            .sum();
        per_file + 64 * 1024
    }
}

/// Where a workspace summary's JSON goes: any writer, which may also take
/// ranges of files directly (a summary text relayed as it is stored).
pub trait Sink: Write {
    /// Writes `len` bytes of `file` at `offset`. The default reads them
    /// and writes them; a descriptor can have the kernel copy them.
    ///
    /// # Errors
    /// The read or the write failure.
    fn copy_range(&mut self, file: &File, offset: u64, len: usize) -> std::io::Result<()> {
        let mut buf = vec![0u8; len.min(1 << 20)];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            file.read_exact_at(&mut buf[..n], offset + done as u64)?;
            self.write_all(&buf[..n])?;
            done += n;
        }
        Ok(())
    }
}

impl Sink for Vec<u8> {
    fn copy_range(&mut self, file: &File, offset: u64, len: usize) -> std::io::Result<()> {
        let at = self.len();
        self.resize(at + len, 0);
        file.read_exact_at(&mut self[at..], offset)
    }
}

impl Sink for std::io::BufWriter<File> {
    /// `sendfile(2)` from `file` to the descriptor: the bytes never pass
    /// through user space.
    fn copy_range(&mut self, file: &File, offset: u64, len: usize) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        self.flush()?;
        let (out, inp) = (self.get_ref().as_raw_fd(), file.as_raw_fd());
        let mut off = offset as libc::off_t;
        let end = offset + len as u64;
        while (off as u64) < end {
            let want = (end - off as u64) as usize;
            // SAFETY: both descriptors are open for the call, and `off` is
            // a valid pointer to an offset the kernel advances.
            let n = unsafe { libc::sendfile(out, inp, &mut off, want) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }
}

pub(super) fn runs_at(t: &TextAt<'_>) -> Option<usize> {
    match t {
        TextAt::Bytes(_, r) | TextAt::Owned(_, r) | TextAt::File(_, _, _, r) => *r,
    }
}

pub(super) fn text_len(t: &TextAt<'_>) -> usize {
    match t {
        TextAt::Bytes(b, _) => b.len(),
        TextAt::Owned(b, _) => b.len(),
        TextAt::File(_, _, len, _) => *len,
    }
}

/// Writes bytes `start..end` of a located text.
pub(super) fn emit(
    out: &mut impl Sink,
    t: &TextAt<'_>,
    start: usize,
    end: usize,
) -> std::io::Result<()> {
    match t {
        TextAt::Bytes(b, _) => out.write_all(&b[start..end]),
        TextAt::Owned(b, _) => out.write_all(&b[start..end]),
        TextAt::File(f, offset, _, _) => out.copy_range(f, offset + start as u64, end - start),
    }
}

/// The member that starts a summary text's runs.
pub(crate) use crate::summary::runs_index::RUNS_KEY;

pub(crate) fn js<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("the small sections serialise")
}

pub(super) fn write_entry(
    out: &mut impl Sink,
    d: &DatasetEntry,
    form: Form,
) -> std::io::Result<()> {
    out.write_all(b"{\"dataset\":")?;
    out.write_all(&js(&d.dataset))?;
    out.write_all(b",\"path\":")?;
    out.write_all(&js(&d.path))?;
    write!(
        out,
        ",\"has_summary\":{},\"num_rows\":{},\"num_row_groups\":{}",
        d.has_summary(),
        d.info.num_rows,
        d.info.num_row_groups
    )?;
    match d
        .info
        .summary
        .as_ref()
        .map(|s| s.text_at(&d.path, &d.info.key))
    {
        None => {
            write!(
                out,
                ",\"total_predictions\":{},\"dataset_name\":",
                d.info.num_rows
            )?;
            out.write_all(&js(&d.dataset))?;
        }
        Some(Ok(text)) => {
            // The text is a JSON object: drop its braces, keep its members;
            // its runs are listed once, at the top level, with their
            // datasets (issue 29), so never here.
            let _ = form;
            let end = match runs_at(&text) {
                Some(at) => at,
                None => text_len(&text) - 1,
            };
            if end > 1 {
                out.write_all(b",")?;
                emit(out, &text, 1, end)?;
            }
        }
        Some(Err(e)) => {
            out.write_all(b",\"summary_error\":")?;
            out.write_all(&js(&e.to_string()))?;
        }
    }
    out.write_all(b"}")
}
