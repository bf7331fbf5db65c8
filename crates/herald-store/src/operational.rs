//! Operational webhooks, stored: each tenant's operational endpoints are
//! ordinary endpoints of one hidden application (`application.operational`),
//! and an event is a message posted to that application, written the way
//! `POST /msg` writes one (`Outbox::insert_message`: pending deliveries the
//! relay hands out). So signing, retries, lanes, attempts and the attempt log
//! apply to operational webhooks unchanged, with no second pipeline.
//!
//! Why a flag and not a reserved uid: a uid is the tenant's namespace (any
//! `[a-zA-Z0-9-_.]` name is theirs to take), and a flag lets every query that
//! serves the application routes hide the application in the same statement,
//! so listings stay exact and no route can reach it by id or uid.

use async_trait::async_trait;
use herald_core::operational::{EventUids, OperationalEvent};
use herald_core::{ApplicationId, MessageId, TenantId, Uid};

use crate::db::Sql;
use crate::endpoint::ENDPOINT_COLUMNS;
use crate::rows::endpoint_from_row;
use crate::{Endpoint, Message, Outbox, SqlStore, StoreError, StoreResult};

/// How long an operational webhook's message is kept, as a message posted
/// without `payloadRetentionPeriod`.
const RETENTION_DAYS: i64 = 90;

/// The operational application of each tenant and what an event needs to
/// name (the uids a payload carries). A worker holds it through
/// [`crate::DeliveryStore`], the API through [`crate::Store`].
#[async_trait]
pub trait OperationalOutbox: Send + Sync + 'static {
    /// The id of the tenant's operational application; with `create`, it is
    /// made on first use (concurrent callers get the same one).
    async fn operational_app(
        &self,
        tenant_id: &TenantId,
        create: bool,
    ) -> StoreResult<Option<ApplicationId>>;
    /// The enabled endpoints of the tenant's operational application, in id
    /// order; empty when it has none (or no such application exists). One
    /// indexed read: the only cost of an event nobody listens to.
    async fn operational_endpoints(&self, tenant_id: &TenantId) -> StoreResult<Vec<Endpoint>>;
    /// The uid of application `app_id` and the `eventId` of `msg_id`.
    async fn event_uids(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: Option<&MessageId>,
    ) -> StoreResult<EventUids>;
}

/// Sends `event` to the tenant's operational endpoints that want its type:
/// stores it as a message of the operational application with one pending
/// delivery per such endpoint, which the relay hands out. Returns the
/// message's id, or `None` when nobody listens. An event about the
/// operational application itself (its own deliveries failing) is never
/// sent, so operational webhooks cannot feed on themselves.
pub async fn emit_operational<S>(
    store: &S,
    tenant_id: &TenantId,
    event: &OperationalEvent,
) -> StoreResult<Option<MessageId>>
where
    S: Outbox + OperationalOutbox + ?Sized,
{
    let candidates = store.operational_endpoints(tenant_id).await?;
    if candidates
        .first()
        .is_none_or(|ep| ep.app_id == event.app_id)
    {
        return Ok(None);
    }
    let op_app_id = candidates[0].app_id.clone();
    let event_type = event.event_type.event_type_name();
    let targets: Vec<_> = candidates
        .into_iter()
        .filter(|ep| {
            herald_core::filter::endpoint_receives(
                ep.event_types.as_deref(),
                None,
                &event_type,
                None,
            )
        })
        .map(|ep| ep.id)
        .collect();
    if targets.is_empty() {
        return Ok(None);
    }
    let uids = store
        .event_uids(tenant_id, &event.app_id, event.msg_id())
        .await?;
    let now = crate::now();
    let payload = serde_json::to_vec(&event.payload(&uids, now))
        .map_err(|e| StoreError::Corrupt(format!("operational payload: {e}")))?;
    let message = Message {
        id: MessageId::new(),
        app_id: op_app_id,
        event_id: None,
        event_type,
        channels: None,
        tags: None,
        payload: Some(payload),
        created_at: now,
        expires_at: now + chrono::Duration::days(RETENTION_DAYS),
    };
    store.insert_message(tenant_id, &message, &targets).await?;
    Ok(Some(message.id))
}

#[async_trait]
impl OperationalOutbox for SqlStore {
    async fn operational_app(
        &self,
        tenant_id: &TenantId,
        create: bool,
    ) -> StoreResult<Option<ApplicationId>> {
        let find = || {
            Sql::new("SELECT id FROM application WHERE tenant_id = $1 AND operational")
                .bind(tenant_id.as_str())
        };
        if let Some(row) = self.db.read_one(find()).await? {
            return parse_app_id(&row.text("id")?).map(Some);
        }
        if !create {
            return Ok(None);
        }
        let now = crate::now();
        let id = ApplicationId::new();
        let insert = Sql::new(
            "INSERT INTO application (id, tenant_id, uid, name, metadata, operational, \
                 created_at, updated_at) \
             VALUES ($1, $2, NULL, 'Operational webhooks', '{}', $3, $4, $4)",
        )
        .bind(id.as_str())
        .bind(tenant_id.as_str())
        .bind(true)
        .bind(now);
        match self.db.write(insert).await {
            Ok(_) => Ok(Some(id)),
            // Another request made it first (`application_operational_key`).
            Err(StoreError::Conflict { .. }) => match self.db.read_one(find()).await? {
                Some(row) => parse_app_id(&row.text("id")?).map(Some),
                None => Err(StoreError::Corrupt(
                    "operational application conflicts but is absent".to_owned(),
                )),
            },
            Err(e) => Err(e),
        }
    }

    async fn operational_endpoints(&self, tenant_id: &TenantId) -> StoreResult<Vec<Endpoint>> {
        let sql = Sql::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint \
             WHERE tenant_id = $1 AND NOT disabled AND app_id = \
                 (SELECT id FROM application WHERE tenant_id = $1 AND operational) \
             ORDER BY id"
        ))
        .bind(tenant_id.as_str());
        self.db
            .read_as(sql, |row| endpoint_from_row(row, &self.keys))
            .await
    }

    async fn event_uids(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: Option<&MessageId>,
    ) -> StoreResult<EventUids> {
        let sql = Sql::new(
            "SELECT (SELECT uid FROM application WHERE tenant_id = $1 AND id = $2) AS app_uid, \
                    (SELECT event_id FROM message WHERE tenant_id = $1 AND id = $3) AS event_id",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.map(MessageId::as_str));
        let Some(row) = self.db.read_one(sql).await? else {
            return Ok(EventUids::default());
        };
        let uid = |column: &str| -> StoreResult<Option<Uid>> {
            row.get::<Option<String>>(column)?
                .map(|s| Uid::from_stored(s).map_err(|e| StoreError::Corrupt(e.msg)))
                .transpose()
        };
        Ok(EventUids {
            app_uid: uid("app_uid")?,
            msg_event_id: uid("event_id")?,
        })
    }
}

fn parse_app_id(id: &str) -> StoreResult<ApplicationId> {
    ApplicationId::parse(id).map_err(|_| StoreError::Corrupt(format!("application id {id}")))
}
