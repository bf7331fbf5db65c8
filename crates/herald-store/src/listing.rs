//! Keyset listings: the keyset conditions of a [`ListQuery`] appended to a
//! statement, and pages of messages bounded by a [`Payloads`] budget.

use crate::db::{Dialect, Row, Sql};
use crate::page::{payload_cut, Cursor, ListQuery, Page, Payloads};
use crate::StoreResult;

/// The rows of a listing read with [`push_keyset`] as a page.
pub(crate) fn page_of<T>(
    rows: Vec<Row>,
    query: &ListQuery,
    from_row: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_scan(items, query))
}

/// Appends the keyset condition, order and limit of `query` on column `key`
/// (`LIMIT limit + 1`, so the page knows whether more follow). The
/// statement must already end in a `WHERE …` clause.
pub(crate) fn push_keyset<'a>(sql: &mut Sql<'a>, key: &str, query: &'a ListQuery) {
    push_keyset_to(sql, key, query, None, i64::from(query.limit) + 1);
}

/// The keyset conditions of `query` or, for the second read of a
/// payload-bounded page, the exact keys its first scan chose (`only`), with
/// `LIMIT limit`.
pub(crate) fn push_keyset_to<'a>(
    sql: &mut Sql<'a>,
    key: &str,
    query: &'a ListQuery,
    only: Option<&'a [String]>,
    limit: i64,
) {
    let ascending = query.scans_ascending();
    match only {
        Some(keys) => {
            sql.push(&format!(" AND {key} IN ("));
            for (i, k) in keys.iter().enumerate() {
                sql.push(if i == 0 { "" } else { ", " }).push_bind(k);
            }
            sql.push(")");
        }
        None => {
            if let Some(Cursor::After(k) | Cursor::Before(k)) = &query.cursor {
                let op = if ascending { ">" } else { "<" };
                sql.and(&format!(" AND {key} {op} "), k);
            }
        }
    }
    let order = if ascending { "ASC" } else { "DESC" };
    sql.and(&format!(" ORDER BY {key} {order} LIMIT "), limit);
}

/// The columns of `message m` with a NULL payload.
fn columns_without_payload(dialect: Dialect) -> String {
    format!(
        "m.id, m.tenant_id, m.app_id, m.event_id, m.event_type, m.channels, m.tags, \
         {} AS payload, m.created_at, m.expires_at",
        dialect.null_bytes()
    )
}

/// A page of a message listing that holds no more payload than `payloads`
/// allows. `fetch(columns, only, limit)` runs the listing's query selecting
/// `columns` besides its fixed ones (with [`push_keyset_to`]); `key` is the
/// column the listing is keyed on.
///
/// With a budget, a first scan reads only each row's key and payload size;
/// then exactly the rows it chose are read whole, so messages that arrive in
/// between cannot swell the page.
pub(crate) async fn bounded_page<F, T>(
    dialect: Dialect,
    query: &ListQuery,
    payloads: Payloads,
    key: &str,
    fetch: impl Fn(String, Option<Vec<String>>, i64) -> F,
    from_row: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Page<T>>
where
    F: std::future::Future<Output = StoreResult<Vec<Row>>>,
{
    let scan_limit = i64::from(query.limit) + 1;
    let budget = match payloads {
        Payloads::Omitted => {
            let rows = fetch(columns_without_payload(dialect), None, scan_limit).await?;
            return page_of(rows, query, from_row);
        }
        Payloads::UpTo(budget) => budget,
    };
    let size = dialect.byte_length("m.payload");
    let size_columns = format!("{key} AS page_key, {size} AS payload_size");
    let sizes: Vec<(String, Option<i64>)> = fetch(size_columns, None, scan_limit)
        .await?
        .iter()
        .map(|row| Ok((row.text("page_key")?, row.optional_integer("payload_size")?)))
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
