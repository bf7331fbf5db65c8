//! The delivery side's Prometheus series, recorded through the `metrics`
//! facade (the process installs the recorder; see `herald_api::metrics`).
//!
//! Labels are bounded: an attempt's outcome is `success` or its error class
//! ([`ErrorClass::as_str`]); no tenant, application, endpoint or message id is
//! ever a label.

use crate::send::{AttemptOutcome, ErrorClass};

pub const DELIVERY_ATTEMPTS: &str = "herald_delivery_attempts_total";
pub const DELIVERY_DURATION: &str = "herald_delivery_duration_seconds";
pub const RETRIES_SCHEDULED: &str = "herald_retries_scheduled_total";
pub const DEAD_LETTERS: &str = "herald_dead_letters_total";
pub const DEAD_LETTERS_DRAINED: &str = "herald_dead_letters_drained_total";
pub const RECORD_FAILURES: &str = "herald_attempt_record_failures_total";
pub const DELIVERIES_RELAYED: &str = "herald_deliveries_relayed_total";
pub const DELIVERIES_PARKED: &str = "herald_deliveries_parked_total";
pub const RELAY_BATCH_SIZE: &str = "herald_relay_batch_size";
pub const IN_FLIGHT: &str = "herald_worker_in_flight";
pub const DELIVERY_LAG: &str = "herald_delivery_lag_seconds";
pub const QUEUE_DEPTH: &str = "herald_queue_depth";
pub const THROTTLED: &str = "herald_deliveries_throttled_total";
pub const BREAKERS_OPENED: &str = "herald_breakers_opened_total";
pub const ENDPOINTS_DISABLED: &str = "herald_endpoints_disabled_total";
pub const RETENTION_PRUNED: &str = "herald_retention_pruned_total";
pub const RETENTION_OLDEST: &str = "herald_retention_oldest_message_age_seconds";

/// Describes the worker's series and registers them at zero, so they are
/// scraped (and `rate()` works) before the first delivery. Call once the
/// recorder is installed.
pub fn register() {
    metrics::describe_counter!(
        DELIVERY_ATTEMPTS,
        "Delivery attempts recorded, by outcome: success or the error class"
    );
    metrics::describe_histogram!(
        DELIVERY_DURATION,
        metrics::Unit::Seconds,
        "Time one delivery attempt took, until the response body was read"
    );
    metrics::describe_counter!(
        RETRIES_SCHEDULED,
        "Failed attempts followed by a scheduled retry"
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "Deliveries that went dead: their retry schedule was exhausted, or their attempts could not be recorded"
    );
    metrics::describe_counter!(
        DEAD_LETTERS_DRAINED,
        "Dead letters the worker drained from the dead-letter queue into the database, by what the database said: already_dead, marked_dead (it was still in flight) or moved_on (redriven, resent or deleted since)"
    );
    metrics::describe_counter!(
        RECORD_FAILURES,
        "Delivery attempts made but not recorded (the database refused the write), by what became of the task: retry (sent again after a backoff) or dead"
    );
    metrics::describe_counter!(
        DELIVERIES_PARKED,
        "Deliveries parked in the database because their endpoint's lane was full (the relay hands them out again when due)"
    );
    metrics::describe_counter!(
        DELIVERIES_RELAYED,
        "Due deliveries the outbox relay handed to the queue"
    );
    metrics::describe_gauge!(
        RELAY_BATCH_SIZE,
        "Deliveries the last outbox relay round handed to the queue"
    );
    metrics::describe_gauge!(IN_FLIGHT, "Delivery attempts in flight in this process");
    metrics::describe_histogram!(
        DELIVERY_LAG,
        metrics::Unit::Seconds,
        "Consumer lag: from when a delivery was handed to the queue (or its retry fell due) to the start of its attempt"
    );
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        "Messages waiting in the queue, by part: ready, delayed (retries), dead, stats_events"
    );
    metrics::describe_counter!(
        THROTTLED,
        "Deliveries held back by their endpoint's throttleRate (waiting in the lane, or parked when the wait was longer)"
    );
    metrics::describe_counter!(
        BREAKERS_OPENED,
        "Times an endpoint's circuit breaker opened (or stayed open after a failed probe)"
    );
    metrics::describe_counter!(
        ENDPOINTS_DISABLED,
        "Endpoints the workers disabled: 410 Gone, or failing past HERALD_AUTO_DISABLE_AFTER"
    );
    metrics::describe_counter!(
        RETENTION_PRUNED,
        "Rows retention removed, by kind: payload (expired and set to NULL), attempt, delivery, message"
    );
    metrics::describe_gauge!(
        RETENTION_OLDEST,
        metrics::Unit::Seconds,
        "Age of the oldest message stored, as the retention job last saw it (0 when there is none); set by the worker holding the retention lease"
    );
    for kind in ["payload", "attempt", "delivery", "message"] {
        metrics::counter!(RETENTION_PRUNED, "kind" => kind).increment(0);
    }
    metrics::counter!(DELIVERY_ATTEMPTS, "outcome" => "success").increment(0);
    metrics::counter!(THROTTLED).increment(0);
    metrics::counter!(BREAKERS_OPENED).increment(0);
    metrics::counter!(ENDPOINTS_DISABLED).increment(0);
    metrics::counter!(RETRIES_SCHEDULED).increment(0);
    metrics::counter!(DEAD_LETTERS).increment(0);
    for result in ["already_dead", "marked_dead", "moved_on"] {
        metrics::counter!(DEAD_LETTERS_DRAINED, "result" => result).increment(0);
    }
    metrics::counter!(RECORD_FAILURES, "action" => "retry").increment(0);
    metrics::counter!(RECORD_FAILURES, "action" => "dead").increment(0);
    metrics::counter!(DELIVERIES_RELAYED).increment(0);
    metrics::counter!(DELIVERIES_PARKED).increment(0);
    metrics::gauge!(RELAY_BATCH_SIZE).set(0.0);
    metrics::gauge!(IN_FLIGHT).set(0.0);
}

/// An attempt starts `lag` after its delivery was due.
pub(crate) fn attempt_started(lag: std::time::Duration) {
    metrics::histogram!(DELIVERY_LAG).record(lag.as_secs_f64());
}

/// The queue's depths, read periodically by the process.
pub fn queue_depths(depths: &herald_queue::QueueDepths) {
    metrics::gauge!(QUEUE_DEPTH, "queue" => "ready").set(depths.ready as f64);
    metrics::gauge!(QUEUE_DEPTH, "queue" => "delayed").set(depths.delayed as f64);
    metrics::gauge!(QUEUE_DEPTH, "queue" => "dead").set(depths.dead as f64);
    metrics::gauge!(QUEUE_DEPTH, "queue" => "stats_events").set(depths.stats_events as f64);
}

/// The `outcome` label of an attempt.
pub fn outcome_label(outcome: &AttemptOutcome) -> &'static str {
    match outcome.error_class {
        None if outcome.success => "success",
        None => ErrorClass::Other.as_str(),
        Some(class) => class.as_str(),
    }
}

/// Counts and times a recorded attempt.
pub(crate) fn attempt_recorded(outcome: &AttemptOutcome) {
    metrics::counter!(DELIVERY_ATTEMPTS, "outcome" => outcome_label(outcome)).increment(1);
    metrics::histogram!(DELIVERY_DURATION).record(outcome.duration.as_secs_f64());
}

pub(crate) fn retry_scheduled() {
    metrics::counter!(RETRIES_SCHEDULED).increment(1);
}

pub(crate) fn dead_lettered() {
    metrics::counter!(DEAD_LETTERS).increment(1);
}

/// A drained batch of dead letters, by what the database said of each.
pub(crate) fn dead_letters_drained(check: &herald_store::DeadLetterCheck) {
    for (result, count) in [
        ("already_dead", check.already_dead),
        ("marked_dead", check.marked_dead),
        ("moved_on", check.moved_on),
    ] {
        metrics::counter!(DEAD_LETTERS_DRAINED, "result" => result).increment(count);
    }
}

/// An attempt was made but not recorded; its task was `given_up` (dead) or
/// will be sent again.
pub(crate) fn attempt_unrecorded(given_up: bool) {
    let action = if given_up { "dead" } else { "retry" };
    metrics::counter!(RECORD_FAILURES, "action" => action).increment(1);
}

/// One relay round handed `count` deliveries to the queue.
/// Counts a delivery parked because its endpoint's lane was full.
pub(crate) fn throttled() {
    metrics::counter!(THROTTLED).increment(1);
}

pub(crate) fn breaker_opened() {
    metrics::counter!(BREAKERS_OPENED).increment(1);
}

pub(crate) fn endpoint_disabled() {
    metrics::counter!(ENDPOINTS_DISABLED).increment(1);
}

pub(crate) fn parked() {
    metrics::counter!(DELIVERIES_PARKED).increment(1);
}

pub(crate) fn relayed(count: usize) {
    metrics::counter!(DELIVERIES_RELAYED).increment(count as u64);
    metrics::gauge!(RELAY_BATCH_SIZE).set(count as f64);
}

/// Retention removed `count` rows of `kind`.
pub(crate) fn pruned(kind: &'static str, count: u64) {
    metrics::counter!(RETENTION_PRUNED, "kind" => kind).increment(count);
}

/// The oldest message stored is `age` seconds old (`None`: there is none).
pub(crate) fn oldest_message(age: Option<f64>) {
    metrics::gauge!(RETENTION_OLDEST).set(age.unwrap_or(0.0));
}

/// Holds one unit of [`IN_FLIGHT`] until dropped.
pub(crate) struct InFlight(());

pub(crate) fn in_flight() -> InFlight {
    metrics::gauge!(IN_FLIGHT).increment(1.0);
    InFlight(())
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(IN_FLIGHT).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn outcome(success: bool, error_class: Option<ErrorClass>) -> AttemptOutcome {
        AttemptOutcome {
            status_code: if success { 200 } else { 0 },
            error_class,
            error_detail: None,
            response_body: String::new(),
            request_headers: None,
            response_headers: None,
            duration: Duration::from_millis(5),
            retry_after: None,
            success,
        }
    }

    #[test]
    fn outcomes_are_success_or_an_error_class() {
        assert_eq!(outcome_label(&outcome(true, None)), "success");
        assert_eq!(
            outcome_label(&outcome(false, Some(ErrorClass::Http5xx))),
            "5xx"
        );
        assert_eq!(
            outcome_label(&outcome(false, Some(ErrorClass::Timeout))),
            "timeout"
        );
        assert_eq!(outcome_label(&outcome(false, None)), "other");
    }
}
