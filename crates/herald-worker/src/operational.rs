//! The operational webhooks a worker sends: `endpoint.disabled` when it
//! disables an endpoint, and `message.attempt.failing`, `.exhausted` and
//! `.recovered` as a delivery's attempts go (see `herald_store::operational`
//! for how they are stored and delivered).
//!
//! Only an attempt that changes something calls in here, so a plain success
//! costs the delivery loop one comparison. An event that cannot be stored is
//! logged, never a reason to fail the task: the attempt it reports is already
//! recorded, and sending it again would call the receiver again.

use chrono::{DateTime, Utc};
use herald_core::operational::{
    AttemptSummary, DisableTrigger, EventDetail, OperationalEvent, OperationalEventType,
    FAILING_AFTER_ATTEMPT,
};
use herald_core::retry::Decision;
use herald_core::{MessageId, TenantId};
use herald_store::{emit_operational, Attempt, DeliveryStore, Endpoint};

/// The attempt event an attempt calls for, if any: the fourth failure of a
/// delivery that will be retried (`failing`), the last one (`exhausted`), a
/// success after failures (`recovered`). A manual attempt past the schedule
/// exhausts nothing new. Pure, so the rule is tested without a store.
pub fn attempt_event_type(
    decision: &Decision,
    attempt_number: u32,
    manual: bool,
    failed_before: bool,
) -> Option<OperationalEventType> {
    match decision {
        Decision::Succeeded if failed_before => Some(OperationalEventType::MessageAttemptRecovered),
        Decision::Exhausted if !manual => Some(OperationalEventType::MessageAttemptExhausted),
        Decision::RetryAfter(_) if attempt_number == FAILING_AFTER_ATTEMPT => {
            Some(OperationalEventType::MessageAttemptFailing)
        }
        _ => None,
    }
}

/// Sends an attempt event about `attempt` (of `msg_id` to `endpoint`).
pub async fn report_attempt(
    store: &dyn DeliveryStore,
    tenant_id: &TenantId,
    event_type: OperationalEventType,
    msg_id: &MessageId,
    attempt: AttemptSummary,
    endpoint: &Endpoint,
) {
    let event = OperationalEvent {
        event_type,
        app_id: endpoint.app_id.clone(),
        endpoint_id: endpoint.id.clone(),
        endpoint_uid: endpoint.uid.clone(),
        detail: EventDetail::Attempt {
            msg_id: msg_id.clone(),
            last_attempt: attempt,
        },
    };
    emit(store, tenant_id, &event).await;
}

/// Sends `endpoint.disabled` for an endpoint Herald disabled itself
/// (`trigger: "automatic"`): after a 410 Gone, or after failing for too long.
/// `fail_since` is when its failures began, when known.
pub async fn report_disabled(
    store: &dyn DeliveryStore,
    tenant_id: &TenantId,
    endpoint: &Endpoint,
    fail_since: Option<DateTime<Utc>>,
) {
    let event = OperationalEvent {
        event_type: OperationalEventType::EndpointDisabled,
        app_id: endpoint.app_id.clone(),
        endpoint_id: endpoint.id.clone(),
        endpoint_uid: endpoint.uid.clone(),
        detail: EventDetail::Disabled {
            trigger: DisableTrigger::Automatic,
            fail_since,
        },
    };
    emit(store, tenant_id, &event).await;
}

/// The summary of a recorded attempt, as attempt events carry it.
pub fn summary(attempt: &Attempt) -> AttemptSummary {
    AttemptSummary {
        id: attempt.id.clone(),
        response_status_code: attempt.status_code,
        timestamp: attempt.created_at,
    }
}

async fn emit(store: &dyn DeliveryStore, tenant_id: &TenantId, event: &OperationalEvent) {
    match emit_operational(store, tenant_id, event).await {
        Ok(Some(msg_id)) => {
            tracing::debug!(%msg_id, event_type = event.event_type.as_str(), "operational webhook queued")
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(
            %error,
            event_type = event.event_type.as_str(),
            endpoint_id = %event.endpoint_id,
            "could not queue the operational webhook"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_fourth_failure_of_a_retried_delivery_is_failing_and_no_other() {
        let retry = Decision::RetryAfter(Duration::from_secs(1));
        assert_eq!(attempt_event_type(&retry, 3, false, true), None);
        assert_eq!(
            attempt_event_type(&retry, 4, false, true),
            Some(OperationalEventType::MessageAttemptFailing)
        );
        assert_eq!(attempt_event_type(&retry, 5, false, true), None);
    }

    #[test]
    fn exhaustion_and_recovery_are_reported_but_a_first_success_is_not() {
        assert_eq!(
            attempt_event_type(&Decision::Exhausted, 6, false, true),
            Some(OperationalEventType::MessageAttemptExhausted)
        );
        assert_eq!(
            attempt_event_type(&Decision::Exhausted, 7, true, true),
            None
        );
        assert_eq!(
            attempt_event_type(&Decision::Succeeded, 2, false, true),
            Some(OperationalEventType::MessageAttemptRecovered)
        );
        assert_eq!(
            attempt_event_type(&Decision::Succeeded, 1, false, false),
            None
        );
        assert_eq!(attempt_event_type(&Decision::Final, 1, false, false), None);
    }
}
