//! Server settings, tenants, their API keys and logged-out tokens.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{ApiKeyId, TenantId};

use crate::db::Sql;
use crate::listing::{page_of, push_keyset};
use crate::model::{ApiKey, Tenant};
use crate::page::{ListQuery, Page};
use crate::rows::{api_key_from_row, tenant_from_row};
use crate::{SqlStore, StoreResult, TenantStore};

#[async_trait]
impl TenantStore for SqlStore {
    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        let insert = "INSERT INTO server_setting (name, value) VALUES ($1, $2) \
                      ON CONFLICT (name) DO NOTHING";
        self.db
            .write(Sql::new(insert).bind(name).bind(value))
            .await?;
        let select = Sql::new("SELECT value FROM server_setting WHERE name = $1").bind(name);
        match self.db.read_one(select).await? {
            Some(row) => row.text("value"),
            None => Err(crate::db::corrupt(
                "server_setting",
                "vanished after insert",
            )),
        }
    }

    async fn secret_setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        self.secret_setting(name, value).await
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let sql = Sql::new("INSERT INTO tenant (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(tenant.created_at);
        self.db.write(sql).await.map(drop)
    }

    async fn tenant(&self, tenant_id: &TenantId) -> StoreResult<Option<Tenant>> {
        let sql = Sql::new("SELECT id, name, created_at FROM tenant WHERE id = $1")
            .bind(tenant_id.as_str());
        self.db
            .read_one(sql)
            .await?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
    }

    async fn list_tenants(&self, query: &ListQuery) -> StoreResult<Page<Tenant>> {
        let mut sql = Sql::new("SELECT id, name, created_at FROM tenant WHERE true");
        push_keyset(&mut sql, "id", query);
        page_of(self.db.read(sql).await?, query, tenant_from_row)
    }

    async fn insert_api_key(&self, tenant_id: &TenantId, key: &ApiKey) -> StoreResult<()> {
        let sql = Sql::new(
            "INSERT INTO api_key (id, tenant_id, name, prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.as_str())
        .bind(tenant_id.as_str())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(key.created_at);
        self.db.write(sql).await.map(drop)
    }

    async fn list_api_keys(&self, tenant_id: &TenantId) -> StoreResult<Vec<ApiKey>> {
        let sql = Sql::new("SELECT * FROM api_key WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant_id.as_str());
        self.db.read_as(sql, api_key_from_row).await
    }

    async fn revoke_api_key(&self, tenant_id: &TenantId, key_id: &ApiKeyId) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE api_key SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(key_id.as_str())
        .bind(crate::now());
        Ok(self.db.write(sql).await? == 1)
    }

    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        let sql = Sql::new("SELECT * FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash);
        self.db
            .read_one(sql)
            .await?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    async fn revoke_token(
        &self,
        tenant_id: &TenantId,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let expired =
            Sql::new("DELETE FROM revoked_token WHERE expires_at < $1").bind(crate::now());
        self.db.write(expired).await?;
        let sql = Sql::new(
            "INSERT INTO revoked_token (token_id, tenant_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token_id)
        .bind(tenant_id.as_str())
        .bind(expires_at);
        self.db.write(sql).await.map(drop)
    }

    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool> {
        let sql = Sql::new("SELECT 1 FROM revoked_token WHERE token_id = $1").bind(token_id);
        Ok(self.db.read_one(sql).await?.is_some())
    }
}
