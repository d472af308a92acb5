//! The served OpenAPI document is typed: every answer's `data` has a schema of its own, and the
//! constraints it states are the ones the code enforces (the same constants).

#![allow(clippy::unwrap_used)] // a test binary: a panic is how it fails

use serde_json::Value;

fn spec() -> Value {
    serde_json::to_value(strongbox_api::http::documented_routes().1).unwrap()
}

/// Follows `$ref`s within the document.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => resolve(spec, &spec["components"]["schemas"][r.rsplit('/').next().unwrap()]),
        None => schema,
    }
}

#[test]
fn every_answer_is_typed_field_by_field() {
    let spec = spec();
    if let Ok(path) = std::env::var("STRONGBOX_DUMP_SPEC") {
        std::fs::write(path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    }
    for (path, item) in spec["paths"].as_object().unwrap() {
        if path == "/openapi.json" {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let ok = &op["responses"]["200"]["content"]["application/json"]["schema"];
            let body = resolve(&spec, ok);
            let props = body["properties"].as_object();
            assert!(props.is_some_and(|p| !p.is_empty()), "{method} {path}: untyped 200: {body}");
            // Unkey answers deleteIdentity with `{meta}` alone: nothing to type.
            if path.starts_with("/v2/") && path != "/v2/identities.deleteIdentity" {
                let data = resolve(&spec, &body["properties"]["data"]);
                let typed = data["properties"].is_object()
                    || data["items"].is_object()
                    || data["type"] == "object";
                assert!(typed, "{method} {path}: data is not typed: {data}");
            }
            if path.starts_with("/v2/") {
                for status in ["4XX", "5XX"] {
                    if path != "/v2/liveness" {
                        assert!(
                            op["responses"][status].is_object(),
                            "{method} {path}: no {status}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn stated_constraints_are_the_enforced_ones() {
    use strongbox_api::domain::keys::{MAX_CREDITS, MAX_NAME_LEN, MAX_WINDOW_MS};
    use strongbox_shared::keys::{MAX_BYTE_LENGTH, MIN_BYTE_LENGTH};
    let spec = spec();
    let schemas = &spec["components"]["schemas"];
    let create = &schemas["CreateKey"]["properties"];
    assert_eq!(create["byteLength"]["minimum"], MIN_BYTE_LENGTH);
    assert_eq!(create["byteLength"]["maximum"], MAX_BYTE_LENGTH);
    assert_eq!(create["name"]["maxLength"], MAX_NAME_LEN);
    assert_eq!(create["permissions"]["maxItems"], strongbox_api::domain::MAX_KEY_PERMISSIONS);
    assert_eq!(schemas["CreditsIn"]["properties"]["remaining"]["maximum"], MAX_CREDITS);
    assert_eq!(schemas["RatelimitIn"]["properties"]["duration"]["maximum"], MAX_WINDOW_MS);
    assert_eq!(schemas["RatelimitIn"]["properties"]["limit"]["maximum"], MAX_CREDITS);
    let max_limits = strongbox_api::domain::keys::MAX_RATELIMITS;
    assert_eq!(create["ratelimits"]["maxItems"], max_limits);
    assert_eq!(schemas["CreateIdentity"]["properties"]["ratelimits"]["maxItems"], max_limits);
    let limit = &schemas["Limit"]["properties"];
    let ns_len = strongbox_api::domain::ratelimit::MAX_IDENTIFIER_LEN;
    assert_eq!(limit["namespace"]["maxLength"], ns_len);
    assert_eq!(limit["identifier"]["maxLength"], ns_len);
    assert_eq!(limit["duration"]["maximum"], MAX_WINDOW_MS);
    assert_eq!(limit["limit"]["maximum"], MAX_CREDITS);
    let root = &schemas["CreateRootKey"]["properties"]["permissions"];
    assert_eq!(root["maxItems"], strongbox_api::domain::MAX_ROOT_KEY_PERMISSIONS);
    let pattern = schemas["PermissionName"]["pattern"].as_str().unwrap();
    let name = &schemas["PermissionName"];
    assert_eq!(name["maxLength"], strongbox_shared::permissions::MAX_PERMISSION_LEN);
    assert!(pattern.starts_with('^') && pattern.ends_with('$'), "{pattern}");
}
