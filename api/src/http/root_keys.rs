//! `rootKeys.createKey|listKeys|updateKey|rerollKey|deleteKey`. All need `root_key.*.manage`,
//! and a root key may grant only what its own permissions cover.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use strongbox_shared::keys as keygen;
use strongbox_shared::permissions::{Permission, covers};

use super::auth::Caller;
use super::envelope::{Data, Page};
use super::error::ApiError;
use super::extract::Body;
use super::views::{nullable, parse_expires};
use crate::startup::AppState;
use crate::store::root_keys::{self, RootKey};
use crate::store::unix_ms;

const MANAGE: &str = "root_key.*.manage";

/// rootKeys.createKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    permissions: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[schema(value_type = Option<i64>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    expires: Option<Option<i64>>,
}

/// rootKeys.listKeys.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct List {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
}

/// rootKeys.updateKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    key_id: String,
    #[schema(value_type = Option<String>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// rootKeys.rerollKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reroll {
    key_id: String,
    #[serde(default)]
    expiration: Option<i64>,
}

/// rootKeys.deleteKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delete {
    key_id: String,
}

/// Parses `wanted` and refuses any the caller could not hold itself.
fn grantable(caller: &Caller, wanted: &[String]) -> Result<(), ApiError> {
    if wanted.is_empty() {
        return Err(ApiError::invalid(
            "INVALID_PERMISSION",
            "permissions",
            "a root key needs at least one permission",
        ));
    }
    for (i, p) in wanted.iter().enumerate() {
        let parsed = Permission::parse(p).map_err(|e| {
            ApiError::invalid("INVALID_PERMISSION", &format!("permissions[{i}]"), e.to_string())
        })?;
        if !covers(&caller.permissions, &parsed) {
            return Err(ApiError::forbidden(format!(
                "this root key cannot grant {p}: its own permissions do not cover it"
            )));
        }
    }
    Ok(())
}

/// A new root key's plaintext and record.
pub fn mint(
    workspace_id: &str,
    name: Option<String>,
    permissions: Vec<String>,
    expires_at: Option<time::OffsetDateTime>,
) -> Result<(String, RootKey), ApiError> {
    let plaintext = keygen::new_root_key().map_err(|e| ApiError::internal(e.into()))?;
    let key = RootKey {
        id: strongbox_shared::id::new_id("rk")?,
        workspace_id: workspace_id.to_owned(),
        start: plaintext.chars().take(7).collect(),
        end: plaintext.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect(),
        name,
        permissions,
        enabled: true,
        expires_at,
        created_at: time::OffsetDateTime::now_utc(),
        last_used_at: None,
    };
    Ok((plaintext, key))
}

async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<RootKey, ApiError> {
    let client = state.pool.get().await?;
    root_keys::get(&client, &caller.workspace_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("root key {id} does not exist")))
}

/// `POST /v2/rootKeys.createKey`. The key appears in this response only.
#[utoipa::path(post, path = "/v2/rootKeys.createKey", tag = "rootKeys", request_body = Create,
    responses((status = 200, description = "Creates a root key; it may grant only what the caller covers. data: {keyId, key}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Create>,
) -> Result<Data<Value>, ApiError> {
    caller.require(MANAGE)?;
    grantable(&caller, &body.permissions)?;
    let expires_at = body.expires.flatten().map(|ms| parse_expires(ms, "expires")).transpose()?;
    let (plaintext, key) = mint(&caller.workspace_id, body.name, body.permissions, expires_at)?;
    root_keys::insert(&state.pool.get().await?, &key, &keygen::hash(&plaintext)).await?;
    tracing::info!(created_root_key = %key.id, "created root key");
    Ok(Data(json!({"keyId": key.id, "key": plaintext})))
}

fn view(key: &RootKey) -> Value {
    json!({
        "keyId": key.id,
        "start": key.start,
        "end": key.end,
        "name": key.name,
        "permissions": key.permissions,
        "enabled": key.enabled,
        "createdAt": unix_ms(key.created_at),
        "lastUsedAt": key.last_used_at.map_or(0, unix_ms),
        "expires": key.expires_at.map(unix_ms),
    })
}

/// `POST /v2/rootKeys.listKeys`.
#[utoipa::path(post, path = "/v2/rootKeys.listKeys", tag = "rootKeys", request_body = List,
    responses((status = 200, description = "A page of root keys, never the keys themselves.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<List>,
) -> Result<Page<Value>, ApiError> {
    caller.require(MANAGE)?;
    let limit = super::envelope::page_limit(body.limit)?;
    let mut page = root_keys::list(
        &state.pool.get().await?,
        &caller.workspace_id,
        body.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let cursor = super::envelope::cut_page(&mut page, limit, |k| &k.id);
    Ok(Page { data: page.iter().map(view).collect(), cursor })
}

async fn save(state: &AppState, key: &RootKey) -> Result<(), ApiError> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    root_keys::update(&tx, key).await?;
    crate::cache::announce_root_key(&tx, &key.id).await?;
    tx.commit().await?;
    state.cache.forget_root_key(&key.id);
    Ok(())
}

/// `POST /v2/rootKeys.updateKey`: takes effect at once on every replica.
#[utoipa::path(post, path = "/v2/rootKeys.updateKey", tag = "rootKeys", request_body = Update,
    responses((status = 200, description = "Updates a root key; applies at once on every replica. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Update>,
) -> Result<Data<Value>, ApiError> {
    caller.require(MANAGE)?;
    let mut key = load(&state, &caller, &body.key_id).await?;
    if let Some(permissions) = body.permissions {
        grantable(&caller, &permissions)?;
        key.permissions = permissions;
    }
    if let Some(name) = body.name {
        key.name = name;
    }
    if let Some(enabled) = body.enabled {
        key.enabled = enabled;
    }
    save(&state, &key).await?;
    Ok(Data(json!({})))
}

/// `POST /v2/rootKeys.rerollKey`: a new root key with the same permissions; the old one stops
/// working after `expiration` ms (at once for 0 or null).
#[utoipa::path(post, path = "/v2/rootKeys.rerollKey", tag = "rootKeys", request_body = Reroll,
    responses((status = 200, description = "A new root key with the same permissions. data: {keyId, key}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn reroll(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Reroll>,
) -> Result<Data<Value>, ApiError> {
    caller.require(MANAGE)?;
    let old = load(&state, &caller, &body.key_id).await?;
    let expiration = body.expiration.unwrap_or(0);
    if expiration < 0 {
        return Err(ApiError::invalid(
            "INVALID_EXPIRATION",
            "expiration",
            "expiration must not be negative",
        ));
    }
    let (plaintext, new) =
        mint(&caller.workspace_id, old.name.clone(), old.permissions.clone(), old.expires_at)?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    root_keys::insert(&tx, &new, &keygen::hash(&plaintext)).await?;
    if expiration == 0 {
        root_keys::delete(&tx, &caller.workspace_id, &old.id).await?;
    } else {
        let mut expiring = old.clone();
        let at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(expiration);
        expiring.expires_at = Some(old.expires_at.map_or(at, |e| e.min(at)));
        root_keys::update(&tx, &expiring).await?;
    }
    crate::cache::announce_root_key(&tx, &old.id).await?;
    tx.commit().await?;
    state.cache.forget_root_key(&old.id);
    tracing::info!(old_root_key = %old.id, root_key = %new.id, "rerolled root key");
    Ok(Data(json!({"keyId": new.id, "key": plaintext})))
}

/// `POST /v2/rootKeys.deleteKey`: takes effect at once on every replica.
#[utoipa::path(post, path = "/v2/rootKeys.deleteKey", tag = "rootKeys", request_body = Delete,
    responses((status = 200, description = "Deletes a root key. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Delete>,
) -> Result<Data<Value>, ApiError> {
    caller.require(MANAGE)?;
    let key = load(&state, &caller, &body.key_id).await?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    root_keys::delete(&tx, &caller.workspace_id, &key.id).await?;
    crate::cache::announce_root_key(&tx, &key.id).await?;
    tx.commit().await?;
    state.cache.forget_root_key(&key.id);
    Ok(Data(json!({})))
}
