//! Listing parameters and the Svix list envelope `{data, iterator, prevIterator, done}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herald_core::ValidationError;
use herald_store::{Cursor, ListQuery, Ordering as StoreOrdering, Page};

use crate::error::ApiError;

/// The largest page a client may ask for, as in Svix.
pub const MAX_LIMIT: u64 = 250;
/// Most payload bytes one page of messages holds: a page whose payloads would
/// add up to more ends early (with `done: false` and an iterator to go on),
/// so a listing costs megabytes, not `limit` × the largest body.
pub const MAX_PAGE_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

/// The payloads a message listing carries: none without `with_content`
/// (default true, as in Svix), else up to [`MAX_PAGE_PAYLOAD_BYTES`].
pub fn payloads(with_content: Option<bool>) -> herald_store::Payloads {
    if with_content.unwrap_or(true) {
        herald_store::Payloads::UpTo(MAX_PAGE_PAYLOAD_BYTES)
    } else {
        herald_store::Payloads::Omitted
    }
}
const DEFAULT_LIMIT: u16 = 50;

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    Ascending,
    Descending,
}

/// Query parameters shared by every listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Number of items per page (1–250, default 50).
    pub limit: Option<u64>,
    /// `iterator` or `prevIterator` of a previous page.
    pub iterator: Option<String>,
    /// Sort order (ascending by default).
    pub order: Option<Ordering>,
}

impl ListParams {
    /// Validates the parameters; `parse_key` checks that an iterator names a key
    /// of the listed kind, so garbage iterators are refused, not silently empty.
    pub fn to_query(&self, parse_key: impl Fn(&str) -> bool) -> Result<ListQuery, ApiError> {
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n as u16,
            Some(_) => {
                return Err(ValidationError::new(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                )
                .at(&["query", "limit"])
                .into())
            }
        };
        let cursor = match self.iterator.as_deref() {
            None | Some("") => None,
            Some(raw) => {
                let (key, cursor): (&str, fn(String) -> Cursor) = match raw.strip_prefix('-') {
                    Some(key) => (key, Cursor::Before),
                    None => (raw, Cursor::After),
                };
                if !parse_key(key) {
                    return Err(ValidationError::new("iterator", "is not a valid iterator")
                        .at(&["query", "iterator"])
                        .into());
                }
                Some(cursor(key.to_owned()))
            }
        };
        Ok(ListQuery {
            limit,
            cursor,
            ordering: match self.order {
                Some(Ordering::Descending) => StoreOrdering::Descending,
                _ => StoreOrdering::Ascending,
            },
        })
    }
}

impl ListParams {
    /// Like [`ListParams::to_query`], but newest first unless the client asked
    /// for an order: how Svix lists endpoints, messages and attempts.
    pub fn to_query_newest_first(
        &self,
        parse_key: impl Fn(&str) -> bool,
    ) -> Result<ListQuery, ApiError> {
        let mut query = self.to_query(parse_key)?;
        if self.order.is_none() {
            query.ordering = StoreOrdering::Descending;
        }
        Ok(query)
    }
}

/// A page of results (Svix's `ListResponse_*`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T: ToSchema> {
    pub data: Vec<T>,
    /// Pass as `iterator` to get the next page.
    pub iterator: Option<String>,
    /// Pass as `iterator` to get the previous page.
    pub prev_iterator: Option<String>,
    pub done: bool,
}

impl<T: ToSchema> ListResponse<T> {
    /// Wraps a store page; `key` gives the iterator key of an item.
    pub fn from_page<U>(
        page: Page<U>,
        query: &ListQuery,
        key: impl Fn(&U) -> String,
        out: impl FnMut(U) -> T,
    ) -> Self {
        let first = page.items.first().map(&key);
        let last = page.items.last().map(&key);
        let current = match &query.cursor {
            Some(Cursor::After(k) | Cursor::Before(k)) => Some(k.clone()),
            None => None,
        };
        Self {
            iterator: last.or_else(|| current.clone()),
            prev_iterator: first.or(current).map(|k| format!("-{k}")),
            done: page.done,
            data: page.items.into_iter().map(out).collect(),
        }
    }
}
