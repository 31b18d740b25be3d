//! The control plane: one OS thread with a current-thread tokio runtime
//! beside the glommio cores, serving the HTTP API and metrics.
//!
//! It never sits on the event path. It reads the cores' counters (relaxed
//! atomic loads; each core is the only writer of its own) and the files in
//! the data directory; it does not call into the cores. The listener is
//! bound on the main thread before the cores start, so the listening line
//! can name the real port when the configuration asks for port 0.

pub mod api;
pub mod metrics;
pub mod process;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

pub use api::ApiState;

/// How long open API connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// The running control thread.
pub struct ControlPlane {
    thread: JoinHandle<anyhow::Result<()>>,
    pub addr: SocketAddr,
}

impl ControlPlane {
    /// Binds the API address now and serves it on a new thread until
    /// `stop` is set.
    pub fn start(addr: SocketAddr, state: ApiState, stop: Arc<AtomicBool>) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot bind the HTTP API on {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let thread = std::thread::Builder::new()
            .name("sw-control".into())
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot build the control runtime")?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let router = api::router(Arc::new(state));
                    let stopped = {
                        let stop = stop.clone();
                        async move {
                            while !stop.load(Ordering::Relaxed) {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    };
                    let serve = axum::serve(listener, router).with_graceful_shutdown(stopped);
                    // Graceful shutdown waits for open connections; a client
                    // that keeps one open gets SHUTDOWN_GRACE, then the
                    // runtime is dropped, which closes it.
                    let deadline = async move {
                        while !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        tokio::time::sleep(SHUTDOWN_GRACE).await;
                    };
                    tokio::select! {
                        served = serve => served.context("the HTTP API failed"),
                        () = deadline => Ok(()),
                    }
                })
            })
            .context("cannot start the control thread")?;
        Ok(ControlPlane { thread, addr })
    }

    /// Waits for the control thread to finish after `stop` was set.
    pub fn join(self) -> anyhow::Result<()> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the control thread panicked"),
        }
    }
}
