//! The stats role's loop: events in, batched and deduplicated counts out.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use herald_core::{ApplicationId, AttemptId, EndpointId, ErrorClass, TenantId};
use herald_queue::{AttemptCompleted, EventBus, ReceivedEvent};
use herald_store::{StatsSample, StatsStore};

/// Describes the stats role's series and registers them at zero. Call once
/// the process's metrics recorder is installed.
pub fn register_metrics() {
    metrics::describe_counter!(
        "herald_stats_events_total",
        "Attempt events the stats role consumed"
    );
    metrics::describe_counter!(
        "herald_stats_duplicates_total",
        "Attempt events recognised as already counted (redeliveries)"
    );
    metrics::describe_gauge!(
        "herald_stats_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest attempt in the last batch the stats role counted"
    );
    metrics::counter!("herald_stats_events_total").increment(0);
    metrics::counter!("herald_stats_duplicates_total").increment(0);
    metrics::gauge!("herald_stats_lag_seconds").set(0.0);
}

/// Settings of the stats role.
#[derive(Clone, Debug)]
pub struct AggregatorConfig {
    /// Most events counted in one transaction.
    pub batch_size: usize,
    /// Longest an event waits for its batch to fill.
    pub flush_interval: Duration,
    /// How often the roll-up deletes old minute buckets (their hour buckets,
    /// written alongside them, stay) and prunes the remembered attempt ids.
    pub rollup_interval: Duration,
    /// How long minute buckets are kept: the roll-up deletes those of the
    /// hours before the hour `now - minute_retention` falls in.
    pub minute_retention: chrono::Duration,
    /// How long counted attempt ids are remembered for deduplication; far
    /// longer than any redelivery takes.
    pub seen_retention: chrono::Duration,
    /// How long hour buckets are kept (the longest window a report covers is
    /// 90 days), so stats storage stays bounded.
    pub hour_retention: chrono::Duration,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            flush_interval: Duration::from_millis(250),
            rollup_interval: Duration::from_secs(300),
            minute_retention: chrono::Duration::hours(48),
            seen_retention: chrono::Duration::days(7),
            hour_retention: chrono::Duration::days(91),
        }
    }
}

/// Consumes attempt events until `shutdown`, counting them in batches; rolls up
/// old buckets on the side. Returns when shutdown is requested or the bus closes.
pub async fn run(
    store: Arc<dyn StatsStore>,
    bus: Arc<dyn EventBus>,
    config: AggregatorConfig,
    shutdown: CancellationToken,
) -> Result<(), herald_queue::QueueError> {
    let prefetch = u16::try_from(config.batch_size.saturating_mul(2)).unwrap_or(u16::MAX);
    let mut consumer = bus.consume_attempts(prefetch).await?;
    let rollup = tokio::spawn(run_rollups(store.clone(), config.clone(), shutdown.clone()));
    tracing::info!(batch = config.batch_size, "stats aggregator started");
    'events: loop {
        // Wait for the first event of a batch, then fill it for a moment.
        let first = tokio::select! {
            event = consumer.next() => event,
            _ = shutdown.cancelled() => break,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.flush_interval;
        while batch.len() < config.batch_size {
            tokio::select! {
                event = consumer.next() => match event {
                    Some(event) => batch.push(event),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shutdown.cancelled() => break 'events,
            }
        }
        if !flush(store.as_ref(), batch, &shutdown).await {
            break; // Shut down mid-retry; the unacked events come back.
        }
    }
    rollup.abort();
    tracing::info!("stats aggregator stopped");
    Ok(())
}

/// Counts a batch, retrying while the store is unavailable, then acks it.
/// Returns false when shutdown interrupted the retries.
async fn flush(
    store: &dyn StatsStore,
    batch: Vec<ReceivedEvent>,
    shutdown: &CancellationToken,
) -> bool {
    let samples: Vec<StatsSample> = batch
        .iter()
        .filter_map(|received| match sample_of(&received.event) {
            Some(sample) => Some(sample),
            None => {
                tracing::warn!(attempt_id = %received.event.attempt_id, "malformed attempt event; not counted");
                None
            }
        })
        .collect();
    let oldest = samples.iter().map(|s| s.at).min();
    let mut backoff = Duration::from_millis(200);
    loop {
        match store.record_stats(&samples).await {
            Ok(new) => {
                metrics::counter!("herald_stats_events_total").increment(batch.len() as u64);
                metrics::counter!("herald_stats_duplicates_total")
                    .increment((samples.len() - new.min(samples.len())) as u64);
                if let Some(oldest) = oldest {
                    let lag = (Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0;
                    metrics::gauge!("herald_stats_lag_seconds").set(lag);
                }
                break;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "could not record stats; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    for received in batch {
        if let Err(error) = received.ack().await {
            // Redelivered later and recognised by its attempt id: not counted twice.
            tracing::warn!(%error, "could not ack a counted stats event");
        }
    }
    true
}

/// The sample an event describes, or `None` when it is malformed.
pub fn sample_of(event: &AttemptCompleted) -> Option<StatsSample> {
    Some(StatsSample {
        attempt_id: AttemptId::parse(&event.attempt_id).ok()?,
        tenant_id: TenantId::parse(&event.tenant_id).ok()?,
        app_id: ApplicationId::parse(&event.app_id).ok()?,
        endpoint_id: EndpointId::parse(&event.endpoint_id).ok()?,
        success: event.success,
        error_class: if event.success {
            None
        } else {
            Some(event.error_class.unwrap_or(ErrorClass::Other))
        },
        duration_us: event.duration_us,
        at: DateTime::from_timestamp_micros(event.at_us)?,
    })
}

async fn run_rollups(
    store: Arc<dyn StatsStore>,
    config: AggregatorConfig,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(config.rollup_interval);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Utc::now();
        match store
            .roll_up_stats(now - config.minute_retention, now - config.seen_retention)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old minute stats buckets deleted"),
            Err(error) => tracing::warn!(%error, "stats roll-up failed; trying again later"),
        }
        match store.expire_stats(now - config.hour_retention).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired hour stats buckets deleted"),
            Err(error) => tracing::warn!(%error, "stats expiry failed; trying again later"),
        }
    }
}
