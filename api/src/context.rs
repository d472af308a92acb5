//! What every request carries, wherever its work goes: its id (`req_…`) and its W3C trace id.
//! The HTTP layer sets them for each request; logs, errors, the decrypt audit and outgoing vault
//! calls read them.

use std::future::Future;

/// A request's id and trace id.
#[derive(Clone)]
pub struct RequestContext {
    /// `req_…`.
    pub id: String,
    /// 32 hex digits.
    pub trace_id: String,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// Runs `work` with `context` as the current request.
pub async fn scope<F: Future>(context: RequestContext, work: F) -> F::Output {
    REQUEST.scope(context, work).await
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

/// `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // An all-zero id is invalid in W3C trace context; a failed random source yields one, and
    // the receiver then starts its own trace, which is harmless. AWS-LC's user-space generator:
    // no system call per request.
    let _ = aws_lc_rs::rand::fill(&mut buf);
    strongbox_shared::id::hex(&buf)
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
