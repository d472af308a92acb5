//! Migrations on empty databases, re-runs, and replicas migrating at the same moment.

use strongbox_shared::db::DatabaseConfig;
use strongbox_tests::TestDb;

const VAULT_MIGRATIONS: [&str; 9] = [
    "V1__create_root_record",
    "V2__create_keys",
    "V3__create_audit_log",
    "V4__create_unlock_attempts",
    "V5__key_the_audit_log",
    "V6__bind_where_keying_starts",
    "V7__unlock_shares",
    "V8__token_seal",
    "V9__recovery_shares",
];

async fn table_exists(db: &TestDb, table: &str) -> bool {
    let client = db.client().await;
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("public.{table}")])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn api_migrations_build_the_schema_on_an_empty_database() {
    let db = TestDb::new().await;
    assert!(!table_exists(&db, "workspaces").await);
    let report = strongbox_api::migrate(&DatabaseConfig::from_url(db.url())).await.unwrap();
    assert_eq!(
        report.applied,
        [
            "V1__create_workspaces",
            "V2__create_apis_and_keys",
            "V3__create_encrypted_keys",
            "V4__create_rewrap_progress",
            "V5__shared_rate_limits"
        ]
    );
    for table in [
        "workspaces",
        "apis",
        "identities",
        "keys",
        "root_keys",
        "encrypted_keys",
        "decrypt_audit",
        "rewrap_progress",
        "ratelimit_windows",
        "api_replicas",
        "ratelimit_namespaces",
        "ratelimit_overrides",
    ] {
        assert!(table_exists(&db, table).await, "{table}");
    }
    assert!(table_exists(&db, "refinery_schema_history").await);
}

#[tokio::test]
async fn vault_migrations_build_the_schema_on_an_empty_database() {
    let db = TestDb::new().await;
    let report = strongbox_vault::migrate(&DatabaseConfig::from_url(db.url())).await.unwrap();
    assert_eq!(report.applied, VAULT_MIGRATIONS);
    for table in ["root_record", "keks", "keyrings", "deks"] {
        assert!(table_exists(&db, table).await, "{table}");
    }
}

#[tokio::test]
async fn a_second_run_applies_nothing() {
    let db = TestDb::new().await;
    let config = DatabaseConfig::from_url(db.url());
    strongbox_api::migrate(&config).await.unwrap();
    let again = strongbox_api::migrate(&config).await.unwrap();
    assert!(again.applied.is_empty(), "{:?}", again.applied);
}

#[tokio::test]
async fn replicas_migrating_together_apply_each_migration_once() {
    let db = TestDb::new().await;
    let config = DatabaseConfig::from_url(db.url());
    let runs = (0..4).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { strongbox_vault::migrate(&config).await })
    });
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap().unwrap().applied);
    }
    assert_eq!(applied, VAULT_MIGRATIONS);
    let client = db.client().await;
    let rows: i64 =
        client.query_one("SELECT count(*) FROM refinery_schema_history", &[]).await.unwrap().get(0);
    assert_eq!(rows, VAULT_MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn the_api_and_vault_schemas_are_separate() {
    // Each service migrates only its own database: the api schema has no vault tables.
    let db = TestDb::new().await;
    strongbox_api::migrate(&DatabaseConfig::from_url(db.url())).await.unwrap();
    assert!(!table_exists(&db, "root_record").await);
}
