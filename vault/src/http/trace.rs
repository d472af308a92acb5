//! What happens around every call on the mTLS listener: a span (joined to the api's trace by its
//! W3C `traceparent`), the audit entry, the request metrics, and one log line.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::audit::Entry;
use crate::domain::Peer;
use crate::error::VaultError;
use crate::http::AppState;

/// Traces, audits, measures and logs each request.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let path_keyring = route
        .starts_with("/v1/keyrings/{keyring}")
        .then(|| request.uri().path().split('/').nth(3).map(str::to_owned))
        .flatten();
    let identity =
        request.extensions().get::<Peer>().map(|p| p.identity.clone()).unwrap_or_default();
    let action = format!("{method} {route}");
    let span = tracing::info_span!(
        "vault request",
        otel.name = %action,
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        identity = %identity,
        keyring = Empty,
        items = Empty,
        http.response.status_code = Empty,
    );
    strongbox_shared::telemetry::set_remote_parent(&span, request.headers());
    let trace_id = strongbox_shared::telemetry::trace_id(&span)
        .or_else(|| strongbox_shared::telemetry::incoming_trace_id(request.headers()))
        .unwrap_or_default();
    let (response, note) = crate::audit::noting(next.run(request)).instrument(span.clone()).await;
    let keyring = note.keyring.or(path_keyring);
    if let Some(k) = &keyring {
        span.record("keyring", k.as_str());
    }
    if let Some(n) = note.items {
        span.record("items", n);
    }
    let status = i16::try_from(response.status().as_u16()).unwrap_or(i16::MAX);
    let action = match note.detail {
        Some(detail) => format!("{action} {detail}"),
        None => action,
    };
    let entry =
        Entry { identity, action, keyring, items: note.items, status, trace_id: trace_id.clone() };
    let response = if state.audit.record(entry).await {
        response
    } else {
        VaultError::AuditUnavailable.into_response()
    };
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    strongbox_shared::metrics::record_request(
        "vault",
        &route,
        method.as_str(),
        status,
        started.elapsed(),
    );
    span.in_scope(|| tracing::info!(%method, route, status, trace_id, "request"));
    response
}
