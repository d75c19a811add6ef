//! Ctrl-C and SIGTERM while flows run.
//!
//! Listening for a signal with tokio replaces the default handler for the
//! rest of the process. So one watcher serves the whole process: while a root
//! flow runs, it tells the flow (which cancels, records and returns); when
//! none does, it exits as the default handler would have (status 130 for
//! SIGINT, 143 for SIGTERM).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::sync::broadcast;

struct Watcher {
    active: AtomicUsize,
    tx: broadcast::Sender<String>,
}

static WATCHER: OnceLock<Watcher> = OnceLock::new();
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Leaves Ctrl-C and SIGTERM to the program: flows then neither listen for
/// them nor install a handler. For programs that handle signals themselves
/// (a server shutting down gracefully, say); call it before the first flow.
pub fn disable_signal_handling() {
    DISABLED.store(true, Ordering::SeqCst);
}

pub(crate) fn enabled() -> bool {
    !DISABLED.load(Ordering::SeqCst)
}

/// Held by a running root flow; while any is held, signals go to flows.
pub(crate) struct Subscription {
    pub rx: broadcast::Receiver<String>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(w) = WATCHER.get() {
            w.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

pub(crate) fn subscribe() -> Subscription {
    let watcher = WATCHER.get_or_init(|| {
        let (tx, _) = broadcast::channel(4);
        let sender = tx.clone();
        tokio::spawn(async move {
            loop {
                let (why, code) = next_signal().await;
                let w = WATCHER.get().expect("initialised before the watcher starts");
                if w.active.load(Ordering::SeqCst) == 0 {
                    std::process::exit(code);
                }
                let _ = sender.send(why.to_string());
            }
        });
        Watcher { active: AtomicUsize::new(0), tx }
    });
    let rx = watcher.tx.subscribe();
    watcher.active.fetch_add(1, Ordering::SeqCst);
    Subscription { rx }
}

impl Subscription {
    /// Resolves when the process is asked to stop, with how it was asked.
    pub async fn interrupted(&mut self) -> String {
        loop {
            match self.rx.recv().await {
                Ok(why) => return why,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

async fn next_signal() -> (&'static str, i32) {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => ("interrupted by Ctrl-C (SIGINT)", 130),
            _ = term => ("terminated by SIGTERM", 143),
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c.await;
        ("interrupted by Ctrl-C", 130)
    }
}
