//! `GET /v2/liveness`, Unkey's liveness probe on the public listener.

use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};
use strongbox_shared::id::new_id;

/// Answers as long as the process serves HTTP; it does not look at the database.
#[utoipa::path(get, path = "/v2/liveness", tag = "liveness",
    responses((status = 200, description = "data: {message: \"OK\"}", body = super::openapi::SuccessResponse)))]
pub async fn liveness() -> Result<Json<Value>, StatusCode> {
    let request_id = new_id("req").map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(json!({"meta": {"requestId": request_id}, "data": {"message": "OK"}})))
}
