//! The attempts made to deliver messages.

use async_trait::async_trait;
use herald_core::{ApplicationId, AttemptId, ErrorClass, MessageId, TenantId};

use crate::db::{Arg, Dialect, Sql};
use crate::listing::{page_of, push_keyset};
use crate::message::{push_message_conditions, push_time_window};
use crate::model::{Attempt, AttemptFilter, AttemptRecord, DeliveryUpdate};
use crate::page::{ListQuery, Page};
use crate::rows::attempt_from_row;
use crate::{AttemptLog, SqlStore, StoreResult};

/// The attempt columns, in the order both inserts below bind them.
const ATTEMPT_COLUMNS: &str = "id, tenant_id, app_id, msg_id, endpoint_id, url, status_code, \
     error_class, response_body, duration_ms, trigger, created_at, duration_us, \
     request_headers, response_headers";

/// The delivery's new state after an attempt, from `u`, a row with the
/// attempt's `state`, `next_at`, `trigger` and `at`. A scheduled attempt
/// finishing while a manual one is requested leaves the delivery due for the
/// manual one; a manual attempt answers it.
const DELIVERY_AFTER_ATTEMPT: &str = "\
     state = CASE WHEN delivery.manual AND u.trigger <> 'manual' \
         THEN delivery.state ELSE u.state END, \
     next_attempt_at = CASE WHEN delivery.manual AND u.trigger <> 'manual' \
         THEN delivery.next_attempt_at ELSE u.next_at END, \
     manual = delivery.manual AND u.trigger <> 'manual', \
     attempts = delivery.attempts + 1, updated_at = u.at";

impl SqlStore {
    /// The whole batch in one statement (one round trip, one commit), its
    /// rows passed as arrays.
    async fn record_attempts_postgres(&self, batch: &[&AttemptRecord]) -> StoreResult<()> {
        let attempts = || batch.iter().map(|r| &r.attempt);
        let texts = |f: &dyn Fn(&AttemptRecord) -> Option<&str>| {
            Arg::OptionalTexts(batch.iter().map(|r| f(r)).collect())
        };
        let sql = Sql::new(format!(
            "WITH a AS ( \
                 INSERT INTO message_attempt ({ATTEMPT_COLUMNS}) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::text[], $7::int8[], $8::text[], $9::text[], $10::int8[], \
                     $11::text[], $12::timestamptz[], $13::int8[], $16::text[], $17::text[])) \
             UPDATE delivery SET {DELIVERY_AFTER_ATTEMPT} \
             FROM unnest($2::text[], $4::text[], $5::text[], $14::text[], \
                 $15::timestamptz[], $11::text[], $12::timestamptz[]) \
                 AS u(tenant_id, msg_id, endpoint_id, state, next_at, trigger, at) \
             WHERE delivery.tenant_id = u.tenant_id AND delivery.msg_id = u.msg_id \
               AND delivery.endpoint_id = u.endpoint_id"
        ))
        .bind(texts(&|r| Some(r.attempt.id.as_str())))
        .bind(texts(&|r| Some(r.tenant_id.as_str())))
        .bind(texts(&|r| Some(r.attempt.app_id.as_str())))
        .bind(texts(&|r| Some(r.attempt.msg_id.as_str())))
        .bind(texts(&|r| Some(r.attempt.endpoint_id.as_str())))
        .bind(texts(&|r| Some(r.attempt.url.as_str())))
        .bind(Arg::Ints(
            attempts().map(|a| i64::from(a.status_code)).collect(),
        ))
        .bind(texts(&|r| r.attempt.error_class.map(ErrorClass::as_str)))
        .bind(texts(&|r| r.attempt.response_body.as_deref()))
        .bind(Arg::Ints(
            attempts()
                .map(|a| i64::from(a.duration_ms().min(i32::MAX as u32)))
                .collect(),
        ))
        .bind(texts(&|r| Some(r.attempt.trigger.as_str())))
        .bind(Arg::Times(attempts().map(|a| Some(a.created_at)).collect()))
        .bind(Arg::Ints(
            attempts()
                .map(|a| i64::try_from(a.duration_us).unwrap_or(i64::MAX))
                .collect(),
        ))
        .bind(texts(&|r| Some(r.update.state.as_str())))
        .bind(Arg::Times(
            batch.iter().map(|r| r.update.next_attempt_at).collect(),
        ))
        .bind(texts(&|r| r.attempt.request_headers.as_deref()))
        .bind(texts(&|r| r.attempt.response_headers.as_deref()));
        self.db.write(sql).await.map(drop)
    }

    /// One transaction, two statements an attempt (one writer: the commit is
    /// the cost, the statements are cheap).
    async fn record_attempts_sqlite(&self, batch: &[AttemptRecord]) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        for AttemptRecord {
            tenant_id,
            attempt,
            update,
        } in batch
        {
            let insert = Sql::new(format!(
                "INSERT INTO message_attempt ({ATTEMPT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ))
            .bind(attempt.id.as_str())
            .bind(tenant_id.as_str())
            .bind(attempt.app_id.as_str())
            .bind(attempt.msg_id.as_str())
            .bind(attempt.endpoint_id.as_str())
            .bind(&attempt.url)
            .bind(attempt.status_code)
            .bind(attempt.error_class.map(ErrorClass::as_str))
            .bind(&attempt.response_body)
            .bind(attempt.duration_ms())
            .bind(attempt.trigger.as_str())
            .bind(attempt.created_at)
            .bind(i64::try_from(attempt.duration_us).unwrap_or(i64::MAX))
            .bind(&attempt.request_headers)
            .bind(&attempt.response_headers);
            tx.write(insert).await?;
            let update = Sql::new(format!(
                "UPDATE delivery SET {DELIVERY_AFTER_ATTEMPT} \
                 FROM (SELECT $4 AS state, $5 AS next_at, $6 AS trigger, $7 AS at) AS u \
                 WHERE delivery.tenant_id = $1 AND delivery.msg_id = $2 \
                   AND delivery.endpoint_id = $3"
            ))
            .bind(tenant_id.as_str())
            .bind(attempt.msg_id.as_str())
            .bind(attempt.endpoint_id.as_str())
            .bind(update.state.as_str())
            .bind(update.next_attempt_at)
            .bind(attempt.trigger.as_str())
            .bind(attempt.created_at);
            tx.write(update).await?;
        }
        tx.commit().await
    }
}

#[async_trait]
impl AttemptLog for SqlStore {
    async fn record_attempt(
        &self,
        tenant_id: &TenantId,
        attempt: &Attempt,
        update: &DeliveryUpdate,
    ) -> StoreResult<()> {
        let record = AttemptRecord {
            tenant_id: tenant_id.clone(),
            attempt: attempt.clone(),
            update: update.clone(),
        };
        self.record_attempts(std::slice::from_ref(&record)).await
    }

    async fn record_attempts(&self, batch: &[AttemptRecord]) -> StoreResult<()> {
        match self.db.dialect() {
            _ if batch.is_empty() => Ok(()),
            Dialect::Postgres => {
                // `UPDATE … FROM` moves a row once however many source rows
                // match it, so two attempts of one delivery (a scheduled one
                // finishing beside a manual one) go in separate statements,
                // in batch order.
                let mut rounds: Vec<Vec<&AttemptRecord>> = Vec::new();
                let mut seen = std::collections::HashMap::new();
                for record in batch {
                    let a = &record.attempt;
                    let key = (&record.tenant_id, &a.msg_id, &a.endpoint_id);
                    let round: &mut usize = seen.entry(key).or_insert(0);
                    if rounds.len() <= *round {
                        rounds.push(Vec::new());
                    }
                    rounds[*round].push(record);
                    *round += 1;
                }
                for round in rounds {
                    self.record_attempts_postgres(&round).await?;
                }
                Ok(())
            }
            Dialect::Sqlite => self.record_attempts_sqlite(batch).await,
        }
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
            "UPDATE message_attempt SET response_body = NULL, response_headers = NULL \
             WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND id = $4",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str())
        .bind(attempt_id.as_str());
        Ok(self.db.write(sql).await? == 1)
    }
}
