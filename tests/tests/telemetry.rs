//! Traces and metrics of the real binaries: one trace from an api request through the vault call
//! it makes, exported over OTLP/HTTP with no secret in it; and Prometheus metrics on both ops
//! ports that move as traffic flows.

use std::collections::HashMap;

use serde_json::json;
use strongbox_tests::otlp::OtlpReceiver;
use strongbox_tests::stack::{Stack, scrape};
use strongbox_tests::{SERVER_KEY, send};

#[tokio::test]
async fn one_trace_spans_an_api_request_and_its_vault_call_and_no_secret_is_exported() {
    let mut receiver = OtlpReceiver::start().await;
    // The api finds the collector through the standard variable, the vault through its option.
    // Both log their requests only at warn: a quiet log filter must not switch tracing off.
    let mut stack = Stack::start(
        &[
            ("STRONGBOX_VAULT__TELEMETRY__OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("STRONGBOX_VAULT__LOG__FILTER", "info,strongbox_vault::http=warn"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            (
                "STRONGBOX_API__LOG__FILTER",
                "info,strongbox_api::http=warn,strongbox_api::vault_client=warn",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let api_id = stack.recoverable_api().await;
    let created = stack.call("keys.createKey", json!({"apiId": api_id, "recoverable": true})).await;
    let request_id = created["meta"]["requestId"].as_str().unwrap().to_owned();
    let key = created["data"]["key"].as_str().unwrap().to_owned();
    let key_id = created["data"]["keyId"].as_str().unwrap().to_owned();

    let spans = receiver
        .wait_for("the createKey span and the vault's encrypt span", |spans| {
            let api = spans.iter().find(|s| s.attribute("request_id") == Some(request_id.as_str()));
            api.is_some_and(|api| {
                spans.iter().any(|s| s.service == "strongbox-vault" && s.trace_id == api.trace_id)
            })
        })
        .await;
    let api_span =
        spans.iter().find(|s| s.attribute("request_id") == Some(request_id.as_str())).unwrap();
    assert_eq!(api_span.service, "strongbox-api");
    assert_eq!(api_span.name, "POST /v2/keys.createKey");
    assert_eq!(api_span.parent_span_id, "", "the test sent no traceparent: a root span");
    let root_key_id = api_span.attribute("auth.root_key").expect("the span names the root key");
    assert!(!root_key_id.is_empty() && !stack.root_key.contains(root_key_id));
    let workspace = api_span.attribute("workspace_id").expect("the span names the workspace");
    assert!(!workspace.is_empty());
    let vault_span = spans
        .iter()
        .find(|s| s.service == "strongbox-vault" && s.trace_id == api_span.trace_id)
        .unwrap();
    assert_eq!(vault_span.name, "POST /v1/encrypt");
    let api_identity = format!("spiffe://{}/api", strongbox_tests::pki::TRUST_DOMAIN);
    assert_eq!(vault_span.attribute("identity"), Some(api_identity.as_str()));
    // The vault's span hangs under the api's client span for the call, itself under the request.
    let client_span = spans
        .iter()
        .find(|s| s.span_id == vault_span.parent_span_id)
        .expect("the vault span's parent was exported by the api");
    assert_eq!(client_span.service, "strongbox-api");
    assert_eq!(client_span.name, "POST /v1/encrypt");
    assert_eq!(client_span.trace_id, api_span.trace_id);
    assert_eq!(client_span.parent_span_id, api_span.span_id);

    // A decrypt makes a trace too; then no exported byte holds a secret.
    let got = stack.call("keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
    assert_eq!(got["data"]["plaintext"], key.as_str());
    let decrypt_id = got["meta"]["requestId"].as_str().unwrap().to_owned();
    receiver
        .wait_for("the decrypt's vault span", |spans| {
            let api = spans.iter().find(|s| s.attribute("request_id") == Some(decrypt_id.as_str()));
            api.is_some_and(|api| {
                spans.iter().any(|s| {
                    s.name == "POST /v1/decrypt"
                        && s.service == "strongbox-vault"
                        && s.trace_id == api.trace_id
                })
            })
        })
        .await;
    let ciphertext: String = stack
        .api_db
        .one("SELECT ciphertext FROM encrypted_keys WHERE key_id = $1", &[&key_id])
        .await;
    stack.stop().await;
    let bodies = receiver.bodies();
    assert!(!bodies.is_empty());
    for secret in [key.as_str(), SERVER_KEY, stack.root_key.as_str(), ciphertext.as_str()] {
        let needle = secret.as_bytes();
        assert!(
            bodies.iter().all(|b| !b.windows(needle.len()).any(|w| w == needle)),
            "an exported span holds a secret"
        );
    }
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// The sum of every sample of `name` whose labels include all of `labels`.
fn sum(samples: &HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn both_ops_ports_serve_prometheus_metrics_that_move_with_traffic() {
    let mut stack = Stack::start(&[], &[]).await;
    let api_id = stack.recoverable_api().await;
    let (api_before, vault_before) = (scrape(&stack.api_ops).await, scrape(&stack.vault_ops).await);

    let created = stack.call("keys.createKey", json!({"apiId": api_id, "recoverable": true})).await;
    let key = created["data"]["key"].as_str().unwrap().to_owned();
    let key_id = created["data"]["keyId"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(
            stack.call("keys.verifyKey", json!({"key": key})).await["data"]["code"],
            "VALID"
        );
    }
    let missing = stack.call("keys.verifyKey", json!({"key": "sk_doesnotexist1234567"})).await;
    assert_eq!(missing["data"]["code"], "NOT_FOUND");
    let got = stack.call("keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
    assert_eq!(got["data"]["plaintext"], key.as_str());
    let bad = stack.call("keys.getKey", json!({"keyId": 7})).await;
    assert_eq!(bad["error"]["status"], 400);
    let (status, _) = send(
        stack.pki.client("operator"),
        reqwest::Method::POST,
        &format!("{}/v1/sys/unlock", stack.vault_url),
        Some(json!({"key": "a wrong server key, long enough"})),
    )
    .await;
    assert_eq!(status, 403);

    let api = scrape(&stack.api_ops).await;
    let grew =
        |after: &HashMap<String, f64>,
         before: &HashMap<String, f64>,
         name: &str,
         labels: &[&str]| { sum(after, name, labels) - sum(before, name, labels) };
    // Requests by route and status, with latency histograms.
    let verify_route = ["route=\"/v2/keys.verifyKey\"", "status=\"200\""];
    assert_eq!(grew(&api, &api_before, "strongbox_http_requests_total", &verify_route), 4.0);
    assert_eq!(
        grew(&api, &api_before, "strongbox_http_request_duration_seconds_count", &verify_route),
        4.0
    );
    assert!(sum(&api, "strongbox_http_request_duration_seconds_bucket", &verify_route) > 0.0);
    assert_eq!(
        grew(
            &api,
            &api_before,
            "strongbox_http_requests_total",
            &["route=\"/v2/keys.getKey\"", "status=\"400\""]
        ),
        1.0
    );
    // Verify outcomes and the cache.
    assert_eq!(
        grew(&api, &api_before, "strongbox_verify_outcomes_total", &["code=\"VALID\""]),
        3.0
    );
    assert_eq!(
        grew(&api, &api_before, "strongbox_verify_outcomes_total", &["code=\"NOT_FOUND\""]),
        1.0
    );
    let hits = grew(
        &api,
        &api_before,
        "strongbox_cache_lookups_total",
        &["cache=\"key\"", "result=\"hit\""],
    );
    let misses = grew(
        &api,
        &api_before,
        "strongbox_cache_lookups_total",
        &["cache=\"key\"", "result=\"miss\""],
    );
    assert!(hits >= 2.0 && misses >= 1.0, "key cache: {hits} hits, {misses} misses");
    // The vault client, its breaker, the pool and the rewrap job.
    assert_eq!(
        grew(&api, &api_before, "strongbox_vault_client_calls_total", &["route=\"/v1/encrypt\""]),
        1.0
    );
    assert_eq!(
        grew(&api, &api_before, "strongbox_vault_client_calls_total", &["route=\"/v1/decrypt\""]),
        1.0
    );
    assert_eq!(sum(&api, "strongbox_vault_client_errors_total", &[]), 0.0);
    assert_eq!(value(&api, "strongbox_vault_client_breaker_state"), 0.0);
    assert!(value(&api, "strongbox_db_pool_max_connections{service=\"api\"}") >= 1.0);
    assert!(sum(&api, "strongbox_db_pool_connections", &["service=\"api\""]) >= 1.0);
    assert!(api.contains_key("strongbox_rewrap_rows_remaining"));

    let vault = scrape(&stack.vault_ops).await;
    assert_eq!(value(&vault, "strongbox_vault_initialized"), 1.0);
    assert_eq!(value(&vault, "strongbox_vault_unlocked"), 1.0);
    assert_eq!(value(&vault, "strongbox_vault_kek_version"), 1.0);
    assert_eq!(value(&vault, "strongbox_vault_keyrings"), 1.0);
    assert_eq!(value(&vault, "strongbox_vault_dek_versions{state=\"active\"}"), 1.0);
    assert!(value(&vault, "strongbox_vault_dek_encryptions_highest") >= 1.0);
    assert_eq!(value(&vault, "strongbox_vault_dek_encryption_budget"), 2_147_483_648.0);
    assert_eq!(
        grew(
            &vault,
            &vault_before,
            "strongbox_vault_unlock_failures_total",
            &["reason=\"wrong_key\""]
        ),
        1.0
    );
    let encrypt = ["route=\"/v1/encrypt\"", "status=\"200\""];
    assert_eq!(grew(&vault, &vault_before, "strongbox_http_requests_total", &encrypt), 1.0);
    assert!(grew(&vault, &vault_before, "strongbox_vault_audit_entries_total", &[]) >= 3.0);
    assert!(value(&vault, "strongbox_db_pool_max_connections{service=\"vault\"}") >= 1.0);

    // No workspace, key, keyring or root-key label anywhere.
    let workspace: String =
        stack.api_db.one("SELECT workspace_id FROM keys WHERE id = $1", &[&key_id]).await;
    for samples in [&api, &vault] {
        for series in samples.keys() {
            for id in [key_id.as_str(), workspace.as_str(), key.as_str(), stack.root_key.as_str()] {
                assert!(!series.contains(id), "{series} names {id}");
            }
        }
    }
    stack.stop().await;
}
