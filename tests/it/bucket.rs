//! Issue 34: workspaces in a bucket, against a real S3-compatible server
//! (moto's standalone server, `moto_server`, from the package registry, in
//! a venv the tests make under `target/`) started on loopback, with a
//! bucket per test, and a small proxy in front of it that counts, fails or
//! stalls requests. The objects are put there by boto3
//! (`tests/bucket/s3.py`), not by n4a.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util;

/// The S3 server the tests share: its endpoint and the venv's Python.
struct Moto {
    port: u16,
    python: PathBuf,
}

/// The moto version the venv pins.
const MOTO: &str = "moto[server]==5.2.6";

fn moto() -> &'static Moto {
    static M: OnceLock<Result<Moto, String>> = OnceLock::new();
    M.get_or_init(|| start_moto(false))
        .as_ref()
        .unwrap_or_else(|why| panic!("no S3 server for the bucket tests: {why}"))
}

/// A second server that checks credentials (moto's IAM checks on:
/// `INITIAL_NO_AUTH_ACTION_COUNT=0`), for the wrong-credential test.
fn moto_with_auth() -> &'static Moto {
    static M: OnceLock<Result<Moto, String>> = OnceLock::new();
    M.get_or_init(|| start_moto(true))
        .as_ref()
        .unwrap_or_else(|why| panic!("no S3 server with auth for the bucket tests: {why}"))
}

/// `target/moto-venv` with moto's server (made once, under a lock), then
/// the server on a free loopback port, stopped when this process ends (a
/// shell beside it waits for this process to go).
fn start_moto(auth: bool) -> Result<Moto, String> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let venv = target.join("moto-venv");
    let python = venv.join("bin/python");
    let lock = std::fs::File::create(target.join("moto-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    let ready = || {
        Command::new(&python)
            .args(["-c", "import moto, boto3, flask"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready() {
        let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)))
            }
        };
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
        run(
            Command::new(&python).args(["-m", "pip", "install", "-q", MOTO]),
            "pip install moto[server]",
        )?;
    }
    drop(lock);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let server = venv.join("bin/moto_server");
    let env = if auth {
        "INITIAL_NO_AUTH_ACTION_COUNT=0 "
    } else {
        ""
    };
    let script = format!(
        "{env}'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {} 2>/dev/null; do sleep 1; done; kill $m",
        server.display(),
        std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .map_err(|e| format!("starting moto_server: {e}"))?;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            if got.starts_with("HTTP/1.1 ") {
                return Ok(Moto { port, python });
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "moto_server did not answer on port {port} within 60 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// `tests/bucket/s3.py` against the server.
fn s3(args: &[&str]) -> String {
    let m = moto();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bucket/s3.py");
    let out = Command::new(&m.python)
        .arg(script)
        .arg(endpoint(m.port))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "s3.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new bucket for one test.
fn new_bucket(test: &str) -> String {
    let name = format!("n4a-{}-{test}", std::process::id());
    s3(&["mkbucket", &name]);
    name
}

/// The n4a command with credentials for the server at `port` and a cache
/// folder of its own.
fn n4a_cmd(port: u16, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_n4a"));
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint(port))
        .env("N4A_CACHE_DIR", cache);
    c
}

/// [`n4a_cmd`] run to its end.
fn n4a(port: u16, cache: &Path, args: &[&str]) -> Output {
    n4a_cmd(port, cache, args).output().unwrap()
}

/// The JSON answer of `out`, without what differs by run or by place
/// (times, memory), with `from` (the bucket's URL) written as `to` (the
/// folder's path).
fn answer(out: &Output, from: &str, to: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout).replace(from, to);
    let mut v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["generated_at", "seconds", "peak_rss_bytes"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// A workspace as users have them: n4a's files, nirs4all's, every footer
/// version, bad files (truncated, not parquet, invalid JSON, a newer
/// version, a mistyped column), a dataset named with a space.
fn real_workspace(dir: &Path) {
    for e in std::fs::read_dir(util::fixture("")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "parquet") {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let opts = n4a::generate::GenOptions {
        datasets: 3,
        rows: 400,
        seed: 34,
        ..Default::default()
    };
    n4a::generate::generate(dir, &opts).unwrap();
    let mut w = n4a::PredictionWriter::create(dir, "new set", Default::default()).unwrap();
    for i in 0..30 {
        let mut r = util::row("cfg a", "PLS", "0", ["val", "test"][i % 2], i as f64 / 10.0);
        r.id = Some(format!("space{i}"));
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn issue_34_every_read_command_on_a_bucket_answers_as_on_disk() {
    let m = moto();
    let bucket = new_bucket("reads");
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    real_workspace(&ws);
    s3(&["upload", &bucket, "team/ws", ws.to_str().unwrap()]);
    let url = format!("s3://{bucket}/team/ws");
    let local = ws.to_str().unwrap();
    let cache = dir.path().join("cache");
    let asks: [&[&str]; 8] = [
        &["summary"],
        &[
            "query",
            "--partition",
            "val",
            "--sort",
            "val_score:asc",
            "--limit",
            "25",
        ],
        &[
            "query",
            "--metric",
            "mse",
            "--where",
            "val_score>=0.5",
            "--offset",
            "3",
            "--limit",
            "9",
        ],
        &["query", "--dataset", "new set", "--sort", "val_score:desc"],
        &["top", "--k", "5"],
        &["stats", "--group-by", "model"],
        &[
            "stats",
            "--group-by",
            "partition",
            "--partition",
            "all",
            "--metric",
            "mse",
        ],
        &["stats", "--group-by", "dataset", "--count-mean-only"],
    ];
    for ask in asks {
        let on = |w: &str| {
            let mut args: Vec<&str> = vec![ask[0], w];
            args.extend(&ask[1..]);
            args.extend(["--format", "json"]);
            n4a(m.port, &cache, &args)
        };
        let (a, b) = (on(&url), on(local));
        assert_eq!(a.status.code(), b.status.code(), "{ask:?}");
        let (a, b) = (answer(&a, &url, local), answer(&b, &url, local));
        assert_eq!(a, b, "{ask:?} on the bucket and on disk");
        if ask[0] == "summary" {
            // The bad files are reported by name, the others answered.
            let errors = a["errors"].as_array().unwrap();
            assert!(errors.len() >= 4, "{errors:?}");
            assert_eq!(a["total_datasets"].as_u64(), Some(14), "{a}");
        }
    }
    for f in [
        "corn_000.meta.parquet",
        "corn_moisture.meta.parquet",
        "new set.meta.parquet",
    ] {
        let a = n4a(
            m.port,
            &cache,
            &["inspect", &format!("{url}/{f}"), "--format", "json"],
        );
        let b = n4a(
            m.port,
            &cache,
            &["inspect", &format!("{local}/{f}"), "--format", "json"],
        );
        assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
        assert_eq!(
            answer(&a, &url, local),
            answer(&b, &url, local),
            "inspect {f}"
        );
    }
    // The library opens a URL as a bucket workspace (no request yet).
    let remote = n4a::Workspace::open(&url).unwrap();
    assert_eq!(remote.kind(), n4a::workspace::SourceKind::Bucket);
    assert_eq!(remote.origin(), Path::new(&url));
}

#[test]
fn issue_34_a_wrong_credential_is_one_clear_error() {
    let m = moto_with_auth();
    let cache = tempfile::tempdir().unwrap();
    let out = n4a(m.port, cache.path(), &["summary", "s3://n4a-any-bucket/ws"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3://n4a-any-bucket/ws") && err.contains("InvalidAccessKeyId"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one error: {err}");
}

#[test]
fn issue_34_a_missing_bucket_is_one_clear_error() {
    let m = moto();
    let cache = tempfile::tempdir().unwrap();
    let out = n4a(
        m.port,
        cache.path(),
        &["summary", "s3://n4a-no-such-bucket/ws"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3://n4a-no-such-bucket/ws") && err.contains("NoSuchBucket"),
        "{err}"
    );
}

/// What the proxy does to the requests it relays.
#[derive(Default)]
struct Rules {
    /// Requests seen: method and path (with the query).
    seen: Vec<(String, String)>,
    /// The next this many requests are answered 503 SlowDown.
    throttle: usize,
    /// GETs of a path containing this are answered 404 NoSuchKey.
    gone: Option<String>,
    /// PUTs of a path containing this are held, never relayed.
    stall_put: Option<String>,
}

/// A proxy on loopback in front of the S3 server, one request a
/// connection (it asks the server to close each), so that it can count,
/// fail or hold each request.
struct Proxy {
    port: u16,
    rules: Arc<Mutex<Rules>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules = Arc::new(Mutex::new(Rules::default()));
        let r = rules.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let r = r.clone();
                std::thread::spawn(move || relay(conn, upstream, &r));
            }
        });
        Proxy { port, rules }
    }

    fn count(&self, what: impl Fn(&str, &str) -> bool) -> usize {
        let r = self.rules.lock().unwrap();
        r.seen.iter().filter(|(m, p)| what(m, p)).count()
    }
}

fn relay(mut client: TcpStream, upstream: u16, rules: &Mutex<Rules>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let Ok(n) = client.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_string();
    let mut first = text.lines().next().unwrap_or("").split(' ');
    let (method, path) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let (throttle, gone, stall) = {
        let mut r = rules.lock().unwrap();
        r.seen.push((method.clone(), path.clone()));
        let throttle = r.throttle > 0;
        if throttle {
            r.throttle -= 1;
        }
        let gone = method == "GET" && r.gone.as_ref().is_some_and(|g| path.contains(g.as_str()));
        let stall = method == "PUT"
            && r.stall_put
                .as_ref()
                .is_some_and(|g| path.contains(g.as_str()));
        (throttle, gone, stall)
    };
    let refuse = |client: &mut TcpStream, status: &str, code: &str| {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
             <Message>{code}</Message></Error>"
        );
        let _ = write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if throttle {
        return refuse(&mut client, "503 Slow Down", "SlowDown");
    }
    if gone {
        return refuse(&mut client, "404 Not Found", "NoSuchKey");
    }
    if stall {
        // Holds the upload until the writer is gone.
        let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
        while client.read(&mut buf).is_ok_and(|n| n > 0) {}
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut out = String::new();
    for line in text[..end - 4].split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    if server.write_all(out.as_bytes()).is_err() || server.write_all(&head[end..]).is_err() {
        return;
    }
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
    });
    let _ = std::io::copy(&mut server, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// A workspace of `n` files n4a wrote, uploaded to a new bucket.
fn uploaded(test: &str, n: usize, dir: &Path) -> (String, PathBuf) {
    let bucket = new_bucket(test);
    let ws = dir.join("ws");
    std::fs::create_dir(&ws).unwrap();
    let opts = n4a::generate::GenOptions {
        datasets: n,
        rows: 300,
        seed: 7,
        ..Default::default()
    };
    n4a::generate::generate(&ws, &opts).unwrap();
    s3(&["upload", &bucket, "ws", ws.to_str().unwrap()]);
    (format!("s3://{bucket}/ws"), ws)
}

#[test]
fn issue_34_a_summary_reads_each_footer_in_one_request() {
    let m = moto();
    let proxy = Proxy::start(m.port);
    let dir = tempfile::tempdir().unwrap();
    // 64 files: the footer cache on disk keeps them (it skips smaller
    // workspaces).
    let (url, ws) = uploaded("count", 64, dir.path());
    let cache = dir.path().join("cache");
    let local = n4a(
        proxy.port,
        &cache,
        &["summary", ws.to_str().unwrap(), "--format", "json"],
    );
    let here = ws.to_str().unwrap();
    let lists = |p: &Proxy| p.count(|m, p| m == "GET" && p.contains("list-type=2"));
    let gets = |p: &Proxy| p.count(|m, p| m == "GET" && !p.contains("list-type=2"));
    for run in ["cold", "footers from the cache on disk"] {
        proxy.rules.lock().unwrap().seen.clear();
        let out = n4a(proxy.port, &cache, &["summary", &url, "--format", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            answer(&out, &url, here),
            answer(&local, &url, here),
            "{run}"
        );
        // N files: at most one GET a file, one listing page, nothing else.
        let (l, g, all) = (lists(&proxy), gets(&proxy), proxy.count(|_, _| true));
        assert_eq!((l, all), (1, l + g), "{run}");
        assert!(g <= 64, "{run}: {g} GETs for 64 files");
        if run == "cold" {
            assert_eq!(g, 64, "{run}");
        }
    }
}

#[test]
fn issue_34_throttling_is_retried_and_a_vanished_object_is_named() {
    let m = moto();
    let proxy = Proxy::start(m.port);
    let dir = tempfile::tempdir().unwrap();
    let (url, ws) = uploaded("faults", 4, dir.path());
    let cache = dir.path().join("cache");
    let local = answer(
        &n4a(
            m.port,
            &cache,
            &["summary", ws.to_str().unwrap(), "--format", "json"],
        ),
        &url,
        ws.to_str().unwrap(),
    );
    proxy.rules.lock().unwrap().throttle = 3;
    let out = n4a(proxy.port, &cache, &["summary", &url, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answer(&out, &url, ws.to_str().unwrap()), local);
    assert_eq!(
        proxy.rules.lock().unwrap().throttle,
        0,
        "the 503s were met and retried"
    );
    // Listed, then gone when its footer is read: named, the rest answered.
    let files: Vec<String> = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".meta.parquet"))
        .collect();
    let victim = files.iter().min().unwrap().clone();
    proxy.rules.lock().unwrap().gone = Some(victim.clone());
    let out = n4a(proxy.port, &cache, &["summary", &url, "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors[0]["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("{url}/{victim}")) && e.contains("gone"),
        "{e}"
    );
    assert_eq!(v["total_datasets"].as_u64(), Some(3));
    // Throttled past the retries: one clear error, naming the workspace.
    proxy.rules.lock().unwrap().throttle = 1000;
    let out = n4a(proxy.port, &cache, &["--retries", "2", "summary", &url]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url) && err.contains("503"), "{err}");
}

/// Rows of `dataset` with ids `tag0..tagN`, as JSON Lines.
fn jsonl(path: &Path, dataset: &str, tag: &str, n: usize) {
    let mut s = String::new();
    for i in 0..n {
        let partition = ["val", "test", "train"][i % 3];
        s.push_str(
            &serde_json::json!({
                "dataset_name": dataset, "config_name": format!("cfg {tag}"),
                "model_name": "PLS", "partition": partition,
                "fold_id": "0", "metric": "rmse", "task_type": "regression",
                "val_score": i as f64 / 7.0, "test_score": 0.5, "train_score": 0.1,
                "id": format!("{tag}{i}"),
            })
            .to_string(),
        );
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Every id in `dataset` of the bucket workspace `url`.
fn ids(port: u16, cache: &Path, url: &str, dataset: &str) -> Vec<String> {
    let out = n4a(
        port,
        cache,
        &[
            "query",
            url,
            "--dataset",
            dataset,
            "--columns",
            "id",
            "--limit",
            "100000",
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn issue_34_concurrent_writers_of_one_bucket_dataset_lose_no_row() {
    let m = moto();
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = uploaded("writers", 2, dir.path());
    let cache = dir.path().join("cache");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let input = dir.path().join(format!("w{w}.jsonl"));
            jsonl(&input, "shared set", &format!("w{w}r"), 120);
            n4a_cmd(
                m.port,
                &cache,
                &["ingest", &url, input.to_str().unwrap(), "--quiet"],
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let got = ids(m.port, &cache, &url, "shared set");
    let mut want: Vec<String> = (0..4)
        .flat_map(|w| (0..120).map(move |i| format!("w{w}r{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want, "every writer's rows, once");
    // The footer summary kept up: its count is the rows'.
    let out = n4a(m.port, &cache, &["summary", &url, "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == "shared set")
        .unwrap()
        .clone();
    assert_eq!(d["total_predictions"].as_u64(), Some(480), "{d}");
    let listed: Value =
        serde_json::from_str(&s3(&["list", url.split('/').nth(2).unwrap(), "ws/"])).unwrap();
    assert!(
        !listed
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.contains("n4a-lock")),
        "locks released: {listed}"
    );
}

#[test]
fn issue_34_a_writer_killed_mid_upload_leaves_the_objects_as_they_were() {
    let m = moto();
    let proxy = Proxy::start(m.port);
    let dir = tempfile::tempdir().unwrap();
    let (url, ws) = uploaded("killed", 2, dir.path());
    let bucket = url.split('/').nth(2).unwrap().to_string();
    let dataset = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".meta.parquet").map(str::to_string))
        .min()
        .unwrap();
    let before: Value = serde_json::from_str(&s3(&["list", &bucket, "ws/"])).unwrap();
    let cache = dir.path().join("cache");
    let before_ids = ids(m.port, &cache, &url, &dataset);
    proxy.rules.lock().unwrap().stall_put = Some(".meta.parquet".into());
    let input = dir.path().join("more.jsonl");
    jsonl(&input, &dataset, "late", 50);
    let mut writer = n4a_cmd(
        proxy.port,
        &cache,
        &["ingest", &url, input.to_str().unwrap(), "--quiet"],
    )
    .spawn()
    .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while proxy.count(|m, p| m == "PUT" && p.contains(".meta.parquet")) == 0 {
        assert!(
            Instant::now() < until,
            "the writer never reached its upload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    let after: Value = serde_json::from_str(&s3(&["list", &bucket, "ws/"])).unwrap();
    for (k, v) in before.as_object().unwrap() {
        if k.ends_with(".meta.parquet") {
            assert_eq!(after.get(k), Some(v), "{k} untouched by the killed writer");
        }
    }
    assert_eq!(ids(m.port, &cache, &url, &dataset), before_ids);
}

/// The library's bucket settings for the server at `port` (credentials
/// as options, not the environment: other tests run beside).
fn library_on(port: u16) {
    let opt = |k: &str, v: &str| (k.to_string(), v.to_string());
    n4a::bucket::configure(n4a::bucket::BucketOptions {
        endpoint: Some(endpoint(port)),
        options: vec![
            opt("aws_access_key_id", "test"),
            opt("aws_secret_access_key", "test"),
            opt("aws_region", "us-east-1"),
        ],
        ..Default::default()
    });
}

#[test]
fn issue_34_refresh_rewrites_nirs4all_footers_in_a_bucket() {
    let m = moto();
    let bucket = new_bucket("refresh");
    let dir = tempfile::tempdir().unwrap();
    let ws = util::workspace_with(&[
        "corn_moisture.meta.parquet",
        "corn_moisture.arrays.parquet",
        "grain_class.meta.parquet",
        "grain_class.arrays.parquet",
    ]);
    s3(&["upload", &bucket, "ws", ws.path().to_str().unwrap()]);
    let url = format!("s3://{bucket}/ws");
    let cache = dir.path().join("cache");
    let before = n4a(m.port, &cache, &["summary", &url, "--format", "json"]);
    let out = n4a(m.port, &cache, &["refresh", &url, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["refreshed"].as_u64(), Some(2), "{r}");
    let after = n4a(m.port, &cache, &["summary", &url, "--format", "json"]);
    let (b, a): (Value, Value) = (
        serde_json::from_slice(&before.stdout).unwrap(),
        serde_json::from_slice(&after.stdout).unwrap(),
    );
    assert_eq!(a["total_predictions"], b["total_predictions"]);
    for d in a["datasets"].as_array().unwrap() {
        let v = d["n4a_version"].as_str().unwrap_or("none");
        assert!(v.starts_with("1.") && v != "1.0", "n4a's summary now: {d}");
    }
    // The same refresh on disk gives the same summary.
    let local = n4a(m.port, &cache, &["refresh", ws.path().to_str().unwrap()]);
    assert!(local.status.success());
    let disk = n4a(
        m.port,
        &cache,
        &["summary", ws.path().to_str().unwrap(), "--format", "json"],
    );
    let here = ws.path().to_str().unwrap();
    assert_eq!(answer(&after, &url, here), answer(&disk, &url, here));
}

#[test]
fn issue_34_a_refresh_racing_a_writer_keeps_the_writers_rows() {
    let m = moto();
    let bucket = new_bucket("race");
    let ws = util::workspace_with(&["corn_moisture.meta.parquet", "corn_moisture.arrays.parquet"]);
    s3(&["upload", &bucket, "ws", ws.path().to_str().unwrap()]);
    let url = format!("s3://{bucket}/ws");
    // The other writer's version: 40 more rows, uploaded over the object
    // (by boto3, unconditionally) while the refresh is about to put back.
    let theirs = tempfile::tempdir().unwrap();
    util::copy_dir(ws.path(), theirs.path());
    let mut w =
        n4a::PredictionWriter::append(theirs.path(), "corn_moisture", Default::default()).unwrap();
    for i in 0..40 {
        let mut r = util::row("late cfg", "PLS", "0", "val", 0.3 + i as f64 / 100.0);
        r.id = Some(format!("theirs{i}"));
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
    let upload = theirs.path().join("up");
    std::fs::create_dir(&upload).unwrap();
    std::fs::copy(
        theirs.path().join("corn_moisture.meta.parquet"),
        upload.join("corn_moisture.meta.parquet"),
    )
    .unwrap();
    let raced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = raced.clone();
    let up = upload.to_str().unwrap().to_string();
    let b = bucket.clone();
    let opts = n4a::refresh::RefreshOptions {
        threads: 1,
        before_commit: Some(Arc::new(move |_| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                s3(&["upload", &b, "ws", &up]);
            }
        })),
        ..Default::default()
    };
    library_on(m.port);
    let report = n4a::refresh::refresh_workspace(Path::new(&url), &opts, &|_, _| {}).unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.files);
    assert!(
        raced.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the racing upload happened"
    );
    let dir = tempfile::tempdir().unwrap();
    let got = ids(m.port, dir.path(), &url, "corn_moisture");
    for i in 0..40 {
        assert!(
            got.contains(&format!("theirs{i}")),
            "the writer's rows are kept"
        );
    }
    let s = n4a(m.port, dir.path(), &["summary", &url, "--format", "json"]);
    let v: Value = serde_json::from_slice(&s.stdout).unwrap();
    assert_eq!(v["total_predictions"].as_u64(), Some(got.len() as u64));
}

/// `n4a serve URL` on a free loopback port, credentials for `port`; its
/// address.
fn serve(port: u16, cache: &Path, url: &str, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = n4a_cmd(port, cache, &["serve", url, "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = util::served_address(&mut child);
    (child, addr)
}

#[test]
fn issue_34_two_servers_on_one_bucket_answer_alike_and_see_a_writer_within_the_interval() {
    let m = moto();
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = uploaded("servers", 3, dir.path());
    let cache = dir.path().join("cache");
    let servers: Vec<_> = (0..2)
        .map(|_| serve(m.port, &cache, &url, &["--relist", "1"]))
        .collect();
    let ask = |addr: &str, what: &str| {
        let mut c = crate::client::Client::connect(addr).unwrap();
        let r = c.get(what).unwrap();
        assert_eq!(
            r.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let mut v = r.json();
        if let Some(o) = v.as_object_mut() {
            o.remove("generated_at");
        }
        v
    };
    let total = |addr: &str| {
        ask(addr, "/api/workspaces/ws/predictions/summary")["total_predictions"].as_u64()
    };
    let page = "/api/workspaces/ws/predictions/data?partition=val&limit=20&offset=5";
    let (a, b) = (&servers[0].1, &servers[1].1);
    assert_eq!(
        ask(a, "/api/workspaces/ws/predictions/summary"),
        ask(b, "/api/workspaces/ws/predictions/summary")
    );
    assert_eq!(ask(a, page), ask(b, page));
    let before = total(a).unwrap();
    let input = dir.path().join("new.jsonl");
    jsonl(&input, "arrived later", "late", 30);
    let out = n4a(
        m.port,
        &cache,
        &["ingest", &url, input.to_str().unwrap(), "--quiet"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = Instant::now();
    for addr in [a, b] {
        loop {
            if total(addr) == Some(before + 30) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "a server did not see the new file within the 1 s interval (plus its answer)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        written.elapsed() < Duration::from_secs(3),
        "seen within the interval: {:?}",
        written.elapsed()
    );
    assert_eq!(ask(a, page), ask(b, page));
    for (mut child, _) in servers {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn issue_34_the_library_writer_appends_to_a_bucket_dataset() {
    let m = moto();
    let dir = tempfile::tempdir().unwrap();
    let (url, ws) = uploaded("libwriter", 2, dir.path());
    let dataset = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".meta.parquet").map(str::to_string))
        .min()
        .unwrap();
    let cache = dir.path().join("cache");
    let before = ids(m.port, &cache, &url, &dataset);
    library_on(m.port);
    let mut w =
        n4a::PredictionWriter::append(Path::new(&url), &dataset, Default::default()).unwrap();
    for i in 0..25 {
        let mut r = util::row("lib cfg", "PLS", "0", "val", 0.2 + i as f64 / 50.0);
        r.id = Some(format!("lib{i}"));
        r.dataset_name = Some(dataset.clone());
        w.write(&r).unwrap();
    }
    // Dropped before finishing: nothing changes.
    let mut dropped =
        n4a::PredictionWriter::append(Path::new(&url), "another set", Default::default()).unwrap();
    let mut r = util::row("lib cfg", "PLS", "0", "val", 0.5);
    r.id = Some("never".into());
    dropped.write(&r).unwrap();
    drop(dropped);
    w.finish().unwrap();
    let after = ids(m.port, &cache, &url, &dataset);
    assert_eq!(after.len(), before.len() + 25);
    assert!((0..25).all(|i| after.contains(&format!("lib{i}"))));
    let out = n4a(m.port, &cache, &["summary", &url, "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["total_datasets"].as_u64(),
        Some(2),
        "the dropped writer made nothing"
    );
    let d = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == dataset.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        d["total_predictions"].as_u64(),
        Some(after.len() as u64),
        "{d}"
    );
}
