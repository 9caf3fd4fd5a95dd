//! The database file's pages: new ones appended through a buffer, in file
//! order, each full buffer written by a thread of its own; a root page
//! written over in place.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// SQLite never uses the page holding the byte at this offset (its lock
/// bytes live there): a file past 1 GiB skips that page.
pub(super) const PENDING_BYTE: u64 = 0x4000_0000;

/// Pages buffered before one write.
pub(super) const FLUSH_BYTES: usize = 8 << 20;

/// The database's pages: new ones appended through a buffer, in order,
/// each full buffer written by [`Writes`]' thread.
pub(super) struct Pages {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) size: usize,
    /// Pages in the file, the buffered ones included.
    pub(super) count: u32,
    /// Buffered pages, the first being page `count - buf.len() / size + 1`.
    pub(super) buf: Vec<u8>,
    pub(super) writes: Writes,
}

/// Whole buffers written at their offsets by a thread of their own: the
/// kernel's copy of the pages into the page cache (a sixth of the export's
/// time on one thread, measured on the 1M-row bench store) runs beside the
/// building of the next pages. At most three buffers exist (one filling,
/// one queued, one being written): 24 MiB.
pub(super) struct Writes {
    pub(super) tx: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    /// Buffers written, to be filled again (no new allocation to fault in).
    pub(super) back: std::sync::mpsc::Receiver<Vec<u8>>,
    pub(super) thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Writes {
    pub(super) fn start(file: &File) -> std::io::Result<Self> {
        let file = file.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(1);
        let (back_tx, back) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("n4a-export-writes".into())
            .spawn(move || {
                for (at, mut buf) in rx {
                    file.write_all_at(&buf, at)?;
                    buf.clear();
                    let _ = back_tx.send(buf);
                }
                Ok(())
            })?;
        Ok(Writes {
            tx: Some(tx),
            back,
            thread: Some(thread),
        })
    }

    /// Waits for every write sent; the first failure, if any.
    pub(super) fn wait(&mut self) -> std::io::Result<()> {
        drop(self.tx.take());
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the writing thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

impl Pages {
    pub(super) fn new(file: File, path: &Path, size: usize, count: u32) -> Result<Self> {
        let writes = Writes::start(&file).map_err(|e| Error::io(path, e))?;
        Ok(Pages {
            file,
            path: path.to_path_buf(),
            size,
            count,
            buf: Vec::new(),
            writes,
        })
    }

    pub(super) fn io(&self, e: std::io::Error) -> Error {
        Error::io(&self.path, e)
    }

    /// A new page at the end, zeroed, buffered until [`Pages::flush`].
    pub(super) fn alloc(&mut self) -> u32 {
        loop {
            self.count += 1;
            self.buf.resize(self.buf.len() + self.size, 0);
            let start = u64::from(self.count - 1) * self.size as u64;
            if !(start..start + self.size as u64).contains(&PENDING_BYTE) {
                return self.count;
            }
        }
    }

    /// A page allocated and still buffered.
    pub(super) fn page_mut(&mut self, pgno: u32) -> &mut [u8] {
        let first = self.count as usize + 1 - self.buf.len() / self.size;
        let at = (pgno as usize - first) * self.size;
        &mut self.buf[at..at + self.size]
    }

    /// A new page holding `data`.
    pub(super) fn append(&mut self, data: &[u8]) -> u32 {
        let pgno = self.alloc();
        self.page_mut(pgno).copy_from_slice(data);
        pgno
    }

    /// Writes the buffer once it is large (every buffered page complete).
    pub(super) fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the buffer to the writing thread (every buffered page
    /// complete) and takes a written one back to fill.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let first = u64::from(self.count) - (self.buf.len() / self.size) as u64;
        let next = self
            .writes
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(FLUSH_BYTES + self.size));
        let buf = std::mem::replace(&mut self.buf, next);
        let sent = match &self.writes.tx {
            Some(tx) => tx.send((first * self.size as u64, buf)).is_ok(),
            None => false,
        };
        if !sent {
            // The thread stopped: its error says why.
            self.writes.wait().map_err(|e| self.io(e))?;
            return Err(self.io(std::io::Error::other("the writing thread stopped")));
        }
        Ok(())
    }

    /// Flushes and waits for every page to be written.
    pub(super) fn sync_writes(&mut self) -> Result<()> {
        self.flush()?;
        self.writes.wait().map_err(|e| self.io(e))
    }

    /// An existing page (a root) overwritten with `data`.
    pub(super) fn put_at(&self, pgno: u32, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, u64::from(pgno - 1) * self.size as u64)
            .map_err(|e| self.io(e))
    }
}
