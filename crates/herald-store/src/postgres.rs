//! What only PostgreSQL needs: its pool, its error codes, and how it binds
//! and reads the values [`crate::db`] speaks of (`timestamptz`, `jsonb`,
//! `text[]`, `int2`/`int4`/`int8`).

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row as _};

use crate::db::{Arg, Db, Sql};
use crate::{SqlStore, StoreError, StoreResult};

/// Migrations for PostgreSQL, embedded in the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

impl SqlStore {
    /// A store on the PostgreSQL database at `url`. Connects lazily: the pool
    /// opens connections on first use, so a process can start while the
    /// database is still coming up and answer 503 until it is.
    ///
    /// Every statement is planned for its arguments (`plan_cache_mode =
    /// force_custom_plan`, set on each new connection rather than as a
    /// startup parameter, which connection poolers such as PgBouncer refuse):
    /// the batch statements take arrays of keys, and a generic plan made
    /// while a table was small (a new deployment, before autovacuum's first
    /// ANALYZE) scans the whole table on every call once it has grown;
    /// planning these small statements costs far less.
    pub fn postgres(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET plan_cache_mode = force_custom_plan")
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_lazy_with(options);
        Ok(Self::on(Db::Postgres(pool)))
    }

    /// Creates the database named in `url` when it does not exist yet, so a
    /// first start needs nothing but a reachable server.
    pub async fn create_postgres_database(url: &str) -> StoreResult<()> {
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

/// The statement with its arguments bound as PostgreSQL types.
pub(crate) fn bound<'q>(sql: &'q Sql<'_>) -> Query<'q, Postgres, PgArguments> {
    sql.args
        .iter()
        .fold(sqlx::query(&sql.text), |query, arg| match arg {
            Arg::Text(v) => query.bind(v.as_deref()),
            Arg::Int(v) => query.bind(*v),
            Arg::Bool(v) => query.bind(*v),
            Arg::Bytes(v) => query.bind(*v),
            Arg::Time(v) => query.bind(*v),
            Arg::Json(v) => query.bind(v),
            Arg::Texts(v) => query.bind(v),
            Arg::OptionalTexts(v) => query.bind(v),
            Arg::Ints(v) => query.bind(v),
            Arg::Times(v) => query.bind(v),
            Arg::Jsons(v) => query.bind(v),
            Arg::Blobs(v) => query.bind(v),
        })
}

/// An `int2`, `int4` or `int8` column, widened.
pub(crate) fn integer(row: &PgRow, column: &str) -> StoreResult<Option<i64>> {
    use sqlx::{Column as _, TypeInfo as _};
    Ok(match row.try_column(column)?.type_info().name() {
        "INT2" => row.try_get::<Option<i16>, _>(column)?.map(i64::from),
        "INT4" => row.try_get::<Option<i32>, _>(column)?.map(i64::from),
        _ => row.try_get(column)?,
    })
}
