//! The request-id middleware and the success envelope `{"meta":{"requestId"},"data"[,"pagination"]}`.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument as _;

use crate::context::request_id;

/// Gives every request an id and a span (joined to the caller's trace when it sent a valid
/// `traceparent`), visible to handlers, errors and logs; records the request metrics.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let id = strongbox_shared::id::new_id("req").unwrap_or_else(|_| "req_unavailable".to_owned());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        request_id = %id,
        trace_id = tracing::field::Empty,
        path = %request.uri().path(),
        "auth.root_key" = tracing::field::Empty,
        workspace_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    strongbox_shared::telemetry::set_remote_parent(&span, request.headers());
    // The exported span's trace id when tracing is on; otherwise the caller's, or a new one,
    // so logs of the api and the vault still join up.
    let trace_id = strongbox_shared::telemetry::trace_id(&span)
        .or_else(|| strongbox_shared::telemetry::incoming_trace_id(request.headers()))
        .unwrap_or_else(|| crate::context::random_hex(16));
    span.record("trace_id", trace_id.as_str());
    let context = crate::context::RequestContext { id, trace_id };
    let response = crate::context::scope(context, next.run(request).instrument(span.clone())).await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    strongbox_shared::metrics::record_request(
        "api",
        &route,
        method.as_str(),
        status,
        started.elapsed(),
    );
    // One line per request, carrying the request id and, for admin calls, the root key id.
    span.in_scope(|| tracing::info!(status, "request"));
    response
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    request_id: String,
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    meta: Meta,
    data: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagination: Option<super::openapi::Pagination>,
}

/// Writes the envelope straight from the typed answer: no intermediate JSON value keeps a copy
/// of a key that the answer's own types wipe on drop.
/// `size_hint` sizes the buffer up front: a page of keys grown from a small buffer was copied
/// about ten times over.
fn respond<T: Serialize>(
    data: &T,
    pagination: Option<super::openapi::Pagination>,
    size_hint: usize,
) -> Response {
    let envelope = Envelope { meta: Meta { request_id: request_id() }, data, pagination };
    let mut body = Vec::with_capacity(size_hint);
    match serde_json::to_writer(&mut body, &envelope) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // Only a type whose serialization can fail (none of ours) gets here; axum answers 500.
        Err(_) => axum::Json(envelope).into_response(),
    }
}

/// A success answer: `{"meta":{"requestId"},"data":…}`.
pub struct Data<T>(pub T);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        respond(&self.0, None, 512)
    }
}

/// A page of a list: `{"meta","data":[…],"pagination":{"cursor","hasMore"}}`.
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Where the next page starts, when there is one.
    pub cursor: Option<String>,
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        // The cursor is omitted, not null, on the last page: @unkey/api rejects a null cursor.
        let has_more = self.cursor.is_some();
        let pagination = Some(super::openapi::Pagination { cursor: self.cursor, has_more });
        respond(&self.data, pagination, 256 + 192 * self.data.len())
    }
}

/// A success answer with no `data`: `{"meta":{"requestId"}}` (`identities.deleteIdentity`).
pub struct MetaOnly;

impl IntoResponse for MetaOnly {
    fn into_response(self) -> Response {
        axum::Json(serde_json::json!({"meta": Meta { request_id: request_id() }})).into_response()
    }
}
