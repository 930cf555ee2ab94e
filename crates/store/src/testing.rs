//! Throwaway PostgreSQL databases for tests and benchmarks: each one uniquely named, created on
//! the server `SCIMGATE_TEST_POSTGRES_URL` names (default the local `postgres` database) and
//! dropped, connections and all, when the guard is dropped.

use sqlx::{Connection, PgConnection};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TempPostgres {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl TempPostgres {
    pub async fn create() -> Result<TempPostgres, sqlx::Error> {
        let admin_url = std::env::var("SCIMGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let name = format!("scimgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Ok(TempPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs outside any runtime we may block on, so the cleanup gets a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
