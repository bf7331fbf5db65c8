//! The PostgreSQL implementation of [`Store`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use herald_core::{
    ApiKeyId, ApplicationId, AttemptId, ChannelName, EndpointId, EventTypeName, FeatureFlag,
    IdOrUid, MessageId, TenantId, Uid,
};

use crate::listing::{bounded_page, push_keyset, push_keyset_to, PayloadSql};
use crate::model::{
    ApiKey, Application, Attempt, AttemptFilter, ClaimedDelivery, DeliveredMessage, Delivery,
    DeliveryCounts, DeliveryFilter, DeliveryState, DeliveryStatus, DeliveryUpdate, Endpoint,
    EventType, Message, MessageFilter, StatsBucket, StatsGranularity, StatsSample, StoredSecrets,
    Tenant,
};
use crate::page::{ListQuery, Page, Payloads};
use crate::rows::{
    api_key_from_row, application_from_row, attempt_from_row, corrupt, delivery_from_row,
    endpoint_from_row, event_type_from_row, message_from_row, tenant_from_row, StoredRow,
};
use crate::stats::{self as shared, COUNTER_COLUMNS};
use crate::{Store, StoreError, StoreResult};

/// Migrations for PostgreSQL, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A [`Store`] backed by a PostgreSQL connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// The message and its deliveries (in `state`, due at once) in one
    /// statement: one round trip and one commit, atomic like a transaction.
    async fn insert_message_as(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
        state: DeliveryState,
    ) -> StoreResult<()> {
        let ids: Vec<&str> = endpoint_ids.iter().map(EndpointId::as_str).collect();
        sqlx::query(
            "WITH m AS ( \
                 INSERT INTO message (id, tenant_id, app_id, event_id, event_type, channels, tags, payload, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id) \
             INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, next_attempt_at, created_at, updated_at) \
             SELECT m.id, e.endpoint_id, $2, $3, $11, 0, $9, $9, $9 FROM m, unnest($12::text[]) AS e(endpoint_id)",
        )
        .bind(message.id.as_str())
        .bind(tenant_id.as_str())
        .bind(message.app_id.as_str())
        .bind(message.event_id.as_ref().map(Uid::as_str))
        .bind(message.event_type.as_str())
        .bind(message.channels.as_ref().map(json_of))
        .bind(message.tags.as_ref().map(json_of))
        .bind(message.payload.as_deref())
        .bind(message.created_at)
        .bind(message.expires_at)
        .bind(state.as_str())
        .bind(&ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    /// Connects lazily: the pool opens connections on first use, so a process can
    /// start while the database is still coming up and answer 503 until it is.
    pub fn connect_lazy(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy(url)
            .map_err(StoreError::Database)?;
        Ok(Self { pool })
    }

    /// Creates the database named in `url` when it does not exist yet, so a
    /// first start needs nothing but a reachable server.
    pub async fn create_database_if_missing(url: &str) -> StoreResult<()> {
        use sqlx::migrate::MigrateDatabase;
        if !Postgres::database_exists(url).await? {
            match Postgres::create_database(url).await {
                Ok(()) => tracing::info!("created database"),
                // Another process created it first: what we wanted.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Maps an error PostgreSQL reported (an `sqlx::Error::Database`) to a
/// [`StoreError`]; `From<sqlx::Error>` calls it.
pub(crate) fn database_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            constraint: db.constraint().unwrap_or_default().to_owned(),
        },
        // 57P01 admin_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections.
        sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("57P01" | "57P03" | "53300")) =>
        {
            StoreError::Unavailable(err)
        }
        _ => StoreError::Database(err),
    }
}

/// How this database spells a bounded message listing's fragments.
const PAYLOAD_SQL: PayloadSql = PayloadSql {
    columns_without_payload: "m.id, m.tenant_id, m.app_id, m.event_id, m.event_type, \
         m.channels, m.tags, NULL::bytea AS payload, m.created_at, m.expires_at",
    payload_size: "octet_length(m.payload)::bigint",
};

impl StoredRow for PgRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(self.try_get(column)?)
    }
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> StoreResult<bool> {
        Ok(self.try_get(column)?)
    }
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
    fn optional_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.try_get(column)?)
    }
    fn integer(&self, column: &str) -> StoreResult<i64> {
        self.optional_integer(column)?
            .ok_or_else(|| corrupt(column, "is NULL"))
    }
    /// `int2`, `int4` and `int8` columns alike.
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        use sqlx::{Column as _, TypeInfo as _};
        Ok(match self.try_column(column)?.type_info().name() {
            "INT2" => self.try_get::<Option<i16>, _>(column)?.map(i64::from),
            "INT4" => self.try_get::<Option<i32>, _>(column)?.map(i64::from),
            _ => self.try_get(column)?,
        })
    }
    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        Ok(self.try_get(column)?)
    }
    fn optional_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self.try_get(column)?)
    }
    fn optional_json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
        what: &str,
    ) -> StoreResult<Option<T>> {
        self.try_get::<Option<serde_json::Value>, _>(column)?
            .map(|value| serde_json::from_value(value).map_err(|e| corrupt(what, e)))
            .transpose()
    }
}

fn json_of<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

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
fn push_message_conditions(
    builder: &mut QueryBuilder<'_, Postgres>,
    channel: Option<&ChannelName>,
    event_types: Option<&[EventTypeName]>,
) {
    if let Some(channel) = channel {
        builder.push(" AND m.channels ? ");
        builder.push_bind(channel.as_str().to_owned());
    }
    if let Some(types) = event_types {
        let types: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
        builder.push(" AND m.event_type = ANY(");
        builder.push_bind(types);
        builder.push(")");
    }
}

/// Appends `AND {column} < before AND {column} > after` for the bounds given.
fn push_time_window(
    builder: &mut QueryBuilder<'_, Postgres>,
    column: &str,
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
) {
    if let Some(before) = before {
        builder.push(format!(" AND {column} < "));
        builder.push_bind(before);
    }
    if let Some(after) = after {
        builder.push(format!(" AND {column} > "));
        builder.push_bind(after);
    }
}

fn page_of<T>(
    rows: Vec<PgRow>,
    query: &ListQuery,
    from_row: fn(&PgRow) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_scan(items, query))
}

fn stats_bucket_from_row(row: &PgRow) -> StoreResult<StatsBucket> {
    let granularity: String = row.try_get("granularity")?;
    Ok(StatsBucket {
        endpoint_id: EndpointId::parse(row.try_get("endpoint_id")?)
            .map_err(|e| corrupt("endpoint_stats.endpoint_id", e))?,
        granularity: StatsGranularity::parse(&granularity)
            .ok_or_else(|| corrupt("endpoint_stats.granularity", &granularity))?,
        start: row.try_get("bucket_start")?,
        bucket: shared::bucket_from_row(row)?,
    })
}

/// Merges `owned` into the stored bucket at `key` (creating it), holding the
/// stored row's lock (`FOR UPDATE`) from read to write, so concurrent merges
/// into one bucket serialise instead of losing counts.
async fn merge_stats_bucket(
    conn: &mut PgConnection,
    granularity: StatsGranularity,
    (endpoint_id, start): &shared::BucketKey,
    owned: &shared::OwnedBucket,
) -> StoreResult<()> {
    loop {
        let row = sqlx::query(&format!(
            "SELECT {COUNTER_COLUMNS}, latency FROM endpoint_stats \
             WHERE endpoint_id = $1 AND granularity = $2 AND bucket_start = $3 FOR UPDATE"
        ))
        .bind(endpoint_id.as_str())
        .bind(granularity.as_str())
        .bind(start)
        .fetch_optional(&mut *conn)
        .await?;
        let (merged, statement) = match row {
            Some(row) => {
                let mut stored = shared::bucket_from_row(&row)?;
                stored.merge(&owned.bucket);
                (
                    stored,
                    "UPDATE endpoint_stats SET attempts = $6, successes = $7, timeout = $8, \
                         connect = $9, dns = $10, tls = $11, blocked = $12, http3xx = $13, \
                         http4xx = $14, http5xx = $15, other = $16, latency = $17 \
                     WHERE endpoint_id = $1 AND granularity = $2 AND bucket_start = $3",
                )
            }
            // Absent: insert it, unless a concurrent writer did first (then
            // its row is locked and merged into on the next round).
            None => (
                owned.bucket.clone(),
                "INSERT INTO endpoint_stats (endpoint_id, granularity, bucket_start, tenant_id, \
                     app_id, attempts, successes, timeout, connect, dns, tls, blocked, http3xx, \
                     http4xx, http5xx, other, latency) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT (endpoint_id, granularity, bucket_start) DO NOTHING",
            ),
        };
        let mut query = sqlx::query(statement)
            .bind(endpoint_id.as_str())
            .bind(granularity.as_str())
            .bind(start)
            .bind(owned.tenant_id.as_str())
            .bind(owned.app_id.as_str());
        for counter in shared::counters(merged.counts()) {
            query = query.bind(counter);
        }
        let written = query
            .bind(merged.latency_bytes())
            .execute(&mut *conn)
            .await?;
        if written.rows_affected() == 1 {
            return Ok(());
        }
    }
}

const ENDPOINT_COLUMNS: &str = "id, app_id, uid, url, description, version, disabled, \
     event_types, channels, metadata, throttle_rate, headers, secrets, created_at, updated_at";

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO server_setting (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM server_setting WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(stored)
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        sqlx::query("INSERT INTO tenant (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn tenant(&self, tenant_id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenant WHERE id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self, query: &ListQuery) -> StoreResult<Page<Tenant>> {
        let mut builder = QueryBuilder::new("SELECT id, name, created_at FROM tenant WHERE true");
        push_keyset(&mut builder, "id", query);
        let rows = builder.build().fetch_all(&self.pool).await?;
        page_of(rows, query, tenant_from_row)
    }

    async fn insert_api_key(&self, tenant_id: &TenantId, key: &ApiKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_key (id, tenant_id, name, prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.as_str())
        .bind(tenant_id.as_str())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_hash)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self, tenant_id: &TenantId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_key WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, tenant_id: &TenantId, key_id: &ApiKeyId) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE api_key SET revoked_at = COALESCE(revoked_at, now()) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(key_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn revoke_token(
        &self,
        tenant_id: &TenantId,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "WITH expired AS (DELETE FROM revoked_token WHERE expires_at < now()) \
             INSERT INTO revoked_token (token_id, tenant_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token_id)
        .bind(tenant_id.as_str())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 FROM revoked_token WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn insert_application(&self, tenant_id: &TenantId, app: &Application) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO application (id, tenant_id, uid, name, metadata, throttle_rate, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(app.id.as_str())
        .bind(tenant_id.as_str())
        .bind(app.uid.as_ref().map(Uid::as_str))
        .bind(&app.name)
        .bind(json_of(&app.metadata))
        .bind(app.throttle_rate.map(i32::from))
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_application(
        &self,
        tenant_id: &TenantId,
        app: &Application,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE application SET uid = $3, name = $4, metadata = $5, throttle_rate = $6, updated_at = $7 \
             WHERE tenant_id = $1 AND id = $2 AND updated_at = $8",
        )
        .bind(tenant_id.as_str())
        .bind(app.id.as_str())
        .bind(app.uid.as_ref().map(Uid::as_str))
        .bind(&app.name)
        .bind(json_of(&app.metadata))
        .bind(app.throttle_rate.map(i32::from))
        .bind(app.updated_at)
        .bind(expected_updated_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn application(
        &self,
        tenant_id: &TenantId,
        app: &IdOrUid,
    ) -> StoreResult<Option<Application>> {
        let row = sqlx::query(
            // Two indexed lookups, id first: one `WHERE id = $2 OR uid = $2` would
            // scan every application of the tenant.
            "SELECT * FROM application WHERE tenant_id = $1 AND id = $2 \
             UNION ALL SELECT * FROM application WHERE tenant_id = $1 AND uid = $2 LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(app.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(application_from_row).transpose()
    }

    async fn list_applications(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
    ) -> StoreResult<Page<Application>> {
        let mut builder = QueryBuilder::new("SELECT * FROM application WHERE tenant_id = ");
        builder.push_bind(tenant_id.as_str());
        push_keyset(&mut builder, "id", query);
        let rows = builder.build().fetch_all(&self.pool).await?;
        page_of(rows, query, application_from_row)
    }

    async fn delete_application(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM application WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id.as_str())
            .bind(app_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_endpoint(&self, tenant_id: &TenantId, endpoint: &Endpoint) -> StoreResult<()> {
        sqlx::query(&format!(
            "INSERT INTO endpoint (tenant_id, {ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(tenant_id.as_str())
        .bind(endpoint.id.as_str())
        .bind(endpoint.app_id.as_str())
        .bind(endpoint.uid.as_ref().map(Uid::as_str))
        .bind(endpoint.url.as_str())
        .bind(&endpoint.description)
        .bind(i32::from(endpoint.version))
        .bind(endpoint.disabled)
        .bind(endpoint.event_types.as_ref().map(json_of))
        .bind(endpoint.channels.as_ref().map(json_of))
        .bind(json_of(&endpoint.metadata))
        .bind(endpoint.throttle_rate.map(i32::from))
        .bind(json_of(&endpoint.headers))
        .bind(json_of(&StoredSecrets::from(&endpoint.secrets)))
        .bind(endpoint.created_at)
        .bind(endpoint.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE endpoint SET uid = $4, url = $5, description = $6, version = $7, disabled = $8, \
             event_types = $9, channels = $10, metadata = $11, throttle_rate = $12, headers = $13, \
             secrets = $14, updated_at = $15 \
             WHERE tenant_id = $1 AND app_id = $2 AND id = $3 AND updated_at = $16",
        )
        .bind(tenant_id.as_str())
        .bind(endpoint.app_id.as_str())
        .bind(endpoint.id.as_str())
        .bind(endpoint.uid.as_ref().map(Uid::as_str))
        .bind(endpoint.url.as_str())
        .bind(&endpoint.description)
        .bind(i32::from(endpoint.version))
        .bind(endpoint.disabled)
        .bind(endpoint.event_types.as_ref().map(json_of))
        .bind(endpoint.channels.as_ref().map(json_of))
        .bind(json_of(&endpoint.metadata))
        .bind(endpoint.throttle_rate.map(i32::from))
        .bind(json_of(&endpoint.headers))
        .bind(json_of(&StoredSecrets::from(&endpoint.secrets)))
        .bind(endpoint.updated_at)
        .bind(expected_updated_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint: &IdOrUid,
    ) -> StoreResult<Option<Endpoint>> {
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = $1 AND app_id = $2 AND id = $3 \
             UNION ALL SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = $1 AND app_id = $2 AND uid = $3 \
             LIMIT 1"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(endpoint.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    async fn list_endpoints(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
    ) -> StoreResult<Page<Endpoint>> {
        let mut builder = QueryBuilder::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = "
        ));
        builder.push_bind(tenant_id.as_str());
        builder.push(" AND app_id = ");
        builder.push_bind(app_id.as_str());
        push_keyset(&mut builder, "id", query);
        let rows = builder.build().fetch_all(&self.pool).await?;
        page_of(rows, query, endpoint_from_row)
    }

    async fn delete_endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<bool> {
        let result =
            sqlx::query("DELETE FROM endpoint WHERE tenant_id = $1 AND app_id = $2 AND id = $3")
                .bind(tenant_id.as_str())
                .bind(app_id.as_str())
                .bind(endpoint_id.as_str())
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_event_type(
        &self,
        tenant_id: &TenantId,
        event_type: &EventType,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO event_type (tenant_id, name, description, archived, deprecated, feature_flag, schemas, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(tenant_id.as_str())
        .bind(event_type.name.as_str())
        .bind(&event_type.description)
        .bind(event_type.archived)
        .bind(event_type.deprecated)
        .bind(event_type.feature_flag.as_ref().map(FeatureFlag::as_str))
        .bind(&event_type.schemas)
        .bind(event_type.created_at)
        .bind(event_type.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_event_type(
        &self,
        tenant_id: &TenantId,
        event_type: &EventType,
        expected_updated_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE event_type SET description = $3, archived = $4, deprecated = $5, feature_flag = $6, \
             schemas = $7, updated_at = $8 WHERE tenant_id = $1 AND name = $2 AND updated_at = $9",
        )
        .bind(tenant_id.as_str())
        .bind(event_type.name.as_str())
        .bind(&event_type.description)
        .bind(event_type.archived)
        .bind(event_type.deprecated)
        .bind(event_type.feature_flag.as_ref().map(FeatureFlag::as_str))
        .bind(&event_type.schemas)
        .bind(event_type.updated_at)
        .bind(expected_updated_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn event_type(
        &self,
        tenant_id: &TenantId,
        name: &EventTypeName,
    ) -> StoreResult<Option<EventType>> {
        let row = sqlx::query("SELECT * FROM event_type WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id.as_str())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_type_from_row).transpose()
    }

    async fn list_event_types(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
        include_archived: bool,
    ) -> StoreResult<Page<EventType>> {
        let mut builder = QueryBuilder::new("SELECT * FROM event_type WHERE tenant_id = ");
        builder.push_bind(tenant_id.as_str());
        if !include_archived {
            builder.push(" AND NOT archived");
        }
        push_keyset(&mut builder, "name", query);
        let rows = builder.build().fetch_all(&self.pool).await?;
        page_of(rows, query, event_type_from_row)
    }

    async fn delete_event_type(
        &self,
        tenant_id: &TenantId,
        name: &EventTypeName,
    ) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM event_type WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id.as_str())
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn missing_event_types(
        &self,
        tenant_id: &TenantId,
        names: &[EventTypeName],
    ) -> StoreResult<Vec<EventTypeName>> {
        let wanted: Vec<&str> = names.iter().map(EventTypeName::as_str).collect();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM event_type WHERE tenant_id = $1 AND name = ANY($2) AND NOT archived",
        )
        .bind(tenant_id.as_str())
        .bind(&wanted)
        .fetch_all(&self.pool)
        .await?;
        let found: std::collections::HashSet<&str> = found.iter().map(String::as_str).collect();
        Ok(names
            .iter()
            .filter(|n| !found.contains(n.as_str()))
            .cloned()
            .collect())
    }
    async fn enabled_endpoints(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<Vec<Endpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint \
             WHERE tenant_id = $1 AND app_id = $2 AND NOT disabled ORDER BY id"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

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
        let result = sqlx::query(
            "UPDATE delivery SET state = 'pending', next_attempt_at = $3, updated_at = $3 \
             WHERE tenant_id = $1 AND msg_id = $2 AND state = 'sending' AND attempts = 0",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(crate::now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn message(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg: &IdOrUid,
    ) -> StoreResult<Option<Message>> {
        let row = sqlx::query(
            // Two indexed lookups, id first: one `WHERE id = $3 OR event_id = $3`
            // would scan every message of the application.
            "SELECT * FROM message WHERE tenant_id = $1 AND app_id = $2 AND id = $3 \
             UNION ALL SELECT * FROM message WHERE tenant_id = $1 AND app_id = $2 AND event_id = $3 \
             LIMIT 1",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn list_messages(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &MessageFilter,
        payloads: Payloads,
    ) -> StoreResult<Page<Message>> {
        let fetch = |columns: String, only: Option<Vec<String>>, limit: i64| async move {
            let mut builder = QueryBuilder::new(format!(
                "SELECT {columns} FROM message m WHERE m.tenant_id = "
            ));
            builder.push_bind(tenant_id.as_str());
            builder.push(" AND m.app_id = ");
            builder.push_bind(app_id.as_str());
            push_message_conditions(
                &mut builder,
                filter.channel.as_ref(),
                filter.event_types.as_deref(),
            );
            push_time_window(&mut builder, "m.created_at", filter.before, filter.after);
            push_keyset_to(&mut builder, "m.id", query, only.as_deref(), limit);
            Ok(builder.build().fetch_all(&self.pool).await?)
        };
        bounded_page(
            &PAYLOAD_SQL,
            query,
            payloads,
            "m.id",
            fetch,
            message_from_row,
        )
        .await
    }

    async fn expunge_message_content(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE message SET payload = NULL WHERE tenant_id = $1 AND app_id = $2 AND id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn deliveries_of_message(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(
            "SELECT * FROM delivery WHERE tenant_id = $1 AND msg_id = $2 ORDER BY endpoint_id",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<Option<Delivery>> {
        let row = sqlx::query(
            "SELECT * FROM delivery WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn record_attempt(
        &self,
        tenant_id: &TenantId,
        attempt: &Attempt,
        update: &DeliveryUpdate,
    ) -> StoreResult<()> {
        // One statement, so one round trip and one commit: the attempt and its
        // delivery's new state land together or not at all. A scheduled
        // attempt finishing while a manual one is requested leaves the
        // delivery due for the manual one; a manual attempt answers it.
        sqlx::query(
            "WITH a AS ( \
                 INSERT INTO message_attempt (id, tenant_id, app_id, msg_id, endpoint_id, url, status_code, \
                 error_class, response_body, duration_ms, trigger, created_at, duration_us) \
                 VALUES ($8, $1, $9, $2, $3, $10, $11, $12, $13, $14, $7, $6, $15)) \
             UPDATE delivery SET \
                 state = CASE WHEN manual AND $7 <> 'manual' THEN state ELSE $4 END, \
                 next_attempt_at = CASE WHEN manual AND $7 <> 'manual' THEN next_attempt_at ELSE $5 END, \
                 manual = manual AND $7 <> 'manual', \
                 attempts = attempts + 1, updated_at = $6 \
             WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3",
        )
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
        .bind(i32::from(attempt.status_code))
        .bind(&attempt.error_class)
        .bind(&attempt.response_body)
        .bind(i32::try_from(attempt.duration_ms()).unwrap_or(i32::MAX))
        .bind(i64::try_from(attempt.duration_us).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
        update: &DeliveryUpdate,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE delivery SET state = $4, next_attempt_at = $5, updated_at = now() \
             WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(update.state.as_str())
        .bind(update.next_attempt_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attempts_of_message(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT * FROM message_attempt WHERE tenant_id = $1 AND msg_id = $2 ORDER BY created_at, id",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn attempt(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        attempt_id: &AttemptId,
    ) -> StoreResult<Option<Attempt>> {
        let row = sqlx::query(
            "SELECT * FROM message_attempt \
             WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND id = $4",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str())
        .bind(attempt_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(attempt_from_row).transpose()
    }

    async fn list_attempts(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &AttemptFilter,
    ) -> StoreResult<Page<Attempt>> {
        let mut builder = QueryBuilder::new("SELECT a.* FROM message_attempt a");
        let by_message = filter.channel.is_some() || filter.event_types.is_some();
        if by_message {
            builder.push(" JOIN message m ON m.id = a.msg_id");
        }
        builder.push(" WHERE a.tenant_id = ");
        builder.push_bind(tenant_id.as_str());
        builder.push(" AND a.app_id = ");
        builder.push_bind(app_id.as_str());
        if let Some(msg_id) = &filter.msg_id {
            builder.push(" AND a.msg_id = ");
            builder.push_bind(msg_id.as_str());
        }
        if let Some(endpoint_id) = &filter.endpoint_id {
            builder.push(" AND a.endpoint_id = ");
            builder.push_bind(endpoint_id.as_str());
        }
        match filter.succeeded {
            Some(true) => builder.push(" AND a.status_code BETWEEN 200 AND 299"),
            Some(false) => builder.push(" AND a.status_code NOT BETWEEN 200 AND 299"),
            None => &mut builder,
        };
        match filter.status_code_class {
            Some(0) => {
                builder.push(" AND a.status_code = 0");
            }
            Some(class) => {
                builder.push(" AND a.status_code >= ");
                builder.push_bind(i32::from(class));
                builder.push(" AND a.status_code < ");
                builder.push_bind(i32::from(class) + 100);
            }
            None => {}
        }
        if by_message {
            push_message_conditions(
                &mut builder,
                filter.channel.as_ref(),
                filter.event_types.as_deref(),
            );
        }
        push_time_window(&mut builder, "a.created_at", filter.before, filter.after);
        push_keyset(&mut builder, "a.id", query);
        let rows = builder.build().fetch_all(&self.pool).await?;
        page_of(rows, query, attempt_from_row)
    }

    async fn expunge_attempt_content(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        attempt_id: &AttemptId,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE message_attempt SET response_body = NULL \
             WHERE tenant_id = $1 AND app_id = $2 AND msg_id = $3 AND id = $4",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(msg_id.as_str())
        .bind(attempt_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
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
        let fetch = |columns: String, only: Option<Vec<String>>, limit: i64| async move {
            let mut builder = QueryBuilder::new(format!(
                "SELECT {columns}, d.msg_id, d.endpoint_id, d.state, d.attempts, \
                 d.next_attempt_at, d.manual, d.updated_at, d.created_at AS delivery_created_at \
                 FROM delivery d JOIN message m ON m.id = d.msg_id WHERE d.tenant_id = "
            ));
            builder.push_bind(tenant_id.as_str());
            builder.push(" AND d.app_id = ");
            builder.push_bind(app_id.as_str());
            builder.push(" AND d.endpoint_id = ");
            builder.push_bind(endpoint_id.as_str());
            if let Some(status) = filter.status {
                builder.push(" AND ");
                builder.push(delivery_status_condition(status));
            }
            push_message_conditions(
                &mut builder,
                filter.channel.as_ref(),
                filter.event_types.as_deref(),
            );
            push_time_window(&mut builder, "m.created_at", filter.before, filter.after);
            push_keyset_to(&mut builder, "d.msg_id", query, only.as_deref(), limit);
            Ok(builder.build().fetch_all(&self.pool).await?)
        };
        bounded_page(&PAYLOAD_SQL, query, payloads, "d.msg_id", fetch, |row| {
            let mut delivery = delivery_from_row(row)?;
            delivery.created_at = row.try_get("delivery_created_at")?;
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
        let mut builder = QueryBuilder::new("SELECT d.* FROM delivery d WHERE d.tenant_id = ");
        builder.push_bind(tenant_id.as_str());
        builder.push(" AND d.app_id = ");
        builder.push_bind(app_id.as_str());
        builder.push(" AND d.msg_id = ");
        builder.push_bind(msg_id.as_str());
        builder.push(" AND EXISTS (SELECT 1 FROM endpoint e WHERE e.id = d.endpoint_id)");
        push_keyset(&mut builder, "d.endpoint_id", query);
        let rows = builder.build().fetch_all(&self.pool).await?;
        let deliveries = page_of(rows, query, delivery_from_row)?;
        let ids: Vec<String> = deliveries
            .items
            .iter()
            .map(|d| d.endpoint_id.to_string())
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = $1 AND app_id = $2 AND id = ANY($3)"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut endpoints = rows
            .iter()
            .map(|row| endpoint_from_row(row).map(|ep| (ep.id.to_string(), ep)))
            .collect::<StoreResult<std::collections::HashMap<_, _>>>()?;
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
        sqlx::query(
            "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, \
                 next_attempt_at, created_at, updated_at, manual) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, true) \
             ON CONFLICT (msg_id, endpoint_id) DO UPDATE SET state = 'pending', manual = true, \
                 next_attempt_at = EXCLUDED.next_attempt_at, updated_at = EXCLUDED.updated_at",
        )
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(crate::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn request_recovery(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let result = sqlx::query(
            "UPDATE delivery SET state = 'pending', manual = true, next_attempt_at = $6, updated_at = $6 \
             WHERE tenant_id = $1 AND app_id = $2 AND endpoint_id = $3 \
               AND state IN ('failed', 'dead') AND created_at >= $4 AND created_at < $5",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(since)
        .bind(until)
        .bind(crate::now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    async fn endpoint_delivery_counts(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<DeliveryCounts> {
        let row = sqlx::query(
            "SELECT \
                 count(*) FILTER (WHERE state = 'succeeded') AS success, \
                 count(*) FILTER (WHERE state IN ('failed', 'dead')) AS fail, \
                 count(*) FILTER (WHERE state IN ('pending', 'sending') AND attempts = 0) AS pending, \
                 count(*) FILTER (WHERE state IN ('pending', 'sending') AND attempts > 0) AS sending \
             FROM delivery \
             WHERE tenant_id = $1 AND app_id = $2 AND endpoint_id = $3 \
               AND created_at >= $4 AND created_at < $5",
        )
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> StoreResult<u64> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(DeliveryCounts {
            success: count("success")?,
            fail: count("fail")?,
            pending: count("pending")?,
            sending: count("sending")?,
        })
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
        // SKIP LOCKED lets several relays claim disjoint batches concurrently.
        let rows = sqlx::query(
            "UPDATE delivery SET state = 'sending', next_attempt_at = $1 \
             WHERE (msg_id, endpoint_id) IN ( \
                 SELECT msg_id, endpoint_id FROM delivery \
                 WHERE state IN ('pending', 'sending') AND next_attempt_at <= $1 \
                   AND (state = 'pending' OR next_attempt_at <= $2) \
                 ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING *",
        )
        .bind(now)
        .bind(now - lease)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    tenant_id: TenantId::parse(row.try_get("tenant_id")?)
                        .map_err(|e| corrupt("delivery.tenant_id", e))?,
                    delivery: delivery_from_row(row)?,
                })
            })
            .collect()
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        let result = sqlx::query("UPDATE delivery SET state = 'pending' WHERE state = 'sending'")
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_stats(&self, samples: &[StatsSample]) -> StoreResult<usize> {
        if samples.is_empty() {
            return Ok(0);
        }
        let ids = shared::sorted_attempt_ids(samples);
        let mut tx = self.pool.begin().await?;
        // Concurrent batches with common ids insert them in the same (sorted)
        // order, and a second inserter of an id waits for the first to commit
        // and then skips it: every id is new to exactly one transaction.
        let new: Vec<String> = sqlx::query_scalar(
            "INSERT INTO stats_seen (attempt_id, seen_at) \
             SELECT id, $2 FROM unnest($1::text[]) AS t(id) ORDER BY id COLLATE \"C\" \
             ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id",
        )
        .bind(&ids)
        .bind(crate::now())
        .fetch_all(&mut *tx)
        .await?;
        let counted = new.len();
        // Every minute bucket in key order, then every hour bucket in key
        // order: one global lock order, so concurrent writers (and the
        // roll-up, which locks minute rows in key order) never deadlock.
        let minutes = shared::minute_buckets(samples, new.into_iter().collect());
        let hours = shared::hour_buckets(&minutes);
        for (key, owned) in &minutes {
            merge_stats_bucket(&mut tx, StatsGranularity::Minute, key, owned).await?;
        }
        for (key, owned) in &hours {
            merge_stats_bucket(&mut tx, StatsGranularity::Hour, key, owned).await?;
        }
        tx.commit().await?;
        Ok(counted)
    }

    async fn stats_buckets(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: Option<&EndpointId>,
        granularity: StatsGranularity,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<StatsBucket>> {
        let mut builder = QueryBuilder::new(format!(
            "SELECT endpoint_id, granularity, bucket_start, {COUNTER_COLUMNS}, latency \
             FROM endpoint_stats WHERE tenant_id = "
        ));
        builder.push_bind(tenant_id.as_str());
        builder.push(" AND app_id = ");
        builder.push_bind(app_id.as_str());
        if let Some(endpoint_id) = endpoint_id {
            builder.push(" AND endpoint_id = ");
            builder.push_bind(endpoint_id.as_str());
        }
        builder.push(" AND granularity = ");
        builder.push_bind(granularity.as_str());
        builder.push(" AND bucket_start >= ");
        builder.push_bind(since);
        builder.push(" AND bucket_start < ");
        builder.push_bind(until);
        builder.push(" ORDER BY bucket_start, endpoint_id");
        let rows = builder.build().fetch_all(&self.pool).await?;
        rows.iter().map(stats_bucket_from_row).collect()
    }

    async fn roll_up_stats(
        &self,
        minutes_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // Whole hours only: every minute of an hour before this one goes.
        let cutoff = StatsGranularity::Hour.truncate(minutes_before);
        let mut tx = self.pool.begin().await?;
        // Locked in key order (as `record_stats` locks minute rows, before
        // any hour row), so a concurrent batch or roll-up waits rather than
        // deadlocks; a row a concurrent roll-up deleted first is skipped.
        let rows = sqlx::query(
            "SELECT endpoint_id, bucket_start FROM endpoint_stats \
             WHERE granularity = 'minute' AND bucket_start < $1 \
             ORDER BY endpoint_id, bucket_start FOR UPDATE",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut endpoints: Vec<String> = Vec::with_capacity(rows.len());
        let mut starts: Vec<DateTime<Utc>> = Vec::with_capacity(rows.len());
        for row in &rows {
            endpoints.push(row.try_get("endpoint_id")?);
            starts.push(row.try_get("bucket_start")?);
        }
        // Exactly the rows locked: one created meanwhile (by a late batch,
        // whose hour bucket holds it too) is left for the next roll-up
        // rather than locked out of order.
        let deleted = sqlx::query(
            "DELETE FROM endpoint_stats WHERE granularity = 'minute' \
             AND (endpoint_id, bucket_start) IN \
                 (SELECT * FROM unnest($1::text[], $2::timestamptz[]))",
        )
        .bind(&endpoints)
        .bind(&starts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM stats_seen WHERE seen_at < $1")
            .bind(seen_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn expire_stats(&self, hours_before: DateTime<Utc>) -> StoreResult<u64> {
        let result = sqlx::query(
            "DELETE FROM endpoint_stats WHERE granularity = 'hour' AND bucket_start < $1",
        )
        .bind(hours_before)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}
