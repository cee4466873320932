//! The HTTP admin endpoints, on `http_addr`: `/metrics`, `/healthz` and `/readyz`.
//!
//! The server starts before the node opens its storage, so `/healthz` answers (and a
//! liveness probe passes) through a long log recovery; `/readyz` says 503 until the node is
//! [`Health::serving`], whatever its check says after that, and 503 again from the moment
//! shutdown begins.

use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// Says whether a serving node is ready: `Err` holds why not, in a few words.
type ReadyCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

enum Stage {
    /// The listeners and the controller are not all up yet.
    Starting,
    /// Everything is up; readiness is what the check says.
    Serving(ReadyCheck),
    /// Shutdown began: the node must get no new clients.
    ShuttingDown,
}

/// The node's readiness as `/readyz` reports it, shared by the node and its HTTP server.
/// Cloning shares it.
#[derive(Clone)]
pub(crate) struct Health {
    stage: Arc<RwLock<Stage>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("ready", &self.check())
            .finish()
    }
}

impl Health {
    /// A node that is starting: not ready.
    pub(crate) fn starting() -> Health {
        Health {
            stage: Arc::new(RwLock::new(Stage::Starting)),
        }
    }

    /// Every listener is up: from now on the node is ready when `check` says so.
    pub(crate) fn serving(&self, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        let mut stage = self.stage.write().unwrap_or_else(|p| p.into_inner());
        // A shutdown that began during the start wins.
        if !matches!(*stage, Stage::ShuttingDown) {
            *stage = Stage::Serving(Box::new(check));
        }
    }

    /// Shutdown began: not ready from now on.
    pub(crate) fn shutting_down(&self) {
        *self.stage.write().unwrap_or_else(|p| p.into_inner()) = Stage::ShuttingDown;
    }

    /// Whether the node is ready, or why not.
    pub(crate) fn check(&self) -> Result<(), String> {
        match &*self.stage.read().unwrap_or_else(|p| p.into_inner()) {
            Stage::Starting => Err("starting: the listeners are not all up yet".into()),
            Stage::Serving(check) => check(),
            Stage::ShuttingDown => Err("shutting down".into()),
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop` completes; the
/// requests being answered then are answered first.
pub(crate) async fn serve(
    listener: TcpListener,
    health: Health,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(move || ready(health.clone())));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the HTTP server failed");
    }
}

async fn metrics() -> Response {
    // Rendering walks every series: off the async threads, as a large broker has many.
    match tokio::task::spawn_blocking(super::render).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rendering the metrics failed: {e}\n"),
            )
                .into_response()
        }
    }
}

async fn ready(health: Health) -> (StatusCode, String) {
    match health.check() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (status, body)
    }

    #[tokio::test]
    async fn readyz_follows_the_stage_and_healthz_always_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let health = Health::starting();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, health.clone(), async {
            let _ = stopped.await;
        }));
        let check = |path| tokio::time::timeout(Duration::from_secs(10), get(address, path));

        let (status, body) = check("/readyz").await.unwrap();
        assert_eq!(status, 503);
        assert!(body.contains("starting"), "{body}");
        assert_eq!(check("/healthz").await.unwrap().0, 200);

        let caught_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&caught_up);
        health.serving(move || {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                Err("catching up".into())
            }
        });
        let (status, body) = check("/readyz").await.unwrap();
        assert_eq!((status, body.as_str()), (503, "not ready: catching up\n"));
        caught_up.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(check("/readyz").await.unwrap(), (200, "ready\n".into()));

        health.shutting_down();
        let (status, body) = check("/readyz").await.unwrap();
        assert_eq!((status, body.as_str()), (503, "not ready: shutting down\n"));
        assert_eq!(check("/healthz").await.unwrap().0, 200);
        // No exporter in unit tests: an empty page, not an error.
        assert_eq!(check("/metrics").await.unwrap(), (200, String::new()));
        assert_eq!(check("/nothing").await.unwrap().0, 404);

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}
