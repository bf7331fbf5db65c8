//! The attempts made to deliver messages.

use async_trait::async_trait;
use herald_core::{ApplicationId, AttemptId, MessageId, TenantId};

use crate::db::Sql;
use crate::listing::{page_of, push_keyset};
use crate::message::{push_message_conditions, push_time_window};
use crate::model::{Attempt, AttemptFilter, DeliveryUpdate};
use crate::page::{ListQuery, Page};
use crate::rows::attempt_from_row;
use crate::{AttemptLog, SqlStore, StoreResult};

#[async_trait]
impl AttemptLog for SqlStore {
    async fn record_attempt(
        &self,
        tenant_id: &TenantId,
        attempt: &Attempt,
        update: &DeliveryUpdate,
    ) -> StoreResult<()> {
        let insert = "INSERT INTO message_attempt (id, tenant_id, app_id, msg_id, endpoint_id, \
                 url, status_code, error_class, response_body, duration_ms, trigger, created_at, \
                 duration_us) \
             VALUES ($8, $1, $9, $2, $3, $10, $11, $12, $13, $14, $7, $6, $15)";
        // A scheduled attempt finishing while a manual one is requested
        // leaves the delivery due for the manual one; a manual attempt
        // answers it.
        let update_delivery = "UPDATE delivery SET \
                 state = CASE WHEN manual AND $7 <> 'manual' THEN state ELSE $4 END, \
                 next_attempt_at = CASE WHEN manual AND $7 <> 'manual' \
                     THEN next_attempt_at ELSE $5 END, \
                 manual = manual AND $7 <> 'manual', \
                 attempts = attempts + 1, updated_at = $6 \
             WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3";
        let args = Sql::new("")
            .bind(tenant_id.as_str())
            .bind(attempt.msg_id.as_str())
            .bind(attempt.endpoint_id.as_str())
            .bind(update.state.as_str())
            .bind(update.next_attempt_at)
            .bind(attempt.created_at)
            .bind(attempt.trigger.as_str())
            .bind(attempt.id.as_str())
            .bind(attempt.app_id.as_str())
            .bind(&attempt.url)
            .bind(attempt.status_code)
            .bind(&attempt.error_class)
            .bind(&attempt.response_body)
            .bind(attempt.duration_ms().min(i32::MAX as u32))
            .bind(i64::try_from(attempt.duration_us).unwrap_or(i64::MAX))
            .args;
        // The attempt and its delivery's new state land together or not at all.
        self.db
            .write_together(insert, update_delivery, args, false)
            .await
    }

    async fn attempts_of_message(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<Vec<Attempt>> {
        let sql = Sql::new(
            "SELECT * FROM message_attempt WHERE tenant_id = $1 AND msg_id = $2 \
             ORDER BY created_at, id",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str());
        self.db.read_as(sql, attempt_from_row).await
    }

    async fn attempt(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        attempt_id: &AttemptId,
    ) -> StoreResult<Option<Attempt>> {
        let sql = Sql::new(
            "SELECT * FROM message_attempt \
             WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND id = $4",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str())
        .bind(attempt_id.as_str());
        self.db.read_one_as(sql, attempt_from_row).await
    }

    async fn list_attempts(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &AttemptFilter,
    ) -> StoreResult<Page<Attempt>> {
        let by_message = filter.channel.is_some() || filter.event_types.is_some();
        let join = if by_message {
            " JOIN message m ON m.id = a.msg_id"
        } else {
            ""
        };
        let mut sql = Sql::new(format!(
            "SELECT a.* FROM message_attempt a{join} WHERE a.tenant_id = $1 AND a.app_id = $2"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        if let Some(msg_id) = &filter.msg_id {
            sql.and(" AND a.msg_id = ", msg_id.as_str());
        }
        if let Some(endpoint_id) = &filter.endpoint_id {
            sql.and(" AND a.endpoint_id = ", endpoint_id.as_str());
        }
        match filter.succeeded {
            Some(true) => sql.push(" AND a.status_code BETWEEN 200 AND 299"),
            Some(false) => sql.push(" AND a.status_code NOT BETWEEN 200 AND 299"),
            None => &mut sql,
        };
        match filter.status_code_class {
            Some(0) => sql.push(" AND a.status_code = 0"),
            Some(class) => sql
                .and(" AND a.status_code >= ", class)
                .and(" AND a.status_code < ", class + 100),
            None => &mut sql,
        };
        if by_message {
            let (channel, types) = (filter.channel.as_ref(), filter.event_types.as_deref());
            push_message_conditions(&mut sql, self.db.dialect(), channel, types);
        }
        push_time_window(&mut sql, "a.created_at", filter.before, filter.after);
        push_keyset(&mut sql, "a.id", query);
        page_of(self.db.read(sql).await?, query, attempt_from_row)
    }

    async fn expunge_attempt_content(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        attempt_id: &AttemptId,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE message_attempt SET response_body = NULL \
             WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND id = $4",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str())
        .bind(attempt_id.as_str());
        Ok(self.db.write(sql).await? == 1)
    }
}
