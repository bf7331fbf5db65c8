//! Messages and their deliveries as the management API lists, resends and
//! recovers them.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{
    ApplicationId, ChannelName, EndpointId, EventTypeName, IdOrUid, MessageId, TenantId,
};

use crate::db::{Arg, Dialect, Sql};
use crate::endpoint::ENDPOINT_COLUMNS;
use crate::listing::{bounded_page, page_of, push_keyset, push_keyset_to};
use crate::model::{
    parse_dead_letter_key, DeadDelivery, DeadLetterFilter, DeliveredMessage, Delivery,
    DeliveryCounts, DeliveryFilter, DeliveryStatus, Endpoint, Message, MessageFilter,
};
use crate::page::{Cursor, ListQuery, Page, Payloads};
use crate::rows::{
    dead_delivery_from_row, delivery_from_row, endpoint_from_row, message_from_row, names, parsed,
};
use crate::{MessageLog, SqlStore, StoreResult};

/// The SQL condition on `delivery d` for an API status.
fn delivery_status_condition(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Success => "d.state = 'succeeded'",
        DeliveryStatus::Fail => "d.state IN ('failed', 'dead')",
        DeliveryStatus::Pending => "d.state IN ('pending', 'sending') AND d.attempts = 0",
        DeliveryStatus::Sending => "d.state IN ('pending', 'sending') AND d.attempts > 0",
    }
}

/// Appends the message conditions shared by message, attempt and delivery
/// listings, on the message table aliased `m`.
pub(crate) fn push_message_conditions<'a>(
    sql: &mut Sql<'a>,
    dialect: Dialect,
    channel: Option<&'a ChannelName>,
    event_types: Option<&'a [EventTypeName]>,
) {
    if let Some(channel) = channel {
        let n = sql.next_placeholder();
        sql.push(&format!(" AND {}", dialect.json_holds("m.channels", n)));
        sql.args.push(channel.as_str().into());
    }
    if let Some(types) = event_types {
        let n = sql.next_placeholder();
        sql.push(&format!(" AND {}", dialect.any("m.event_type", n)));
        sql.args
            .push(Arg::texts(types.iter().map(EventTypeName::as_str)));
    }
}

/// What a request for manual attempts does to a delivery's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ManualAttempts {
    /// Resend and recover: one manual attempt; its schedule's count goes on,
    /// so one past the schedule that fails ends the delivery failed.
    OnSchedule,
    /// Redrive: the manual attempt is attempt 1 of a fresh schedule, so the
    /// delivery is retried again and dies again if that schedule runs out.
    FreshSchedule,
}

/// The one statement that asks for manual attempts of existing deliveries
/// (recover, redrive): due now, flagged `manual`, for the relay to hand out
/// like any other due delivery (the outbox), so a 202 survives a restart.
/// The caller appends the `WHERE` clause.
fn request_manual_attempts<'a>(kind: ManualAttempts) -> Sql<'a> {
    let restart = match kind {
        ManualAttempts::OnSchedule => "",
        ManualAttempts::FreshSchedule => ", attempts = 0",
    };
    Sql::new(format!(
        "UPDATE delivery SET state = 'pending', manual = true, next_attempt_at = $1, \
             updated_at = $1{restart}"
    ))
    .bind(crate::now())
}

/// Appends the conditions of `filter` on `delivery d` and `message m`.
fn push_dead_letter_conditions<'a>(
    sql: &mut Sql<'a>,
    dialect: Dialect,
    filter: &'a DeadLetterFilter,
) {
    if let Some(endpoint_id) = &filter.endpoint_id {
        sql.and(" AND d.endpoint_id = ", endpoint_id.as_str());
    }
    if let Some(msg_ids) = &filter.msg_ids {
        let n = sql.next_placeholder();
        sql.push(&format!(" AND {}", dialect.any("d.msg_id", n)));
        sql.args
            .push(Arg::texts(msg_ids.iter().map(MessageId::as_str)));
    }
    push_message_conditions(sql, dialect, None, filter.event_types.as_deref());
    push_time_window(sql, "m.created_at", filter.before, filter.after);
}

/// Appends `AND {column} < before AND {column} > after` for the bounds given.
pub(crate) fn push_time_window(
    sql: &mut Sql<'_>,
    column: &str,
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
) {
    if let Some(before) = before {
        sql.and(&format!(" AND {column} < "), before);
    }
    if let Some(after) = after {
        sql.and(&format!(" AND {column} > "), after);
    }
}

#[async_trait]
impl MessageLog for SqlStore {
    async fn list_messages(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &MessageFilter,
        payloads: Payloads,
    ) -> StoreResult<Page<Message>> {
        let dialect = self.db.dialect();
        let fetch = |columns: String, only: Option<Vec<String>>, limit: i64| async move {
            let mut sql = Sql::new(format!(
                "SELECT {columns} FROM message m WHERE m.tenant_id = $1 AND m.app_id = $2"
            ))
            .bind(tenant_id.as_str())
            .bind(app_id.as_str());
            if let Some(status) = filter.status {
                sql.push(" AND EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id AND ")
                    .push(delivery_status_condition(status))
                    .push(")");
            }
            let (channel, types) = (filter.channel.as_ref(), filter.event_types.as_deref());
            push_message_conditions(&mut sql, dialect, channel, types);
            push_time_window(&mut sql, "m.created_at", filter.before, filter.after);
            push_keyset_to(&mut sql, "m.id", query, only.as_deref(), limit);
            self.db.read(sql).await
        };
        bounded_page(dialect, query, payloads, "m.id", fetch, message_from_row).await
    }

    async fn expunge_message_content(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE message SET payload = NULL WHERE tenant_id = $1 AND app_id = $2 AND id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str());
        Ok(self.db.write(sql).await? == 1)
    }

    async fn deliveries_of_message(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<Vec<Delivery>> {
        let sql = Sql::new(
            "SELECT * FROM delivery WHERE tenant_id = $1 AND msg_id = $2 ORDER BY endpoint_id",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str());
        self.db.read_as(sql, delivery_from_row).await
    }

    async fn list_endpoint_deliveries(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        query: &ListQuery,
        filter: &DeliveryFilter,
        payloads: Payloads,
    ) -> StoreResult<Page<DeliveredMessage>> {
        let dialect = self.db.dialect();
        let fetch = |columns: String, only: Option<Vec<String>>, limit: i64| async move {
            let mut sql = Sql::new(format!(
                "SELECT {columns}, d.msg_id, d.endpoint_id, d.state, d.attempts, \
                     d.next_attempt_at, d.manual, d.updated_at, \
                     d.created_at AS delivery_created_at \
                 FROM delivery d JOIN message m ON m.id = d.msg_id \
                 WHERE d.tenant_id = $1 AND d.app_id = $2 AND d.endpoint_id = $3"
            ))
            .bind(tenant_id.as_str())
            .bind(app_id.as_str())
            .bind(endpoint_id.as_str());
            if let Some(status) = filter.status {
                sql.push(" AND ").push(delivery_status_condition(status));
            }
            let (channel, types) = (filter.channel.as_ref(), filter.event_types.as_deref());
            push_message_conditions(&mut sql, dialect, channel, types);
            push_time_window(&mut sql, "m.created_at", filter.before, filter.after);
            push_keyset_to(&mut sql, "d.msg_id", query, only.as_deref(), limit);
            self.db.read(sql).await
        };
        bounded_page(dialect, query, payloads, "d.msg_id", fetch, |row| {
            let mut delivery = delivery_from_row(row)?;
            delivery.created_at = row.time("delivery_created_at")?;
            Ok(DeliveredMessage {
                delivery,
                message: message_from_row(row)?,
            })
        })
        .await
    }

    async fn list_message_deliveries(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        query: &ListQuery,
    ) -> StoreResult<Page<(Delivery, Endpoint)>> {
        let mut sql = Sql::new(
            "SELECT d.* FROM delivery d \
             WHERE d.tenant_id = $1 AND d.app_id = $2 AND d.msg_id = $3 \
               AND EXISTS (SELECT 1 FROM endpoint e WHERE e.id = d.endpoint_id)",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str());
        push_keyset(&mut sql, "d.endpoint_id", query);
        let deliveries = page_of(self.db.read(sql).await?, query, delivery_from_row)?;
        let ids = deliveries.items.iter().map(|d| d.endpoint_id.as_str());
        let sql = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = $1 AND app_id = $2 AND {}",
            self.db.dialect().any("id", 3)
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(Arg::texts(ids));
        let mut endpoints = self
            .db
            .read(sql)
            .await?
            .iter()
            .map(|row| endpoint_from_row(row, &self.keys).map(|ep| (ep.id.to_string(), ep)))
            .collect::<StoreResult<HashMap<_, _>>>()?;
        let done = deliveries.done;
        // An endpoint deleted between the two reads is left out of the page.
        let items = deliveries
            .items
            .into_iter()
            .filter_map(|d| {
                let endpoint = endpoints.remove(d.endpoint_id.as_str())?;
                Some((d, endpoint))
            })
            .collect();
        Ok(Page { items, done })
    }

    async fn request_manual_attempt(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<()> {
        let sql = Sql::new(
            "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, \
                 next_attempt_at, created_at, updated_at, manual) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, true) \
             ON CONFLICT (msg_id, endpoint_id) DO UPDATE SET state = 'pending', manual = true, \
                 next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at",
        )
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(crate::now());
        self.db.write(sql).await.map(drop)
    }

    async fn replay_missing(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        const PAGE: u32 = 500;
        let mut replayed = 0;
        let mut after = String::new();
        loop {
            // Keyset pages by id over the window; ids are unique, so no
            // message is seen twice or skipped.
            let candidates = Sql::new(
                "SELECT m.id, m.event_type, m.channels FROM message m \
                 WHERE m.tenant_id = $1 AND m.app_id = $2 AND m.created_at >= $3 \
                   AND m.created_at < $4 AND m.id > $5 AND m.payload IS NOT NULL \
                   AND NOT EXISTS (SELECT 1 FROM delivery d \
                       WHERE d.msg_id = m.id AND d.endpoint_id = $6) \
                 ORDER BY m.id LIMIT $7",
            )
            .bind(tenant_id.as_str())
            .bind(endpoint.app_id.as_str())
            .bind(since)
            .bind(until)
            .bind(after.as_str())
            .bind(endpoint.id.as_str())
            .bind(PAGE);
            let rows = self.db.read(candidates).await?;
            let Some(last) = rows.last() else {
                return Ok(replayed);
            };
            after = last.text("id")?;
            let mut tx = self.db.begin().await?;
            let now = crate::now();
            for row in &rows {
                let event_type = parsed(
                    row,
                    "event_type",
                    EventTypeName::from_stored,
                    "message.event_type",
                )?;
                let channels = names(row, "channels", ChannelName::parse, "message.channels")?;
                let receives = herald_core::filter::endpoint_receives(
                    endpoint.event_types.as_deref(),
                    endpoint.channels.as_deref(),
                    &event_type,
                    channels.as_deref(),
                );
                if !receives {
                    continue;
                }
                let insert = Sql::new(
                    "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, \
                         attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5) \
                     ON CONFLICT (msg_id, endpoint_id) DO NOTHING",
                )
                .bind(row.text("id")?)
                .bind(endpoint.id.as_str())
                .bind(tenant_id.as_str())
                .bind(endpoint.app_id.as_str())
                .bind(now);
                replayed += tx.write(insert).await?;
            }
            tx.commit().await?;
            if rows.len() < PAGE as usize {
                return Ok(replayed);
            }
        }
    }

    async fn request_recovery(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut sql = request_manual_attempts(ManualAttempts::OnSchedule);
        sql.and(" WHERE tenant_id = ", tenant_id.as_str())
            .and(" AND app_id = ", app_id.as_str())
            .and(" AND endpoint_id = ", endpoint_id.as_str())
            .push(" AND state IN ('failed', 'dead')")
            .and(" AND created_at >= ", since)
            .and(" AND created_at < ", until)
            // A payload retention removed cannot be sent again.
            .push(
                " AND EXISTS (SELECT 1 FROM message m \
                 WHERE m.id = delivery.msg_id AND m.payload IS NOT NULL)",
            );
        self.db.write(sql).await
    }

    async fn list_dead_letters(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &DeadLetterFilter,
    ) -> StoreResult<Page<DeadDelivery>> {
        let mut sql = Sql::new(
            "SELECT d.msg_id, d.endpoint_id, d.attempts, d.updated_at AS died_at, \
                 m.event_id, m.event_type, m.created_at AS msg_created_at, \
                 (SELECT a.status_code FROM message_attempt a \
                   WHERE a.tenant_id = d.tenant_id AND a.msg_id = d.msg_id \
                     AND a.endpoint_id = d.endpoint_id ORDER BY a.id DESC LIMIT 1) \
                   AS last_status_code, \
                 (SELECT a.error_class FROM message_attempt a \
                   WHERE a.tenant_id = d.tenant_id AND a.msg_id = d.msg_id \
                     AND a.endpoint_id = d.endpoint_id ORDER BY a.id DESC LIMIT 1) \
                   AS last_error_class \
             FROM delivery d JOIN message m ON m.id = d.msg_id \
             WHERE d.tenant_id = $1 AND d.app_id = $2 AND d.state = 'dead'",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        push_dead_letter_conditions(&mut sql, self.db.dialect(), filter);
        let ascending = query.scans_ascending();
        if let Some(Cursor::After(key) | Cursor::Before(key)) = &query.cursor {
            let (msg_id, endpoint_id) = parse_dead_letter_key(key)
                .ok_or_else(|| crate::db::corrupt("dead-letter iterator", key))?;
            let op = if ascending { ">" } else { "<" };
            sql.and(
                &format!(" AND (d.msg_id, d.endpoint_id) {op} ("),
                msg_id.to_string(),
            )
            .and(", ", endpoint_id.to_string())
            .push(")");
        }
        let order = if ascending { "ASC" } else { "DESC" };
        sql.and(
            &format!(" ORDER BY d.msg_id {order}, d.endpoint_id {order} LIMIT "),
            i64::from(query.limit) + 1,
        );
        page_of(self.db.read(sql).await?, query, dead_delivery_from_row)
    }

    async fn redrive_dead_letters(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        filter: &DeadLetterFilter,
        limit: u16,
    ) -> StoreResult<u64> {
        // The oldest `limit` matching dead deliveries are picked first, then
        // moved one by one by primary key in one transaction: a redrive of a
        // million is many short transactions, never one, and its cost does
        // not hang on the planner. (Picking and moving in one statement,
        // PostgreSQL with the statistics of a table before a burst of dead
        // letters joined every dead row to the picked set: 2 to 10 s for
        // 1,000 of 10,000.)
        let mut pick = Sql::new(
            "SELECT d.msg_id, d.endpoint_id FROM delivery d JOIN message m ON m.id = d.msg_id \
             WHERE d.tenant_id = $1 AND d.app_id = $2 \
               AND d.state = 'dead' AND m.payload IS NOT NULL",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str());
        // (A message whose payload was expunged has nothing to send again.)
        push_dead_letter_conditions(&mut pick, self.db.dialect(), filter);
        pick.and(" ORDER BY d.msg_id, d.endpoint_id LIMIT ", i64::from(limit));
        let rows = self.db.read(pick).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        let mut redriven = 0;
        for row in &rows {
            let (msg_id, endpoint_id) = (row.text("msg_id")?, row.text("endpoint_id")?);
            let mut sql = request_manual_attempts(ManualAttempts::FreshSchedule);
            sql.and(" WHERE tenant_id = ", tenant_id.as_str())
                .and(" AND msg_id = ", msg_id)
                .and(" AND endpoint_id = ", endpoint_id)
                // Still dead: a concurrent redrive or resend may have come first.
                .push(" AND state = 'dead'");
            redriven += tx.write(sql).await?;
        }
        tx.commit().await?;
        Ok(redriven)
    }

    async fn endpoint_delivery_counts(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<DeliveryCounts> {
        let sql = Sql::new(
            "SELECT \
                 count(*) FILTER (WHERE state = 'succeeded') AS success, \
                 count(*) FILTER (WHERE state IN ('failed', 'dead')) AS fail, \
                 count(*) FILTER (WHERE state IN ('pending', 'sending') AND attempts = 0) \
                     AS pending, \
                 count(*) FILTER (WHERE state IN ('pending', 'sending') AND attempts > 0) \
                     AS sending \
             FROM delivery \
             WHERE tenant_id = $1 AND app_id = $2 AND endpoint_id = $3 \
               AND created_at >= $4 AND created_at < $5",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(since)
        .bind(until);
        let rows = self.db.read(sql).await?;
        let Some(row) = rows.first() else {
            return Ok(DeliveryCounts::default());
        };
        let count =
            |name: &str| -> StoreResult<u64> { Ok(u64::try_from(row.integer(name)?).unwrap_or(0)) };
        Ok(DeliveryCounts {
            success: count("success")?,
            fail: count("fail")?,
            pending: count("pending")?,
            sending: count("sending")?,
        })
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
}
