//! Retention: payloads past their `expires_at` are removed, and messages
//! (with their deliveries) and attempts past the deployment's retention are
//! deleted, a bounded batch per statement so no statement holds its locks
//! for long and concurrent inserts go on (`herald_worker::retention` runs
//! the batches; `job_lease` makes it one process at a time).
//!
//! Nothing in flight is touched: a message with a delivery still `pending`
//! or `sending` keeps its payload and its rows until that delivery ends, so
//! retention never makes a retry send an empty body.
//!
//! Why no time partitions: ids are time-ordered (KSUIDs), so "older than
//! the cutoff" is a range of each primary key, and a batch is an index range
//! scan plus the deletes. Partitions would make dropping a day O(1), but on
//! PostgreSQL a partitioned table's primary key and every unique constraint
//! must include the partition column, which would change the keys the API,
//! the workers and the foreign keys use, for a saving that matters only at a
//! scale where the delete's I/O, not its search, is the cost.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_core::{AttemptId, MessageId};

use crate::db::{Arg, Sql};
use crate::{SqlStore, StoreResult};

/// A message some delivery of which is not finished yet.
const IN_FLIGHT: &str = "EXISTS (SELECT 1 FROM delivery d WHERE d.msg_id = m.id \
                         AND d.state IN ('pending', 'sending'))";

/// What one pruning batch deleted: how many rows, and the cursor the next
/// batch starts from (the last key it covered), so a run of batches never
/// scans again the index entries its earlier batches left dead. A run is
/// over when a batch neither removes a row nor moves the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedBatch {
    pub removed: u64,
    pub cursor: String,
}

/// Retention's reads and batched deletes, and the lease that makes one
/// process of a deployment run them.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Takes the lease `name` for `holder` until `until`, or renews it: true
    /// when `holder` has it now, false while another holder's lease runs.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Gives the lease up if `holder` has it, so another process can take it
    /// at once.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
    /// Removes the payloads of at most `limit` messages whose `expires_at`
    /// is at or before `now` (the oldest first); returns how many.
    async fn expire_payloads(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
    /// Deletes at most `limit` attempts made before `before`, the oldest
    /// first, from the key after `cursor` on (`""`: from the start).
    async fn prune_attempts(
        &self,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch>;
    /// Deletes the deliveries of at most `limit` messages created before
    /// `before`, the oldest first, after the message `cursor`. Run before
    /// `prune_messages` (with a smaller `limit`: a message has a delivery per
    /// endpoint), so the cascade of a message's deletion is empty and a
    /// batch of messages never deletes an unbounded fan-out with them.
    async fn prune_deliveries(
        &self,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch>;
    /// Deletes at most `limit` messages created before `before`, with what
    /// is left of their deliveries and attempts, the oldest first, from the
    /// key after `cursor` on.
    async fn prune_messages(
        &self,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch>;
    /// When the oldest message still stored was created, if any.
    async fn oldest_message(&self) -> StoreResult<Option<DateTime<Utc>>>;
}

#[async_trait]
impl Retention for SqlStore {
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let sql = Sql::new(
            "INSERT INTO job_lease (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE job_lease.holder = excluded.holder OR job_lease.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now);
        Ok(self.db.write(sql).await? == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM job_lease WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder);
        self.db.write(sql).await.map(drop)
    }

    async fn expire_payloads(&self, now: DateTime<Utc>, limit: i64) -> StoreResult<u64> {
        let sql = Sql::new(format!(
            "UPDATE message SET payload = NULL WHERE id IN (\
               SELECT m.id FROM message m \
               WHERE m.payload IS NOT NULL AND m.expires_at <= $1 AND NOT {IN_FLIGHT} \
               ORDER BY m.expires_at LIMIT $2)"
        ))
        .bind(now)
        .bind(limit);
        self.db.write(sql).await
    }

    async fn prune_attempts(
        &self,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch> {
        // Attempt ids are time-ordered: the oldest possible id of `before`
        // bounds the ones made earlier. `created_at` is checked too, since
        // an id carries its second only.
        let bound = AttemptId::lower_bound_at(before);
        let delete = format!(
            "DELETE FROM message_attempt WHERE id IN (\
               SELECT a.id FROM message_attempt a \
               WHERE a.id < $1 AND a.created_at < $2 AND a.id > $4 \
               AND NOT EXISTS (SELECT 1 FROM message m WHERE m.id = a.msg_id AND {IN_FLIGHT}) \
               ORDER BY a.id LIMIT $3) RETURNING id AS cursor"
        );
        self.delete_batch(delete, bound.as_str(), before, cursor, limit)
            .await
    }

    async fn prune_deliveries(
        &self,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch> {
        // Chosen by message, through the message's primary key (a range of
        // `delivery`'s own key, sorted and cut, was planned as a sort of
        // every remaining row while the table's statistics lagged), then
        // deleted by message id, again only while nothing of the message is
        // in flight (a resend may have come in between).
        let bound = MessageId::lower_bound_at(before);
        let choose = Sql::new(format!(
            "SELECT m.id FROM message m \
             WHERE m.id < $1 AND m.created_at < $2 AND m.id > $3 AND NOT {IN_FLIGHT} \
             ORDER BY m.id LIMIT $4"
        ))
        .bind(bound.as_str())
        .bind(before)
        .bind(cursor)
        .bind(limit);
        let chosen = self
            .db
            .read(choose)
            .await?
            .iter()
            .map(|row| row.text("id"))
            .collect::<StoreResult<Vec<String>>>()?;
        let Some(last) = chosen.last().cloned() else {
            return Ok(PrunedBatch {
                removed: 0,
                cursor: cursor.to_owned(),
            });
        };
        let mut delete = Sql::new(format!(
            "DELETE FROM delivery WHERE {} AND NOT EXISTS (SELECT 1 FROM delivery x \
             WHERE x.msg_id = delivery.msg_id AND x.state IN ('pending', 'sending'))",
            self.db.dialect().any("msg_id", 1)
        ));
        delete
            .args
            .push(Arg::texts(chosen.iter().map(String::as_str)));
        let removed = self.db.write(delete).await?;
        Ok(PrunedBatch {
            removed,
            cursor: last,
        })
    }

    async fn prune_messages(
        &self,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch> {
        let bound = MessageId::lower_bound_at(before);
        let delete = format!(
            "DELETE FROM message WHERE id IN (\
               SELECT m.id FROM message m \
               WHERE m.id < $1 AND m.created_at < $2 AND m.id > $4 AND NOT {IN_FLIGHT} \
               ORDER BY m.id LIMIT $3) RETURNING id AS cursor"
        );
        self.delete_batch(delete, bound.as_str(), before, cursor, limit)
            .await
    }

    async fn oldest_message(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let sql = Sql::new("SELECT created_at FROM message ORDER BY id LIMIT 1");
        self.db
            .read_one(sql)
            .await?
            .map(|row| row.time("created_at"))
            .transpose()
    }
}

impl SqlStore {
    /// Runs one pruning statement: `$1` the id bound, `$2` the time bound,
    /// `$3` the batch size, `$4` the cursor; it returns the keys it deleted
    /// as `cursor`.
    async fn delete_batch(
        &self,
        delete: String,
        id_bound: &str,
        before: DateTime<Utc>,
        cursor: &str,
        limit: i64,
    ) -> StoreResult<PrunedBatch> {
        let sql = Sql::new(delete)
            .bind(id_bound)
            .bind(before)
            .bind(limit)
            .bind(cursor);
        let rows = self.db.write_returning(sql).await?;
        let mut pruned = PrunedBatch {
            removed: rows.len() as u64,
            cursor: cursor.to_owned(),
        };
        for row in &rows {
            let key = row.text("cursor")?;
            if key > pruned.cursor {
                pruned.cursor = key;
            }
        }
        Ok(pruned)
    }
}
