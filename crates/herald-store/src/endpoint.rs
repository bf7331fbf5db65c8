//! Applications' endpoints.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, EndpointHeaders, EndpointId, IdOrUid, TenantId, Uid};
use herald_signature::SignatureScheme;

use crate::db::{Arg, Sql};
use crate::listing::{page_of, push_keyset};
use crate::main_key::{self, MainKeys};
use crate::model::{Endpoint, StoredSecrets};
use crate::page::{ListQuery, Page};
use crate::rows::endpoint_from_row;
use crate::{EndpointStore, SqlStore, StoreResult};

/// The columns an [`Endpoint`] is read from.
pub(crate) const ENDPOINT_COLUMNS: &str = "id, app_id, uid, url, description, version, disabled, \
     event_types, channels, metadata, throttle_rate, headers, secrets, signature_scheme, created_at, \
     updated_at, retry_policy, consecutive_failures, failing_since, breaker_open_until, \
     disabled_at, disabled_reason, \
     (SELECT a.retry_policy FROM application a WHERE a.id = endpoint.app_id) AS app_retry_policy";

/// `sql` with the endpoint's key and fields bound as `$1` to `$18`: tenant,
/// application, id, then what an update may change.
fn with_fields<'a>(
    sql: &str,
    tenant_id: &'a TenantId,
    endpoint: &'a Endpoint,
    keys: &MainKeys,
) -> Sql<'a> {
    Sql::new(sql)
        .bind(tenant_id.as_str())
        .bind(endpoint.app_id.as_str())
        .bind(endpoint.id.as_str())
        .bind(endpoint.uid.as_ref().map(Uid::as_str))
        .bind(endpoint.url.as_str())
        .bind(&endpoint.description)
        .bind(endpoint.version)
        .bind(endpoint.disabled)
        .bind(Arg::opt_json(endpoint.event_types.as_ref()))
        .bind(Arg::opt_json(endpoint.channels.as_ref()))
        .bind(Arg::json(&endpoint.metadata))
        .bind(endpoint.throttle_rate)
        .bind(Arg::Json(Some(stored_headers(endpoint, keys))))
        .bind(Arg::Json(Some(stored_secrets(endpoint, keys))))
        // The default scheme is stored as NULL, as every endpoint made before
        // schemes existed has it.
        .bind(Arg::opt_json(
            Some(&endpoint.signature_scheme).filter(|scheme| **scheme != SignatureScheme::Standard),
        ))
        .bind(Arg::opt_json(endpoint.retry_policy.as_ref()))
        .bind(endpoint.health.disabled_at)
        .bind(endpoint.health.disabled_reason.as_deref())
}

/// The endpoint's secrets as the `secrets` column holds them: sealed when
/// the store has a main key.
pub(crate) fn stored_secrets(endpoint: &Endpoint, keys: &MainKeys) -> serde_json::Value {
    let plain = serde_json::to_value(StoredSecrets::from(&endpoint.secrets))
        .unwrap_or(serde_json::Value::Null);
    keys.seal_json(&main_key::secrets_context(endpoint.id.as_str()), plain)
}

/// The endpoint's headers as the `headers` column holds them: the values of
/// sensitive ones sealed when the store has a main key.
pub(crate) fn stored_headers(endpoint: &Endpoint, keys: &MainKeys) -> serde_json::Value {
    let headers = endpoint.headers.as_map().iter().map(|(name, value)| {
        let value = serde_json::Value::String(value.clone());
        let value = if EndpointHeaders::is_sensitive(name) {
            keys.seal_json(&main_key::header_context(endpoint.id.as_str(), name), value)
        } else {
            value
        };
        (name.clone(), value)
    });
    serde_json::Value::Object(headers.collect())
}

#[async_trait]
impl EndpointStore for SqlStore {
    async fn endpoint_count(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<u64> {
        let sql =
            Sql::new("SELECT COUNT(*) AS n FROM endpoint WHERE tenant_id = $1 AND app_id = $2")
                .bind(tenant_id.as_str())
                .bind(app_id.as_str());
        let n = match self.db.read_one(sql).await? {
            Some(row) => row.integer("n")?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn insert_endpoint(&self, tenant_id: &TenantId, endpoint: &Endpoint) -> StoreResult<()> {
        let insert =
            "INSERT INTO endpoint (tenant_id, app_id, id, uid, url, description, version, \
                 disabled, event_types, channels, metadata, throttle_rate, headers, secrets, \
                 signature_scheme, retry_policy, disabled_at, disabled_reason, created_at, \
                 updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18, $19, $20)";
        let sql = with_fields(insert, tenant_id, endpoint, &self.keys)
            .bind(endpoint.created_at)
            .bind(endpoint.updated_at);
        self.db.write(sql).await.map(drop)
    }

    async fn update_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // The workers' health counters are left alone, but enabling a
        // disabled endpoint starts it afresh (SET sees the row as it was).
        let update = "UPDATE endpoint SET uid = $4, url = $5, description = $6, version = $7, \
                 disabled = $8, event_types = $9, channels = $10, metadata = $11, \
                 throttle_rate = $12, headers = $13, secrets = $14, signature_scheme = $15, \
                 retry_policy = $16, disabled_at = $17, disabled_reason = $18, \
                 consecutive_failures = CASE WHEN disabled AND NOT $8 THEN 0 \
                     ELSE consecutive_failures END, \
                 failing_since = CASE WHEN disabled AND NOT $8 THEN NULL ELSE failing_since END, \
                 breaker_open_until = CASE WHEN disabled AND NOT $8 THEN NULL \
                     ELSE breaker_open_until END, \
                 updated_at = $19 \
             WHERE tenant_id = $1 AND app_id = $2 AND id = $3 AND updated_at = $20";
        let sql = with_fields(update, tenant_id, endpoint, &self.keys)
            .bind(endpoint.updated_at)
            .bind(expected_updated_at);
        Ok(self.db.write(sql).await? == 1)
    }

    async fn list_endpoints(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
    ) -> StoreResult<Page<Endpoint>> {
        let mut sql = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = $1 AND app_id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        push_keyset(&mut sql, "id", query);
        page_of(self.db.read(sql).await?, query, |row| {
            endpoint_from_row(row, &self.keys)
        })
    }

    async fn delete_endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM endpoint WHERE tenant_id = $1 AND app_id = $2 AND id = $3")
            .bind(tenant_id.as_str())
            .bind(app_id.as_str())
            .bind(endpoint_id.as_str());
        Ok(self.db.write(sql).await? == 1)
    }

    async fn enabled_endpoints(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<Vec<Endpoint>> {
        let sql = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint \
             WHERE tenant_id = $1 AND app_id = $2 AND NOT disabled ORDER BY id"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        self.db
            .read_as(sql, |row| endpoint_from_row(row, &self.keys))
            .await
    }

    async fn endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint: &IdOrUid,
    ) -> StoreResult<Option<Endpoint>> {
        let sql = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint \
                 WHERE tenant_id = $1 AND app_id = $2 AND id = $3 \
             UNION ALL SELECT {ENDPOINT_COLUMNS} FROM endpoint \
                 WHERE tenant_id = $1 AND app_id = $2 AND uid = $3 \
             LIMIT 1"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(endpoint.as_str());
        self.db
            .read_one_as(sql, |row| endpoint_from_row(row, &self.keys))
            .await
    }
}
