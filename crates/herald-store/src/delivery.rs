//! The outbox: a message stored with one delivery per endpoint, and the
//! deliveries' state as the relay and the workers move it.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{ApplicationId, EndpointId, IdOrUid, MessageId, TenantId, Uid};

use crate::db::{corrupt, Arg, Dialect, Row, Sql};
use crate::endpoint::ENDPOINT_COLUMNS;
use crate::model::{
    Application, ClaimedDelivery, DeadLetterCheck, DeadLetterKey, Delivery, DeliveryKey,
    DeliveryState, DeliveryTarget, DeliveryUpdate, Endpoint, EndpointHealth, Message, NewMessage,
};
use crate::rows::{
    application_from_row, delivery_from_row, endpoint_from_row, health_from_row, message_from_row,
};
use crate::{EndpointStore, Outbox, SqlStore, StoreError, StoreResult};

/// The message columns, in the order both inserts below bind them.
const MESSAGE_COLUMNS: &str = "id, tenant_id, app_id, event_id, event_type, channels, tags, \
     payload, created_at, expires_at";

impl SqlStore {
    /// PostgreSQL: the whole batch in one statement (one round trip, one
    /// commit), its rows passed as arrays; a message whose `eventId` is
    /// taken is skipped with its deliveries, and the ids stored come back.
    async fn insert_messages_postgres(
        &self,
        batch: &[NewMessage],
        state: DeliveryState,
    ) -> StoreResult<Vec<bool>> {
        let messages = batch.iter().map(|new| &new.message);
        let deliveries: Vec<(&NewMessage, &EndpointId)> = batch
            .iter()
            .flat_map(|new| new.endpoint_ids.iter().map(move |e| (new, e)))
            .collect();
        let sql = Sql::new(format!(
            "WITH m AS ( \
                 INSERT INTO message ({MESSAGE_COLUMNS}) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                     $5::text[], $6::jsonb[], $7::jsonb[], $8::bytea[], $9::timestamptz[], \
                     $10::timestamptz[]) \
                 ON CONFLICT (app_id, event_id) DO NOTHING RETURNING id), \
             d AS ( \
                 INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, \
                     next_attempt_at, created_at, updated_at) \
                 SELECT l.msg_id, l.endpoint_id, l.tenant_id, l.app_id, $11, 0, l.at, l.at, l.at \
                 FROM unnest($12::text[], $13::text[], $14::text[], $15::text[], \
                     $16::timestamptz[]) AS l(msg_id, endpoint_id, tenant_id, app_id, at) \
                 JOIN m ON m.id = l.msg_id) \
             SELECT id FROM m"
        ))
        .bind(Arg::OptionalTexts(
            messages.clone().map(|m| Some(m.id.as_str())).collect(),
        ))
        .bind(Arg::OptionalTexts(
            batch.iter().map(|n| Some(n.tenant_id.as_str())).collect(),
        ))
        .bind(Arg::OptionalTexts(
            messages.clone().map(|m| Some(m.app_id.as_str())).collect(),
        ))
        .bind(Arg::OptionalTexts(
            messages
                .clone()
                .map(|m| m.event_id.as_ref().map(Uid::as_str))
                .collect(),
        ))
        .bind(Arg::OptionalTexts(
            messages
                .clone()
                .map(|m| Some(m.event_type.as_str()))
                .collect(),
        ))
        .bind(Arg::Jsons(
            messages
                .clone()
                .map(|m| json_value(m.channels.as_ref()))
                .collect(),
        ))
        .bind(Arg::Jsons(
            messages
                .clone()
                .map(|m| json_value(m.tags.as_ref()))
                .collect(),
        ))
        .bind(Arg::Blobs(
            messages.clone().map(|m| m.payload.as_deref()).collect(),
        ))
        .bind(Arg::Times(
            messages.clone().map(|m| Some(m.created_at)).collect(),
        ))
        .bind(Arg::Times(messages.map(|m| Some(m.expires_at)).collect()))
        .bind(state.as_str())
        .bind(Arg::texts(
            deliveries.iter().map(|(n, _)| n.message.id.as_str()),
        ))
        .bind(Arg::texts(deliveries.iter().map(|(_, e)| e.as_str())))
        .bind(Arg::texts(
            deliveries.iter().map(|(n, _)| n.tenant_id.as_str()),
        ))
        .bind(Arg::texts(
            deliveries.iter().map(|(n, _)| n.message.app_id.as_str()),
        ))
        .bind(Arg::Times(
            deliveries
                .iter()
                .map(|(n, _)| Some(n.message.created_at))
                .collect(),
        ));
        let stored = self
            .db
            .write_returning(sql)
            .await?
            .iter()
            .map(|row| row.text("id"))
            .collect::<StoreResult<std::collections::HashSet<String>>>()?;
        Ok(batch
            .iter()
            .map(|n| stored.contains(n.message.id.as_str()))
            .collect())
    }

    /// SQLite: one transaction, two statements a message (one writer: the
    /// commit is the cost, the statements are cheap).
    async fn insert_messages_sqlite(
        &self,
        batch: &[NewMessage],
        state: DeliveryState,
    ) -> StoreResult<Vec<bool>> {
        let mut tx = self.db.begin().await?;
        let mut stored = Vec::with_capacity(batch.len());
        for NewMessage {
            tenant_id,
            message,
            endpoint_ids,
        } in batch
        {
            let insert = Sql::new(format!(
                "INSERT INTO message ({MESSAGE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (app_id, event_id) DO NOTHING"
            ))
            .bind(message.id.as_str())
            .bind(tenant_id.as_str())
            .bind(message.app_id.as_str())
            .bind(message.event_id.as_ref().map(Uid::as_str))
            .bind(message.event_type.as_str())
            .bind(Arg::opt_json(message.channels.as_ref()))
            .bind(Arg::opt_json(message.tags.as_ref()))
            .bind(message.payload.as_deref())
            .bind(message.created_at)
            .bind(message.expires_at);
            let inserted = tx.write(insert).await? == 1;
            stored.push(inserted);
            if !inserted || endpoint_ids.is_empty() {
                continue;
            }
            let deliveries = Sql::new(
                "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, \
                     next_attempt_at, created_at, updated_at) \
                 SELECT $1, value, $2, $3, $4, 0, $5, $5, $5 FROM json_each($6)",
            )
            .bind(message.id.as_str())
            .bind(tenant_id.as_str())
            .bind(message.app_id.as_str())
            .bind(state.as_str())
            .bind(message.created_at)
            .bind(Arg::texts(endpoint_ids.iter().map(EndpointId::as_str)));
            tx.write(deliveries).await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// One message, as a batch of one; a taken `eventId` is a conflict.
    async fn insert_one(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
        claimed: bool,
    ) -> StoreResult<()> {
        let new = NewMessage {
            tenant_id: tenant_id.clone(),
            message: message.clone(),
            endpoint_ids: endpoint_ids.to_vec(),
        };
        match self.insert_messages(&[new], claimed).await?.first() {
            Some(true) => Ok(()),
            _ => Err(StoreError::Conflict {
                constraint: "message_app_id_event_id_key".to_owned(),
            }),
        }
    }
}

/// Each row mapped by `from_row`, with the tenant it belongs to (to be
/// checked against the key that asked for it).
fn owned<T>(
    rows: &[Row],
    from_row: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<(String, T)>> {
    rows.iter()
        .map(|row| Ok((row.text("tenant_id")?, from_row(row)?)))
        .collect()
}

/// A JSON column's value, for a `jsonb[]` argument.
fn json_value<T: serde::Serialize>(value: Option<&T>) -> Option<serde_json::Value> {
    value.map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
}

#[async_trait]
impl Outbox for SqlStore {
    async fn insert_message(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
    ) -> StoreResult<()> {
        self.insert_one(tenant_id, message, endpoint_ids, false)
            .await
    }

    async fn insert_message_claimed(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
    ) -> StoreResult<()> {
        self.insert_one(tenant_id, message, endpoint_ids, true)
            .await
    }

    async fn insert_messages(&self, batch: &[NewMessage], claimed: bool) -> StoreResult<Vec<bool>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let state = if claimed {
            DeliveryState::Sending
        } else {
            DeliveryState::Pending
        };
        match self.db.dialect() {
            Dialect::Postgres => self.insert_messages_postgres(batch, state).await,
            Dialect::Sqlite => self.insert_messages_sqlite(batch, state).await,
        }
    }

    async fn fan_out_candidates(
        &self,
        keys: &[(TenantId, ApplicationId)],
    ) -> StoreResult<Vec<Option<(Application, Vec<Endpoint>)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.db.dialect();
        let mut ids: Vec<&str> = keys.iter().map(|(_, app)| app.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let apps = Sql::new(format!(
            // The operational application takes no `POST /msg` (see `operational`).
            "SELECT * FROM application WHERE {} AND NOT operational",
            dialect.any("id", 1)
        ))
        .bind(Arg::Texts(ids.clone()));
        let endpoints = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS}, tenant_id FROM endpoint WHERE {} AND NOT disabled \
             ORDER BY id",
            dialect.any("app_id", 1)
        ))
        .bind(Arg::Texts(ids));
        let (apps, endpoints) = tokio::try_join!(self.db.read(apps), self.db.read(endpoints))?;
        let apps: HashMap<String, (String, Application)> = owned(&apps, application_from_row)?
            .into_iter()
            .map(|(tenant, app)| (app.id.to_string(), (tenant, app)))
            .collect();
        let mut by_app: HashMap<String, Vec<(String, Endpoint)>> = HashMap::new();
        for (tenant, endpoint) in owned(&endpoints, |row| endpoint_from_row(row, &self.keys))? {
            let app = endpoint.app_id.to_string();
            by_app.entry(app).or_default().push((tenant, endpoint));
        }
        Ok(keys
            .iter()
            .map(|(tenant_id, app_id)| {
                let (tenant, app) = apps.get(app_id.as_str())?;
                if tenant != tenant_id.as_str() {
                    return None;
                }
                let endpoints = by_app.get(app_id.as_str()).into_iter().flatten();
                let endpoints = endpoints
                    .filter(|(tenant, _)| tenant == tenant_id.as_str())
                    .map(|(_, endpoint)| endpoint.clone());
                Some((app.clone(), endpoints.collect()))
            })
            .collect())
    }

    async fn delivery_targets(&self, keys: &[DeliveryKey]) -> StoreResult<Vec<DeliveryTarget>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.db.dialect();
        let ids = |f: fn(&DeliveryKey) -> &str| {
            let mut ids: Vec<&str> = keys.iter().map(f).collect();
            ids.sort_unstable();
            ids.dedup();
            Arg::Texts(ids)
        };
        let deliveries = Sql::new(format!(
            "SELECT * FROM delivery WHERE {} AND {}",
            dialect.any("msg_id", 1),
            dialect.any("endpoint_id", 2)
        ))
        .bind(ids(|k| k.msg_id.as_str()))
        .bind(ids(|k| k.endpoint_id.as_str()));
        let messages = Sql::new(format!(
            "SELECT * FROM message WHERE {}",
            dialect.any("id", 1)
        ))
        .bind(ids(|k| k.msg_id.as_str()));
        let endpoints = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS}, tenant_id FROM endpoint WHERE {}",
            dialect.any("id", 1)
        ))
        .bind(ids(|k| k.endpoint_id.as_str()));
        let (deliveries, messages, endpoints) = tokio::try_join!(
            self.db.read(deliveries),
            self.db.read(messages),
            self.db.read(endpoints)
        )?;
        let deliveries: Vec<(String, Delivery)> = owned(&deliveries, delivery_from_row)?;
        let messages: HashMap<String, (String, Message)> = owned(&messages, message_from_row)?
            .into_iter()
            .map(|(tenant, m)| (m.id.to_string(), (tenant, m)))
            .collect();
        let endpoints: HashMap<String, (String, Endpoint)> =
            owned(&endpoints, |row| endpoint_from_row(row, &self.keys))?
                .into_iter()
                .map(|(tenant, e)| (e.id.to_string(), (tenant, e)))
                .collect();
        let deliveries: HashMap<(&str, &str), (&String, &Delivery)> = deliveries
            .iter()
            .map(|(tenant, d)| ((d.msg_id.as_str(), d.endpoint_id.as_str()), (tenant, d)))
            .collect();
        Ok(keys
            .iter()
            .map(|key| {
                let mine = |tenant: &str, app: &ApplicationId| {
                    tenant == key.tenant_id.as_str() && *app == key.app_id
                };
                DeliveryTarget {
                    delivery: deliveries
                        .get(&(key.msg_id.as_str(), key.endpoint_id.as_str()))
                        .filter(|(tenant, d)| mine(tenant, &d.app_id))
                        .map(|(_, d)| (*d).clone()),
                    message: messages
                        .get(key.msg_id.as_str())
                        .filter(|(tenant, m)| mine(tenant, &m.app_id))
                        .map(|(_, m)| m.clone()),
                    endpoint: endpoints
                        .get(key.endpoint_id.as_str())
                        .filter(|(tenant, e)| mine(tenant, &e.app_id))
                        .map(|(_, e)| e.clone()),
                }
            })
            .collect())
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

    async fn park_delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
        until: DateTime<Utc>,
    ) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE delivery SET state = 'pending', next_attempt_at = $4, updated_at = $5 \
             WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3 \
               AND state IN ('pending', 'sending')",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(until)
        .bind(crate::now());
        self.db.write(sql).await.map(drop)
    }

    async fn confirm_dead_letters(
        &self,
        letters: &[DeadLetterKey],
    ) -> StoreResult<DeadLetterCheck> {
        let mut check = DeadLetterCheck::default();
        if letters.is_empty() {
            return Ok(check);
        }
        let for_update = self.db.dialect().for_update();
        let now = crate::now();
        let mut tx = self.db.begin().await?;
        for letter in letters {
            let key = &letter.delivery;
            let select = Sql::new(format!(
                "SELECT state, attempts, manual FROM delivery \
                 WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND endpoint_id = $4\
                 {for_update}"
            ))
            .bind(key.tenant_id.as_str())
            .bind(key.app_id.as_str())
            .bind(key.msg_id.as_str())
            .bind(key.endpoint_id.as_str());
            let rows = tx.read(select).await?;
            let Some(row) = rows.first() else {
                check.moved_on += 1; // Deleted with its message or application.
                continue;
            };
            let state = row.text("state")?;
            // Still at the letter's attempt, with no manual request since:
            // nothing moved it on, so the letter is its latest word.
            let stuck = state == DeliveryState::Sending.as_str()
                && !row.get::<bool>("manual")?
                && row.integer("attempts")? + 1 == i64::from(letter.attempt);
            if state == DeliveryState::Dead.as_str() {
                check.already_dead += 1;
            } else if stuck {
                let update = Sql::new(
                    "UPDATE delivery SET state = 'dead', next_attempt_at = NULL, updated_at = $5 \
                     WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND endpoint_id = $4",
                )
                .bind(key.tenant_id.as_str())
                .bind(key.app_id.as_str())
                .bind(key.msg_id.as_str())
                .bind(key.endpoint_id.as_str())
                .bind(now);
                tx.write(update).await?;
                check.marked_dead += 1;
            } else {
                check.moved_on += 1;
            }
        }
        tx.commit().await?;
        Ok(check)
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

    async fn disable_endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        reason: &str,
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
            endpoint.health.disabled_at = Some(endpoint.updated_at);
            endpoint.health.disabled_reason = Some(reason.to_owned());
            if self.update_endpoint(tenant_id, &endpoint, expected).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn endpoint_failed(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<EndpointHealth>> {
        let sql = Sql::new(
            "UPDATE endpoint SET consecutive_failures = consecutive_failures + 1, \
                 failing_since = COALESCE(failing_since, $3) \
             WHERE tenant_id = $1 AND id = $2 \
             RETURNING consecutive_failures, failing_since, breaker_open_until, disabled_at, \
                 disabled_reason",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(at);
        let rows = self.db.write_returning(sql).await?;
        rows.first().map(health_from_row).transpose()
    }

    async fn open_breaker(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        until: DateTime<Utc>,
    ) -> StoreResult<()> {
        let sql = Sql::new(
            "UPDATE endpoint SET breaker_open_until = $3 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(until);
        self.db.write(sql).await.map(drop)
    }

    async fn claim_breaker_probe(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE endpoint SET breaker_open_until = $4 \
             WHERE tenant_id = $1 AND id = $2 AND breaker_open_until <= $3",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(now)
        .bind(until);
        Ok(self.db.write(sql).await? == 1)
    }

    async fn endpoint_recovered(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "UPDATE endpoint SET consecutive_failures = 0, failing_since = NULL, \
                 breaker_open_until = NULL \
             WHERE tenant_id = $1 AND id = $2 \
                 AND (consecutive_failures > 0 OR breaker_open_until IS NOT NULL)",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str());
        if self.db.write(sql).await? == 0 {
            return Ok(false);
        }
        // What waited for the endpoint (parked while its breaker was open,
        // or while another task probed it) is due now, not when its park
        // would have ended: pending deliveries due later are parked ones.
        let now = crate::now();
        let release = Sql::new(
            "UPDATE delivery SET next_attempt_at = $3 \
             WHERE tenant_id = $1 AND endpoint_id = $2 AND state = 'pending' \
                 AND next_attempt_at > $3",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(now);
        self.db.write(release).await?;
        Ok(true)
    }
}
