//! Running the router: on a listener until a signal ([`run`], what
//! `n4a serve` calls), or on a thread of its own ([`Background`], for
//! embedding, tests and benches), both with graceful shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use super::{router, webapp, App, ServeOptions};
use crate::error::{Error, Result};

/// Serves `app` on `listener` until `shutdown` completes, then finishes the
/// requests in flight (graceful shutdown).
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A server running on a thread of its own (a two-worker tokio runtime)
/// on `127.0.0.1:0`, for embedding, tests and benches; it stops gracefully
/// when dropped. Cost at start: a runtime, a bound socket, one thread.
pub struct Background {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts serving `app` on a free loopback port.
    ///
    /// # Errors
    /// [`Error::Io`] when the runtime cannot start or the port cannot be bound.
    pub fn start(app: Arc<App>) -> Result<Background> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("127.0.0.1:0", e))?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| Error::io("127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("127.0.0.1:0", e))?
            .to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(e) = rt.block_on(serve(listener, app, stopped)) {
                eprintln!("n4a serve: {e}");
            }
        });
        Ok(Background {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The bound address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let int = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = int => {},
        () = term => {},
    }
}

/// Runs the server until SIGINT or SIGTERM: checks the address, opens the
/// workspaces, binds, prints `listening on http://ADDR` on stderr (with
/// the bound port when the address asked for port 0).
///
/// # Errors
/// [`Error::InvalidOption`] for a non-loopback address without
/// `allow_remote`; what [`App::new`] returns; [`Error::Io`] when the
/// address cannot be bound.
pub fn run(workspaces: &[(String, PathBuf)], opts: ServeOptions) -> Result<()> {
    if !opts.addr.ip().is_loopback() && !opts.allow_remote {
        return Err(Error::InvalidOption(format!(
            "refusing to listen on {}: not a loopback address (pass --allow-remote to serve other hosts)",
            opts.addr
        )));
    }
    if !opts.addr.ip().is_loopback() && opts.token.is_none() && !opts.no_auth {
        return Err(Error::InvalidOption(format!(
            "refusing to serve {} beyond loopback without a bearer token: pass --token-file FILE \
             (or --no-auth to let anyone who reaches the port read every prediction)",
            opts.addr
        )));
    }
    let addr = opts.addr;
    crate::memory::limit_malloc_arenas();
    let blocking = opts.max_heavy.max(1) * 2 + 16;
    let app = App::new(workspaces, opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("n4a-serve")
        .max_blocking_threads(blocking)
        .build()
        .map_err(|e| Error::io(".", e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(addr.to_string(), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io(addr.to_string(), e))?;
        eprintln!("n4a serve: listening on http://{bound}");
        for w in app.list() {
            webapp::warm(&app, w.clone());
            eprintln!("  workspace {:?}: {}", w.id, w.path.display());
        }
        serve(listener, app, shutdown_signal())
            .await
            .map_err(|e| Error::io(bound.to_string(), e))?;
        eprintln!("n4a serve: stopped");
        Ok(())
    })
}
