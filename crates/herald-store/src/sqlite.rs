//! The SQLite implementation of [`Store`], for the embedded mode: one process,
//! one database file, no server.
//!
//! It mirrors [`crate::PgStore`] query for query and passes the same contract
//! suite. The differences are in representation only:
//!
//! - Timestamps are `INTEGER` microseconds since the Unix epoch (UTC), so they
//!   compare and sort numerically and round-trip exactly what was written
//!   (callers truncate to microseconds, see [`crate::now`]).
//! - JSON columns are `TEXT`; `channels ? x` becomes a `json_each` lookup and
//!   `= ANY(array)` an `IN (SELECT value FROM json_each(json array))`.
//! - Booleans are `INTEGER` 0/1; tables are `STRICT`, so a value of the wrong
//!   type is refused as PostgreSQL would refuse it.
//! - Identifiers compare bytewise: SQLite's default `BINARY` collation is what
//!   `COLLATE "C"` is in PostgreSQL.
//! - A unique violation is reported under the name PostgreSQL gives the same
//!   constraint (`{table}_pkey`, `{table}_{columns}_key`), so callers match
//!   on one name.
//!
//! # Concurrency
//!
//! SQLite has one writer at a time. The store keeps two pools on the file: a
//! single *writer* connection that every write goes through, so concurrent
//! writes of this process queue in FIFO order for it (up to
//! [`WRITE_QUEUE_TIMEOUT`]) instead of polling SQLite's lock, and several
//! *reader* connections (`query_only`), which in WAL mode never wait for the
//! writer and see every committed write. Another process on the same file (a
//! CLI command next to the server) is waited for with a busy timeout, and
//! multi-statement transactions start with `BEGIN IMMEDIATE`, taking the write
//! lock up front, so they wait for it rather than fail with `SQLITE_BUSY` when
//! upgrading from a read. A single `UPDATE … RETURNING` holds the write lock
//! for its whole run, which is what makes [`Store::claim_due_deliveries`] hand
//! a row to one claimer only.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

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

/// Migrations for SQLite, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a statement waits for another connection's write lock (another
/// process on the same file) before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write waits for this process's writer connection.
pub const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits for a reader connection.
const READ_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// `BEGIN IMMEDIATE` takes the write lock when the transaction starts, so a
/// transaction waits (busy timeout) instead of failing when it would upgrade.
const BEGIN_IMMEDIATE: &str = "BEGIN IMMEDIATE";

/// A [`Store`] backed by a SQLite database file.
#[derive(Clone)]
pub struct SqliteStore {
    /// One connection: every write of this process goes through it, in turn.
    writer: SqlitePool,
    /// Read-only (`query_only`) connections; in WAL mode they never block on
    /// the writer.
    reader: SqlitePool,
}

impl SqliteStore {
    /// The message and its deliveries (in `state`, due at once) in one
    /// transaction.
    async fn insert_message_as(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
        state: DeliveryState,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin_with(BEGIN_IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO message (id, tenant_id, app_id, event_id, event_type, channels, tags, payload, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(message.id.as_str())
        .bind(tenant_id.as_str())
        .bind(message.app_id.as_str())
        .bind(message.event_id.as_ref().map(Uid::as_str))
        .bind(message.event_type.as_str())
        .bind(message.channels.as_ref().map(json_text))
        .bind(message.tags.as_ref().map(json_text))
        .bind(message.payload.as_deref())
        .bind(micros(message.created_at))
        .bind(micros(message.expires_at))
        .execute(&mut *tx)
        .await?;
        if !endpoint_ids.is_empty() {
            // One statement for all deliveries, over a JSON array of the ids
            // (PostgreSQL: `unnest($5::text[])`).
            sqlx::query(
                "INSERT INTO delivery (msg_id, endpoint_id, tenant_id, app_id, state, attempts, next_attempt_at, created_at, updated_at) \
                 SELECT $1, value, $2, $3, $6, 0, $4, $4, $4 FROM json_each($5)",
            )
            .bind(message.id.as_str())
            .bind(tenant_id.as_str())
            .bind(message.app_id.as_str())
            .bind(micros(message.created_at))
            .bind(json_array(endpoint_ids.iter().map(EndpointId::as_str)))
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Opens the database at `url_or_path` (a file path, or a `sqlite://path`
    /// URL), creating the file — and its directory — when missing.
    /// `max_readers` bounds the read connections. An in-memory database is not
    /// supported: the two pools must share one file.
    ///
    /// Every connection uses WAL journaling, enforces foreign keys, waits
    /// [`BUSY_TIMEOUT`] for a lock held by another process, and runs with
    /// `synchronous = NORMAL`. With WAL that keeps every committed transaction
    /// across a crash or `kill -9` of the process (the commit is in the WAL
    /// file, which the OS has); only an operating-system crash or power loss
    /// can lose the last transactions before a checkpoint, never corrupt the
    /// database. `FULL` would fsync on every commit for that last guarantee.
    pub async fn connect(url_or_path: &str, max_readers: u32) -> StoreResult<Self> {
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path).map_err(StoreError::Database)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        }
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Normal);

        restrict_database_file(options.get_filename())
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;

        // The writer connects at once: it creates the file and switches it to
        // WAL (a lasting property of the file) before any reader opens it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITE_QUEUE_TIMEOUT)
            .connect_with(
                options
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .acquire_timeout(READ_ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.pragma("query_only", "ON"));
        Ok(Self { writer, reader })
    }

    /// The pool of the single writer connection.
    pub fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The pool of read-only connections.
    pub fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes both pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Makes the database file readable by its owner only, before SQLite opens
/// it: the file holds endpoint secrets and the JWT secret. SQLite creates the
/// `-wal` and `-shm` files with the database file's permissions, so a file
/// created (or tightened) here keeps all three private. A missing directory
/// is created private too; a file another mode already exists with is
/// tightened, with a warning.
fn restrict_database_file(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir)?;
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        const PRIVATE: u32 = 0o600;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(PRIVATE)
            .open(path)?;
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = std::path::PathBuf::from(name);
            let Ok(metadata) = std::fs::metadata(&file) else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %file.display(),
                    mode = format!("{mode:o}"),
                    "database file was readable by others; restricting it to its owner"
                );
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(PRIVATE))?;
            }
        }
    }
    Ok(())
}

// SQLite result codes (https://www.sqlite.org/rescode.html).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;
const SQLITE_PROTOCOL: i32 = 15;
const SQLITE_NOTADB: i32 = 26;
const SQLITE_CONSTRAINT_PRIMARYKEY: i32 = 1555;
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

/// Maps an error SQLite reported (an `sqlx::Error::Database` holding a
/// `SqliteError`) to a [`StoreError`], the way PostgreSQL's are mapped.
pub(crate) fn database_error(err: sqlx::Error) -> StoreError {
    let sqlx::Error::Database(db) = &err else {
        return StoreError::Database(err);
    };
    let code = db
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .unwrap_or(0);
    match code {
        SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE => StoreError::Conflict {
            constraint: conflict_constraint(code == SQLITE_CONSTRAINT_PRIMARYKEY, db.message())
                .unwrap_or_default(),
        },
        // The primary code is the low byte of an extended one.
        code if matches!(
            code & 0xff,
            SQLITE_BUSY
                | SQLITE_LOCKED
                | SQLITE_IOERR
                | SQLITE_FULL
                | SQLITE_CANTOPEN
                | SQLITE_PROTOCOL
        ) =>
        {
            StoreError::Unavailable(err)
        }
        code if matches!(code & 0xff, SQLITE_CORRUPT | SQLITE_NOTADB) => {
            StoreError::Corrupt(db.message().to_owned())
        }
        _ => StoreError::Database(err),
    }
}

/// The PostgreSQL name of the constraint a SQLite unique violation is about.
///
/// SQLite names the columns, not the constraint: "UNIQUE constraint failed:
/// message.app_id, message.event_id". PostgreSQL's default names are
/// `{table}_pkey` for a primary key and `{table}_{columns}_key` for a unique
/// constraint, and every constraint in `migrations/postgres` has its default
/// name, so both stores report e.g. `message_app_id_event_id_key`.
fn conflict_constraint(primary_key: bool, message: &str) -> Option<String> {
    let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
    let mut table = None;
    let mut names = Vec::new();
    for qualified in columns.split(", ") {
        let (t, column) = qualified.trim().split_once('.')?;
        if table.is_some_and(|known| known != t) {
            return None;
        }
        table = Some(t);
        names.push(column);
    }
    let table = table?;
    Some(if primary_key {
        format!("{table}_pkey")
    } else {
        format!("{table}_{}_key", names.join("_"))
    })
}

/// A timestamp as stored: microseconds since the Unix epoch.
fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// How this database spells a bounded message listing's fragments.
const PAYLOAD_SQL: PayloadSql = PayloadSql {
    columns_without_payload: "m.id, m.tenant_id, m.app_id, m.event_id, m.event_type, \
         m.channels, m.tags, NULL AS payload, m.created_at, m.expires_at",
    payload_size: "length(m.payload)",
};

impl StoredRow for SqliteRow {
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
        Ok(self.try_get(column)?)
    }
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    /// Integer microseconds since the Unix epoch.
    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        self.optional_time(column)?
            .ok_or_else(|| corrupt(column, "is NULL"))
    }
    fn optional_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        let value: Option<i64> = self.try_get(column)?;
        value
            .map(|v| DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt(column, v)))
            .transpose()
    }
    /// JSON text.
    fn optional_json<T: serde::de::DeserializeOwned>(
        &self,
        column: &str,
        what: &str,
    ) -> StoreResult<Option<T>> {
        let text: Option<String> = self.try_get(column)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(what, e)))
            .transpose()
    }
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

/// A JSON array of strings, for `IN (SELECT value FROM json_each(?))`.
fn json_array<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    json_text(&items.into_iter().collect::<Vec<&str>>())
}

/// Appends the message conditions shared by message, attempt and delivery
/// listings, on the message table aliased `m`.
fn push_message_conditions(
    builder: &mut QueryBuilder<'_, Sqlite>,
    channel: Option<&ChannelName>,
    event_types: Option<&[EventTypeName]>,
) {
    if let Some(channel) = channel {
        // PostgreSQL: `m.channels ? channel`.
        builder.push(" AND EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ");
        builder.push_bind(channel.as_str().to_owned());
        builder.push(")");
    }
    if let Some(types) = event_types {
        builder.push(" AND m.event_type IN (SELECT value FROM json_each(");
        builder.push_bind(json_array(types.iter().map(EventTypeName::as_str)));
        builder.push("))");
    }
}

/// Appends `AND {column} < before AND {column} > after` for the bounds given.
fn push_time_window(
    builder: &mut QueryBuilder<'_, Sqlite>,
    column: &str,
    before: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
) {
    if let Some(before) = before {
        builder.push(format!(" AND {column} < "));
        builder.push_bind(micros(before));
    }
    if let Some(after) = after {
        builder.push(format!(" AND {column} > "));
        builder.push_bind(micros(after));
    }
}

fn page_of<T>(
    rows: Vec<SqliteRow>,
    query: &ListQuery,
    from_row: fn(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_scan(items, query))
}

fn stats_bucket_from_row(row: &SqliteRow) -> StoreResult<StatsBucket> {
    let granularity: String = row.try_get("granularity")?;
    Ok(StatsBucket {
        endpoint_id: EndpointId::parse(row.try_get("endpoint_id")?)
            .map_err(|e| corrupt("endpoint_stats.endpoint_id", e))?,
        granularity: StatsGranularity::parse(&granularity)
            .ok_or_else(|| corrupt("endpoint_stats.granularity", &granularity))?,
        start: row.time("bucket_start")?,
        bucket: shared::bucket_from_row(row)?,
    })
}

/// Merges `owned` into the stored bucket at `key` (creating it). Runs inside
/// a write transaction, which no other writer can interleave with.
async fn merge_stats_bucket(
    conn: &mut SqliteConnection,
    granularity: StatsGranularity,
    (endpoint_id, start): &shared::BucketKey,
    owned: &shared::OwnedBucket,
) -> StoreResult<()> {
    let row = sqlx::query(&format!(
        "SELECT {COUNTER_COLUMNS}, latency FROM endpoint_stats \
         WHERE endpoint_id = $1 AND granularity = $2 AND bucket_start = $3"
    ))
    .bind(endpoint_id.as_str())
    .bind(granularity.as_str())
    .bind(micros(*start))
    .fetch_optional(&mut *conn)
    .await?;
    let merged = match row {
        Some(row) => {
            let mut stored = shared::bucket_from_row(&row)?;
            stored.merge(&owned.bucket);
            stored
        }
        None => owned.bucket.clone(),
    };
    let mut query = sqlx::query(
        "INSERT INTO endpoint_stats (endpoint_id, granularity, bucket_start, tenant_id, \
             app_id, attempts, successes, timeout, connect, dns, tls, blocked, http3xx, \
             http4xx, http5xx, other, latency) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (endpoint_id, granularity, bucket_start) DO UPDATE SET \
             attempts = excluded.attempts, successes = excluded.successes, \
             timeout = excluded.timeout, connect = excluded.connect, dns = excluded.dns, \
             tls = excluded.tls, blocked = excluded.blocked, http3xx = excluded.http3xx, \
             http4xx = excluded.http4xx, http5xx = excluded.http5xx, other = excluded.other, \
             latency = excluded.latency",
    )
    .bind(endpoint_id.as_str())
    .bind(granularity.as_str())
    .bind(micros(*start))
    .bind(owned.tenant_id.as_str())
    .bind(owned.app_id.as_str());
    for counter in shared::counters(merged.counts()) {
        query = query.bind(counter);
    }
    query
        .bind(merged.latency_bytes())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "id, app_id, uid, url, description, version, disabled, \
     event_types, channels, metadata, throttle_rate, headers, secrets, created_at, updated_at";

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String> {
        sqlx::query(
            "INSERT INTO server_setting (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.writer)
        .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM server_setting WHERE name = $1")
            .bind(name)
            .fetch_one(&self.reader)
            .await?;
        Ok(stored)
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        sqlx::query("INSERT INTO tenant (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(micros(tenant.created_at))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn tenant(&self, tenant_id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenant WHERE id = $1")
            .bind(tenant_id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self, query: &ListQuery) -> StoreResult<Page<Tenant>> {
        let mut builder = QueryBuilder::new("SELECT id, name, created_at FROM tenant WHERE true");
        push_keyset(&mut builder, "id", query);
        let rows = builder.build().fetch_all(&self.reader).await?;
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
        .bind(micros(key.created_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self, tenant_id: &TenantId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_key WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant_id.as_str())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, tenant_id: &TenantId, key_id: &ApiKeyId) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE api_key SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id.as_str())
        .bind(key_id.as_str())
        .bind(micros(crate::now()))
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn revoke_token(
        &self,
        tenant_id: &TenantId,
        token_id: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin_with(BEGIN_IMMEDIATE).await?;
        sqlx::query("DELETE FROM revoked_token WHERE expires_at < $1")
            .bind(micros(crate::now()))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_token (token_id, tenant_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(token_id)
        .bind(tenant_id.as_str())
        .bind(micros(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 FROM revoked_token WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(&self.reader)
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
        .bind(json_text(&app.metadata))
        .bind(app.throttle_rate.map(i64::from))
        .bind(micros(app.created_at))
        .bind(micros(app.updated_at))
        .execute(&self.writer)
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
        .bind(json_text(&app.metadata))
        .bind(app.throttle_rate.map(i64::from))
        .bind(micros(app.updated_at))
        .bind(micros(expected_updated_at))
        .execute(&self.writer)
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
        .fetch_optional(&self.reader)
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
        let rows = builder.build().fetch_all(&self.reader).await?;
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
            .execute(&self.writer)
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
        .bind(i64::from(endpoint.version))
        .bind(endpoint.disabled)
        .bind(endpoint.event_types.as_ref().map(json_text))
        .bind(endpoint.channels.as_ref().map(json_text))
        .bind(json_text(&endpoint.metadata))
        .bind(endpoint.throttle_rate.map(i64::from))
        .bind(json_text(&endpoint.headers))
        .bind(json_text(&StoredSecrets::from(&endpoint.secrets)))
        .bind(micros(endpoint.created_at))
        .bind(micros(endpoint.updated_at))
        .execute(&self.writer)
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
        .bind(i64::from(endpoint.version))
        .bind(endpoint.disabled)
        .bind(endpoint.event_types.as_ref().map(json_text))
        .bind(endpoint.channels.as_ref().map(json_text))
        .bind(json_text(&endpoint.metadata))
        .bind(endpoint.throttle_rate.map(i64::from))
        .bind(json_text(&endpoint.headers))
        .bind(json_text(&StoredSecrets::from(&endpoint.secrets)))
        .bind(micros(endpoint.updated_at))
        .bind(micros(expected_updated_at))
        .execute(&self.writer)
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
        .fetch_optional(&self.reader)
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
        let rows = builder.build().fetch_all(&self.reader).await?;
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
                .execute(&self.writer)
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
        .bind(event_type.schemas.as_ref().map(json_text))
        .bind(micros(event_type.created_at))
        .bind(micros(event_type.updated_at))
        .execute(&self.writer)
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
        .bind(event_type.schemas.as_ref().map(json_text))
        .bind(micros(event_type.updated_at))
        .bind(micros(expected_updated_at))
        .execute(&self.writer)
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
            .fetch_optional(&self.reader)
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
        let rows = builder.build().fetch_all(&self.reader).await?;
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
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn missing_event_types(
        &self,
        tenant_id: &TenantId,
        names: &[EventTypeName],
    ) -> StoreResult<Vec<EventTypeName>> {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM event_type WHERE tenant_id = $1 \
             AND name IN (SELECT value FROM json_each($2)) AND NOT archived",
        )
        .bind(tenant_id.as_str())
        .bind(json_array(names.iter().map(EventTypeName::as_str)))
        .fetch_all(&self.reader)
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
        .fetch_all(&self.reader)
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
        let now = micros(crate::now());
        let result = sqlx::query(
            "UPDATE delivery SET state = 'pending', next_attempt_at = $3, updated_at = $3 \
             WHERE tenant_id = $1 AND msg_id = $2 AND state = 'sending' AND attempts = 0",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(now)
        .execute(&self.writer)
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
        .fetch_optional(&self.reader)
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
            Ok(builder.build().fetch_all(&self.reader).await?)
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
        .execute(&self.writer)
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
        .fetch_all(&self.reader)
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
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn record_attempt(
        &self,
        tenant_id: &TenantId,
        attempt: &Attempt,
        update: &DeliveryUpdate,
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin_with(BEGIN_IMMEDIATE).await?;
        sqlx::query(
            "INSERT INTO message_attempt (id, tenant_id, app_id, msg_id, endpoint_id, url, status_code, \
             error_class, response_body, duration_ms, trigger, created_at, duration_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(attempt.id.as_str())
        .bind(tenant_id.as_str())
        .bind(attempt.app_id.as_str())
        .bind(attempt.msg_id.as_str())
        .bind(attempt.endpoint_id.as_str())
        .bind(&attempt.url)
        .bind(i64::from(attempt.status_code))
        .bind(&attempt.error_class)
        .bind(&attempt.response_body)
        .bind(i64::from(attempt.duration_ms()))
        .bind(attempt.trigger.as_str())
        .bind(micros(attempt.created_at))
        .bind(i64::try_from(attempt.duration_us).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        // A scheduled attempt finishing while a manual one is requested leaves
        // the delivery due for the manual one; a manual attempt answers it.
        sqlx::query(
            "UPDATE delivery SET \
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
        .bind(update.next_attempt_at.map(micros))
        .bind(micros(attempt.created_at))
        .bind(attempt.trigger.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
            "UPDATE delivery SET state = $4, next_attempt_at = $5, updated_at = $6 \
             WHERE tenant_id = $1 AND msg_id = $2 AND endpoint_id = $3",
        )
        .bind(tenant_id.as_str())
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(update.state.as_str())
        .bind(update.next_attempt_at.map(micros))
        .bind(micros(crate::now()))
        .execute(&self.writer)
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
        .fetch_all(&self.reader)
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
        .fetch_optional(&self.reader)
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
                builder.push_bind(i64::from(class));
                builder.push(" AND a.status_code < ");
                builder.push_bind(i64::from(class) + 100);
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
        let rows = builder.build().fetch_all(&self.reader).await?;
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
        .execute(&self.writer)
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
            Ok(builder.build().fetch_all(&self.reader).await?)
        };
        bounded_page(&PAYLOAD_SQL, query, payloads, "d.msg_id", fetch, |row| {
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
        let mut builder = QueryBuilder::new("SELECT d.* FROM delivery d WHERE d.tenant_id = ");
        builder.push_bind(tenant_id.as_str());
        builder.push(" AND d.app_id = ");
        builder.push_bind(app_id.as_str());
        builder.push(" AND d.msg_id = ");
        builder.push_bind(msg_id.as_str());
        builder.push(" AND EXISTS (SELECT 1 FROM endpoint e WHERE e.id = d.endpoint_id)");
        push_keyset(&mut builder, "d.endpoint_id", query);
        let rows = builder.build().fetch_all(&self.reader).await?;
        let deliveries = page_of(rows, query, delivery_from_row)?;
        let ids = json_array(deliveries.items.iter().map(|d| d.endpoint_id.as_str()));
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM endpoint WHERE tenant_id = $1 AND app_id = $2 \
             AND id IN (SELECT value FROM json_each($3))"
        ))
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(ids)
        .fetch_all(&self.reader)
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
                 next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at",
        )
        .bind(msg_id.as_str())
        .bind(endpoint_id.as_str())
        .bind(tenant_id.as_str())
        .bind(app_id.as_str())
        .bind(micros(crate::now()))
        .execute(&self.writer)
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
        .bind(micros(since))
        .bind(micros(until))
        .bind(micros(crate::now()))
        .execute(&self.writer)
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
        .bind(micros(since))
        .bind(micros(until))
        .fetch_one(&self.reader)
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
        // One statement is one write transaction: the rows it selects cannot
        // be claimed by anyone else before it has made them `sending` (the
        // PostgreSQL store needs FOR UPDATE SKIP LOCKED for that).
        let rows = sqlx::query(
            "UPDATE delivery SET state = 'sending', next_attempt_at = $1 \
             WHERE rowid IN ( \
                 SELECT rowid FROM delivery \
                 WHERE state IN ('pending', 'sending') AND next_attempt_at <= $1 \
                   AND (state = 'pending' OR next_attempt_at <= $2) \
                 ORDER BY next_attempt_at LIMIT $3) \
             RETURNING *",
        )
        .bind(micros(now))
        .bind(micros(now - lease))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
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
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected())
    }

    async fn record_stats(&self, samples: &[StatsSample]) -> StoreResult<usize> {
        if samples.is_empty() {
            return Ok(0);
        }
        let ids = shared::sorted_attempt_ids(samples);
        // One write transaction: concurrent batches of this process queue for
        // the writer connection, another process's wait for the file lock.
        let mut tx = self.writer.begin_with(BEGIN_IMMEDIATE).await?;
        let new: Vec<String> = sqlx::query_scalar(
            "INSERT INTO stats_seen (attempt_id, seen_at) \
             SELECT value, $2 FROM json_each($1) WHERE true \
             ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id",
        )
        .bind(json_array(ids))
        .bind(micros(crate::now()))
        .fetch_all(&mut *tx)
        .await?;
        let counted = new.len();
        // Each minute bucket and the hour bucket it belongs to, in the same
        // order as PostgreSQL (the writer lock makes the order moot here).
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
        builder.push_bind(micros(since));
        builder.push(" AND bucket_start < ");
        builder.push_bind(micros(until));
        builder.push(" ORDER BY bucket_start, endpoint_id");
        let rows = builder.build().fetch_all(&self.reader).await?;
        rows.iter().map(stats_bucket_from_row).collect()
    }

    async fn roll_up_stats(
        &self,
        minutes_before: DateTime<Utc>,
        seen_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // Whole hours only: every minute of an hour before this one goes.
        let cutoff = StatsGranularity::Hour.truncate(minutes_before);
        let mut tx = self.writer.begin_with(BEGIN_IMMEDIATE).await?;
        let deleted = sqlx::query(
            "DELETE FROM endpoint_stats WHERE granularity = 'minute' AND bucket_start < $1",
        )
        .bind(micros(cutoff))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM stats_seen WHERE seen_at < $1")
            .bind(micros(seen_before))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn expire_stats(&self, hours_before: DateTime<Utc>) -> StoreResult<u64> {
        let result = sqlx::query(
            "DELETE FROM endpoint_stats WHERE granularity = 'hour' AND bucket_start < $1",
        )
        .bind(micros(hours_before))
        .execute(&self.writer)
        .await?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::conflict_constraint;

    #[test]
    fn unique_violations_get_the_postgresql_constraint_names() {
        let name = |pk, message| conflict_constraint(pk, message);
        assert_eq!(
            name(
                false,
                "UNIQUE constraint failed: message.app_id, message.event_id"
            )
            .as_deref(),
            Some("message_app_id_event_id_key")
        );
        assert_eq!(
            name(
                false,
                "UNIQUE constraint failed: application.tenant_id, application.uid"
            )
            .as_deref(),
            Some("application_tenant_id_uid_key")
        );
        assert_eq!(
            name(
                true,
                "UNIQUE constraint failed: event_type.tenant_id, event_type.name"
            )
            .as_deref(),
            Some("event_type_pkey")
        );
        assert_eq!(
            name(false, "UNIQUE constraint failed: api_key.key_hash").as_deref(),
            Some("api_key_key_hash_key")
        );
        assert_eq!(name(false, "something else"), None);
    }
}
