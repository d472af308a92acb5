//! A fresh, empty database per test on the server named by `DATABASE_URL`.

use tokio_postgres::NoTls;

/// A database that exists for one test and is dropped (forcibly) when the value is dropped.
pub struct TestDb {
    name: String,
    admin_url: String,
    url: String,
}

impl TestDb {
    /// Creates `sb_test_<random>`. Panics with a hint when `DATABASE_URL` is not set.
    pub async fn new() -> Self {
        let admin_url = std::env::var("DATABASE_URL").expect(
            "DATABASE_URL is not set: run the suite through ops/test, which starts Postgres",
        );
        Self::new_on(&admin_url).await
    }

    /// Creates `sb_test_<random>` on the server of `admin_url`.
    pub async fn new_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).unwrap();
        let name = format!("sb_test_{}", hex(&suffix));
        let admin = connect(&admin_url).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_database(&admin_url, &name);
        Self { name, admin_url, url }
    }

    /// URL of this database, with the same credentials as `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// The first column of the one row `sql` returns, over a fresh connection.
    pub async fn one<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        let row = self.client().await.query_one(sql, params).await;
        row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    /// Drops the database now, terminating its connections, as an outage would.
    pub async fn drop_now(&self) {
        let admin = connect(&self.admin_url).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop cannot await; a short-lived runtime on its own thread does the cleanup and is
        // joined, so the database is gone when the test ends.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Connects with the given URL, driving the connection on a background task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_swapped_in_urls() {
        assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(
            with_database("postgres://u@h/p?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
