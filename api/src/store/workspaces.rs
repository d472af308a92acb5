//! Workspaces.

use deadpool_postgres::GenericClient;

/// Creates a workspace; `None` when the name is taken.
pub async fn create(
    c: &impl GenericClient,
    id: &str,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&id, &name],
        )
        .await?;
    Ok(n == 1)
}

/// The id of the workspace called `name`.
pub async fn id_by_name(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT id FROM workspaces WHERE name = $1", &[&name]).await?.map(|r| r.get(0)))
}
