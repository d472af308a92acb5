//! The mTLS listener: TLS 1.3, a verified client certificate on every connection, and the
//! client's SPIFFE identity attached to each request. The TLS configuration is read afresh for
//! every new connection, so reloaded certificates, CAs and CRLs apply without a restart; and at
//! every reload each open connection's client is verified again against the new CA and CRLs and
//! the connection closed at once if it no longer passes. No connection outlives
//! `tls.max_connection_age_seconds`, the backstop.

use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::CertificateDer;
use strongbox_shared::tls::{MtlsServer, Reloading, uri_sans};
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
    /// Longest a connection stays open before it is closed gracefully.
    pub max_connection_age: Duration,
}

/// Serves `router` until `stop` is cancelled, then waits for open connections to finish their
/// in-flight requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    tls: Reloading<MtlsServer>,
    router: Router,
    settings: ListenerSettings,
    stop: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
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
        // Subscribed before the handshake, so a reload during it is not missed: the handshake
        // verified against the material of its start.
        let mut reloads = tls.reloads();
        let acceptor = TlsAcceptor::from(tls.current().config.clone());
        let (router, settings, tls, stop) =
            (router.clone(), settings.clone(), tls.clone(), stop.clone());
        connections.spawn(async move {
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
            let chain: Vec<CertificateDer<'static>> = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            let uris = chain.first().and_then(|cert| uri_sans(cert).ok()).unwrap_or_default();
            let peer = Peer::from_uris(&uris, &settings.trust_domain, addr);
            let identity = peer.identity.clone();
            if reloads.has_changed().unwrap_or(false) && !tls.current().still_trusts(&chain) {
                tracing::warn!(%addr, identity, "refused a client whose certificate was revoked during its handshake");
                return;
            }
            let service = TowerToHyperService::new(router.layer(Extension(peer)));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let aged = tokio::time::sleep(settings.max_connection_age);
            tokio::pin!(aged);
            let mut reloading = true;
            let mut closing = false;
            loop {
                tokio::select! {
                    served = connection.as_mut() => {
                        if let Err(error) = served {
                            tracing::debug!(%addr, %error, "connection ended with an error");
                        }
                        return;
                    }
                    changed = reloads.changed(), if reloading => {
                        if changed.is_err() {
                            // The TLS material is gone with the server; nothing to re-check.
                            reloading = false;
                            continue;
                        }
                        if !tls.current().still_trusts(&chain) {
                            // Dropping the connection closes it, mid-request or not: the client
                            // is no longer trusted for anything.
                            tracing::warn!(
                                %addr,
                                identity,
                                "closed a connection whose client certificate no longer verifies"
                            );
                            return;
                        }
                    }
                    () = &mut aged, if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    () = stop.cancelled(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
