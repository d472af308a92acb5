//! Request ids and the success envelope `{"meta":{"requestId"},"data"[,"pagination"]}`.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument as _;

/// What every request carries: its id and its W3C trace id.
#[derive(Clone)]
struct RequestContext {
    id: String,
    trace_id: String,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// The current request's id (`req_…`), or `req_unknown` outside a request.
pub fn request_id() -> String {
    REQUEST.try_with(|r| r.id.clone()).unwrap_or_else(|_| "req_unknown".to_owned())
}

/// A W3C `traceparent` for an outgoing call made within `span`: the span's own when spans are
/// exported; otherwise the request's trace id (the caller's, or new) and a fresh span id.
pub fn outgoing_traceparent(span: &tracing::Span) -> String {
    if let Some(traceparent) = strongbox_shared::telemetry::traceparent(span) {
        return traceparent;
    }
    let trace_id = REQUEST.try_with(|r| r.trace_id.clone()).unwrap_or_else(|_| random_hex(16));
    format!("00-{trace_id}-{}-01", random_hex(8))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // An all-zero id is invalid in W3C trace context; a failed random source yields one, and
    // the receiver then starts its own trace, which is harmless.
    let _ = getrandom::fill(&mut buf);
    strongbox_shared::id::hex(&buf)
}

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
        .unwrap_or_else(|| random_hex(16));
    span.record("trace_id", trace_id.as_str());
    let context = RequestContext { id, trace_id };
    let response = REQUEST.scope(context, next.run(request).instrument(span.clone())).await;
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

/// A success answer: `{"meta":{"requestId"},"data":…}`.
pub struct Data<T>(pub T);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        axum::Json(json!({"meta": {"requestId": request_id()}, "data": self.0})).into_response()
    }
}

/// Checks a page size: 1-100, 100 when absent.
pub fn page_limit(limit: Option<i64>) -> Result<i64, super::error::ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(super::error::ApiError::invalid(
            "INVALID_LIMIT",
            "limit",
            "limit must be 1-100",
        ));
    }
    Ok(limit)
}

/// Cuts `rows` (fetched with `limit + 1`) to `limit` and returns the cursor of the next page:
/// the last id shown, when more rows exist.
pub fn cut_page<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> &str) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(100);
    let more = rows.len() > limit;
    rows.truncate(limit);
    if more { rows.last().map(|r| id(r).to_owned()) } else { None }
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
        let pagination = match self.cursor {
            Some(cursor) => json!({"cursor": cursor, "hasMore": true}),
            None => json!({"hasMore": false}),
        };
        axum::Json(json!({"meta": {"requestId": request_id()}, "data": self.data, "pagination": pagination}))
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outgoing_traceparent_without_exported_spans_is_well_formed() {
        let out = outgoing_traceparent(&tracing::Span::none());
        assert_eq!(out.split('-').map(str::len).collect::<Vec<_>>(), vec![2, 32, 16, 2], "{out}");
    }
}
