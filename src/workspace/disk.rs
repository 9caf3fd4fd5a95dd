//! The footer cache on disk: the footers a process read, kept for the
//! next process over the same folder, so that a one-shot command (`n4a
//! summary`) over an unchanged workspace costs a listing and one `stat` a
//! file instead of an open and a read a file.
//!
//! **Where.** One file a workspace folder,
//! `<cache root>/footers/<XXH3 of the folder's canonical path>.n4fc`
//! ([`crate::files::cache_root`]). Nothing in it is the only copy of
//! anything: a missing, foreign, damaged or older-build file is ignored
//! and rebuilt, never an error; a cache folder that cannot be written
//! leaves the answer as it was, only uncached.
//!
//! **What.** Per file: its name in the folder, its [`FileKey`] when read
//! and the footer's bytes (`footer::info::persist`: row counts, column
//! facts, the summary located, its state; a summary text the read held,
//! ~8 KB for nirs4all-sized files). A file is served from it only while
//! its key is unchanged (size, mtime, ctime, inode, device), and only
//! files quiet when read (mtime at least [`crate::footer::RACY_WINDOW`]
//! before, git's racy-clean rule) are ever written to it; footers
//! without n4a's binary state (nirs4all's 1.0) and files that failed are
//! read each time.
//!
//! **When.** Only for folders of [`MIN_FILES`] files or more: below that,
//! opening and reading every footer costs a few milliseconds in all, and
//! a cache file a small folder (a test's, a scratch run's) would only
//! pile up. A cache file not written for [`STALE`] is removed by the next
//! write of any other, so folders that went away leave nothing for long;
//! so is a temporary file a killed writer left (after [`STALE_TEMP`]).
//!
//! **Layout**, like a Parquet file's: a header (magic, the build, the
//! folder), the records, then the index (per file its name, key, record
//! place and record hash), then a trailer (the index's place and hash,
//! the magic). Loading maps the file and reads the header, trailer and
//! index only (~70 bytes a file); records are touched, hash-checked
//! (XXH3-64, ~10 GB/s) and decoded when served, on the footer pool, and
//! their held texts and states stay slices of the mapping (no copy). A
//! damaged record is read from its file instead; a damaged index or
//! header drops the whole cache.
//!
//! **Writes** happen only when something changed (a file read, an entry
//! unused): the whole file again (18 MB for 2,000 files of 500 rows), kept
//! records copied from the mapping, new ones encoded into one reused
//! buffer, through a temporary file renamed over the old one (no fsync:
//! every byte is checked when read), so a reader sees one or the other.
//! Two processes writing at once: the last rename wins, both files whole.
//! The mapping is safe because n4a never truncates or writes a cache file
//! in place, only replaces it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

use crate::footer::info::persist;
use crate::footer::{FileKey, Footer};
use crate::summary::codec::{put_s, put_u, CodecError, Cur};

const MAGIC: &[u8; 4] = b"N4FC";

/// The trailer: the index's offset, length and hash, then [`MAGIC`].
const TRAILER: usize = 8 * 3 + 4;

/// The fewest files a folder needs for its footers to be cached on disk.
pub(crate) const MIN_FILES: usize = 64;

/// Age after which another folder's cache file is removed by a write.
const STALE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// Age after which a temporary file in the cache folder is a killed
/// writer's, removed by a write.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// What wrote a cache file: its layout and the build (a footer read by
/// another build may differ).
fn build() -> String {
    format!(
        "2 {} {}",
        env!("CARGO_PKG_VERSION"),
        crate::summary::N4A_VERSION
    )
}

/// One use of the cache: what was loaded, and what this read adds.
pub(crate) struct DiskCache {
    root: PathBuf,
    /// The folder's canonical path, written in the header and checked.
    canon: PathBuf,
    target: PathBuf,
    bytes: Bytes,
    /// Name -> its entry.
    index: HashMap<Box<[u8]>, usize>,
    entries: Vec<Entry>,
    /// New entries (name, key, footer), encoded when written, straight
    /// into the file: holding their bytes until then would fault in as
    /// much fresh memory as the texts.
    fresh: Mutex<Vec<Fresh>>,
}

/// A footer read by this process: its name, key and footer.
type Fresh = (Box<[u8]>, FileKey, Arc<Footer>);

struct Entry {
    key: FileKey,
    /// The record's place in the file and its XXH3-64.
    record: std::ops::Range<usize>,
    hash: u64,
    /// Served by this read: written again with the next write.
    used: AtomicBool,
}

impl DiskCache {
    /// The cache of the folder `root` under `cache_root`, loaded (empty
    /// when there is none or it does not check). Cost: a `canonicalize`,
    /// an open and a map, the index read.
    pub(crate) fn load(root: &Path, cache_root: &Path) -> DiskCache {
        let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let id = xxh3_64(canon.as_os_str().as_encoded_bytes());
        let target = cache_root.join("footers").join(format!("{id:016x}.n4fc"));
        let mut cache = DiskCache {
            root: root.to_path_buf(),
            canon,
            target,
            bytes: Bytes::new(),
            index: HashMap::new(),
            entries: Vec::new(),
            fresh: Mutex::new(Vec::new()),
        };
        let loaded = map(&cache.target).and_then(|b| {
            parse(&b, cache.canon.as_os_str().as_encoded_bytes())
                .ok()
                .map(|i| (b, i))
        });
        if let Some((bytes, entries)) = loaded {
            cache.index = entries
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (Box::from(&bytes[name.clone()]), i))
                .collect();
            cache.entries = entries.into_iter().map(|(_, e)| e).collect();
            cache.bytes = bytes;
        }
        cache
    }

    /// The name `path` has in the cache: its path under the folder.
    fn name<'p>(&self, path: &'p Path) -> &'p [u8] {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .as_os_str()
            .as_encoded_bytes()
    }

    /// The footer of `path` at version `key`, when the cache has that
    /// version and its record checks (then kept for the next write). Cost:
    /// the record's hash (~1 µs for 10 KB) and its decoding.
    pub(crate) fn get(&self, path: &Path, key: &FileKey) -> Option<Footer> {
        let e = &self.entries[*self.index.get(self.name(path))?];
        if e.key != *key || xxh3_64(&self.bytes[e.record.clone()]) != e.hash {
            return None;
        }
        let footer = persist::decode(path, *key, &self.bytes.slice(e.record.clone())).ok()?;
        e.used.store(true, Ordering::Relaxed);
        Some(footer)
    }

    /// True when the cache has `path` at version `key` (the record not
    /// checked: [`Self::get`] does). Cost: a hash lookup.
    #[cfg(feature = "object-store")]
    pub(crate) fn has(&self, path: &Path, key: &FileKey) -> bool {
        self.index
            .get(self.name(path))
            .is_some_and(|&i| self.entries[i].key == *key)
    }

    /// Records `footer` (read from `path` at `key`, quiet when read) for
    /// the next write, when it is a footer the cache keeps.
    pub(crate) fn put(&self, path: &Path, key: FileKey, footer: &Arc<Footer>) {
        if persist::keeps(footer) {
            let name = Box::from(self.name(path));
            let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            fresh.push((name, key, footer.clone()));
        }
    }

    /// Writes the cache again when this read changed it (a footer read, an
    /// entry unused); nothing otherwise. Failures are ignored (see the
    /// module docs). Returns whether a file was written.
    pub(crate) fn save(self) -> bool {
        let fresh = std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|e| e.into_inner()));
        let used = |e: &Entry| e.used.load(Ordering::Relaxed);
        if fresh.is_empty() && self.entries.iter().all(used) {
            return false;
        }
        let mut names: Vec<&[u8]> = vec![&[]; self.entries.len()];
        for (name, &i) in &self.index {
            names[i] = name;
        }
        let kept: Vec<(&[u8], &Entry)> = names
            .into_iter()
            .zip(&self.entries)
            .filter(|(_, e)| used(e))
            .collect();
        let written = self.write(&kept, &fresh).is_ok();
        if written {
            remove_stale(self.target.parent().unwrap_or(Path::new(".")), &self.target);
        }
        written
    }

    /// The cache file: header, records (kept ones copied from the mapping,
    /// new ones encoded into one reused buffer), index, trailer, through a
    /// temporary file renamed over the old one.
    fn write(&self, kept: &[(&[u8], &Entry)], fresh: &[Fresh]) -> crate::error::Result<()> {
        use crate::error::Error;
        if let Some(dir) = self.target.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let (tmp, file) = crate::files::TempFile::create(&self.target)?;
        let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
        let io = |e| Error::io(tmp.path(), e);
        let mut head = MAGIC.to_vec();
        put_s(&mut head, &build());
        put_bytes(&mut head, self.canon.as_os_str().as_encoded_bytes());
        out.write_all(&head).map_err(io)?;
        let mut at = head.len() as u64;
        let mut index = Vec::new();
        put_u(&mut index, (kept.len() + fresh.len()) as u64);
        for (name, e) in kept {
            let rec = &self.bytes[e.record.clone()];
            out.write_all(rec).map_err(io)?;
            put_index(&mut index, name, &e.key, (at, rec.len() as u64, e.hash));
            at += rec.len() as u64;
        }
        let mut rec = Vec::new();
        for (name, key, footer) in fresh {
            rec.clear();
            persist::encode(footer, &mut rec);
            out.write_all(&rec).map_err(io)?;
            put_index(&mut index, name, key, (at, rec.len() as u64, xxh3_64(&rec)));
            at += rec.len() as u64;
        }
        out.write_all(&index).map_err(io)?;
        let mut trailer = Vec::with_capacity(TRAILER);
        for v in [at, index.len() as u64, xxh3_64(&index)] {
            trailer.extend_from_slice(&v.to_le_bytes());
        }
        trailer.extend_from_slice(MAGIC);
        out.write_all(&trailer).map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.commit_unsynced(file, &self.target)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// An index entry: name, key, then the record's offset, length and hash.
fn put_index(out: &mut Vec<u8>, name: &[u8], key: &FileKey, (at, len, hash): (u64, u64, u64)) {
    put_bytes(out, name);
    put_u(out, key.len);
    out.extend_from_slice(&key.mtime_ns.to_le_bytes());
    out.extend_from_slice(&key.ctime_ns.to_le_bytes());
    put_u(out, key.ino);
    put_u(out, key.dev);
    put_u(out, at);
    put_u(out, len);
    out.extend_from_slice(&hash.to_le_bytes());
}

/// The cache file mapped, or `None` when there is none (or it cannot be
/// mapped).
fn map(target: &Path) -> Option<Bytes> {
    let file = std::fs::File::open(target).ok()?;
    // SAFETY: n4a replaces cache files by rename and never writes or
    // truncates one in place (module docs), so the mapping's bytes do not
    // change under it.
    let mapped = unsafe { memmap2::MmapOptions::new().map(&file) }.ok()?;
    Some(Bytes::from_owner(mapped))
}

/// The entries (each with its name's range) of a cache file written by
/// [`DiskCache::save`] for the folder `canon` by this build: the header,
/// trailer and index checked, the records left for [`DiskCache::get`].
type Parsed = Vec<(std::ops::Range<usize>, Entry)>;

fn parse(b: &[u8], canon: &[u8]) -> Result<Parsed, CodecError> {
    let bad = |what: &str| CodecError(format!("footer cache: {what}"));
    if !b.starts_with(MAGIC) || b.len() < MAGIC.len() + TRAILER || !b.ends_with(MAGIC) {
        return Err(bad("no magic"));
    }
    let mut h = Cur::new(&b[MAGIC.len()..]);
    if h.s()? != build() {
        return Err(bad("another build"));
    }
    let n = h.len()?;
    if h.take(n)? != canon {
        return Err(bad("another folder"));
    }
    let records_at = MAGIC.len() + h.pos();
    let t = &b[b.len() - TRAILER..];
    let word = |i: usize| u64::from_le_bytes(t[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (index_at, index_len, index_hash) = (word(0), word(1), word(2));
    let index_end = index_at
        .checked_add(index_len)
        .filter(|&e| e == (b.len() - TRAILER) as u64 && index_at >= records_at as u64)
        .ok_or_else(|| bad("index out of place"))?;
    let index = &b[index_at as usize..index_end as usize];
    if xxh3_64(index) != index_hash {
        return Err(bad("index hash differs"));
    }
    let mut c = Cur::new(index);
    let count = c.len()?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let n = c.len()?;
        let name = index_at as usize + c.pos()..index_at as usize + c.pos() + n;
        c.take(n)?;
        let len = c.u()?;
        let i128_of = |c: &mut Cur<'_>| -> Result<i128, CodecError> {
            Ok(i128::from_le_bytes(
                c.take(16)?.try_into().expect("16 bytes"),
            ))
        };
        let (mtime_ns, ctime_ns) = (i128_of(&mut c)?, i128_of(&mut c)?);
        let (ino, dev) = (c.u()?, c.u()?);
        let (at, rec_len) = (c.u()?, c.u()?);
        let hash = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
        let end = at
            .checked_add(rec_len)
            .filter(|&e| at >= records_at as u64 && e <= index_at)
            .ok_or_else(|| bad("record out of place"))?;
        entries.push((
            name,
            Entry {
                key: FileKey {
                    len,
                    mtime_ns,
                    ctime_ns,
                    ino,
                    dev,
                },
                record: at as usize..end as usize,
                hash,
                used: AtomicBool::new(false),
            },
        ));
    }
    if c.pos() != index.len() {
        return Err(bad("bytes left over"));
    }
    Ok(entries)
}

/// Removes the cache files in `dir` (but `keep`) not written for
/// [`STALE`], and temporary files a killed writer left (not written for
/// [`STALE_TEMP`]: a live writer's is seconds old). Cost: one listing of
/// the cache folder, on writes only.
fn remove_stale(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let p = e.path();
        let age = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok());
        let Some(age) = age else { continue };
        let name = e.file_name();
        let name = name.as_encoded_bytes();
        let temp = memchr::memmem::find(name, crate::files::TMP_MARKER.as_bytes()).is_some();
        let stale = if temp {
            age > STALE_TEMP
        } else {
            age > STALE && p.extension().is_some_and(|x| x == "n4fc")
        };
        if stale && p != keep {
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(rows: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        crate::generate::generate(
            dir.path(),
            &crate::generate::GenOptions {
                datasets: 3,
                rows,
                ..Default::default()
            },
        )
        .unwrap();
        dir
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_saved_cache_serves_unchanged_files_and_nothing_else() {
        let ws = workspace(30);
        let root = tempfile::tempdir().unwrap();
        let cache = DiskCache::load(ws.path(), root.path());
        assert!(cache.entries.is_empty());
        for p in files(ws.path()) {
            let f = Arc::new(Footer::read(&p).unwrap());
            cache.put(&p, f.key(), &f);
        }
        assert!(cache.save());
        let cache = DiskCache::load(ws.path(), root.path());
        assert_eq!(cache.entries.len(), 3);
        for p in files(ws.path()) {
            let key = FileKey::of(&p).unwrap();
            let hit = cache.get(&p, &key).expect("unchanged: served");
            assert_eq!(hit.num_rows(), 30);
            let mut other = key;
            other.ctime_ns += 1;
            assert!(
                cache.get(&p, &other).is_none(),
                "another version: not served"
            );
        }
        assert!(!cache.save(), "nothing changed: nothing written");
        // A damaged record is not served (its file is read), never an
        // error; a cut file is not used at all.
        let target = DiskCache::load(ws.path(), root.path()).target;
        let mut bytes = std::fs::read(&target).unwrap();
        let mid = bytes.len() / 3;
        bytes[mid] ^= 1;
        std::fs::write(&target, &bytes).unwrap();
        let damaged = DiskCache::load(ws.path(), root.path());
        let served = files(ws.path())
            .iter()
            .filter(|p| damaged.get(p, &FileKey::of(p).unwrap()).is_some())
            .count();
        assert_eq!(served, 2, "the damaged entry alone is refused");
        bytes[mid] ^= 1;
        std::fs::write(&target, &bytes[..bytes.len() - 3]).unwrap();
        assert!(DiskCache::load(ws.path(), root.path()).entries.is_empty());
        // Another folder's cache under the same name is not used.
        let other = workspace(10);
        let mut c = DiskCache::load(other.path(), root.path());
        c.target = target.clone();
        let p = &files(other.path())[0];
        let f = Arc::new(Footer::read(p).unwrap());
        c.put(p, f.key(), &f);
        assert!(c.save());
        assert!(DiskCache::load(ws.path(), root.path()).entries.is_empty());
    }

    #[test]
    fn a_write_removes_old_cache_files_and_killed_writers_temporaries() {
        let ws = workspace(10);
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("footers");
        std::fs::create_dir_all(&dir).unwrap();
        let old = std::time::SystemTime::now() - STALE - std::time::Duration::from_secs(60);
        let hour_ago = std::time::SystemTime::now() - STALE_TEMP * 2;
        let make = |name: &str, at: std::time::SystemTime| {
            let p = dir.join(name);
            std::fs::write(&p, b"x").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(at)
                .unwrap();
            p
        };
        let gone = [
            make("0000000000000001.n4fc", old),
            make(".0000000000000002.n4fc.n4a-tmp-1-2", hour_ago),
        ];
        let kept = [
            make("0000000000000003.n4fc", hour_ago),
            make(
                ".0000000000000004.n4fc.n4a-tmp-1-2",
                std::time::SystemTime::now(),
            ),
            make("notes.txt", old),
        ];
        let cache = DiskCache::load(ws.path(), root.path());
        let p = &files(ws.path())[0];
        let f = Arc::new(Footer::read(p).unwrap());
        cache.put(p, f.key(), &f);
        assert!(cache.save());
        for p in gone {
            assert!(!p.exists(), "{} removed", p.display());
        }
        for p in kept {
            assert!(p.exists(), "{} kept", p.display());
        }
    }

    #[test]
    fn unused_entries_are_dropped_on_the_next_write() {
        let ws = workspace(20);
        let root = tempfile::tempdir().unwrap();
        let cache = DiskCache::load(ws.path(), root.path());
        for p in files(ws.path()) {
            let f = Arc::new(Footer::read(&p).unwrap());
            cache.put(&p, f.key(), &f);
        }
        cache.save();
        let cache = DiskCache::load(ws.path(), root.path());
        let first = &files(ws.path())[0];
        assert!(cache.get(first, &FileKey::of(first).unwrap()).is_some());
        assert!(cache.save(), "two entries unused: written again");
        assert_eq!(DiskCache::load(ws.path(), root.path()).entries.len(), 1);
    }
}
