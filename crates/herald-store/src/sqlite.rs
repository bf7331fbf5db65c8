//! What only SQLite needs, for the embedded mode (one process, one database
//! file, no server): opening the file, its error codes, and how it binds and
//! reads the values [`crate::db`] speaks of.
//!
//! - Timestamps are `INTEGER` microseconds since the Unix epoch (UTC), so they
//!   compare and sort numerically and round-trip exactly what was written
//!   (callers truncate to microseconds, see [`crate::now`]).
//! - JSON columns are `TEXT`; a list argument is a JSON array read with
//!   `json_each` (see [`crate::db::Dialect`]).
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
//! for its whole run, which is what makes claiming due deliveries hand a row
//! to one claimer only.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite};

use crate::db::{corrupt, Arg, Db, Sql};
use crate::{SqlStore, StoreError, StoreResult};

/// Migrations for SQLite, embedded in the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a statement waits for another connection's write lock (another
/// process on the same file) before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write waits for this process's writer connection.
pub const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read waits for a reader connection.
const READ_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl SqlStore {
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
    pub async fn sqlite(url_or_path: &str, max_readers: u32) -> StoreResult<Self> {
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
        Ok(Self::on(Db::Sqlite { writer, reader }))
    }

    /// The writer's pool and the readers' pool, on a SQLite store.
    pub fn sqlite_pools(&self) -> Option<(&SqlitePool, &SqlitePool)> {
        match &self.db {
            Db::Sqlite { writer, reader } => Some((writer, reader)),
            Db::Postgres(_) => None,
        }
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

/// The statement with its arguments bound as SQLite values.
pub(crate) fn bound<'q>(sql: &'q Sql<'_>) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    sql.args
        .iter()
        .fold(sqlx::query(&sql.text), |query, arg| match arg {
            Arg::Text(v) => query.bind(v.as_deref()),
            Arg::Int(v) => query.bind(*v),
            Arg::Bool(v) => query.bind(*v),
            Arg::Bytes(v) => query.bind(*v),
            Arg::Time(v) => query.bind(v.map(|t| t.timestamp_micros())),
            Arg::Json(v) => query.bind(v.as_ref().map(|v| v.to_string())),
            Arg::Texts(v) => query.bind(json_text(v)),
            Arg::OptionalTexts(v) => query.bind(json_text(v)),
            Arg::Ints(v) => query.bind(json_text(v)),
            Arg::Times(v) => query.bind(json_text(
                &v.iter()
                    .map(|t| t.map(|t| t.timestamp_micros()))
                    .collect::<Vec<_>>(),
            )),
            Arg::Jsons(v) => query.bind(json_text(v)),
            Arg::Blobs(v) => {
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                query.bind(json_text(&v.iter().map(|b| b.map(hex)).collect::<Vec<_>>()))
            }
        })
}

/// A list argument as a JSON array.
fn json_text<T: serde::Serialize + ?Sized>(list: &T) -> Option<String> {
    serde_json::to_string(list).ok()
}

/// A timestamp as stored: integer microseconds since the Unix epoch.
pub(crate) fn time(row: &SqliteRow, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
    let value: Option<i64> = row.try_get(column)?;
    value
        .map(|v| DateTime::from_timestamp_micros(v).ok_or_else(|| corrupt(column, v)))
        .transpose()
}
