//! Fair use per tenant: a message rate (GCRA, shared by every API process
//! through Redis when it is configured), a payload size and a number of
//! endpoints per application. The worker's share of attempts per tenant is
//! the other half (`herald_worker::dispatch`'s tenant lanes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_cache::throttle::{Reservation, Throttle};
use herald_core::TenantId;

use crate::error::ApiError;

/// The limits every tenant is held to.
#[derive(Debug, Clone)]
pub struct TenantLimits {
    /// Messages per second a tenant may post; `None`: no limit.
    pub message_rate: Option<u16>,
    /// Messages a tenant may post at once above its rate.
    pub message_burst: u32,
    /// Most endpoints one application may have.
    pub max_endpoints_per_app: u32,
    /// Largest payload of a message, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            message_rate: None,
            message_burst: 1,
            max_endpoints_per_app: 1000,
            max_payload_bytes: 1024 * 1024,
        }
    }
}

/// Holds tenants to their message rate.
#[derive(Clone)]
pub struct MessageRate {
    limits: Arc<TenantLimits>,
    throttle: Arc<dyn Throttle>,
    /// Tenants found over their rate, until when: refused in this process
    /// without asking the limiter again, so a flood of refused calls costs
    /// no Redis round trip each.
    refused_until: Arc<Mutex<HashMap<TenantId, Instant>>>,
}

impl MessageRate {
    pub fn new(limits: Arc<TenantLimits>, throttle: Arc<dyn Throttle>) -> Self {
        Self {
            limits,
            throttle,
            refused_until: Arc::default(),
        }
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Instant>> {
        self.refused_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn too_many(&self, rate: u16, wait: Duration) -> ApiError {
        crate::metrics::message_rate_limited();
        ApiError::TooManyRequests {
            detail: format!(
                "this tenant may post {rate} messages per second (bursts of {}); try again in {} ms",
                self.limits.message_burst,
                wait.as_millis().max(1)
            ),
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// Admits one message of `tenant_id`, or refuses it with a 429 naming
    /// when to try again. A limiter that cannot be reached admits: a Redis
    /// outage must not stop every tenant's traffic.
    pub async fn admit(&self, tenant_id: &TenantId) -> Result<(), ApiError> {
        let Some(rate) = self.limits.message_rate else {
            return Ok(());
        };
        let now = Instant::now();
        if let Some(until) = self.refused().get(tenant_id).copied() {
            if until > now {
                return Err(self.too_many(rate, until - now));
            }
        }
        // GCRA: a burst of `burst` messages is a slot up to `burst - 1`
        // intervals ahead, taken at once.
        let tolerance =
            Duration::from_secs(1) * self.limits.message_burst.saturating_sub(1) / u32::from(rate);
        let key = format!("tenant-messages:{tenant_id}");
        match self.throttle.reserve(&key, rate, tolerance).await {
            Ok(Reservation::Granted { .. }) => Ok(()),
            Ok(Reservation::Full { after }) => {
                let wait = after.saturating_sub(tolerance);
                let mut refused = self.refused();
                refused.retain(|_, until| *until > now);
                refused.insert(tenant_id.clone(), now + wait);
                drop(refused);
                Err(self.too_many(rate, wait))
            }
            Err(error) => {
                tracing::warn!(%error, "message rate limiter unreachable; admitting");
                Ok(())
            }
        }
    }
}
