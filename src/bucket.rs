//! Workspaces in buckets (cargo feature `object-store`): `s3://bucket/prefix`
//! (and, through the same crate, `gs://` and `az://`, untested) read and
//! written through the [`object_store`] crate, the client arrow-rs,
//! DataFusion, delta-rs and lance use: its retries with backoff (503
//! SlowDown, timeouts, connection resets), its request signing, its
//! conditional puts.
//!
//! Reading. A bucket workspace's listing ([`Bucket::list`], paged by the
//! crate: one LIST request per 1,000 objects) registers each prediction
//! and arrays object with [`crate::blob`] under its URL, so every reader
//! of the engine opens it as it opens a local file, and reads it by
//! ranged GETs. Before the footers are read, the footers the workspace
//! does not already hold (its cache in memory, the footer cache on disk,
//! both keyed by each object's size and ETag) are fetched together
//! ([`Bucket::warm_footers`]: one GET a file, the last
//! [`crate::blob::TAIL_HINT`] bytes, which hold an n4a footer and its
//! runs; a second for a longer footer, nirs4all's own), [`requests`] in
//! flight at once. A query then reads only the column chunks it needs of
//! the files it cannot prune, each file's in one batch of ranged GETs.
//! Every GET carries `If-Match` with the listed ETag: an object rewritten
//! since its listing is an error naming it, never a torn read.
//!
//! Why the engine's synchronous readers over ranged GETs and not the
//! parquet crate's async reader: every read path of the engine (footers,
//! column scans, pages, rows, arrays) is synchronous code over one
//! `ChunkReader`; the async reader would need a second copy of each. The
//! requests are the same as the async reader's: the footer by a suffix
//! read, the projected column chunks by coalesced ranges fetched together.
//!
//! Writing ([`Bucket::get_version`], [`Bucket::put`]): whole objects by one
//! conditional PUT, `If-None-Match: *` for a new object and `If-Match` on
//! the ETag read for a rewrite, so a writer that raced another fails
//! instead of overwriting its rows (the caller reads again and retries:
//! [`crate::ingest`]'s bucket path). An object is visible only once its
//! PUT completed: a writer killed mid-upload leaves nothing. Multipart
//! uploads are not used: the crate's `PutMultipartOptions` carries no
//! precondition, so a multipart commit could overwrite a concurrent
//! writer's rows; one PUT takes up to 5 GiB on S3, far past a dataset's
//! files.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

use crate::blob::{self, Object, Remote};
use crate::error::{Error, Result};
use crate::schema::{ARRAYS_SUFFIX, META_SUFFIX};

/// URL schemes read as buckets.
const SCHEMES: [&str; 7] = [
    "s3://", "s3a://", "gs://", "az://", "azure://", "abfs://", "abfss://",
];

/// True when `path` is a bucket URL (`s3://...`, `gs://...`, `az://...`).
pub fn is_url(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| SCHEMES.iter().any(|p| s.starts_with(p)))
}

/// How buckets are reached, for the whole process (the command line's
/// `--endpoint`, `--requests`): set before the first bucket is opened.
#[derive(Debug, Clone)]
pub struct BucketOptions {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); else
    /// `AWS_ENDPOINT_URL` (read by the crate), else AWS.
    pub endpoint: Option<String>,
    /// Requests in flight at once (footers, column chunks): 64.
    pub requests: usize,
    /// Retries of a failed request (throttling, a timeout, a reset
    /// connection), with exponential backoff from 100 ms: 5.
    pub retries: usize,
    /// A request's timeout: 30 s.
    pub timeout: Duration,
    /// How long a listing answers for (a server's asks within it make no
    /// LIST request): 2 s; zero lists on every ask.
    pub relist: Duration,
    /// Settings of the crate's builder by their names (for S3
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_region`,
    /// `aws_session_token`, ...: `object_store`'s config keys, the
    /// `storage_options` polars and delta-rs take), over the environment's.
    pub options: Vec<(String, String)>,
}

impl Default for BucketOptions {
    fn default() -> Self {
        BucketOptions {
            endpoint: None,
            requests: 64,
            retries: 5,
            timeout: Duration::from_secs(30),
            relist: Duration::from_secs(2),
            options: Vec::new(),
        }
    }
}

fn options() -> &'static RwLock<BucketOptions> {
    static O: OnceLock<RwLock<BucketOptions>> = OnceLock::new();
    O.get_or_init(Default::default)
}

/// Sets how buckets opened from now on are reached.
pub fn configure(opts: BucketOptions) {
    *options().write().unwrap_or_else(|e| e.into_inner()) = opts;
}

/// Requests in flight at once ([`BucketOptions::requests`]).
pub fn requests() -> usize {
    options()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .max(1)
}

/// The runtime bucket requests run on: two worker threads (the requests
/// wait on the network, not the CPU), started on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("n4a-bucket")
            .enable_all()
            .build()
            .expect("the bucket runtime starts")
    })
}

/// Runs `f` on the bucket runtime and waits for it, from any thread (a
/// footer pool's, a query's, a server's blocking task).
fn block<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime().block_on(f);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().expect("the bucket runtime answers")
}

/// An error of the crate about `what` (a URL) as n4a's: `Io`, naming it.
fn io_error(what: &Path, e: object_store::Error) -> Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::Other,
    };
    Error::io(what, std::io::Error::new(kind, concise(&e)))
}

/// The crate's error in one line: the store's own code and message
/// (`NoSuchBucket: The specified bucket does not exist (HTTP 404 Not
/// Found)`) when its answer carried them, else the crate's text.
fn concise(e: &object_store::Error) -> String {
    let text = e.to_string();
    let between = |a: &str, b: &str| {
        let i = text.find(a)? + a.len();
        let j = text[i..].find(b)? + i;
        Some(text[i..j].trim().to_string())
    };
    match (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(code), Some(msg)) => match between("status code: ", ":") {
            Some(status) => format!("{code}: {msg} (HTTP {status})"),
            None => format!("{code}: {msg}"),
        },
        _ => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Makes the object at `url` (`s3://bucket/key`) readable by every reader
/// of the engine, as a listing would ([`Bucket::register_one`]): what a
/// command given one file's URL (`n4a inspect`) calls first.
///
/// # Errors
/// As [`Bucket::open`] and [`Bucket::register_one`].
pub fn register_url(url: &Path) -> Result<()> {
    let parent = url.parent().unwrap_or(url);
    Bucket::open(parent)?.register_one(url)
}

/// A listing's answer, when it was made, and whether recursive.
type LastListing = (std::time::Instant, bool, Vec<(PathBuf, String)>);

/// One bucket workspace: its store client, its URL and prefix.
#[derive(Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket`.
    base: String,
    /// The workspace's prefix in the bucket (no slashes at its ends).
    prefix: Key,
    /// The URL as given, less a trailing slash.
    url: PathBuf,
    /// Requests in flight at once.
    limit: Arc<tokio::sync::Semaphore>,
    /// What the last listing registered: each object's key and ETag.
    listed: Mutex<HashMap<PathBuf, (Key, Option<String>)>>,
    /// The last listing's answer, when, and whether recursive.
    last: Mutex<Option<LastListing>>,
    /// [`BucketOptions::relist`] when opened.
    relist: Duration,
}

/// The store clients, by `scheme://bucket`: one per bucket per process.
fn clients() -> &'static Mutex<HashMap<String, Arc<dyn ObjectStore>>> {
    static C: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn client(base: &str) -> Result<Arc<dyn ObjectStore>> {
    let mut c = clients().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = c.get(base) {
        return Ok(s.clone());
    }
    let o = options().read().unwrap_or_else(|e| e.into_inner()).clone();
    let retry = object_store::RetryConfig {
        max_retries: o.retries,
        retry_timeout: o.timeout * (o.retries as u32 + 1),
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
    };
    let client = object_store::ClientOptions::new()
        .with_timeout(o.timeout)
        .with_connect_timeout(Duration::from_secs(5));
    let bad =
        |e: object_store::Error| Error::io(Path::new(base), std::io::Error::other(concise(&e)));
    // GCS and Azure: the same steps on builders that share no trait.
    macro_rules! with_options {
        ($builder:ty) => {
            Arc::new(
                o.options
                    .iter()
                    .try_fold(<$builder>::from_env(), |b, (k, v)| {
                        Ok::<_, object_store::Error>(b.with_config(k.parse()?, v))
                    })
                    .map_err(bad)?
                    .with_url(base)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(bad)?,
            )
        };
    }
    let store: Arc<dyn ObjectStore> = if base.starts_with("s3") {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_url(base)
            .with_retry(retry)
            .with_client_options(client);
        for (k, v) in &o.options {
            b = b.with_config(k.parse().map_err(bad)?, v);
        }
        let endpoint = o
            .endpoint
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(e) = endpoint {
            b = b
                .with_allow_http(e.starts_with("http://"))
                .with_virtual_hosted_style_request(false)
                .with_endpoint(e);
        }
        Arc::new(b.build().map_err(bad)?)
    } else if base.starts_with("gs") {
        with_options!(object_store::gcp::GoogleCloudStorageBuilder)
    } else {
        with_options!(object_store::azure::MicrosoftAzureBuilder)
    };
    c.insert(base.to_string(), store.clone());
    Ok(store)
}

impl Bucket {
    /// The bucket workspace at `url` (`s3://bucket/prefix`). Makes no
    /// request: a missing bucket or a wrong credential is the first
    /// listing's error.
    ///
    /// # Errors
    /// [`Error::Io`] naming the URL when it is not one the crate takes.
    pub fn open(url: &Path) -> Result<Bucket> {
        let s = url
            .to_str()
            .ok_or_else(|| Error::io(url, std::io::Error::other("not UTF-8")))?;
        let s = s.trim_end_matches('/');
        let (scheme, rest) = s.split_once("://").expect("a URL");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::io(
                url,
                std::io::Error::other("no bucket named in the URL"),
            ));
        }
        let base = format!("{scheme}://{bucket}");
        Ok(Bucket {
            store: client(&base)?,
            prefix: Key::from(prefix.trim_matches('/')),
            url: PathBuf::from(s),
            base,
            limit: Arc::new(tokio::sync::Semaphore::new(requests())),
            listed: Mutex::new(HashMap::new()),
            last: Mutex::new(None),
            relist: options().read().unwrap_or_else(|e| e.into_inner()).relist,
        })
    }

    /// The workspace's URL.
    pub fn url(&self) -> &Path {
        &self.url
    }

    /// The path an object is known by (its URL).
    pub fn path_of(&self, key: &Key) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.base, key.as_ref()))
    }

    /// The key of a path under this workspace (`None` for another's).
    pub fn key_of(&self, path: &Path) -> Option<Key> {
        let s = path.to_str()?;
        let rest = s.strip_prefix(&self.base)?.strip_prefix('/')?;
        Some(Key::from(rest))
    }

    /// Lists the workspace's prediction files (directly under its prefix,
    /// or below it when `recursive`) and registers them and their arrays
    /// objects with [`crate::blob`]; objects gone since the last listing
    /// are forgotten. Returns each prediction file's URL and dataset,
    /// sorted. Cost: one LIST request per 1,000 objects; none when the
    /// last listing is younger than [`BucketOptions::relist`].
    ///
    /// # Errors
    /// [`Error::Io`] naming the URL: a missing bucket, a wrong credential,
    /// the store unreachable after the retries.
    pub fn list(&self, recursive: bool) -> Result<Vec<(PathBuf, String)>> {
        if let Some((at, r, files)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            if *r == recursive && at.elapsed() < self.relist {
                return Ok(files.clone());
            }
        }
        let at = std::time::Instant::now();
        let files = self.list_now(recursive)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, recursive, files.clone()));
        Ok(files)
    }

    fn list_now(&self, recursive: bool) -> Result<Vec<(PathBuf, String)>> {
        let store = self.store.clone();
        let prefix = (!self.prefix.as_ref().is_empty()).then(|| self.prefix.clone());
        let found: Vec<ObjectMeta> = block(async move {
            use futures_util::TryStreamExt;
            if recursive {
                store.list(prefix.as_ref()).try_collect().await
            } else {
                store
                    .list_with_delimiter(prefix.as_ref())
                    .await
                    .map(|r| r.objects)
            }
        })
        .map_err(|e| io_error(&self.url, e))?;
        let mut files = Vec::new();
        let mut now = HashMap::new();
        for m in found {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let dataset = name.strip_suffix(META_SUFFIX);
            if dataset.is_none() && !name.ends_with(ARRAYS_SUFFIX) {
                continue;
            }
            let path = self.path_of(&m.location);
            if let Some(d) = dataset {
                files.push((path.clone(), d.to_string()));
            }
            self.register(&path, &m);
            now.insert(path, (m.location, m.e_tag));
        }
        let mut listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        for gone in listed.keys().filter(|p| !now.contains_key(*p)) {
            blob::unregister(gone);
        }
        *listed = now;
        files.sort();
        Ok(files)
    }

    fn register(&self, path: &Path, m: &ObjectMeta) -> Arc<Object> {
        let tag = m.e_tag.clone().or_else(|| m.version.clone());
        let version = xxhash_rust::xxh3::xxh3_64(tag.as_deref().unwrap_or("").as_bytes());
        let modified = m.last_modified.timestamp_nanos_opt().unwrap_or(0) as i128;
        let remote = Arc::new(Fetcher {
            store: self.store.clone(),
            key: m.location.clone(),
            e_tag: m.e_tag.clone(),
            limit: self.limit.clone(),
        });
        blob::register(path, Object::new(m.size, version, modified, remote))
    }

    /// Registers the one object at `path` (a URL under this workspace) with
    /// [`crate::blob`], as a listing would: one HEAD request.
    ///
    /// # Errors
    /// [`Error::Io`] naming the object: not there, no access.
    pub fn register_one(&self, path: &Path) -> Result<()> {
        let key = self.key(path)?;
        let store = self.store.clone();
        let m = block(async move { store.head(&key).await }).map_err(|e| io_error(path, e))?;
        self.register(path, &m);
        self.listed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), (m.location, m.e_tag));
        Ok(())
    }

    /// Fetches the footer regions of `paths` (listed objects) not held
    /// yet (the last [`crate::blob::tail_hint`] bytes, or `hint` when more),
    /// [`requests`] in
    /// flight at once: one GET a file, a second for a footer longer than
    /// the hint.
    pub fn warm_footers(&self, paths: &[&Path], hint: u64) {
        for _round in 0..2 {
            let wants: Vec<(Arc<Object>, Range<u64>)> = paths
                .iter()
                .filter_map(|p| {
                    let o = blob::remote(p)?;
                    let r = o.tail_range_of(hint)?;
                    Some((o, r))
                })
                .collect();
            if wants.is_empty() {
                return;
            }
            for (o, at, got) in self.fetch_many(paths, wants) {
                if let Ok(b) = got {
                    o.add_tail(at, b);
                }
            }
        }
    }

    /// Fetches `ranges` of listed objects not held yet and keeps them with
    /// each object (what a summary reads of files whose footers came from
    /// a cache), [`requests`] in flight at once: one GET a file.
    pub fn keep_ranges(&self, ranges: &[(&Path, Range<u64>)]) {
        let paths: Vec<&Path> = ranges.iter().map(|(p, _)| *p).collect();
        let wants: Vec<(Arc<Object>, Range<u64>)> = ranges
            .iter()
            .filter_map(|(p, r)| {
                let o = blob::remote(p)?;
                (!o.holds(r)).then_some((o, r.clone()))
            })
            .collect();
        for (o, at, got) in self.fetch_many(&paths, wants) {
            if let Ok(b) = got {
                o.add_kept(at, b);
            }
        }
    }

    /// GETs `wants` (objects registered by this workspace's listing) at
    /// once, bounded by [`requests`]; failures are left to the reads,
    /// which report them by name.
    #[allow(clippy::type_complexity)]
    fn fetch_many(
        &self,
        paths: &[&Path],
        wants: Vec<(Arc<Object>, Range<u64>)>,
    ) -> Vec<(Arc<Object>, u64, std::io::Result<Bytes>)> {
        let listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        let by_object: HashMap<*const Object, (Key, Option<String>)> = paths
            .iter()
            .filter_map(|p| {
                let o = blob::remote(p)?;
                let (k, t) = listed.get(*p)?;
                Some((Arc::as_ptr(&o), (k.clone(), t.clone())))
            })
            .collect();
        drop(listed);
        let gets: Vec<_> = wants
            .into_iter()
            .filter_map(|(o, r)| {
                let (k, t) = by_object.get(&Arc::as_ptr(&o))?;
                let get = get_range(&self.store, k, t, r.clone(), &self.limit);
                Some(async move { (o, r.start, get.await) })
            })
            .collect();
        if gets.is_empty() {
            return Vec::new();
        }
        block(futures_util::future::join_all(gets))
    }

    /// The object at `path` and its ETag, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Io`] naming the object.
    pub fn get_version(&self, path: &Path) -> Result<Option<(Bytes, String)>> {
        let key = self.key(path)?;
        let store = self.store.clone();
        let got = block(async move {
            let r = store.get_opts(&key, GetOptions::default()).await?;
            let tag = r.meta.e_tag.clone().unwrap_or_default();
            Ok::<_, object_store::Error>((r.bytes().await?, tag))
        });
        match got {
            Ok(v) => Ok(Some(v)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// The ETag of the object at `path`, or `None` when there is none:
    /// one HEAD request.
    ///
    /// # Errors
    /// [`Error::Io`] naming the object.
    pub fn head_version(&self, path: &Path) -> Result<Option<String>> {
        let key = self.key(path)?;
        let store = self.store.clone();
        match block(async move { store.head(&key).await }) {
            Ok(m) => Ok(Some(m.e_tag.unwrap_or_default())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// Puts `bytes` at `path` in one request: only if there is no object
    /// there (`version` `None`: `If-None-Match: *`) or only if it is still
    /// the version read (`If-Match`). Returns `Ok(false)` when the
    /// condition failed (another writer came first: read again, retry).
    ///
    /// # Errors
    /// [`Error::Io`] naming the object.
    pub fn put(&self, path: &Path, bytes: Bytes, version: Option<&str>) -> Result<bool> {
        let key = self.key(path)?;
        let store = self.store.clone();
        let mode = match version {
            None => PutMode::Create,
            Some(tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(tag.to_string()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let got = block(async move { store.put_opts(&key, PutPayload::from(bytes), opts).await });
        match got {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// Deletes the object at `path` (none there is no error).
    ///
    /// # Errors
    /// [`Error::Io`] naming the object.
    pub fn delete(&self, path: &Path) -> Result<()> {
        let key = self.key(path)?;
        let store = self.store.clone();
        match block(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(path, e)),
        }
    }

    /// Takes the writers' lock of `dataset` (an object `.<dataset>.n4a-lock`
    /// beside its files, made by a PUT with `If-None-Match: *`), waiting
    /// while another writer holds it; a lock older than [`STALE_LOCK`]
    /// (its writer died) is taken over by a PUT with `If-Match` on its
    /// ETag. Released (deleted) when the guard drops.
    ///
    /// # Errors
    /// [`Error::Io`] naming the lock: a request failed, or the lock was
    /// not free within [`LOCK_WAIT`].
    pub fn lock(self: &Arc<Self>, dataset: &str) -> Result<BucketLock> {
        let path = self.url.join(format!(".{dataset}.n4a-lock"));
        let started = std::time::Instant::now();
        let body = || Bytes::from(format!("n4a writer, process {}", std::process::id()));
        let mut pause = Duration::from_millis(20);
        loop {
            if self.put(&path, body(), None)? {
                return Ok(BucketLock {
                    bucket: self.clone(),
                    path,
                });
            }
            let key = self.key(&path)?;
            let store = self.store.clone();
            let held = block(async move { store.head(&key).await });
            match held {
                Ok(m) => {
                    let age = chrono_age(&m);
                    if age >= STALE_LOCK {
                        if let Some(tag) = m.e_tag.as_deref() {
                            if self.put(&path, body(), Some(tag))? {
                                return Ok(BucketLock {
                                    bucket: self.clone(),
                                    path,
                                });
                            }
                        }
                    }
                }
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(io_error(&path, e)),
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(Error::io(
                    &path,
                    std::io::Error::other(format!(
                        "another writer held this dataset's lock for over {} s",
                        LOCK_WAIT.as_secs()
                    )),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    fn key(&self, path: &Path) -> Result<Key> {
        self.key_of(path).ok_or_else(|| {
            Error::io(
                path,
                std::io::Error::other(format!("not in {}", self.url.display())),
            )
        })
    }
}

/// A lock older than this was left by a writer that died: taken over.
pub const STALE_LOCK: Duration = Duration::from_secs(300);

/// How long a writer waits for a dataset's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

/// How long ago `m` was last modified (zero for a clock ahead of ours).
fn chrono_age(m: &ObjectMeta) -> Duration {
    let then = m.last_modified.timestamp_millis().max(0) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(now.saturating_sub(then))
}

/// A dataset's writers' lock in a bucket ([`Bucket::lock`]), deleted on drop.
#[derive(Debug)]
pub struct BucketLock {
    bucket: Arc<Bucket>,
    path: PathBuf,
}

impl Drop for BucketLock {
    fn drop(&mut self) {
        let _ = self.bucket.delete(&self.path);
    }
}

/// How an object's ranges are fetched: ranged GETs carrying `If-Match`
/// with the listed ETag, [`requests`] in flight at once per bucket.
#[derive(Debug)]
struct Fetcher {
    store: Arc<dyn ObjectStore>,
    key: Key,
    e_tag: Option<String>,
    limit: Arc<tokio::sync::Semaphore>,
}

/// A ranged GET of `key` carrying `If-Match: e_tag`, waiting for one of
/// `limit`'s permits.
fn get_range(
    store: &Arc<dyn ObjectStore>,
    key: &Key,
    e_tag: &Option<String>,
    r: Range<u64>,
    limit: &Arc<tokio::sync::Semaphore>,
) -> impl Future<Output = std::io::Result<Bytes>> + Send + 'static {
    let store = store.clone();
    let key = key.clone();
    let limit = limit.clone();
    let opts = GetOptions {
        range: Some(GetRange::Bounded(r)),
        if_match: e_tag.clone(),
        ..Default::default()
    };
    async move {
        let _permit = limit.acquire_owned().await;
        let got = async { store.get_opts(&key, opts).await?.bytes().await }.await;
        got.map_err(|e| match e {
            object_store::Error::Precondition { .. } => std::io::Error::other(
                "the object changed since it was listed (its ETag no longer matches)",
            ),
            object_store::Error::NotFound { .. } => std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the object is gone since it was listed",
            ),
            e => std::io::Error::other(concise(&e)),
        })
    }
}

impl Remote for Fetcher {
    fn fetch(&self, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
        let gets: Vec<_> = ranges
            .iter()
            .map(|r| get_range(&self.store, &self.key, &self.e_tag, r.clone(), &self.limit))
            .collect();
        block(futures_util::future::try_join_all(gets))
    }
}
