//! The worker's endpoint cache: what an attempt needs of its endpoint (URL,
//! secrets, headers, whether it is disabled), kept for a short time so the
//! common attempt reads nothing from the database.
//!
//! How fresh a copy is, is bounded twice. A task from the API carries the
//! endpoint's `updated_at` as the API saw it when it accepted the message; a
//! copy older than that is not used, so a change made before a message was
//! accepted always applies to it. And no copy is used longer than the TTL
//! (`HERALD_ENDPOINT_CACHE_TTL`), so a change made while a message waits —
//! a rotated secret, a disabled endpoint — applies to its attempts from at
//! most one TTL later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use herald_core::{EndpointId, TenantId};
use herald_store::Endpoint;

/// Entries past which expired ones are swept out on insert.
const SWEEP_AT: usize = 10_000;

pub(crate) struct EndpointCache {
    ttl: Duration,
    entries: Mutex<HashMap<EndpointId, Entry>>,
}

struct Entry {
    /// The tenant the endpoint was read for: a lookup for another misses.
    tenant_id: TenantId,
    endpoint: Arc<Endpoint>,
    loaded: Instant,
}

impl EndpointCache {
    /// A cache whose copies live `ttl`; zero disables it.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<EndpointId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached endpoint, if its copy is younger than the TTL and at least
    /// as new as `at_least` (the version a task was published with).
    pub(crate) fn get(
        &self,
        tenant_id: &TenantId,
        endpoint_id: &EndpointId,
        at_least: Option<DateTime<Utc>>,
    ) -> Option<Arc<Endpoint>> {
        let entries = self.entries();
        let entry = entries.get(endpoint_id)?;
        let fresh = entry.tenant_id == *tenant_id
            && entry.loaded.elapsed() < self.ttl
            && at_least.is_none_or(|version| entry.endpoint.updated_at >= version);
        fresh.then(|| entry.endpoint.clone())
    }

    /// Keeps `endpoint`, just read from the database.
    pub(crate) fn put(&self, tenant_id: &TenantId, endpoint: Arc<Endpoint>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, entry| entry.loaded.elapsed() < self.ttl);
        }
        entries.insert(
            endpoint.id.clone(),
            Entry {
                tenant_id: tenant_id.clone(),
                endpoint,
                loaded: Instant::now(),
            },
        );
    }
}
