//! `GET /v2/liveness`, Unkey's liveness probe on the public listener.

use super::envelope::Data;
use super::openapi::LivenessData;

/// Answers as long as the process serves HTTP; it does not look at the database.
#[utoipa::path(get, path = "/v2/liveness", tag = "liveness",
    responses((status = 200, description = "The process serves HTTP.", body = super::openapi::LivenessResponse)))]
pub async fn liveness() -> Data<LivenessData> {
    Data(LivenessData { message: "OK".to_owned() })
}
