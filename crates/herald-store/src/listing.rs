//! Keyset listings, written once for both stores: the keyset conditions of a
//! [`ListQuery`] appended to a query, and pages of messages bounded by a
//! [`Payloads`] budget. The SQL is the same on both databases but for two
//! fragments, named in [`PayloadSql`].

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use crate::page::{payload_cut, Cursor, ListQuery, Page, Payloads};
use crate::StoreResult;

/// How a database spells what a bounded message listing needs.
pub(crate) struct PayloadSql {
    /// The columns of `message m` with a NULL payload.
    pub columns_without_payload: &'static str,
    /// The size in bytes of `m.payload`, as a 64-bit integer.
    pub payload_size: &'static str,
}

/// Appends the keyset condition, order and limit of `query` on column `key`
/// (`LIMIT limit + 1`, so the page knows whether more follow). The caller's
/// SQL must already end in a `WHERE …` clause.
pub(crate) fn push_keyset<'a, DB>(builder: &mut QueryBuilder<'a, DB>, key: &str, query: &ListQuery)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    push_keyset_to(builder, key, query, None, i64::from(query.limit) + 1);
}

/// The keyset conditions of `query` or, for the second read of a
/// payload-bounded page, the exact keys its first scan chose (`only`), with
/// `LIMIT limit`.
pub(crate) fn push_keyset_to<'a, DB>(
    builder: &mut QueryBuilder<'a, DB>,
    key: &str,
    query: &ListQuery,
    only: Option<&[String]>,
    limit: i64,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let ascending = query.scans_ascending();
    match only {
        Some(keys) => {
            builder.push(format!(" AND {key} IN ("));
            let mut list = builder.separated(", ");
            for k in keys {
                list.push_bind(k.clone());
            }
            builder.push(")");
        }
        None => {
            if let Some(Cursor::After(k) | Cursor::Before(k)) = &query.cursor {
                builder.push(format!(" AND {key} {} ", if ascending { ">" } else { "<" }));
                builder.push_bind(k.clone());
            }
        }
    }
    builder.push(format!(
        " ORDER BY {key} {} LIMIT ",
        if ascending { "ASC" } else { "DESC" }
    ));
    builder.push_bind(limit);
}

/// A page of a message listing that holds no more payload than `payloads`
/// allows. `fetch(columns, only, limit)` runs the listing's query selecting
/// `columns` besides its fixed ones (with [`push_keyset_to`]); `key` is the
/// column the listing is keyed on. Only running the query is left to the
/// caller, which knows its pool.
///
/// With a budget, a first scan reads only each row's key and payload size;
/// then exactly the rows it chose are read whole, so messages that arrive in
/// between cannot swell the page.
pub(crate) async fn bounded_page<F, R, T>(
    sql: &PayloadSql,
    query: &ListQuery,
    payloads: Payloads,
    key: &str,
    fetch: impl Fn(String, Option<Vec<String>>, i64) -> F,
    from_row: impl Fn(&R) -> StoreResult<T>,
) -> StoreResult<Page<T>>
where
    F: std::future::Future<Output = StoreResult<Vec<R>>>,
    R: Row,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
    let scan_limit = i64::from(query.limit) + 1;
    let budget = match payloads {
        Payloads::Omitted => {
            let rows = fetch(sql.columns_without_payload.to_owned(), None, scan_limit).await?;
            let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
            return Ok(Page::from_scan(items, query));
        }
        Payloads::UpTo(budget) => budget,
    };
    let size_columns = format!("{key} AS page_key, {} AS payload_size", sql.payload_size);
    let sizes: Vec<(String, Option<i64>)> = fetch(size_columns, None, scan_limit)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("page_key")?, row.try_get("payload_size")?)))
        .collect::<StoreResult<_>>()?;
    let listed = usize::from(query.limit).min(sizes.len());
    let (count, done) = match payload_cut(&sizes, query.limit, budget) {
        Some(cut) => (cut.count, false),
        None => (listed, sizes.len() <= listed),
    };
    if count == 0 {
        return Ok(Page::in_list_order(Vec::new(), query, done));
    }
    let keys: Vec<String> = sizes.into_iter().take(count).map(|(k, _)| k).collect();
    let rows = fetch("m.*".to_owned(), Some(keys), count as i64).await?;
    let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::in_list_order(items, query, done))
}
