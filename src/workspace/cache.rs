//! A cache of decoded footers keyed by each file's identity and change
//! markers ([`FileKey`]), so asking again about an unchanged workspace
//! costs one `stat` per file. Only files already quiet when read are
//! served from the cache; a racy entry is read again next time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::footer::FileKey;

struct Entry<V> {
    key: FileKey,
    trusted: bool,
    value: Arc<V>,
}

/// Values (decoded footers, or their errors) by path and [`FileKey`].
pub struct FooterCache<V> {
    /// Keyed by the path's bytes: hashing a `Path` walks its components.
    map: Mutex<HashMap<std::ffi::OsString, Entry<V>>>,
}

impl<V> Default for FooterCache<V> {
    fn default() -> Self {
        FooterCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> FooterCache<V> {
    /// The cached value for `path` if its key is unchanged and the entry is
    /// trusted (not racy).
    pub fn get(&self, path: &Path, key: &FileKey) -> Option<Arc<V>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(path.as_os_str())
            .filter(|e| e.trusted && e.key == *key)
            .map(|e| e.value.clone())
    }

    /// True when `path` has an entry (trusted or not).
    pub fn contains(&self, path: &Path) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.contains_key(path.as_os_str())
    }

    /// Stores `value` read from `path` with `key`, the key taken before the
    /// read started at `read_at`.
    /// Returns whether the entry is trusted (the file was quiet when read).
    pub fn put(&self, path: &Path, key: FileKey, read_at: SystemTime, value: Arc<V>) -> bool {
        let trusted = !key.is_racy(read_at);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            path.as_os_str().to_os_string(),
            Entry {
                key,
                trusted,
                value,
            },
        );
        trusted
    }

    /// Drops entries of files no longer listed.
    pub fn retain(&self, live: &[PathBuf]) {
        let live: std::collections::HashSet<&std::ffi::OsStr> =
            live.iter().map(|p| p.as_os_str()).collect();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|p, _| live.contains(p.as_os_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn racy_entries_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let key = FileKey::of(&p).unwrap();
        let cache = FooterCache::<u32>::default();
        cache.put(&p, key, SystemTime::now(), Arc::new(1));
        assert!(cache.get(&p, &key).is_none(), "just written: racy");
        cache.put(
            &p,
            key,
            SystemTime::now() + Duration::from_secs(10),
            Arc::new(2),
        );
        assert_eq!(*cache.get(&p, &key).unwrap(), 2);
        let mut other = key;
        other.len += 1;
        assert!(cache.get(&p, &other).is_none());
    }
}
