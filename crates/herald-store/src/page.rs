//! Keyset pagination in the Svix shape: `iterator` continues after the last item,
//! `prevIterator` (`-` + first key) goes back before the first one.

use serde::{Deserialize, Serialize};

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    #[default]
    Ascending,
    Descending,
}

/// Where a page starts: strictly after or strictly before a key, in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    After(String),
    Before(String),
}

/// A validated listing request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub limit: u16,
    pub cursor: Option<Cursor>,
    pub ordering: Ordering,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: 50,
            cursor: None,
            ordering: Ordering::Ascending,
        }
    }
}

impl ListQuery {
    /// Whether the SQL scan runs in ascending key order.
    pub fn scans_ascending(&self) -> bool {
        let backwards = matches!(self.cursor, Some(Cursor::Before(_)));
        (self.ordering == Ordering::Ascending) != backwards
    }
}

/// One page of results in list order.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// True when no item lies beyond this page in the direction travelled.
    pub done: bool,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with `LIMIT limit + 1` in scan order.
    pub fn from_scan(mut rows: Vec<T>, query: &ListQuery) -> Self {
        let done = rows.len() <= usize::from(query.limit);
        rows.truncate(usize::from(query.limit));
        if matches!(query.cursor, Some(Cursor::Before(_))) {
            rows.reverse();
        }
        Self { items: rows, done }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            done: self.done,
        }
    }
}
