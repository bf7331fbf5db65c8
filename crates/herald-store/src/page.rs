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

    /// Builds a page from rows fetched in scan order whose end is already
    /// known (`done`): a page read by the keys a first scan chose.
    pub fn in_list_order(mut rows: Vec<T>, query: &ListQuery, done: bool) -> Self {
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

/// How much payload a listing of messages carries. Payloads are up to the
/// largest request body each, and a page up to 250 messages: without a bound
/// one listing could hold hundreds of megabytes in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payloads {
    /// None: payloads are not read, and the listed messages have none.
    Omitted,
    /// Payloads adding up to at most this many bytes. The page ends early
    /// (and is not `done`) before the message that would go past it; its
    /// first message is listed whatever its size, so a page is never empty
    /// while messages remain.
    UpTo(usize),
}

/// Where a page must end to keep its payloads within `budget` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadCut {
    /// How many rows, in scan order, the page lists.
    pub count: usize,
    /// The key of the last of them.
    pub last_key: String,
}

/// Given the keys and payload sizes of a scan's rows (`limit + 1` at most, in
/// scan order), where the page must end, or `None` when the whole page fits.
pub fn payload_cut(
    sizes: &[(String, Option<i64>)],
    limit: u16,
    budget: usize,
) -> Option<PayloadCut> {
    let listed = sizes.len().min(usize::from(limit));
    let mut total: u64 = 0;
    for (index, (_, size)) in sizes[..listed].iter().enumerate() {
        total += size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        if index > 0 && total > budget as u64 {
            return Some(PayloadCut {
                count: index,
                last_key: sizes[index - 1].0.clone(),
            });
        }
    }
    None
}
