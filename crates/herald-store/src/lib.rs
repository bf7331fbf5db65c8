//! Herald's persistence layer: the role-sized traits other crates talk to
//! ([`Store`] for all of them, [`DeliveryStore`] for a worker,
//! [`StatsStore`] for the stats service), the records they store, and
//! [`SqlStore`], which implements them all on PostgreSQL (the production
//! topology) or on one SQLite file (the embedded mode).
//!
//! Each aggregate's SQL is written once, in its module (`tenant`,
//! `application`, `endpoint`, `event_type`, `message`, `delivery`,
//! `attempt`, `stats`); what differs between the two databases sits behind
//! the seam in `db` and the backend modules [`postgres`] and [`sqlite`].
//! Both backends pass the same contract suite (`tests/contract`), report
//! unique violations under the same constraint names, and embed their
//! migrations (`migrations/postgres`, `migrations/sqlite`).
//!
//! Every method that touches tenant data takes the [`TenantId`] first, so no
//! query can forget to scope by tenant.

mod application;
mod attempt;
mod db;
mod delivery;
mod endpoint;
mod event_type;
pub mod group;
mod listing;
pub mod main_key;
mod message;
pub mod model;
pub mod operational;
pub mod page;
pub mod postgres;
mod retention;
mod rows;
pub mod sealing;
mod source;
pub mod sqlite;
mod stats;
mod tenant;

use async_trait::async_trait;
use herald_core::{
    ApiKeyId, ApplicationId, AttemptId, EndpointId, EventTypeName, IdOrUid, MessageId, SourceId,
    TenantId,
};

use db::Db;
pub use model::*;
pub use operational::{emit_operational, OperationalOutbox};
pub use retention::{PrunedBatch, Retention};

/// Every store trait, for code that calls a [`Store`] through its roles:
/// `use herald_store::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ApplicationStore, AttemptLog, DeliveryStore, EndpointStore, EventTypeStore, MessageLog,
        OperationalOutbox, Outbox, Retention, SourceStore, StatsStore, Store, TenantStore,
    };
}
pub use page::{Cursor, ListQuery, Ordering, Page, Payloads};

/// The store: every role's trait, on PostgreSQL or SQLite. Built with
/// [`SqlStore::postgres`] or [`SqlStore::sqlite`]; cloning shares the pools.
#[derive(Clone)]
pub struct SqlStore {
    db: Db,
    /// Seal secrets before writing them and open them when read.
    keys: std::sync::Arc<main_key::MainKeys>,
}

impl SqlStore {
    fn on(db: Db) -> Self {
        Self {
            db,
            keys: std::sync::Arc::new(main_key::MainKeys::none()),
        }
    }

    /// Seals endpoint secrets, sensitive header values and the stored JWT
    /// secret with `keys` from now on (see [`main_key`]); check them against
    /// the database with [`SqlStore::check_main_keys`] first.
    pub fn with_main_keys(mut self, keys: main_key::MainKeys) -> Self {
        self.keys = std::sync::Arc::new(keys);
        self
    }

    /// Closes the pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        match &self.db {
            Db::Postgres(pool) => postgres::MIGRATOR.run(pool).await,
            Db::Sqlite { writer, .. } => sqlite::MIGRATOR.run(writer).await,
        }
        .map_err(|e| StoreError::Database(e.into()))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.read(db::Sql::new("SELECT 1")).await.map(drop)
    }
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write; the name says which one.
    #[error("unique constraint {constraint} violated")]
    Conflict { constraint: String },
    /// The database could not be reached (down, pool exhausted, connection lost).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A stored value could not be decoded; a bug or a manual edit.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            // Each backend classifies its own database errors (codes differ).
            sqlx::Error::Database(db)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
            {
                sqlite::database_error(err)
            }
            sqlx::Error::Database(_) => postgres::database_error(err),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            _ => StoreError::Database(err),
        }
    }
}

impl StoreError {
    /// Whether this is a violation of the named unique constraint.
    pub fn is_conflict_on(&self, name: &str) -> bool {
        matches!(self, StoreError::Conflict { constraint } if constraint == name)
    }

    /// Whether a foreign key refused the write: the row it refers to (a
    /// message, an application) is gone.
    pub fn is_missing_reference(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A timestamp strictly after `previous`: a record's new `updated_at`, which must
/// differ from the old one for optimistic concurrency checks to work.
pub fn now_after(previous: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    now().max(previous + chrono::Duration::microseconds(1))
}

/// Timestamps are stored with microsecond precision; truncating before writing
/// keeps what a handler returns identical to what a later read returns.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// The whole persistence contract, as the API process and the embedded mode
/// use it: every role's trait, plus the schema. Reads return `Ok(None)` for
/// objects that do not exist *for this tenant*; whether they exist for
/// another tenant is invisible. A worker holds only a [`DeliveryStore`], the
/// stats service only a [`StatsStore`].
#[async_trait]
pub trait Store:
    TenantStore
    + ApplicationStore
    + EndpointStore
    + EventTypeStore
    + SourceStore
    + MessageLog
    + DeliveryStore
    + StatsStore
    + Retention
{
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for health checks.
    async fn ping(&self) -> StoreResult<()>;
}

/// What a delivery worker uses: the outbox, the attempt log, and the
/// operational application its failures are reported to.
pub trait DeliveryStore: Outbox + AttemptLog + OperationalOutbox {}

impl<T: Outbox + AttemptLog + OperationalOutbox + ?Sized> DeliveryStore for T {}

/// Server settings, tenants, their API keys and logged-out tokens: what
/// authentication and the admin commands use.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    // Server settings, shared by every process.
    /// Stores `value` under `name` unless a value exists; returns the stored value.
    async fn setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String>;
    /// [`TenantStore::setting_or_insert`] for a secret: stored sealed when
    /// the store has a main key, returned opened.
    async fn secret_setting_or_insert(&self, name: &str, value: &str) -> StoreResult<String>;
    // Tenants and keys.
    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn tenant(&self, tenant_id: &TenantId) -> StoreResult<Option<Tenant>>;
    async fn list_tenants(&self, query: &ListQuery) -> StoreResult<Page<Tenant>>;
    async fn insert_api_key(&self, tenant_id: &TenantId, key: &ApiKey) -> StoreResult<()>;
    async fn list_api_keys(&self, tenant_id: &TenantId) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked; returns false when the tenant has no such key.
    async fn revoke_api_key(&self, tenant_id: &TenantId, key_id: &ApiKeyId) -> StoreResult<bool>;
    /// Finds the live (not revoked) key with this hash. The one lookup that is
    /// not tenant-scoped: it is how the tenant is found in the first place.
    async fn api_key_by_hash(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKey>>;
    /// Records that the app-scoped token `token_id` of `tenant_id` was
    /// logged out; the record is kept until `expires_at`, the token's own
    /// expiry. Expired records of every tenant are deleted on the way.
    async fn revoke_token(
        &self,
        tenant_id: &TenantId,
        token_id: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()>;
    /// Whether the app-scoped token `token_id` was logged out.
    async fn token_revoked(&self, token_id: &str) -> StoreResult<bool>;
}

/// A tenant's applications.
#[async_trait]
pub trait ApplicationStore: Send + Sync + 'static {
    // Applications.
    async fn insert_application(&self, tenant_id: &TenantId, app: &Application) -> StoreResult<()>;
    /// Writes `app` if its stored `updated_at` is still `expected_updated_at`
    /// (optimistic concurrency); returns false when it changed or is absent.
    async fn update_application(
        &self,
        tenant_id: &TenantId,
        app: &Application,
        expected_updated_at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    async fn application(
        &self,
        tenant_id: &TenantId,
        app: &IdOrUid,
    ) -> StoreResult<Option<Application>>;
    async fn list_applications(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
    ) -> StoreResult<Page<Application>>;
    /// Deletes an application and its endpoints; returns false when absent.
    async fn delete_application(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<bool>;
}

/// Applications' endpoints, as the management API edits them.
#[async_trait]
pub trait EndpointStore: Send + Sync + 'static {
    // Endpoints.
    async fn insert_endpoint(&self, tenant_id: &TenantId, endpoint: &Endpoint) -> StoreResult<()>;
    /// How many endpoints application `app_id` has.
    async fn endpoint_count(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<u64>;
    /// Writes `endpoint` if its stored `updated_at` is still `expected_updated_at`,
    /// so concurrent read-modify-writes (e.g. a rotation and a patch) never
    /// silently overwrite each other; returns false when it changed or is absent.
    async fn update_endpoint(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        expected_updated_at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    async fn list_endpoints(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
    ) -> StoreResult<Page<Endpoint>>;
    async fn delete_endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<bool>;
    // Messages and deliveries.
    /// Every enabled endpoint of an application (the fan-out candidates).
    async fn enabled_endpoints(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
    ) -> StoreResult<Vec<Endpoint>>;
    async fn endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint: &IdOrUid,
    ) -> StoreResult<Option<Endpoint>>;
}

/// A tenant's event types.
#[async_trait]
pub trait EventTypeStore: Send + Sync + 'static {
    // Event types.
    async fn insert_event_type(
        &self,
        tenant_id: &TenantId,
        event_type: &EventType,
    ) -> StoreResult<()>;
    /// Writes `event_type` if its stored `updated_at` is still `expected_updated_at`.
    async fn update_event_type(
        &self,
        tenant_id: &TenantId,
        event_type: &EventType,
        expected_updated_at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    async fn event_type(
        &self,
        tenant_id: &TenantId,
        name: &EventTypeName,
    ) -> StoreResult<Option<EventType>>;
    async fn list_event_types(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
        include_archived: bool,
    ) -> StoreResult<Page<EventType>>;
    /// Removes the row for good (`?expunge=true`); returns false when absent.
    async fn delete_event_type(
        &self,
        tenant_id: &TenantId,
        name: &EventTypeName,
    ) -> StoreResult<bool>;
    /// The names among `names` that are not live (existing, unarchived) event types.
    async fn missing_event_types(
        &self,
        tenant_id: &TenantId,
        names: &[EventTypeName],
    ) -> StoreResult<Vec<EventTypeName>>;
}

/// A tenant's sources of inbound webhooks.
#[async_trait]
pub trait SourceStore: Send + Sync + 'static {
    async fn insert_source(&self, tenant_id: &TenantId, source: &Source) -> StoreResult<()>;
    /// Writes `source` if its stored `updated_at` is still `expected_updated_at`.
    async fn update_source(
        &self,
        tenant_id: &TenantId,
        source: &Source,
        expected_updated_at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    async fn source(&self, tenant_id: &TenantId, id: &SourceId) -> StoreResult<Option<Source>>;
    async fn list_sources(
        &self,
        tenant_id: &TenantId,
        query: &ListQuery,
    ) -> StoreResult<Page<Source>>;
    /// Deletes a source; returns false when absent.
    async fn delete_source(&self, tenant_id: &TenantId, id: &SourceId) -> StoreResult<bool>;
    /// The source with this id and its tenant. Not tenant-scoped: it is how
    /// a request to `/ingest/{source_id}`, which its signature authenticates,
    /// finds its tenant (as [`TenantStore::api_key_by_hash`] does for a key).
    async fn source_by_id(&self, id: &SourceId) -> StoreResult<Option<(TenantId, Source)>>;
}

/// Messages and their deliveries as the management API lists, resends
/// and recovers them.
#[async_trait]
pub trait MessageLog: Send + Sync + 'static {
    /// A page of the application's messages, with as much payload as
    /// `payloads` allows.
    async fn list_messages(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &MessageFilter,
        payloads: Payloads,
    ) -> StoreResult<Page<Message>>;
    /// Removes a message's payload; returns false when the message is absent.
    async fn expunge_message_content(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
    ) -> StoreResult<bool>;
    /// The deliveries of one message, one per endpoint it was fanned out to.
    async fn deliveries_of_message(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<Vec<Delivery>>;
    /// An endpoint's deliveries with their messages, keyed by message id,
    /// with as much payload as `payloads` allows.
    async fn list_endpoint_deliveries(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        query: &ListQuery,
        filter: &DeliveryFilter,
        payloads: Payloads,
    ) -> StoreResult<Page<DeliveredMessage>>;
    /// A message's deliveries to endpoints that still exist, with those
    /// endpoints, keyed by endpoint id.
    async fn list_message_deliveries(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        query: &ListQuery,
    ) -> StoreResult<Page<(Delivery, Endpoint)>>;
    /// Asks for a manual attempt of a message to an endpoint, due now; creates
    /// the delivery when the message was never fanned out to that endpoint.
    async fn request_manual_attempt(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<()>;
    /// Asks for a manual attempt of every failed or dead delivery to an
    /// endpoint whose message was created in `[since, until)`; returns how many.
    async fn request_recovery(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64>;
    /// Svix's `replay-missing`: gives `endpoint` a delivery (pending, due now)
    /// of every message of its application created in `[since, until)` that
    /// the endpoint receives (event types, channels) but was never sent — it
    /// did not exist yet, or was disabled or filtered differently then.
    /// Messages whose payload was removed are left out. Written in batches;
    /// returns how many.
    async fn replay_missing(
        &self,
        tenant_id: &TenantId,
        endpoint: &Endpoint,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64>;
    /// A page of the application's dead deliveries matching `filter`, keyed
    /// by message id then endpoint id ([`DeadDelivery::key`]).
    async fn list_dead_letters(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &DeadLetterFilter,
    ) -> StoreResult<Page<DeadDelivery>>;
    /// Asks for a manual attempt, starting a fresh retry schedule, of at most
    /// `limit` of the application's dead deliveries matching `filter` (the
    /// oldest messages first); returns how many. They leave the dead state at
    /// once, so calling again redrives the next ones. A dead delivery whose
    /// message payload was expunged is not redriven: there is nothing to send.
    async fn redrive_dead_letters(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        filter: &DeadLetterFilter,
        limit: u16,
    ) -> StoreResult<u64>;
    /// An endpoint's deliveries whose message was created in `[since, until)`,
    /// counted by status.
    async fn endpoint_delivery_counts(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<DeliveryCounts>;
    /// A message by id or by its `eventId`.
    async fn message(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg: &IdOrUid,
    ) -> StoreResult<Option<Message>>;
    /// One delivery (message × endpoint).
    async fn delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<Option<Delivery>>;
}

/// The outbox: messages stored with one delivery per endpoint, and the
/// deliveries' state as the relay and the workers move it, with the batched
/// reads the accept path and the workers make.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Stores a message and one pending delivery per endpoint in one
    /// transaction; the relay hands the deliveries out.
    async fn insert_message(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
    ) -> StoreResult<()>;
    /// Stores a batch of messages, each with one delivery per endpoint, in
    /// one transaction: `claimed` as [`Outbox::insert_message_claimed`] does,
    /// or pending as [`Outbox::insert_message`] does. Returns, per message,
    /// whether it was stored: `false` when its `eventId` is already taken in
    /// its application (then nothing of it is stored, and the rest of the
    /// batch is unaffected).
    async fn insert_messages(&self, batch: &[NewMessage], claimed: bool) -> StoreResult<Vec<bool>>;
    /// Like [`Outbox::insert_message`], but the deliveries are stored already
    /// claimed (`sending`, due now): the caller publishes their tasks itself
    /// right after the commit, which saves the relay's round trips and wait.
    /// If that publish fails the caller hands them back with
    /// [`Store::return_deliveries`]; if the caller dies first, the relay takes
    /// them back once a lease has passed (or at once, through
    /// [`Store::release_claims`], when an embedded process restarts).
    async fn insert_message_claimed(
        &self,
        tenant_id: &TenantId,
        message: &Message,
        endpoint_ids: &[EndpointId],
    ) -> StoreResult<()>;
    /// For a batch of messages being posted: each application named by id,
    /// with its enabled endpoints (the fan-out candidates, ordered by id);
    /// `None` where the key's tenant has no application with that id. Two
    /// reads for the whole batch.
    async fn fan_out_candidates(
        &self,
        keys: &[(TenantId, ApplicationId)],
    ) -> StoreResult<Vec<Option<(Application, Vec<Endpoint>)>>>;
    /// The deliveries named by `keys`, each with its message and endpoint,
    /// as a worker loads them for a batch of tasks (three reads for the
    /// whole batch). Not scoped by one tenant: each key carries its own, and
    /// a row of another tenant or application counts as absent.
    async fn delivery_targets(&self, keys: &[DeliveryKey]) -> StoreResult<Vec<DeliveryTarget>>;
    /// Makes a message's not yet attempted deliveries pending and due now, so
    /// the relay hands them out: for deliveries claimed at insert whose tasks
    /// could not be published.
    async fn return_deliveries(&self, tenant_id: &TenantId, msg_id: &MessageId)
        -> StoreResult<u64>;
    /// Claims up to `limit` deliveries for the outbox relay: `pending` ones due
    /// at `now`, and `sending` ones whose `next_attempt_at` is more than `lease`
    /// ago (their task was lost with a worker or broker). Claimed rows become
    /// `sending` with `next_attempt_at = now`. Concurrent relays never claim the
    /// same row. Not tenant-scoped: the relay serves every tenant.
    async fn claim_due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        lease: chrono::Duration,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Makes every `sending` delivery `pending` again, keeping its
    /// `next_attempt_at` (so one waiting for a retry stays due at its retry
    /// time); returns how many. Only for a deployment where one worker process
    /// owns the database (the embedded mode): at its start, whatever was in
    /// flight was lost with the previous process. Not tenant-scoped.
    async fn release_claims(&self) -> StoreResult<u64>;
    /// Parks a delivery whose endpoint is saturated: `pending`, due at
    /// `until`, when the relay hands it out again (its manual request, if
    /// any, kept). Only a delivery still `pending` or `sending` moves.
    async fn park_delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()>;
    /// Makes sure each dead letter taken from the queue is dead in the
    /// database, which is the dead-letter view: a delivery already `dead` is
    /// left alone; one still `sending` at the letter's attempt (its attempt
    /// could not be recorded, or its task kept failing inside the worker) is
    /// marked `dead`; one that moved on since (redriven, resent, answered,
    /// deleted) is left as it is. One transaction for the batch; not scoped by
    /// one tenant: each key carries its own.
    async fn confirm_dead_letters(&self, letters: &[DeadLetterKey])
        -> StoreResult<DeadLetterCheck>;
    /// Moves a delivery to `update` without an attempt (e.g. its endpoint is gone).
    async fn update_delivery(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
        endpoint_id: &EndpointId,
        update: &DeliveryUpdate,
    ) -> StoreResult<()>;
    /// Disables an endpoint (it answered 410 Gone, or failed for too long),
    /// saying `reason`; returns false when it is absent or already disabled.
    async fn disable_endpoint(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: &EndpointId,
        reason: &str,
    ) -> StoreResult<bool>;
    /// Counts a failed attempt to an endpoint (failing since `at` if it was
    /// not failing); its health afterwards, `None` when it is gone.
    async fn endpoint_failed(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<EndpointHealth>>;
    /// Opens the endpoint's circuit breaker until `until`.
    async fn open_breaker(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()>;
    /// Claims the half-open probe of an endpoint whose breaker was open until
    /// `now` or before: moves its end to `until`, so others keep waiting
    /// while the probe runs. True for exactly one claimer.
    async fn claim_breaker_probe(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<bool>;
    /// A success: clears the failure count and closes the breaker, and makes
    /// the endpoint's parked deliveries due now; true when there was
    /// something to clear.
    async fn endpoint_recovered(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
    ) -> StoreResult<bool>;
}

/// The attempts made to deliver messages.
#[async_trait]
pub trait AttemptLog: Send + Sync + 'static {
    /// Records a batch of attempts as [`AttemptLog::record_attempt`] does
    /// each, all in one transaction (on PostgreSQL, one statement). Two
    /// attempts of one delivery in one batch (duplicate tasks running at
    /// once) count as one in its attempt counter.
    async fn record_attempts(&self, batch: &[AttemptRecord]) -> StoreResult<()>;
    /// Records an attempt and moves its delivery to `update` in one transaction;
    /// the attempt counter grows by one. A manual attempt clears the delivery's
    /// manual request; a scheduled one that finishes while a manual request is
    /// waiting leaves the delivery due for it.
    async fn record_attempt(
        &self,
        tenant_id: &TenantId,
        attempt: &Attempt,
        update: &DeliveryUpdate,
    ) -> StoreResult<()>;
    /// The attempts of a message, oldest first (by time: ids are ordered only
    /// to a few milliseconds).
    async fn attempts_of_message(
        &self,
        tenant_id: &TenantId,
        msg_id: &MessageId,
    ) -> StoreResult<Vec<Attempt>>;
    /// One attempt of a message.
    async fn attempt(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        attempt_id: &AttemptId,
    ) -> StoreResult<Option<Attempt>>;
    /// An application's attempts, keyed by attempt id.
    async fn list_attempts(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        query: &ListQuery,
        filter: &AttemptFilter,
    ) -> StoreResult<Page<Attempt>>;
    /// Removes an attempt's response body; returns false when it is absent.
    async fn expunge_attempt_content(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        msg_id: &MessageId,
        attempt_id: &AttemptId,
    ) -> StoreResult<bool>;
}

/// Per-endpoint delivery statistics, in minute and hour buckets.
#[async_trait]
pub trait StatsStore: Send + Sync + 'static {
    // Delivery statistics.
    /// Counts the samples not counted before (by attempt id, remembered in
    /// `stats_seen`) into their endpoint's minute bucket (start = `at`
    /// truncated to the minute) and into its hour bucket (start = `at`
    /// truncated to the hour), all in one transaction, so a batch delivered
    /// again after a crash is never counted twice and an hour bucket always
    /// holds what its minute buckets held; returns how many were new (an id
    /// repeated within the batch counts once). Safe under concurrent callers
    /// touching the same buckets (rows are locked in one global order: every
    /// minute key sorted, then every hour key sorted). Not tenant-scoped:
    /// samples carry their tenant.
    async fn record_stats(&self, samples: &[StatsSample]) -> StoreResult<usize>;
    /// The buckets of `granularity` of one endpoint (or of every endpoint of
    /// the application when `endpoint_id` is `None`) whose start is in
    /// `[since, until)`, ordered by start, then endpoint.
    async fn stats_buckets(
        &self,
        tenant_id: &TenantId,
        app_id: &ApplicationId,
        endpoint_id: Option<&EndpointId>,
        granularity: StatsGranularity,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Vec<StatsBucket>>;
    /// Deletes the minute buckets of the hours before the hour
    /// `minutes_before` falls in (their hour buckets, written by
    /// `record_stats`, already hold them), so an hour keeps either all its
    /// minute buckets or none; forgets the `stats_seen` entries recorded
    /// before `seen_before`; in one transaction. Returns how many minute
    /// buckets were deleted. Not tenant-scoped.
    async fn roll_up_stats(
        &self,
        minutes_before: chrono::DateTime<chrono::Utc>,
        seen_before: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<u64>;
    /// Deletes hour buckets that start before `hours_before`, so stats storage
    /// stays bounded; returns how many.
    async fn expire_stats(&self, hours_before: chrono::DateTime<chrono::Utc>) -> StoreResult<u64>;
}
