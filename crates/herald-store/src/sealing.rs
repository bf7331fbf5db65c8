//! The database side of secrets at rest (`main_key` is the cipher): the
//! start-up check that this process holds every key that sealed something,
//! sealed settings, and the re-seal that moves every secret to the current
//! key (or back to plaintext when none is configured).

use crate::db::{Arg, Sql};
use crate::endpoint::{stored_headers, stored_secrets, ENDPOINT_COLUMNS};
use crate::main_key::{self, sealed_json, MainKeys};
use crate::rows::endpoint_from_row;
use crate::source::{source_from_row, stored_secret, SOURCE_COLUMNS};
use crate::{SqlStore, StoreError, StoreResult, TenantStore};

/// The setting that lists the ids of every key that may have sealed a value.
const KEY_IDS: &str = "main_key_ids";
/// The setting the JWT secret is kept in.
pub const JWT_SECRET: &str = "jwt_secret";
/// Endpoints read per statement while re-sealing.
const RESEAL_BATCH: i64 = 500;

/// A database this process cannot read, or must not write, with its keys.
#[derive(Debug, thiserror::Error)]
pub enum MainKeyCheckError {
    #[error(
        "secrets in this database are sealed with main key {0}; set HERALD_MAIN_KEY to it \
         (or keep it in HERALD_MAIN_KEY_PREVIOUS while a new one takes over)"
    )]
    Missing(String),
    #[error(
        "secrets in this database are sealed with main key {missing}, which is neither \
         HERALD_MAIN_KEY ({current}) nor in HERALD_MAIN_KEY_PREVIOUS: a wrong key? To rotate, \
         keep the old key in HERALD_MAIN_KEY_PREVIOUS and run `herald main-key reseal`"
    )]
    Unknown { missing: String, current: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`SqlStore::reseal_secrets`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    /// Endpoints whose secrets or sensitive header values were rewritten.
    pub endpoints: u64,
    /// Endpoints already as the current key wants them.
    pub unchanged: u64,
    /// Endpoints (and sources) changed by someone else meanwhile (run it again).
    pub raced: u64,
    /// Sources whose secret was rewritten.
    pub sources: u64,
    /// Whether the stored JWT secret was rewritten.
    pub jwt_secret: bool,
}

fn parse_ids(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a stored value (a JSON column's) must be rewritten for `keys`:
/// sealed with another key than the current one, or plaintext while there
/// is a current key.
fn needs_reseal(stored: &serde_json::Value, keys: &MainKeys) -> bool {
    let current = keys.current().map(main_key::MainKey::id);
    match sealed_json(stored) {
        Some(sealed) => MainKeys::key_id_of(sealed) != current,
        None => current.is_some(),
    }
}

impl SqlStore {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let sql = Sql::new("SELECT value FROM server_setting WHERE name = $1").bind(name);
        self.db
            .read_one(sql)
            .await?
            .map(|row| row.text("value"))
            .transpose()
    }

    /// Sets `name` to `value` if it is still `expected` (`None`: absent);
    /// false when it changed meanwhile.
    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> StoreResult<bool> {
        let sql = match expected {
            None => Sql::new(
                "INSERT INTO server_setting (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value),
            Some(expected) => {
                Sql::new("UPDATE server_setting SET value = $2 WHERE name = $1 AND value = $3")
                    .bind(name)
                    .bind(value)
                    .bind(expected)
            }
        };
        Ok(self.db.write(sql).await? == 1)
    }

    /// Checks at start that this process holds every key that may have
    /// sealed a value, and records its current key as one that will.
    /// Returns the current key's id (`None`: secrets are stored as they are).
    pub async fn check_main_keys(&self) -> Result<Option<String>, MainKeyCheckError> {
        loop {
            let stored = self.setting(KEY_IDS).await?;
            let ids = parse_ids(stored.as_deref().unwrap_or(""));
            if let Some(missing) = ids.iter().find(|id| !self.keys.holds(id)) {
                return Err(match self.keys.current() {
                    None => MainKeyCheckError::Missing(missing.clone()),
                    Some(current) => MainKeyCheckError::Unknown {
                        missing: missing.clone(),
                        current: current.id().to_owned(),
                    },
                });
            }
            let Some(current) = self.keys.current() else {
                return Ok(None);
            };
            if ids.iter().any(|id| id == current.id()) {
                return Ok(Some(current.id().to_owned()));
            }
            let mut next = ids;
            next.push(current.id().to_owned());
            if self
                .swap_setting(KEY_IDS, stored.as_deref(), &next.join(","))
                .await?
            {
                return Ok(Some(current.id().to_owned()));
            }
        }
    }

    /// Rewrites every endpoint's secrets and sensitive header values, every
    /// source's secret, and the stored JWT secret, sealed with the current key (or as plaintext
    /// without one); afterwards only the current key is needed, unless an
    /// endpoint changed meanwhile (`raced`: run it again). Each endpoint is
    /// rewritten only if it still holds what was read, so a concurrent
    /// change through the API is never undone.
    pub async fn reseal_secrets(&self) -> StoreResult<Resealed> {
        let mut done = Resealed::default();
        let mut after = String::new();
        loop {
            let sql = Sql::new(format!(
                "SELECT {ENDPOINT_COLUMNS}, secrets AS stored_secrets, headers AS stored_headers \
                 FROM endpoint WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.as_str())
            .bind(RESEAL_BATCH);
            let rows = self.db.read(sql).await?;
            for row in &rows {
                let endpoint = endpoint_from_row(row, &self.keys)?;
                after = endpoint.id.to_string();
                let old_secrets: serde_json::Value = row
                    .optional_json("stored_secrets", "endpoint.secrets")?
                    .unwrap_or_default();
                let old_headers: serde_json::Value = row
                    .optional_json("stored_headers", "endpoint.headers")?
                    .unwrap_or_default();
                let headers_need = old_headers.as_object().is_some_and(|headers| {
                    headers.iter().any(|(name, value)| {
                        herald_core::EndpointHeaders::is_sensitive(name)
                            && needs_reseal(value, &self.keys)
                    })
                });
                if !needs_reseal(&old_secrets, &self.keys) && !headers_need {
                    done.unchanged += 1;
                    continue;
                }
                let update = Sql::new(
                    "UPDATE endpoint SET secrets = $2, headers = $3 \
                     WHERE id = $1 AND secrets = $4 AND headers = $5",
                )
                .bind(endpoint.id.as_str())
                .bind(Arg::Json(Some(stored_secrets(&endpoint, &self.keys))))
                .bind(Arg::Json(Some(stored_headers(&endpoint, &self.keys))))
                .bind(Arg::Json(Some(old_secrets)))
                .bind(Arg::Json(Some(old_headers)));
                match self.db.write(update).await? {
                    0 => done.raced += 1,
                    _ => done.endpoints += 1,
                }
            }
            if (rows.len() as i64) < RESEAL_BATCH {
                break;
            }
        }
        self.reseal_sources(&mut done).await?;
        if let Some(stored) = self.setting(JWT_SECRET).await? {
            let context = main_key::setting_context(JWT_SECRET);
            let sealed_with = stored
                .strip_prefix(main_key::TEXT_PREFIX)
                .and_then(MainKeys::key_id_of);
            if sealed_with != self.keys.current().map(main_key::MainKey::id) {
                let plain = self
                    .keys
                    .open_text(&context, &stored)
                    .map_err(|e| crate::db::corrupt("server_setting.jwt_secret", e))?;
                let resealed = self.keys.seal_text(&context, &plain);
                done.jwt_secret = self
                    .swap_setting(JWT_SECRET, Some(&stored), &resealed)
                    .await?;
            }
        }
        if done.raced == 0 {
            let ids = self
                .keys
                .current()
                .map(|k| k.id().to_owned())
                .unwrap_or_default();
            let stored = self.setting(KEY_IDS).await?;
            if stored.as_deref() != Some(ids.as_str()) {
                self.swap_setting(KEY_IDS, stored.as_deref(), &ids).await?;
            }
        }
        Ok(done)
    }

    /// Rewrites every source's secret for the current key, as
    /// [`SqlStore::reseal_secrets`] does endpoints' (only if the row still
    /// holds what was read).
    async fn reseal_sources(&self, done: &mut Resealed) -> StoreResult<()> {
        let mut after = String::new();
        loop {
            let sql = Sql::new(format!(
                "SELECT {SOURCE_COLUMNS} FROM source WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.as_str())
            .bind(RESEAL_BATCH);
            let rows = self.db.read(sql).await?;
            for row in &rows {
                let old: serde_json::Value = row
                    .optional_json("secret", "source.secret")?
                    .unwrap_or_default();
                let source = source_from_row(row, &self.keys)?;
                after = source.id.to_string();
                if !needs_reseal(&old, &self.keys) {
                    continue;
                }
                let update =
                    Sql::new("UPDATE source SET secret = $2 WHERE id = $1 AND secret = $3")
                        .bind(source.id.as_str())
                        .bind(Arg::Json(Some(stored_secret(&source, &self.keys))))
                        .bind(Arg::Json(Some(old)));
                match self.db.write(update).await? {
                    0 => done.raced += 1,
                    _ => done.sources += 1,
                }
            }
            if (rows.len() as i64) < RESEAL_BATCH {
                return Ok(());
            }
        }
    }

    /// A setting holding a secret: inserted sealed (with the current key)
    /// unless it exists; its value, opened.
    pub(crate) async fn secret_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let context = main_key::setting_context(name);
        let stored = self
            .setting_or_insert(name, &self.keys.seal_text(&context, value))
            .await?;
        self.keys
            .open_text(&context, &stored)
            .map_err(|e| crate::db::corrupt("server_setting", e))
    }
}
