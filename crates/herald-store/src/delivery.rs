//! The outbox: a message stored with one delivery per endpoint, and the
//! deliveries' state as the relay and the workers move it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, EndpointId, IdOrUid, MessageId, TenantId, Uid};

use crate::db::{corrupt, Arg, Dialect, Sql};
use crate::endpoint::ENDPOINT_COLUMNS;
use crate::model::{ClaimedDelivery, Delivery, DeliveryState, DeliveryUpdate, Endpoint, Message};
use crate::rows::{delivery_from_row, endpoint_from_row, message_from_row};
use crate::{EndpointStore, Outbox, SqlStore, StoreResult};

impl SqlStore {
    /// The message and its deliveries (in `state`, due at once), atomically.
    async fn insert_message_as(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
        state: DeliveryState,
    ) -> StoreResult<()> {
        let dialect = self.db.dialect();
        let insert_message = "INSERT INTO message (id, tenant_id, app_id, event_id, event_type, \
                 channels, tags, payload, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let insert_deliveries = format!(
            "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, \
                 next_attempt_at, created_at, updated_at) \
             SELECT $1, value, $2, $3, $11, 0, $9, $9, $9 FROM {}",
            dialect.list(12)
        );
        let args = Sql::new("")
            .bind(message.id.as_str())
            .bind(tenant_id.as_str())
            .bind(message.app_id.as_str())
            .bind(message.event_id.as_ref().map(Uid::as_str))
            .bind(message.event_type.as_str())
            .bind(Arg::opt_json(message.channels.as_ref()))
            .bind(Arg::opt_json(message.tags.as_ref()))
            .bind(message.payload.as_deref())
            .bind(message.created_at)
            .bind(message.expires_at)
            .bind(state.as_str())
            .bind(Arg::texts(endpoint_ids.iter().map(EndpointId::as_str)))
            .args;
        let no_deliveries = endpoint_ids.is_empty();
        self.db
            .write_together(insert_message, &insert_deliveries, args, no_deliveries)
            .await
    }
}

#[async_trait]
impl Outbox for SqlStore {
    async fn insert_message(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
    ) -> StoreResult<()> {
        self.insert_message_as(tenant_id, message, endpoint_ids, DeliveryState::Pending)
            .await
    }

    async fn insert_message_claimed(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
    ) -> StoreResult<()> {
        self.insert_message_as(tenant_id, message, endpoint_ids, DeliveryState::Sending)
            .await
    }

    async fn return_deliveries(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<u64> {
        let sql = Sql::new(
            "UPDATE delivery SET state = 'pending', next_attempt_at = $3, updated_at = $3 \
             WHERE tenant_id = $1 AND msg_id = $2 AND state = 'sending' AND attempts = 0",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(crate::now());
        self.db.write(sql).await
    }

    async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // `pending` rows are due at `next_attempt_at`; `sending` rows (handed
        // out, or waiting in the queue's delay ladder until `next_attempt_at`)
        // only once a lease has passed since, as their task was lost.
        // PostgreSQL: SKIP LOCKED lets several relays claim disjoint batches
        // concurrently. SQLite: one statement is one write transaction, so
        // the rows it selects cannot be claimed by anyone else before it has
        // made them `sending`.
        let (key, columns, lock) = match self.db.dialect() {
            Dialect::Postgres => (
                "(msg_id, endpoint_id)",
                "msg_id, endpoint_id",
                " FOR UPDATE SKIP LOCKED",
            ),
            Dialect::Sqlite => ("rowid", "rowid", ""),
        };
        let sql = Sql::new(format!(
            "UPDATE delivery SET state = 'sending', next_attempt_at = $1 \
             WHERE {key} IN ( \
                 SELECT {columns} FROM delivery \
                 WHERE state IN ('pending', 'sending') AND next_attempt_at <= $1 \
                   AND (state = 'pending' OR next_attempt_at <= $2) \
                 ORDER BY next_attempt_at LIMIT $3{lock}) \
             RETURNING *"
        ))
        .bind(now)
        .bind(now - lease)
        .bind(limit);
        let rows = self.db.write_returning(sql).await?;
        rows.iter()
            .map(|row| {
                let tenant_id = TenantId::parse(&row.text("tenant_id")?);
                Ok(ClaimedDelivery {
                    tenant_id: tenant_id.map_err(|e| corrupt("delivery.tenant_id", e))?,
                    delivery: delivery_from_row(row)?,
                })
            })
            .collect()
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        let sql = Sql::new("UPDATE delivery SET state = 'pending' WHERE state = 'sending'");
        self.db.write(sql).await
    }

    async fn delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<Option<Delivery>> {
        let sql = Sql::new(
            "SELECT * FROM delivery WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str());
        self.db.read_one_as(sql, delivery_from_row).await
    }

    async fn update_delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
        update: &DeliveryUpdate,
    ) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE delivery SET state = $4, next_attempt_at = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(update.state.as_str())
        .bind(update.next_attempt_at)
        .bind(crate::now());
        self.db.write(sql).await.map(drop)
    }

    async fn message(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg: &IdOrUid,
    ) -> StoreResult<Option<Message>> {
        // Two indexed lookups, id first: one `WHERE id = $3 OR event_id = $3`
        // would scan every message of the application.
        let sql = Sql::new(
            "SELECT * FROM message WHERE tenant_id = $1 AND app_id = $2 AND id = $3 \
             UNION ALL SELECT * FROM message WHERE tenant_id = $1 AND app_id = $2 \
                 AND event_id = $3 \
             LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg.as_str());
        self.db.read_one_as(sql, message_from_row).await
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
        self.db.read_one_as(sql, endpoint_from_row).await
    }

    async fn disable_endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<bool> {
        // A read-modify-write like a patch's, so a concurrent one (a patch,
        // a rotation) is never silently overwritten; retried when it loses.
        let reference = IdOrUid::parse("endpoint_id", endpoint_id.as_str())
            .map_err(|e| corrupt("endpoint id", e.msg))?;
        for _ in 0..10 {
            let Some(mut endpoint) = self.endpoint(tenant_id, app_id, &reference).await? else {
                return Ok(false);
            };
            if endpoint.disabled {
                return Ok(false);
            }
            let expected = endpoint.updated_at;
            endpoint.disabled = true;
            endpoint.updated_at = crate::now_after(expected);
            if self.update_endpoint(tenant_id, &endpoint, expected).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
