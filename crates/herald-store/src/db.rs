//! The seam between the two databases: everything above this module writes
//! its SQL once, and only what genuinely differs is decided here or in the
//! backend modules ([`crate::postgres`], [`crate::sqlite`]).
//!
//! - A statement is a [`Sql`]: its text (PostgreSQL's `$n` placeholders,
//!   which SQLite reads too) and its arguments as [`Arg`]s, values in the
//!   store's own terms. Each backend binds them its way: a timestamp as
//!   `timestamptz` or as integer microseconds, JSON as `jsonb` or as text, a
//!   list of strings as a `text[]` or as a JSON array.
//! - [`Dialect`] spells the few fragments whose SQL differs (a list
//!   parameter, `FOR UPDATE`, a JSON containment test).
//! - [`Db`] runs statements on the right pool: PostgreSQL's one pool, or
//!   SQLite's single writer and its readers; [`Tx`] runs them in a
//!   transaction (`BEGIN IMMEDIATE` on SQLite).
//! - [`Row`] reads columns back the same way on both.
//!
//! Why not generic functions over `sqlx::Database`: each would carry a dozen
//! higher-ranked bounds and still need per-backend encoding of timestamps and
//! JSON. Why not sqlx's `Any` driver: it carries neither timestamps, JSON nor
//! arrays. Why not a query builder (sea-query): every statement would be
//! rewritten in its DSL, and the few real differences (the CTE inserts, the
//! claim) would still need a branch. A dozen argument kinds and one bind
//! function per backend is the smallest seam.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Decode, PgConnection, Postgres, Row as _, Sqlite, SqliteConnection, Transaction, Type};

use crate::{postgres, sqlite, StoreError, StoreResult};

/// A column value a row holds but the model cannot take.
pub(crate) fn corrupt(what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {err}"))
}

/// A statement argument, in the store's terms; each backend binds it its way.
#[derive(Debug, Clone)]
pub(crate) enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Bool(bool),
    Bytes(Option<&'a [u8]>),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
    /// A list of strings, read in SQL through [`Dialect::list`] or [`Dialect::any`].
    Texts(Vec<&'a str>),
    /// The lists below are PostgreSQL arrays (`text[]`, `timestamptz[]`,
    /// `jsonb[]`, `bytea[]`) for statements that write many rows at once;
    /// SQLite gets them as JSON arrays (bytes in hex).
    OptionalTexts(Vec<Option<&'a str>>),
    Ints(Vec<i64>),
    Times(Vec<Option<DateTime<Utc>>>),
    Jsons(Vec<Option<serde_json::Value>>),
    Blobs(Vec<Option<&'a [u8]>>),
}

impl<'a> Arg<'a> {
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        Self::opt_json(Some(value))
    }
    pub fn opt_json<T: serde::Serialize + ?Sized>(value: Option<&T>) -> Self {
        Arg::Json(value.map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null)))
    }
    pub fn texts(items: impl IntoIterator<Item = &'a str>) -> Self {
        Arg::Texts(items.into_iter().collect())
    }
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr;)*) => {
        $(impl<'a> From<$t> for Arg<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    &'a str => |v| Arg::Text(Some(Cow::Borrowed(v)));
    String => |v| Arg::Text(Some(Cow::Owned(v)));
    &'a String => |v| Arg::Text(Some(Cow::Borrowed(v)));
    Option<&'a str> => |v| Arg::Text(v.map(Cow::Borrowed));
    &'a Option<String> => |v| Arg::Text(v.as_deref().map(Cow::Borrowed));
    i64 => |v| Arg::Int(Some(v));
    u32 => |v| Arg::Int(Some(i64::from(v)));
    u16 => |v| Arg::Int(Some(i64::from(v)));
    Option<u16> => |v| Arg::Int(v.map(i64::from));
    bool => |v| Arg::Bool(v);
    &'a [u8] => |v| Arg::Bytes(Some(v));
    &'a Vec<u8> => |v| Arg::Bytes(Some(v));
    Option<&'a [u8]> => |v| Arg::Bytes(v);
    DateTime<Utc> => |v| Arg::Time(Some(v));
    Option<DateTime<Utc>> => |v| Arg::Time(v);
    &'a Option<serde_json::Value> => |v| Arg::Json(v.clone());
}

/// A statement: SQL text with `$n` placeholders and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Sql<'a> {
    pub text: String,
    pub args: Vec<Arg<'a>>,
}

impl<'a> Sql<'a> {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Adds the argument for the next `$n` the text already holds.
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn push_bind(&mut self, value: impl Into<Arg<'a>>) -> &mut Self {
        self.args.push(value.into());
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    /// Appends `text`, then a placeholder for `value`.
    pub fn and(&mut self, text: &str, value: impl Into<Arg<'a>>) -> &mut Self {
        self.push(text).push_bind(value)
    }

    /// The placeholder the next bound argument will take.
    pub fn next_placeholder(&self) -> usize {
        self.args.len() + 1
    }
}

/// Which SQL a fragment is spelled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The rows of the list bound at `$n` ([`Arg::Texts`]), one column `value`.
    pub fn list(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("unnest(${n}::text[]) AS list(value)"),
            Dialect::Sqlite => format!("json_each(${n})"),
        }
    }

    /// `column` is one of the list bound at `$n`.
    pub fn any(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("{column} = ANY(${n})"),
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${n}))"),
        }
    }

    /// The JSON array of strings in `column` holds the string bound at `$n`.
    pub fn json_holds(self, column: &str, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("{column} ? ${n}"),
            Dialect::Sqlite => {
                format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ${n})")
            }
        }
    }

    /// Locks the selected rows until the transaction ends. SQLite needs no
    /// lock: its write transaction already excludes every other writer.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// Orders strings bytewise (SQLite's default, PostgreSQL's "C" collation).
    pub fn bytewise(self) -> &'static str {
        match self {
            Dialect::Postgres => "COLLATE \"C\"",
            Dialect::Sqlite => "COLLATE BINARY",
        }
    }

    /// The size in bytes of a `bytea`/`BLOB` column, as a 64-bit integer.
    pub fn byte_length(self, column: &str) -> String {
        match self {
            Dialect::Postgres => format!("octet_length({column})::bigint"),
            Dialect::Sqlite => format!("length({column})"),
        }
    }

    /// A NULL of the `bytea`/`BLOB` type.
    pub fn null_bytes(self) -> &'static str {
        match self {
            Dialect::Postgres => "NULL::bytea",
            Dialect::Sqlite => "NULL",
        }
    }
}

/// The database a store runs on.
#[derive(Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    /// One writer connection that every write of this process queues for,
    /// and read-only connections that in WAL mode never wait for it.
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
}

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    fn reader(&self) -> Conn<'_> {
        match self {
            Db::Postgres(pool) => Conn::Postgres(pool),
            Db::Sqlite { reader, .. } => Conn::Sqlite(reader),
        }
    }

    fn writer(&self) -> Conn<'_> {
        match self {
            Db::Postgres(pool) => Conn::Postgres(pool),
            Db::Sqlite { writer, .. } => Conn::Sqlite(writer),
        }
    }

    /// The rows a read returns.
    pub async fn read(&self, sql: Sql<'_>) -> StoreResult<Vec<Row>> {
        self.reader().fetch_all(&sql).await
    }

    /// The first row a read returns, if any.
    pub async fn read_one(&self, sql: Sql<'_>) -> StoreResult<Option<Row>> {
        Ok(self.reader().fetch_all(&sql).await?.into_iter().next())
    }

    /// The rows a read returns, each mapped by `from_row`.
    pub async fn read_as<T>(
        &self,
        sql: Sql<'_>,
        from_row: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.read(sql).await?.iter().map(from_row).collect()
    }

    /// The first row a read returns, if any, mapped by `from_row`.
    pub async fn read_one_as<T>(
        &self,
        sql: Sql<'_>,
        from_row: impl Fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.read_one(sql).await?.as_ref().map(from_row).transpose()
    }

    /// Runs a write; returns how many rows it changed.
    pub async fn write(&self, sql: Sql<'_>) -> StoreResult<u64> {
        self.writer().execute(&sql).await
    }

    /// Runs a write and returns the rows of its `RETURNING` clause.
    pub async fn write_returning(&self, sql: Sql<'_>) -> StoreResult<Vec<Row>> {
        self.writer().fetch_all(&sql).await
    }

    /// Starts a transaction; on SQLite it holds the write lock from the start.
    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

/// A transaction; dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::PostgresTx(tx),
            Tx::Sqlite(tx) => Conn::SqliteTx(tx),
        }
    }

    pub async fn read(&mut self, sql: Sql<'_>) -> StoreResult<Vec<Row>> {
        self.conn().fetch_all(&sql).await
    }

    pub async fn write(&mut self, sql: Sql<'_>) -> StoreResult<u64> {
        self.conn().execute(&sql).await
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Where a statement runs.
enum Conn<'c> {
    Postgres(&'c PgPool),
    PostgresTx(&'c mut PgConnection),
    Sqlite(&'c SqlitePool),
    SqliteTx(&'c mut SqliteConnection),
}

impl Conn<'_> {
    async fn fetch_all(self, sql: &Sql<'_>) -> StoreResult<Vec<Row>> {
        let pg = |rows: Vec<PgRow>| rows.into_iter().map(Row::Postgres).collect();
        let lite = |rows: Vec<SqliteRow>| rows.into_iter().map(Row::Sqlite).collect();
        Ok(match self {
            Conn::Postgres(pool) => pg(postgres::bound(sql).fetch_all(pool).await?),
            Conn::PostgresTx(conn) => pg(postgres::bound(sql).fetch_all(conn).await?),
            Conn::Sqlite(pool) => lite(sqlite::bound(sql).fetch_all(pool).await?),
            Conn::SqliteTx(conn) => lite(sqlite::bound(sql).fetch_all(conn).await?),
        })
    }

    async fn execute(self, sql: &Sql<'_>) -> StoreResult<u64> {
        Ok(match self {
            Conn::Postgres(pool) => postgres::bound(sql).execute(pool).await?.rows_affected(),
            Conn::PostgresTx(conn) => postgres::bound(sql).execute(conn).await?.rows_affected(),
            Conn::Sqlite(pool) => sqlite::bound(sql).execute(pool).await?.rows_affected(),
            Conn::SqliteTx(conn) => sqlite::bound(sql).execute(conn).await?.rows_affected(),
        })
    }
}

/// A row of either database, read in the store's terms: the two keep the
/// same columns but spell some differently (`timestamptz`, `jsonb` and
/// `int4` against integer microseconds, JSON text and 64-bit integers).
pub(crate) enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl Row {
    /// A column both databases decode alike (text, flags, bytes).
    pub fn get<T>(&self, column: &str) -> StoreResult<T>
    where
        T: for<'r> Decode<'r, Postgres> + Type<Postgres>,
        T: for<'r> Decode<'r, Sqlite> + Type<Sqlite>,
    {
        Ok(match self {
            Row::Postgres(row) => row.try_get(column)?,
            Row::Sqlite(row) => row.try_get(column)?,
        })
    }

    pub fn text(&self, column: &str) -> StoreResult<String> {
        self.get(column)
    }

    /// An integer column of any width.
    pub fn integer(&self, column: &str) -> StoreResult<i64> {
        self.optional_integer(column)?
            .ok_or_else(|| corrupt(column, "is NULL"))
    }
    pub fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        match self {
            Row::Postgres(row) => postgres::integer(row, column),
            Row::Sqlite(row) => Ok(row.try_get(column)?),
        }
    }

    pub fn time(&self, column: &str) -> StoreResult<DateTime<Utc>> {
        self.optional_time(column)?
            .ok_or_else(|| corrupt(column, "is NULL"))
    }
    pub fn optional_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>> {
        match self {
            Row::Postgres(row) => Ok(row.try_get(column)?),
            Row::Sqlite(row) => sqlite::time(row, column),
        }
    }

    /// A JSON column decoded straight into `T` (`what` names it in a
    /// corruption error).
    pub fn optional_json<T: DeserializeOwned>(
        &self,
        column: &str,
        what: &str,
    ) -> StoreResult<Option<T>> {
        let decoded = match self {
            Row::Postgres(row) => row
                .try_get::<Option<serde_json::Value>, _>(column)?
                .map(serde_json::from_value),
            Row::Sqlite(row) => row
                .try_get::<Option<String>, _>(column)?
                .map(|text| serde_json::from_str(&text)),
        };
        decoded.transpose().map_err(|e| corrupt(what, e))
    }
}
