//! A tenant's applications.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, IdOrUid, TenantId, Uid};

use crate::db::{Arg, Sql};
use crate::listing::{page_of, push_keyset};
use crate::model::Application;
use crate::page::{ListQuery, Page};
use crate::rows::application_from_row;
use crate::{ApplicationStore, SqlStore, StoreResult};

#[async_trait]
impl ApplicationStore for SqlStore {
    async fn insert_application(&self, tenant_id: &TenantId, app: &Application) -> StoreResult<()> {
        let sql = Sql::new(
            "INSERT INTO application (id, tenant_id, uid, name, metadata, throttle_rate, \
                 retry_policy, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(app.id.as_str())
        .bind(tenant_id.as_str())
        .bind(app.uid.as_ref().map(Uid::as_str))
        .bind(&app.name)
        .bind(Arg::json(&app.metadata))
        .bind(app.throttle_rate)
        .bind(Arg::opt_json(app.retry_policy.as_ref()))
        .bind(app.created_at)
        .bind(app.updated_at);
        self.db.write(sql).await.map(drop)
    }

    async fn update_application(
        &self,
        tenant_id: &TenantId,
        app: &Application,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE application SET uid = $3, name = $4, metadata = $5, throttle_rate = $6, \
                 retry_policy = $7, updated_at = $8 \
             WHERE tenant_id = $1 AND id = $2 AND updated_at = $9",
        )
        .bind(tenant_id.as_str())
        .bind(app.id.as_str())
        .bind(app.uid.as_ref().map(Uid::as_str))
        .bind(&app.name)
        .bind(Arg::json(&app.metadata))
        .bind(app.throttle_rate)
        .bind(Arg::opt_json(app.retry_policy.as_ref()))
        .bind(app.updated_at)
        .bind(expected_updated_at);
        Ok(self.db.write(sql).await? == 1)
    }

    async fn application(
        &self,
        tenant_id: &TenantId,
        app: &IdOrUid,
    ) -> StoreResult<Option<Application>> {
        // Two indexed lookups, id first: one `WHERE id = $2 OR uid = $2` would
        // scan every application of the tenant.
        let sql = Sql::new(
            "SELECT * FROM application WHERE tenant_id = $1 AND id = $2 AND NOT operational \
             UNION ALL SELECT * FROM application \
                 WHERE tenant_id = $1 AND uid = $2 AND NOT operational LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(app.as_str());
        self.db.read_one_as(sql, application_from_row).await
    }

    async fn list_applications(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
    ) -> StoreResult<Page<Application>> {
        let mut sql =
            Sql::new("SELECT * FROM application WHERE tenant_id = $1 AND NOT operational")
                .bind(tenant_id.as_str());
        push_keyset(&mut sql, "id", query);
        page_of(self.db.read(sql).await?, query, application_from_row)
    }

    async fn delete_application(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "DELETE FROM application WHERE tenant_id = $1 AND id = $2 AND NOT operational",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        Ok(self.db.write(sql).await? == 1)
    }
}
