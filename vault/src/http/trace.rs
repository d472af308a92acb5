//! One log line per vault request: method, path, status, the caller's identity, and the W3C
//! trace id the api sent, so an api request and the vault calls it made can be joined.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::domain::Peer;

/// Logs each request after it is answered.
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let identity =
        request.extensions().get::<Peer>().map(|p| p.identity.clone()).unwrap_or_default();
    let trace_id = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .unwrap_or_default();
    let response = next.run(request).await;
    tracing::info!(%method, path, status = response.status().as_u16(), identity, trace_id, "request");
    response
}
