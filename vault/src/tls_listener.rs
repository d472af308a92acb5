//! The mTLS listener: TLS 1.3, a verified client certificate on every connection, and the
//! client's SPIFFE identity attached to each request. The TLS configuration is read afresh for
//! every new connection, so reloaded certificates, CAs and CRLs apply without a restart.

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use strongbox_shared::tls::{Reloading, uri_sans};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::domain::Peer;

/// Settings of the listener.
#[derive(Clone)]
pub struct ListenerSettings {
    /// Trust domain of client SPIFFE ids.
    pub trust_domain: Arc<str>,
    /// Longest a client may take to complete the handshake.
    pub handshake_timeout: Duration,
}

/// Serves `router` until `stop` is cancelled, then waits for open connections to finish their
/// in-flight requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    tls: Reloading<ServerConfig>,
    router: Router,
    settings: ListenerSettings,
    stop: CancellationToken,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually descriptor exhaustion: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let acceptor = TlsAcceptor::from(tls.current());
        let router = router.clone();
        let settings = settings.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(
                settings.handshake_timeout,
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::info!(%addr, %error, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let uris = match stream.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => uri_sans(cert).unwrap_or_default(),
                None => Vec::new(),
            };
            let peer = Peer::from_uris(&uris, &settings.trust_domain, addr);
            let service = TowerToHyperService::new(router.layer(Extension(peer)));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%addr, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
