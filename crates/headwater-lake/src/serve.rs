//! A folder served over HTTP on loopback, with `Range` support: "the web"
//! for tests and the offline demo, laid out like the public release
//! (`{color}/{color}_tripdata_{YYYY}-{MM}.csv.gz`).

use std::net::SocketAddr;
use std::path::Path;

use tokio_util_shim::Shutdown;

use crate::LakeError;

/// A running file server; stops when dropped.
pub struct FileServer {
    pub addr: SocketAddr,
    _shutdown: Shutdown,
}

impl FileServer {
    /// Serves `dir` on 127.0.0.1 at `port` (0: any free port).
    pub async fn start(dir: &Path, port: u16) -> Result<FileServer, LakeError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
        let (shutdown, signal) = Shutdown::new();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(signal).await;
        });
        Ok(FileServer { addr, _shutdown: shutdown })
    }

    /// The base URL files are under.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

mod tokio_util_shim {
    use tokio::sync::oneshot;

    /// Ends the server when dropped.
    pub struct Shutdown(Option<oneshot::Sender<()>>);

    impl Shutdown {
        pub fn new() -> (Shutdown, impl std::future::Future<Output = ()> + Send + 'static) {
            let (tx, rx) = oneshot::channel();
            (Shutdown(Some(tx)), async move {
                let _ = rx.await;
            })
        }
    }

    impl Drop for Shutdown {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
}
