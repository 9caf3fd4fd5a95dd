//! A file's bytes wherever they are: a local file, or an object in a
//! bucket. Every reader of a prediction file's bytes (the footer layer,
//! the rows, the queries' column reads) opens it through [`Blob::open`],
//! so one engine reads both and answers the same.
//!
//! An object is known here by the path its workspace listed it under (its
//! URL, `s3://bucket/prefix/name.meta.parquet`, as a `Path`): the listing
//! of a bucket workspace ([`crate::bucket`], cargo feature `object-store`)
//! registers each object it finds with [`register`], with its size and
//! version (the ETag), and a later open of that path reads the object by
//! ranges through the [`Remote`] the bucket gave. This layer knows no
//! bucket API and no async runtime: a [`Remote`] fetches ranges, blocking
//! the calling thread (a footer pool's, a query's), which is how every
//! reader above stays the synchronous code that reads local files.
//!
//! What an open of an object costs in requests: its footer region (the
//! last [`tail_hint`] bytes, or the whole footer when it is longer) is
//! fetched once per object version and kept with the registration, so a
//! footer read is one GET the first time and none after; so are ranges a
//! bucket keeps with it ([`Object::add_kept`]: a summary's text and runs)
//! and what a read fetches within [`MAX_TAIL_HINT`] of the end; other
//! bytes are fetched by the open that asks for them (a column read first says which
//! column chunks it will read, [`Blob::prefetch`]: one coalesced batch of
//! ranged GETs in flight together) and dropped with it. A read the
//! prefetch did not cover fetches what it needs then (at least
//! [`MIN_FETCH`] bytes): slower, never wrong.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

/// The footer region fetched with an object's first read: n4a's footers
/// with their runs (a 1.4 footer of a 100,000-row file and its runs are
/// ~40 KB; nirs4all's own footers are up to ~620 KB and take a second GET).
pub const TAIL_HINT: u64 = 256 << 10;

/// The largest first fetch of a footer region ([`tail_hint`]).
pub const MAX_TAIL_HINT: u64 = 4 << 20;

/// The footer region's first fetch now: [`TAIL_HINT`], grown to the
/// largest footer seen in this process (up to [`MAX_TAIL_HINT`]), so that in
/// a workspace of like files (nirs4all's footers are ~620 KB) each footer
/// is one GET, not two, after the first.
pub fn tail_hint() -> u64 {
    HINT.load(std::sync::atomic::Ordering::Relaxed)
}

static HINT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(TAIL_HINT);

/// Grows [`tail_hint`] to `bytes` (rounded up to 64 KiB, at most
/// [`MAX_TAIL_HINT`]): how far before its end the first file's footer
/// and what its summary reads reach.
pub fn grow_tail_hint(bytes: u64) {
    let want = bytes.next_multiple_of(64 << 10).min(MAX_TAIL_HINT);
    HINT.fetch_max(want, std::sync::atomic::Ordering::Relaxed);
}

/// The smallest fetch of a read the prefetch did not cover.
pub const MIN_FETCH: u64 = 256 << 10;

/// An object's bytes by range: what a bucket gives this layer.
pub trait Remote: Send + Sync + std::fmt::Debug {
    /// The bytes of each of `ranges` (within the object), fetched together
    /// (in flight at once); blocks the calling thread.
    ///
    /// # Errors
    /// The request's failure after the bucket's retries, or the object
    /// changed since it was listed (its version no longer matches).
    fn fetch(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>>;
}

/// An object as its listing found it.
#[derive(Debug)]
pub struct Object {
    /// Size in bytes.
    pub len: u64,
    /// Its version: a hash of the ETag (or of the version id).
    pub version: u64,
    /// Last modified, nanoseconds since the epoch.
    pub modified_ns: i128,
    /// How its bytes are fetched.
    pub remote: Arc<dyn Remote>,
    /// The footer region once fetched: its offset and bytes, and whether
    /// it holds the whole footer.
    tail: RwLock<Option<(u64, Bytes, bool)>>,
    /// Other ranges kept with the object: reads near its end beyond the
    /// footer region (what its summary reads before the footer).
    kept: RwLock<Vec<(u64, Bytes)>>,
}

impl Object {
    /// An object of `len` bytes at `version`, read through `remote`.
    pub fn new(len: u64, version: u64, modified_ns: i128, remote: Arc<dyn Remote>) -> Object {
        Object {
            len,
            version,
            modified_ns,
            remote,
            tail: RwLock::new(None),
            kept: RwLock::new(Vec::new()),
        }
    }

    /// The range the footer region still lacks: the last [`TAIL_HINT`]
    /// bytes before any fetch, the footer's start when it is longer,
    /// `None` once held whole.
    pub fn tail_range(&self) -> Option<Range<u64>> {
        self.tail_range_of(tail_hint())
    }

    /// [`Self::tail_range`] with a first fetch of at least `hint` bytes.
    pub fn tail_range_of(&self, hint: u64) -> Option<Range<u64>> {
        match &*self.tail.read().unwrap_or_else(|e| e.into_inner()) {
            None => Some(self.len.saturating_sub(tail_hint().max(hint))..self.len),
            Some((_, _, true)) => None,
            Some((at, b, false)) => {
                let n = b.len();
                let meta = u32::from_le_bytes(b[n - 8..n - 4].try_into().expect("4 bytes")) as u64;
                Some(self.len.saturating_sub(meta + 8)..*at)
            }
        }
    }

    /// True when `r` is held with the object (its footer region or a
    /// kept range).
    pub fn holds(&self, r: &Range<u64>) -> bool {
        self.held(r.start, r.end).is_some()
    }

    /// Keeps `bytes`, fetched at `at`, with the object for every open.
    pub fn add_kept(&self, at: u64, bytes: Bytes) {
        self.kept
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((at, bytes));
    }

    fn held(&self, start: u64, end: u64) -> Option<Bytes> {
        if let Some((at, t, _)) = &*self.tail.read().unwrap_or_else(|e| e.into_inner()) {
            if start >= *at && end <= at + t.len() as u64 {
                return Some(t.slice((start - at) as usize..(end - at) as usize));
            }
        }
        let k = self.kept.read().unwrap_or_else(|e| e.into_inner());
        k.iter()
            .find(|(at, b)| start >= *at && end <= at + b.len() as u64)
            .map(|(at, b)| b.slice((start - at) as usize..(end - at) as usize))
    }

    /// Adds `bytes`, fetched at `at` for [`Self::tail_range`], to the
    /// footer region.
    pub fn add_tail(&self, at: u64, bytes: Bytes) {
        let mut t = self.tail.write().unwrap_or_else(|e| e.into_inner());
        let (at, bytes) = match t.take() {
            Some((old_at, old, _)) if at + bytes.len() as u64 == old_at => {
                let mut whole = Vec::with_capacity(bytes.len() + old.len());
                whole.extend_from_slice(&bytes);
                whole.extend_from_slice(&old);
                (at, Bytes::from(whole))
            }
            Some(kept) if at + bytes.len() as u64 != self.len => {
                *t = Some(kept);
                return;
            }
            _ => (at, bytes),
        };
        let n = bytes.len();
        let whole = if n >= 8 && &bytes[n - 4..] == b"PAR1" {
            let meta = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes")) as u64;
            grow_tail_hint(meta + 8);
            at <= self.len.saturating_sub(meta + 8)
        } else {
            // Not a parquet file: what is held is what there is to read.
            true
        };
        *t = Some((at, bytes, whole));
    }

    /// The footer region (see the module docs): one GET, two when the
    /// footer is longer than [`TAIL_HINT`].
    fn tail(&self) -> std::io::Result<(u64, Bytes)> {
        while let Some(r) = self.tail_range() {
            let got = self.remote.fetch(std::slice::from_ref(&r))?.remove(0);
            self.add_tail(r.start, got);
        }
        let t = self.tail.read().unwrap_or_else(|e| e.into_inner());
        let (at, b, _) = t.as_ref().expect("the footer region was fetched");
        Ok((*at, b.clone()))
    }
}

/// Set once anything was registered: until then (every local workspace)
/// [`remote`] answers without a lock or a hash.
static ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn registry() -> &'static RwLock<HashMap<PathBuf, Arc<Object>>> {
    static R: OnceLock<RwLock<HashMap<PathBuf, Arc<Object>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Registers `object` under `path` (a listing found it). An object already
/// registered at the same version is kept (with its footer region
/// fetched); another version replaces it.
pub fn register(path: &Path, object: Object) -> Arc<Object> {
    ANY.store(true, std::sync::atomic::Ordering::Release);
    let mut r = registry().write().unwrap_or_else(|e| e.into_inner());
    if let Some(have) = r.get(path) {
        if have.version == object.version && have.len == object.len {
            return have.clone();
        }
    }
    let object = Arc::new(object);
    r.insert(path.to_path_buf(), object.clone());
    object
}

/// Forgets `path` (a listing no longer finds it).
pub fn unregister(path: &Path) {
    registry()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(path);
}

/// The object registered under `path`, if any.
pub fn remote(path: &Path) -> Option<Arc<Object>> {
    if !ANY.load(std::sync::atomic::Ordering::Acquire) {
        return None;
    }
    registry()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(path)
        .cloned()
}

/// An open file or object (see the module docs).
#[derive(Debug)]
pub enum Blob {
    /// A local file.
    Local(File),
    /// An object of a bucket, with the ranges this open fetched.
    Remote(Arc<RemoteBlob>),
}

/// An object opened for reading: the bytes fetched by this open.
#[derive(Debug)]
pub struct RemoteBlob {
    object: Arc<Object>,
    fetched: Mutex<Vec<(u64, Bytes)>>,
}

impl Blob {
    /// Opens `path`: the object registered under it, else the local file.
    ///
    /// # Errors
    /// The open's failure (a local file only: an object's requests are
    /// made by the reads).
    pub fn open(path: &Path) -> std::io::Result<Blob> {
        match remote(path) {
            Some(object) => Ok(Blob::Remote(Arc::new(RemoteBlob {
                object,
                fetched: Mutex::new(Vec::new()),
            }))),
            None => File::open(path).map(Blob::Local),
        }
    }

    /// The object behind this blob, if it is one.
    pub fn object(&self) -> Option<&Arc<Object>> {
        match self {
            Blob::Local(_) => None,
            Blob::Remote(r) => Some(&r.object),
        }
    }

    /// A second handle on the same open object, sharing what it fetched
    /// (for prefetching once a reader that owns the blob was built);
    /// `None` for a local file.
    pub fn remote_handle(&self) -> Option<Blob> {
        match self {
            Blob::Local(_) => None,
            Blob::Remote(r) => Some(Blob::Remote(r.clone())),
        }
    }

    /// The size in bytes.
    ///
    /// # Errors
    /// A local file's `fstat` failure.
    pub fn size(&self) -> std::io::Result<u64> {
        match self {
            Blob::Local(f) => f.metadata().map(|m| m.len()),
            Blob::Remote(r) => Ok(r.object.len),
        }
    }

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// The read's failure; a read past the end is `UnexpectedEof`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        match self {
            Blob::Local(f) => std::os::unix::fs::FileExt::read_exact_at(f, buf, offset),
            Blob::Remote(r) => {
                let b = r.bytes(offset, buf.len() as u64)?;
                buf.copy_from_slice(&b);
                Ok(())
            }
        }
    }

    /// Fetches `ranges` of an object now, together (ranges less than
    /// [`MIN_FETCH`] apart are one request), so that the reads after it
    /// make no request; nothing for a local file.
    ///
    /// # Errors
    /// The requests' failure.
    pub fn prefetch(&self, ranges: &[Range<u64>]) -> std::io::Result<()> {
        let Blob::Remote(r) = self else {
            return Ok(());
        };
        let mut want: Vec<Range<u64>> = ranges
            .iter()
            .filter(|g| g.start < g.end && !r.has(g.start, g.end))
            .cloned()
            .collect();
        want.sort_by_key(|g| g.start);
        let mut merged: Vec<Range<u64>> = Vec::new();
        for g in want {
            match merged.last_mut() {
                Some(last) if g.start <= last.end + MIN_FETCH => last.end = last.end.max(g.end),
                _ => merged.push(g),
            }
        }
        if merged.is_empty() {
            return Ok(());
        }
        let got = r.object.remote.fetch(&merged)?;
        let mut f = r.fetched.lock().unwrap_or_else(|e| e.into_inner());
        f.extend(merged.iter().map(|g| g.start).zip(got));
        Ok(())
    }
}

impl RemoteBlob {
    /// True when `[start, end)` is in the footer region or fetched.
    fn has(&self, start: u64, end: u64) -> bool {
        self.cached(start, end).is_some()
    }

    fn cached(&self, start: u64, end: u64) -> Option<Bytes> {
        if let Some(b) = self.object.held(start, end) {
            return Some(b);
        }
        let f = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        f.iter()
            .find(|(at, b)| start >= *at && end <= at + b.len() as u64)
            .map(|(at, b)| b.slice((start - at) as usize..(end - at) as usize))
    }

    /// `len` bytes from `start`: from what is held, else fetched (the
    /// footer region for a read in it, else at least [`MIN_FETCH`]).
    fn bytes(&self, start: u64, len: u64) -> std::io::Result<Bytes> {
        let end = start + len;
        if end > self.object.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("read to {end} of an object of {} bytes", self.object.len),
            ));
        }
        if let Some(b) = self.cached(start, end) {
            return Ok(b);
        }
        if start >= self.object.len.saturating_sub(tail_hint()) {
            let (at, t) = self.object.tail()?;
            if start >= at {
                return Ok(t.slice((start - at) as usize..(end - at) as usize));
            }
        }
        let to = end.max(start + MIN_FETCH).min(self.object.len);
        let got = self
            .object
            .remote
            .fetch(std::slice::from_ref(&(start..to)))?
            .remove(0);
        let out = got.slice(0..len as usize);
        if start >= self.object.len.saturating_sub(MAX_TAIL_HINT) {
            // Near the footer: what a summary reads there (its group
            // aggregates, its runs' index) is kept with the object, for
            // the next open of this version.
            self.object.add_kept(start, got);
        } else {
            self.fetched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((start, got));
        }
        Ok(out)
    }
}

/// A reader of a [`Blob`] from an offset (what the parquet crate's page
/// reader reads page headers through).
pub enum BlobRead {
    /// A local file's buffered reader.
    Local(std::io::BufReader<File>),
    /// An object, read from `pos` by [`MIN_FETCH`]-sized steps.
    Remote {
        /// The open object.
        blob: Arc<RemoteBlob>,
        /// The next byte to read.
        pos: u64,
    },
}

impl Read for BlobRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlobRead::Local(r) => r.read(buf),
            BlobRead::Remote { blob, pos } => {
                let left = blob.object.len.saturating_sub(*pos);
                let n = (buf.len() as u64).min(left);
                if n == 0 {
                    return Ok(0);
                }
                let b = blob.bytes(*pos, n)?;
                buf[..n as usize].copy_from_slice(&b);
                *pos += n;
                Ok(n as usize)
            }
        }
    }
}

impl Length for Blob {
    fn len(&self) -> u64 {
        match self {
            Blob::Local(f) => Length::len(f),
            Blob::Remote(r) => r.object.len,
        }
    }
}

impl ChunkReader for Blob {
    type T = BlobRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BlobRead> {
        match self {
            Blob::Local(f) => {
                let mut f = f.try_clone()?;
                std::io::Seek::seek(&mut f, SeekFrom::Start(start))?;
                Ok(BlobRead::Local(std::io::BufReader::new(f)))
            }
            Blob::Remote(r) => Ok(BlobRead::Remote {
                blob: r.clone(),
                pos: start,
            }),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Blob::Local(f) => f.get_bytes(start, length),
            Blob::Remote(r) => Ok(r.bytes(start, length as u64)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An object in memory that counts its requests.
    #[derive(Debug)]
    struct InMemory(Bytes, AtomicUsize);

    impl Remote for InMemory {
        fn fetch(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
            self.1.fetch_add(ranges.len(), Ordering::Relaxed);
            Ok(ranges
                .iter()
                .map(|g| self.0.slice(g.start as usize..g.end as usize))
                .collect())
        }
    }

    #[test]
    fn an_object_reads_the_same_bytes_as_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("x.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&local, &data).unwrap();
        let mem = Arc::new(InMemory(Bytes::from(data.clone()), AtomicUsize::new(0)));
        let path = Path::new("s3://b/p/x.bin");
        register(path, Object::new(data.len() as u64, 1, 0, mem.clone()));
        let (a, b) = (Blob::open(&local).unwrap(), Blob::open(path).unwrap());
        assert!(b.object().is_some() && a.object().is_none());
        for (at, n) in [
            (0u64, 10usize),
            (2_999_990, 10),
            (1_000_000, 700_000),
            (5, 0),
        ] {
            let (mut x, mut y) = (vec![0; n], vec![0; n]);
            a.read_exact_at(&mut x, at).unwrap();
            b.read_exact_at(&mut y, at).unwrap();
            assert_eq!(x, y, "at {at}");
            assert_eq!(a.get_bytes(at, n).unwrap(), b.get_bytes(at, n).unwrap());
            let (mut x, mut y) = (Vec::new(), Vec::new());
            a.get_read(at)
                .unwrap()
                .take(300_000)
                .read_to_end(&mut x)
                .unwrap();
            b.get_read(at)
                .unwrap()
                .take(300_000)
                .read_to_end(&mut y)
                .unwrap();
            assert_eq!(x, y, "read from {at}");
        }
        let mut past = [0u8; 4];
        assert!(b.read_exact_at(&mut past, 2_999_998).is_err());
        // A prefetched range is not asked again.
        let c = Blob::open(path).unwrap();
        c.prefetch(&[100..200, 300..400, 2_000_000..2_100_000])
            .unwrap();
        let before = mem.1.load(Ordering::Relaxed);
        let mut y = vec![0; 100];
        c.read_exact_at(&mut y, 2_000_050).unwrap();
        c.read_exact_at(&mut y, 120).unwrap();
        assert_eq!(mem.1.load(Ordering::Relaxed), before);
        assert_eq!(y, data[120..220]);
        unregister(path);
        assert!(Blob::open(path).is_err());
    }
}
