//! Serving a router on a socket: plain HTTP or HTTPS, a cap on connections,
//! a deadline for request headers, and a graceful shutdown.
//!
//! Connections are served with hyper directly rather than `axum::serve`,
//! which offers none of TLS, a connection cap or a header deadline. Only
//! HTTP/1.1 is spoken: it is what the API's clients (curl, Golem's and
//! Vow's CLIs, webhooks) use, and hyper's HTTP/1 header deadline covers a
//! new connection that sends nothing, slow headers, and an idle keep-alive
//! connection alike, so no client can hold a connection without sending a
//! request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// How long [`serve`] lets in-flight requests finish after the shutdown
/// signal before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How [`serve_with`] treats connections. The defaults suit a server on a
/// network: see each field.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Serve HTTPS with this configuration ([`tls_config`] reads one from
    /// PEM files); plain HTTP when none.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Most connections served at once (default 1024). Past it, new
    /// connections wait in the kernel's accept queue until one closes, so
    /// a flood of clients cannot exhaust file descriptors or memory.
    pub max_connections: usize,
    /// How long a client has to send a request's headers (default 30 s):
    /// counted from the connection's start (after the TLS handshake, which
    /// gets as long again) and, on a kept-alive connection, from the end of
    /// the previous response. A client that sends nothing, or too slowly,
    /// is disconnected.
    pub header_timeout: Duration,
    /// How long requests in flight may finish after the shutdown signal
    /// ([`SHUTDOWN_GRACE`]); those still running then are abandoned.
    pub grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            grace: SHUTDOWN_GRACE,
        }
    }
}

/// Why a TLS configuration cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key (they do not match, or the
    /// key's algorithm is not supported).
    #[error("the certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS configuration from a PEM certificate chain (the server's
/// certificate first) and a PEM private key (PKCS#8, PKCS#1 or SEC1),
/// offering HTTP/1.1 by ALPN.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |path: &Path, reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(cert, "holds no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` on `listener` over plain HTTP until `shutdown`
/// resolves, with [`ServeOptions`]' defaults.
///
/// Then it stops accepting connections and lets requests in flight finish,
/// but for at most [`SHUTDOWN_GRACE`]: an `invoke-and-await` parked on a
/// promise nobody completes would otherwise hold shutdown forever.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, ServeOptions::default()).await
}

/// [`serve`] with another grace period.
pub async fn serve_with_grace(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let options = ServeOptions {
        grace,
        ..ServeOptions::default()
    };
    serve_with(listener, router, shutdown, options).await
}

/// [`serve`] with these options: HTTPS, the connection cap, the header
/// deadline and the grace period.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // Responses that last (the event stream) end when this turns true, so
    // that they do not hold the graceful shutdown for its whole grace.
    let (drain, draining) = watch::channel(false);
    let router = router.layer(axum::Extension(Draining(draining)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let connection = Arc::new(Connection {
        http,
        tls: options.tls.map(TlsAcceptor::from),
        router,
        handshake_timeout: options.header_timeout,
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: keep serving the others.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole, so Nagle's algorithm only adds
        // latency.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Arc::clone(&connection);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection.serve(tcp, peer, watcher).await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    drain.send_replace(true);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!(grace = ?options.grace, "requests still in flight after the grace period; giving up on them");
        }
    }
    Ok(())
}

/// Tells the responses that would otherwise never end (the event stream
/// of `GET /v1/events`) that the server is shutting down. [`serve_with`]
/// puts it in every request's extensions; a router used without it (in
/// tests, through `oneshot`) has none.
#[derive(Clone, Debug)]
pub(crate) struct Draining(watch::Receiver<bool>);

impl Draining {
    /// Resolves once the shutdown has started (or the server is gone).
    pub(crate) async fn started(&mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

/// What every connection is served with.
struct Connection {
    http: hyper::server::conn::http1::Builder,
    tls: Option<TlsAcceptor>,
    router: Router,
    handshake_timeout: Duration,
}

impl Connection {
    async fn serve(
        &self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let service = TowerToHyperService::new(self.router.clone());
        let result =
            match &self.tls {
                None => {
                    let conn = self.http.serve_connection(TokioIo::new(tcp), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = self.http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
        if let Err(error) = result {
            // Clients closing early, header deadlines and malformed
            // requests end here: worth a debug line, not more.
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// Resolves when the process receives SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
