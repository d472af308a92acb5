//! `GET /openapi.json` is generated from the same registrations that build the router: every
//! route is in it, and nothing else is.

use std::collections::BTreeSet;

use serde_json::Value;
use strongbox_tests::{TestDb, http_client, spawn_api};

#[tokio::test]
async fn the_served_spec_lists_exactly_the_routes_the_server_answers() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let spec: Value = http_client()
        .get(format!("{}/openapi.json", api.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"), "{}", spec["openapi"]);
    let mut listed = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut expected: BTreeSet<(String, String)> = strongbox_api::http::V2_ROUTES
        .iter()
        .map(|r| ("POST".to_owned(), format!("/v2/{r}")))
        .collect();
    for (method, path) in [
        ("GET", "/v2/liveness"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/keys.createKey"),
        ("GET", "/v1/keys.getKey"),
        ("GET", "/v1/apis.listKeys"),
        ("POST", "/v1/keys.verifyKey"),
    ] {
        expected.insert((method.to_owned(), path.to_owned()));
    }
    assert_eq!(listed, expected, "the spec and the route table differ");

    // Every listed route is really served (401 for a missing root key is an answer; 404, 405
    // or 501 would mean the spec lies).
    for (method, path) in &listed {
        let request = http_client().request(method.parse().unwrap(), format!("{}{path}", api.url));
        let request = if method == "POST" { request.json(&serde_json::json!({})) } else { request };
        let status = request.send().await.unwrap().status().as_u16();
        assert!(![404, 405, 501].contains(&status), "{method} {path} answered {status}");
    }
    // A v2 call outside the table is not served.
    let status = http_client()
        .post(format!("{}/v2/permissions.listRoles", api.url))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 501);

    // Request bodies are real schemas, and admin calls declare the Bearer root key.
    let create = &spec["paths"]["/v2/keys.createKey"]["post"];
    let schema_ref =
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
    let name = schema_ref.rsplit('/').next().unwrap();
    let props = &spec["components"]["schemas"][name]["properties"];
    for field in ["apiId", "prefix", "byteLength", "credits", "ratelimits", "recoverable"] {
        assert!(props.get(field).is_some(), "createKey body lacks {field}: {props}");
    }
    assert_eq!(create["security"][0]["rootKey"], serde_json::json!([]));
    assert_eq!(spec["components"]["securitySchemes"]["rootKey"]["scheme"], "bearer");
    assert!(
        spec["paths"]["/v1/keys.verifyKey"]["post"].get("security").is_none(),
        "v1 verify is open"
    );
}
