//! Setup links on PostgreSQL.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::outbox::connection_in;
use super::{now, opt_time, PgStore};
use crate::model::{NewSetupLink, SetupLink};
use crate::plan::{from_micros, micros};
use crate::StoreResult;

const LINK_COLUMNS: &str = "id, connection_id, created_at, expires_at, revoked_at";

fn link_from_row(row: &PgRow) -> StoreResult<SetupLink> {
    Ok(SetupLink {
        id: row.try_get("id")?,
        connection_id: row.try_get("connection_id")?,
        created_at: from_micros(row.try_get("created_at")?),
        expires_at: from_micros(row.try_get("expires_at")?),
        revoked_at: opt_time(row.try_get("revoked_at")?),
    })
}

impl PgStore {
    pub(super) async fn insert_setup_link(
        &self,
        new: NewSetupLink,
    ) -> StoreResult<Option<SetupLink>> {
        let mut tx = self.pool.begin().await?;
        if connection_in(&mut *tx, &new.connection_id).await?.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "INSERT INTO setup_links (id, connection_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING {LINK_COLUMNS}"
        ))
        .bind(&new.id)
        .bind(&new.connection_id)
        .bind(&new.token_hash)
        .bind(micros(now()))
        .bind(micros(new.expires_at))
        .fetch_one(&mut *tx)
        .await?;
        let link = link_from_row(&row)?;
        tx.commit().await?;
        Ok(Some(link))
    }

    pub(super) async fn find_setup_link(
        &self,
        token_hash: &[u8],
    ) -> StoreResult<Option<SetupLink>> {
        let row = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM setup_links WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.statements)
        .await?;
        row.as_ref().map(link_from_row).transpose()
    }

    pub(super) async fn list_setup_links(
        &self,
        connection_id: &str,
    ) -> StoreResult<Vec<SetupLink>> {
        let rows = sqlx::query(&format!(
            "SELECT {LINK_COLUMNS} FROM setup_links WHERE connection_id = $1 ORDER BY created_at DESC, id"
        ))
        .bind(connection_id)
        .fetch_all(&self.statements)
        .await?;
        rows.iter().map(link_from_row).collect()
    }

    pub(super) async fn end_setup_link(&self, connection_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE setup_links SET revoked_at = coalesce(revoked_at, $1) WHERE connection_id = $2 AND id = $3",
        )
        .bind(micros(now()))
        .bind(connection_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
