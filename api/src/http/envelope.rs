//! Request ids and the success envelope `{"meta":{"requestId"},"data"[,"pagination"]}`.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument as _;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id (`req_…`), or `req_unknown` outside a request.
pub fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "req_unknown".to_owned())
}

/// Gives every request an id, visible to handlers, errors and logs.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let id = strongbox_shared::id::new_id("req").unwrap_or_else(|_| "req_unavailable".to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        path = %request.uri().path(),
        "auth.root_key" = tracing::field::Empty,
        workspace_id = tracing::field::Empty,
    );
    let response = REQUEST_ID.scope(id, next.run(request).instrument(span.clone())).await;
    // One line per request, carrying the request id and, for admin calls, the root key id.
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), "request"));
    response
}

/// A success answer: `{"meta":{"requestId"},"data":…}`.
pub struct Data<T>(pub T);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        axum::Json(json!({"meta": {"requestId": request_id()}, "data": self.0})).into_response()
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
        let pagination = match self.cursor {
            Some(cursor) => json!({"cursor": cursor, "hasMore": true}),
            None => json!({"hasMore": false}),
        };
        axum::Json(json!({"meta": {"requestId": request_id()}, "data": self.data, "pagination": pagination}))
            .into_response()
    }
}
