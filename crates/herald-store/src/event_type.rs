//! A tenant's event types.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{EventTypeName, FeatureFlag, TenantId};

use crate::db::{Arg, Sql};
use crate::listing::{page_of, push_keyset};
use crate::model::EventType;
use crate::page::{ListQuery, Page};
use crate::rows::event_type_from_row;
use crate::{EventTypeStore, SqlStore, StoreResult};

/// `sql` with the event type's key and fields bound as `$1` to `$7`.
fn with_fields<'a>(sql: &str, tenant_id: &'a TenantId, event_type: &'a EventType) -> Sql<'a> {
    Sql::new(sql)
        .bind(tenant_id.as_str())
        .bind(event_type.name.as_str())
        .bind(&event_type.description)
        .bind(event_type.archived)
        .bind(event_type.deprecated)
        .bind(event_type.feature_flag.as_ref().map(FeatureFlag::as_str))
        .bind(&event_type.schemas)
}

#[async_trait]
impl EventTypeStore for SqlStore {
    async fn insert_event_type(
        &self,
        tenant_id: &TenantId,
        event_type: &EventType,
    ) -> StoreResult<()> {
        let insert = "INSERT INTO event_type (tenant_id, name, description, archived, deprecated, \
                 feature_flag, schemas, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let sql = with_fields(insert, tenant_id, event_type)
            .bind(event_type.created_at)
            .bind(event_type.updated_at);
        self.db.write(sql).await.map(drop)
    }

    async fn update_event_type(
        &self,
        tenant_id: &TenantId,
        event_type: &EventType,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let update = "UPDATE event_type SET description = $3, archived = $4, deprecated = $5, \
                 feature_flag = $6, schemas = $7, updated_at = $8 \
             WHERE tenant_id = $1 AND name = $2 AND updated_at = $9";
        let sql = with_fields(update, tenant_id, event_type)
            .bind(event_type.updated_at)
            .bind(expected_updated_at);
        Ok(self.db.write(sql).await? == 1)
    }

    async fn event_type(
        &self,
        tenant_id: &TenantId,
        name: &EventTypeName,
    ) -> StoreResult<Option<EventType>> {
        let sql = Sql::new("SELECT * FROM event_type WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id.as_str())
            .bind(name.as_str());
        self.db.read_one_as(sql, event_type_from_row).await
    }

    async fn list_event_types(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
        include_archived: bool,
    ) -> StoreResult<Page<EventType>> {
        let mut sql =
            Sql::new("SELECT * FROM event_type WHERE tenant_id = $1").bind(tenant_id.as_str());
        if !include_archived {
            sql.push(" AND NOT archived");
        }
        push_keyset(&mut sql, "name", query);
        page_of(self.db.read(sql).await?, query, event_type_from_row)
    }

    async fn delete_event_type(
        &self,
        tenant_id: &TenantId,
        name: &EventTypeName,
    ) -> StoreResult<bool> {
        let sql = Sql::new("DELETE FROM event_type WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id.as_str())
            .bind(name.as_str());
        Ok(self.db.write(sql).await? == 1)
    }

    async fn missing_event_types(
        &self,
        tenant_id: &TenantId,
        names: &[EventTypeName],
    ) -> StoreResult<Vec<EventTypeName>> {
        let sql = Sql::new(format!(
            "SELECT name FROM event_type WHERE tenant_id = $1 AND {} AND NOT archived",
            self.db.dialect().any("name", 2)
        ))
        .bind(tenant_id.as_str())
        .bind(Arg::texts(names.iter().map(EventTypeName::as_str)));
        let found = self.db.read(sql).await?;
        let found = found
            .iter()
            .map(|row| row.text("name"))
            .collect::<StoreResult<HashSet<String>>>()?;
        Ok(names
            .iter()
            .filter(|n| !found.contains(n.as_str()))
            .cloned()
            .collect())
    }
}
