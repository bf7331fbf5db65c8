//! A tenant's sources of inbound webhooks. The secret is a JSON column, a
//! string, sealed with the main key like endpoint secrets
//! (`main_key::source_secret_context`): a secret the tenant chose can hold
//! any text, and a JSON string can never be taken for a sealed value.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::source::{SourceKind, SourceSecret};
use herald_core::{SourceId, TenantId};

use crate::db::{corrupt, Arg, Row, Sql};
use crate::listing::{page_of, push_keyset};
use crate::main_key::{self, MainKeys};
use crate::model::Source;
use crate::page::{ListQuery, Page};
use crate::{SourceStore, SqlStore, StoreResult};

/// The columns a [`Source`] is read from.
pub(crate) const SOURCE_COLUMNS: &str = "id, tenant_id, app_id, description, provider, secret, \
     tolerance_seconds, metadata, created_at, updated_at";

/// The secret as the `secret` column holds it: sealed when the store has a
/// main key.
pub(crate) fn stored_secret(source: &Source, keys: &MainKeys) -> serde_json::Value {
    keys.seal_json(
        &main_key::source_secret_context(source.id.as_str()),
        serde_json::Value::String(source.secret.as_str().to_owned()),
    )
}

pub(crate) fn source_from_row(row: &Row, keys: &MainKeys) -> StoreResult<Source> {
    let id: String = row.text("id")?;
    let id = SourceId::parse(&id).map_err(|e| corrupt("source.id", e))?;
    let stored = row
        .optional_json("secret", "source.secret")?
        .ok_or_else(|| corrupt("source.secret", "is NULL"))?;
    let secret = keys
        .open_json(&main_key::source_secret_context(id.as_str()), stored)
        .map_err(|e| corrupt("source.secret", e))?;
    let serde_json::Value::String(secret) = secret else {
        return Err(corrupt("source.secret", "is not text"));
    };
    let kind: SourceKind = row
        .optional_json("provider", "source.provider")?
        .ok_or_else(|| corrupt("source.provider", "is NULL"))?;
    Ok(Source {
        id,
        app_id: row
            .text("app_id")?
            .parse()
            .map_err(|e| corrupt("source.app_id", e))?,
        description: row.text("description")?,
        kind,
        secret: SourceSecret::from_stored(secret),
        tolerance_seconds: u32::try_from(row.integer("tolerance_seconds")?)
            .map_err(|e| corrupt("source.tolerance_seconds", e))?,
        metadata: row
            .optional_json("metadata", "source.metadata")?
            .unwrap_or_default(),
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

#[async_trait]
impl SourceStore for SqlStore {
    async fn insert_source(&self, tenant_id: &TenantId, source: &Source) -> StoreResult<()> {
        let sql = Sql::new(
            "INSERT INTO source (id, tenant_id, app_id, description, provider, secret, \
                 tolerance_seconds, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(source.id.as_str())
        .bind(tenant_id.as_str())
        .bind(source.app_id.as_str())
        .bind(&source.description)
        .bind(Arg::json(&source.kind))
        .bind(Arg::Json(Some(stored_secret(source, &self.keys))))
        .bind(source.tolerance_seconds)
        .bind(Arg::json(&source.metadata))
        .bind(source.created_at)
        .bind(source.updated_at);
        self.db.write(sql).await.map(drop)
    }

    async fn update_source(
        &self,
        tenant_id: &TenantId,
        source: &Source,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE source SET app_id = $3, description = $4, provider = $5, secret = $6, \
                 tolerance_seconds = $7, metadata = $8, updated_at = $9 \
             WHERE tenant_id = $1 AND id = $2 AND updated_at = $10",
        )
        .bind(tenant_id.as_str())
        .bind(source.id.as_str())
        .bind(source.app_id.as_str())
        .bind(&source.description)
        .bind(Arg::json(&source.kind))
        .bind(Arg::Json(Some(stored_secret(source, &self.keys))))
        .bind(source.tolerance_seconds)
        .bind(Arg::json(&source.metadata))
        .bind(source.updated_at)
        .bind(expected_updated_at);
        Ok(self.db.write(sql).await? == 1)
    }

    async fn source(&self, tenant_id: &TenantId, id: &SourceId) -> StoreResult<Option<Source>> {
        let sql = Sql::new(format!(
            "SELECT {SOURCE_COLUMNS} FROM source WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(id.as_str());
        self.db
            .read_one_as(sql, |row| source_from_row(row, &self.keys))
            .await
    }

    async fn list_sources(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
    ) -> StoreResult<Page<Source>> {
        let mut sql = Sql::new(format!(
            "SELECT {SOURCE_COLUMNS} FROM source WHERE tenant_id = $1"
        ))
        .bind(tenant_id.as_str());
        push_keyset(&mut sql, "id", query);
        page_of(self.db.read(sql).await?, query, |row| {
            source_from_row(row, &self.keys)
        })
    }

    async fn delete_source(&self, tenant_id: &TenantId, id: &SourceId) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM source WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(id.as_str());
        Ok(self.db.write(sql).await? == 1)
    }

    async fn source_by_id(&self, id: &SourceId) -> StoreResult<Option<(TenantId, Source)>> {
        let sql = Sql::new(format!("SELECT {SOURCE_COLUMNS} FROM source WHERE id = $1"))
            .bind(id.as_str());
        self.db
            .read_one_as(sql, |row| {
                let tenant_id = row
                    .text("tenant_id")?
                    .parse()
                    .map_err(|e| corrupt("source.tenant_id", e))?;
                Ok((tenant_id, source_from_row(row, &self.keys)?))
            })
            .await
    }
}
